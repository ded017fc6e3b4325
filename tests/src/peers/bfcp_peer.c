/*
 * bfcp_peer: an independent BFCP peer for huis's tests, on libre's BFCP (the wire format and
 * UDP transactions are libre's; the floor logic below is ours and deliberately small).
 *
 *   bfcp_peer server <bind-ip> <port> <confid> <floorid> <own-userid>
 *       A floor control server over UDP with one floor: a FloorRequest is granted at once and
 *       revokes the holder before (last requester wins). On stdin: "take" makes the peer's own
 *       user the holder (the holder before is revoked), "release" frees it, "quit".
 *   bfcp_peer client <bind-ip> <port> <server-ip> <server-port> <confid> <userid> <floorid>
 *       A floor participant over UDP. On stdin: "hello", "request", "release", "quit".
 *
 * Port 0 picks a free port. stdout gets one line per event, flushed:
 *   READY port=<p>
 *   RECV <Primitive> user=<u> tid=<t>
 *   GRANTED floor=<f> user=<u> frid=<id>   REVOKED user=<u>   RELEASED user=<u>
 *   HOLDER self                            STATUS <Name> frid=<id>   FAILED <Primitive> err=<e>
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <re.h>

enum mode { MODE_SERVER, MODE_CLIENT };

static struct {
	enum mode mode;
	struct bfcp_conn *bc;
	uint32_t confid;
	uint16_t floorid;
	uint16_t userid;        /* our own user id */
	/* server */
	bool held;
	uint16_t holder;        /* user id of the holder */
	uint16_t holder_frid;
	struct sa holder_addr;
	uint16_t next_frid;
	/* client */
	struct sa server;
	uint16_t my_frid;
} g;

static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int status_of(const struct bfcp_msg *msg, uint16_t *frid)
{
	struct bfcp_attr *fri = bfcp_msg_attr(msg, BFCP_FLOOR_REQ_INFO);
	struct bfcp_attr *grp, *rs;

	if (!fri)
		return 0;
	if (frid)
		*frid = fri->v.floorreqid;
	grp = bfcp_attr_subattr(fri, BFCP_OVERALL_REQ_STATUS);
	rs = grp ? bfcp_attr_subattr(grp, BFCP_REQUEST_STATUS) : NULL;
	if (!rs) {
		grp = bfcp_attr_subattr(fri, BFCP_FLOOR_REQ_STATUS);
		rs = grp ? bfcp_attr_subattr(grp, BFCP_REQUEST_STATUS) : NULL;
	}
	return rs ? (int)rs->v.reqstatus.status : 0;
}

/* Sends the holder a server-initiated FloorRequestStatus Revoked (a UDP transaction of its own). */
static void revoke_holder(void)
{
	struct bfcp_reqstatus rs = {BFCP_REVOKED, 0};
	uint16_t frid = g.holder_frid, floorid = g.floorid;
	int err;

	if (!g.held)
		return;
	g.held = false;
	if (g.holder == g.userid) {
		out("REVOKED user=%u", g.holder);
		return;
	}
	err = bfcp_notify(g.bc, &g.holder_addr, BFCP_VER2, BFCP_FLOOR_REQUEST_STATUS, g.confid, g.holder, 1,
			  BFCP_FLOOR_REQ_INFO, 2, &frid,
			  BFCP_OVERALL_REQ_STATUS, 1, &frid,
			  BFCP_REQUEST_STATUS, 0, &rs,
			  BFCP_FLOOR_REQ_STATUS, 0, &floorid);
	out("REVOKED user=%u err=%d", g.holder, err);
}

static void reply_status(const struct bfcp_msg *msg, uint16_t frid, enum bfcp_reqstat st)
{
	struct bfcp_reqstatus rs = {st, 0};
	uint16_t floorid = g.floorid;

	(void)bfcp_reply(g.bc, msg, BFCP_FLOOR_REQUEST_STATUS, 1,
			 BFCP_FLOOR_REQ_INFO, 2, &frid,
			 BFCP_OVERALL_REQ_STATUS, 1, &frid,
			 BFCP_REQUEST_STATUS, 0, &rs,
			 BFCP_FLOOR_REQ_STATUS, 0, &floorid);
}

static void server_recv(const struct bfcp_msg *msg)
{
	struct bfcp_attr *a;

	if (msg->confid != g.confid) {
		(void)bfcp_ereply(g.bc, msg, BFCP_CONF_NOT_EXIST);
		return;
	}
	switch (msg->prim) {

	case BFCP_HELLO: {
		enum bfcp_prim prims[] = {BFCP_FLOOR_REQUEST, BFCP_FLOOR_RELEASE, BFCP_HELLO,
					  BFCP_FLOOR_REQ_STATUS_ACK, BFCP_GOODBYE};
		enum bfcp_attrib attrs[] = {BFCP_FLOOR_ID, BFCP_FLOOR_REQUEST_ID, BFCP_REQUEST_STATUS,
					    BFCP_FLOOR_REQ_INFO, BFCP_FLOOR_REQ_STATUS, BFCP_OVERALL_REQ_STATUS};
		struct bfcp_supprim sp = {prims, sizeof(prims) / sizeof(prims[0])};
		struct bfcp_supattr sa = {attrs, sizeof(attrs) / sizeof(attrs[0])};
		(void)bfcp_reply(g.bc, msg, BFCP_HELLO_ACK, 2, BFCP_SUPPORTED_PRIMS, 0, &sp,
				 BFCP_SUPPORTED_ATTRS, 0, &sa);
		break;
	}

	case BFCP_FLOOR_REQUEST:
		a = bfcp_msg_attr(msg, BFCP_FLOOR_ID);
		if (!a || a->v.floorid != g.floorid) {
			(void)bfcp_ereply(g.bc, msg, BFCP_INVALID_FLOOR_ID);
			break;
		}
		if (!(g.held && g.holder == msg->userid)) {
			revoke_holder();
			g.held = true;
			g.holder = msg->userid;
			g.holder_frid = g.next_frid++;
			g.holder_addr = msg->src;
		}
		reply_status(msg, g.holder_frid, BFCP_GRANTED);
		out("GRANTED floor=%u user=%u frid=%u", g.floorid, g.holder, g.holder_frid);
		break;

	case BFCP_FLOOR_RELEASE:
		a = bfcp_msg_attr(msg, BFCP_FLOOR_REQUEST_ID);
		if (!a || !g.held || g.holder != msg->userid || a->v.floorreqid != g.holder_frid) {
			(void)bfcp_ereply(g.bc, msg, BFCP_FLOOR_REQ_ID_NOT_EXIST);
			break;
		}
		g.held = false;
		reply_status(msg, a->v.floorreqid, BFCP_RELEASED);
		out("RELEASED user=%u", msg->userid);
		break;

	case BFCP_GOODBYE:
		(void)bfcp_reply(g.bc, msg, BFCP_GOODBYE_ACK, 0);
		break;

	case BFCP_FLOOR_REQ_STATUS_ACK:
	case BFCP_FLOOR_STATUS_ACK:
		break;

	default:
		(void)bfcp_ereply(g.bc, msg, BFCP_UNKNOWN_PRIM);
		break;
	}
}

static void client_status(const struct bfcp_msg *msg)
{
	uint16_t frid = 0;
	int st = status_of(msg, &frid);

	out("STATUS %s frid=%u", bfcp_reqstatus_name(st), frid);
	switch (st) {
	case BFCP_GRANTED:
		g.my_frid = frid;
		out("GRANTED floor=%u user=%u frid=%u", g.floorid, g.userid, frid);
		break;
	case BFCP_REVOKED:
		out("REVOKED user=%u", g.userid);
		break;
	case BFCP_RELEASED:
		out("RELEASED user=%u", g.userid);
		break;
	default:
		break;
	}
}

static void client_resp(int err, const struct bfcp_msg *msg, void *arg)
{
	const char *what = arg;

	if (err || !msg) {
		out("FAILED %s err=%d", what, err);
		return;
	}
	out("RECV %s user=%u tid=%u", bfcp_prim_name(msg->prim), msg->userid, msg->tid);
	if (msg->prim == BFCP_FLOOR_REQUEST_STATUS)
		client_status(msg);
}

static void client_recv(const struct bfcp_msg *msg)
{
	switch (msg->prim) {

	case BFCP_FLOOR_REQUEST_STATUS:
		(void)bfcp_reply(g.bc, msg, BFCP_FLOOR_REQ_STATUS_ACK, 0);
		client_status(msg);
		break;

	case BFCP_FLOOR_STATUS:
		(void)bfcp_reply(g.bc, msg, BFCP_FLOOR_STATUS_ACK, 0);
		break;

	case BFCP_GOODBYE:
		(void)bfcp_reply(g.bc, msg, BFCP_GOODBYE_ACK, 0);
		break;

	default:
		break;
	}
}

static void recv_handler(const struct bfcp_msg *msg, void *arg)
{
	(void)arg;
	out("RECV %s user=%u tid=%u", bfcp_prim_name(msg->prim), msg->userid, msg->tid);
	if (g.mode == MODE_SERVER)
		server_recv(msg);
	else
		client_recv(msg);
}

static void command(const char *line)
{
	uint16_t floorid = g.floorid, frid = g.my_frid;
	int err = 0;

	if (!strcmp(line, "quit")) {
		re_cancel();
	}
	else if (g.mode == MODE_SERVER && !strcmp(line, "take")) {
		revoke_holder();
		g.held = true;
		g.holder = g.userid;
		g.holder_frid = g.next_frid++;
		out("HOLDER self");
	}
	else if (g.mode == MODE_SERVER && !strcmp(line, "release")) {
		if (g.held && g.holder == g.userid) {
			g.held = false;
			out("RELEASED user=%u", g.userid);
		}
	}
	else if (g.mode == MODE_CLIENT && !strcmp(line, "hello")) {
		err = bfcp_request(g.bc, &g.server, BFCP_VER2, BFCP_HELLO, g.confid, g.userid, client_resp,
				   "Hello", 0);
	}
	else if (g.mode == MODE_CLIENT && !strcmp(line, "request")) {
		err = bfcp_request(g.bc, &g.server, BFCP_VER2, BFCP_FLOOR_REQUEST, g.confid, g.userid,
				   client_resp, "FloorRequest", 1, BFCP_FLOOR_ID, 0, &floorid);
	}
	else if (g.mode == MODE_CLIENT && !strcmp(line, "release")) {
		err = bfcp_request(g.bc, &g.server, BFCP_VER2, BFCP_FLOOR_RELEASE, g.confid, g.userid,
				   client_resp, "FloorRelease", 1, BFCP_FLOOR_REQUEST_ID, 0, &frid);
	}
	else if (line[0]) {
		out("UNKNOWN-COMMAND %s", line);
	}
	if (err)
		out("FAILED %s err=%d", line, err);
}

static void stdin_handler(int flags, void *arg)
{
	static char buf[512];
	static size_t len;
	ssize_t n;
	char *nl;
	(void)flags;
	(void)arg;

	n = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
	if (n <= 0) {
		re_cancel();
		return;
	}
	len += (size_t)n;
	buf[len] = '\0';
	while ((nl = strchr(buf, '\n'))) {
		*nl = '\0';
		command(buf);
		len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, len + 1);
	}
	if (len == sizeof(buf) - 1)
		len = 0;
}

static void signal_handler(int sig)
{
	(void)sig;
	re_cancel();
}

static int usage(void)
{
	fprintf(stderr, "usage: bfcp_peer server <ip> <port> <confid> <floorid> <own-userid>\n"
			"       bfcp_peer client <ip> <port> <server-ip> <server-port> <confid> <userid> <floorid>\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sa laddr;
	int err;

	if (argc == 7 && !strcmp(argv[1], "server")) {
		g.mode = MODE_SERVER;
		g.confid = (uint32_t)strtoul(argv[4], NULL, 10);
		g.floorid = (uint16_t)atoi(argv[5]);
		g.userid = (uint16_t)atoi(argv[6]);
		g.next_frid = 1;
	}
	else if (argc == 9 && !strcmp(argv[1], "client")) {
		g.mode = MODE_CLIENT;
		if (sa_set_str(&g.server, argv[4], (uint16_t)atoi(argv[5])))
			return usage();
		g.confid = (uint32_t)strtoul(argv[6], NULL, 10);
		g.userid = (uint16_t)atoi(argv[7]);
		g.floorid = (uint16_t)atoi(argv[8]);
	}
	else {
		return usage();
	}
	if (sa_set_str(&laddr, argv[2], (uint16_t)atoi(argv[3])))
		return usage();

	err = libre_init();
	if (err)
		return 1;
	err = bfcp_listen(&g.bc, BFCP_UDP, &laddr, NULL, recv_handler, NULL);
	if (err) {
		fprintf(stderr, "bfcp_listen: %s\n", strerror(err));
		return 1;
	}
	(void)udp_local_get(bfcp_sock(g.bc), &laddr);
	err = fd_listen(STDIN_FILENO, FD_READ, stdin_handler, NULL);
	if (err)
		return 1;
	out("READY port=%u", sa_port(&laddr));

	(void)re_main(signal_handler);

	fd_close(STDIN_FILENO);
	g.bc = mem_deref(g.bc);
	libre_close();
	return 0;
}
