//! The user agent core: registration, calls (dialogs), session timers and DTMF INFO on top of
//! the transactions, with inputs and outputs only through [`UserAgent`]'s methods.

use crate::digest::{self, Challenge};
use crate::dtmf::{self, DtmfItem};
use crate::framing::{self, StreamFramer};
use crate::msg::{self, RawMessage, addr_uri, hdr, header_param, header_value, header_values, tag_of};
use crate::sdp::{Direction, LocalMedia, SessionDescription};
use crate::transaction::{ClientTransaction, ResponseAction, ServerTransaction, TxOutput};
use crate::types::*;
use rsip::{Headers, Method, Request, Response, SipMessage};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Methods we implement (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
/// Extensions we support (the `Supported` header).
pub const SUPPORTED: &str = "timer";
/// RFC 5168 video fast update requests in INFO.
const MEDIA_CONTROL: &str = "application/media_control+xml";
/// RFC 5168 §3.2's request for a full picture.
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control>\r\n  <vc_primitive>\r\n    <to_encoder>\r\n      <picture_fast_update/>\r\n    </to_encoder>\r\n  </vc_primitive>\r\n</media_control>\r\n";
const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/media_control+xml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Register(AccountId),
    Invite(CallId),
    Cancel(CallId),
    InDialog(CallId, Method),
}

struct ClientEntry {
    tx: ClientTransaction,
    owner: Owner,
    dest: Destination,
    request: Request,
}

struct ServerEntry {
    tx: ServerTransaction,
    request: Request,
    reply_to: Destination,
    call: Option<CallId>,
    /// Call-ID, CSeq number and From tag of a request outside a dialog: the key of the
    /// merged-request check (RFC 3261 §8.2.2.2), indexed in [`UserAgent::merge_index`].
    merge: Option<MergeKey>,
}

type MergeKey = (String, u32, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Outgoing INVITE sent, no final response.
    Calling,
    /// Incoming INVITE, 180 sent, waiting for the call manager.
    Ringing,
    /// Incoming call answered with 2xx, waiting for ACK.
    Answered,
    /// Up.
    Established,
    /// Over; kept a little to absorb retransmissions.
    Ended,
}

struct Retransmit {
    bytes: Vec<u8>,
    dest: Destination,
    next_at: Option<Instant>,
    interval: Duration,
    give_up_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: u32,
    we_refresh: bool,
    refresh_at: Option<Instant>,
    expire_at: Instant,
}

struct Call {
    id: CallId,
    outgoing: bool,
    state: CallState,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From (outgoing) / To (incoming) value without tag.
    local_uri: String,
    /// Their To (outgoing) / From (incoming) value without tag.
    remote_uri: String,
    local_cseq: u32,
    remote_cseq: u32,
    remote_target: String,
    route_set: Vec<String>,
    dest: Destination,
    account: Option<AccountId>,
    local_sdp: String,
    remote_sdp: Option<String>,
    peer_allows_update: bool,
    // Outgoing INVITE (initial or re-INVITE) in progress.
    invite_key: Option<String>,
    got_provisional: bool,
    cancel_requested: bool,
    cancel_deadline: Option<Instant>,
    auth_retry: bool,
    se_retry: bool,
    nc: u32,
    // Incoming INVITE (initial or re-INVITE) in progress.
    server_key: Option<String>,
    /// A peer's re-offer the shell is answering: its request, transaction key, where the
    /// answer goes, and the headers already decided (session timer).
    reoffer: Option<(Request, String, Destination, Vec<(String, String)>)>,
    uas_2xx: Option<Retransmit>,
    /// The CSeq of the INVITE that `uas_2xx` answers: its ACK carries it (a later request of
    /// the peer, refused meanwhile, may have raised `remote_cseq`).
    uas_2xx_cseq: u32,
    bye_after_ack: bool,
    ack: Option<(Vec<u8>, Destination, u32)>,
    held_by_peer: bool,
    timer: Option<SessionTimer>,
    /// Session timer agreed on an incoming INVITE, applied when we answer.
    pending_timer: Option<(u32, bool, bool)>,
    reinvite_sdp: Option<String>,
    /// The headers of our pending re-INVITE (a session refresh's), for its retry after 491.
    reinvite_extra: Vec<(String, String)>,
    reinvite_retry_at: Option<Instant>,
    dtmf: VecDeque<DtmfItem>,
    dtmf_next_at: Option<Instant>,
    dtmf_busy: bool,
    /// Our SIP INFO keyframe requests: the one in flight, when the last went, and whether the
    /// peer refused them (then we stop asking this way).
    fast_update_key: Option<String>,
    fast_update_last: Option<Instant>,
    fast_update_refused: bool,
    auto_dtmf: Vec<DtmfItem>,
    /// When the dial string's digits start (`InviteOptions::dtmf_delay` after the call is up).
    auto_dtmf_at: Option<Instant>,
    auto_dtmf_delay: Duration,
    /// `InviteOptions::headers`, on every INVITE that starts the call (auth and 422 retries too).
    invite_headers: Vec<(String, String)>,
    ring_until: Option<Instant>,
    remove_at: Option<Instant>,
}

struct Registration {
    state: RegistrationState,
    call_id: String,
    local_tag: String,
    cseq: u32,
    tx_key: Option<String>,
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    auth_retry: bool,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    /// Failures in a row since the last success (or `register()`).
    failures: u32,
    expires: u32,
}

/// The sans-IO SIP user agent.
///
/// Feed it with [`UserAgent::handle_input`] and [`UserAgent::handle_timeout`], give it commands
/// ([`UserAgent::register`], [`UserAgent::invite`], ...), then drain
/// [`UserAgent::poll_transmit`] and [`UserAgent::poll_event`] and sleep until
/// [`UserAgent::poll_timeout`]. It never blocks, never reads a clock and never panics on input.
pub struct UserAgent {
    cfg: Config,
    rng: u64,
    next_call: u64,
    calls: BTreeMap<CallId, Call>,
    regs: Vec<Registration>,
    clients: HashMap<String, ClientEntry>,
    servers: HashMap<String, ServerEntry>,
    /// How many server transactions hold each merge key: the merged-request check is one
    /// lookup, not a scan of every stored request.
    merge_index: HashMap<MergeKey, usize>,
    framers: HashMap<SocketAddr, StreamFramer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

fn is_sdp(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/sdp"))
}

/// `host:port` of a SIP URI when the host is an IP literal.
fn uri_socket(uri: &str) -> Option<(SocketAddr, Option<TransportKind>)> {
    // Bare URIs keep their parameters (`;transport=`); name-addrs are unwrapped.
    let u = if uri.contains('<') { addr_uri(uri) } else { uri.trim() };
    let (host, port, transport) = msg::uri_host(u)?;
    let ip: IpAddr = host.parse().ok()?;
    Some((SocketAddr::new(ip, port.unwrap_or(transport.unwrap_or(TransportKind::Udp).default_port())), transport))
}

/// Removes the `tag` parameter from a From/To value.
fn strip_tag(v: &str) -> String {
    let cut = v.rfind('>').map(|i| i + 1).unwrap_or(0);
    let (head, params) = v.split_at(cut);
    let kept: Vec<&str> = params
        .split(';')
        .enumerate()
        .filter(|(i, p)| *i == 0 || !p.trim().to_ascii_lowercase().starts_with("tag="))
        .map(|(_, p)| p)
        .collect();
    format!("{head}{}", kept.join(";"))
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// Top Via: (branch, sent-by).
fn via_key(headers: &Headers) -> Option<(String, String)> {
    let via = header_value(headers, "via")?;
    let top = msg::split_list(&via).into_iter().next()?;
    let sent_by = top.split_whitespace().nth(1)?.split(';').next()?.to_string();
    let branch = header_param(&top, "branch").unwrap_or_default();
    Some((branch, sent_by))
}

fn cseq_of(headers: &Headers) -> Option<(u32, String)> {
    header_value(headers, "cseq").and_then(|v| msg::parse_cseq(&v))
}

impl UserAgent {
    /// A user agent with this configuration.
    pub fn new(cfg: Config) -> UserAgent {
        let regs = cfg
            .accounts
            .iter()
            .map(|a| Registration {
                state: RegistrationState::Unregistered,
                call_id: String::new(),
                local_tag: String::new(),
                cseq: 0,
                tx_key: None,
                challenge: None,
                nc: 0,
                auth_retry: false,
                refresh_at: None,
                retry_at: None,
                failures: 0,
                expires: a.expires,
            })
            .collect();
        let rng = cfg.rng_seed ^ 0x9E37_79B9_7F4A_7C15;
        UserAgent {
            cfg,
            rng,
            next_call: 1,
            calls: BTreeMap::new(),
            regs,
            clients: HashMap::new(),
            servers: HashMap::new(),
            merge_index: HashMap::new(),
            framers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    // ----------------------------------------------------------------------------------------
    // Outputs

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the call manager.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`UserAgent::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Option<Instant>> = Vec::new();
        t.extend(self.clients.values().map(|c| c.tx.deadline()));
        t.extend(self.servers.values().map(|s| s.tx.deadline()));
        for c in self.calls.values() {
            t.push(c.uas_2xx.as_ref().and_then(|r| r.next_at));
            t.push(c.uas_2xx.as_ref().map(|r| r.give_up_at));
            t.push(c.cancel_deadline);
            t.push(c.timer.and_then(|s| s.refresh_at));
            t.push(c.timer.filter(|s| !s.we_refresh).map(|s| s.expire_at));
            t.push(c.dtmf_next_at.filter(|_| !c.dtmf_busy && !c.dtmf.is_empty()));
            t.push(c.reinvite_retry_at);
            t.push(c.auto_dtmf_at);
            t.push(c.remove_at);
            t.push(c.ring_until.filter(|_| c.state == CallState::Ringing));
        }
        for r in &self.regs {
            t.push(r.refresh_at);
            t.push(r.retry_at);
        }
        t.into_iter().flatten().min()
    }

    /// State of an account's registration.
    pub fn registration_state(&self, account: AccountId) -> Option<&RegistrationState> {
        self.regs.get(account).map(|r| &r.state)
    }

    /// Number of calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls.values().filter(|c| c.state != CallState::Ended).count()
    }

    // ----------------------------------------------------------------------------------------
    // Helpers

    fn rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.rand())
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.token())
    }

    fn contact(&self, transport: TransportKind) -> String {
        let t = match transport {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
            // A `sip:` Contact with transport=tls, not `sips:`: the hop to us is TLS; `sips:` would
            // promise TLS on every hop, which we cannot know (RFC 5630 §3.1.2). `ob` (RFC 5626):
            // requests for us belong on the flow our REGISTER opened.
            TransportKind::Tls => ";transport=tls;ob",
        };
        let a = self.local_for(transport);
        match a {
            SocketAddr::V4(_) => format!("<sip:{}@{}{t}>", self.cfg.user, a),
            SocketAddr::V6(v6) => format!("<sip:{}@[{}]:{}{t}>", self.cfg.user, v6.ip(), v6.port()),
        }
    }

    fn local_from(&self, account: Option<AccountId>) -> String {
        let uri = match account.and_then(|a| self.cfg.accounts.get(a)) {
            Some(a) => a.aor.clone(),
            None => format!("sip:{}@{}", self.cfg.user, self.cfg.domain),
        };
        match &self.cfg.display_name {
            Some(d) => format!("\"{}\" <{uri}>", d.replace('"', "")),
            None => format!("<{uri}>"),
        }
    }

    fn send(&mut self, dest: Destination, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { dest: dest.addr, transport: dest.transport, bytes });
    }

    /// Our address for `transport`: TLS has its own listener port when the shell has one.
    fn local_for(&self, transport: TransportKind) -> SocketAddr {
        let mut a = self.cfg.local_addr;
        if let (TransportKind::Tls, Some(p)) = (transport, self.cfg.tls_port) {
            a.set_port(p);
        }
        a
    }

    fn via(&mut self, transport: TransportKind) -> (String, String) {
        let branch = self.branch();
        let a = self.local_for(transport);
        (format!("SIP/2.0/{} {a};branch={branch};rport", transport.via_token()), branch)
    }

    /// A request with the standard headers. `extra` headers are added before Content-Type.
    #[allow(clippy::too_many_arguments)]
    fn build_request(
        &mut self,
        method: Method,
        uri: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        routes: &[String],
        transport: TransportKind,
        extra: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(Request, String), UaError> {
        let uri = rsip::Uri::try_from(uri).map_err(|e| UaError::InvalidTarget(uri.to_string(), e.to_string()))?;
        let (via, branch) = self.via(transport);
        let mut h: Vec<rsip::Header> = vec![
            hdr("Via", via),
            hdr("Max-Forwards", "70"),
            hdr("From", from),
            hdr("To", to),
            hdr("Call-ID", call_id),
            hdr("CSeq", format!("{cseq} {method}")),
        ];
        for r in routes {
            h.push(hdr("Route", r.clone()));
        }
        if !matches!(method, Method::Ack | Method::Cancel) {
            h.push(hdr("Contact", self.contact(transport)));
            h.push(hdr("Allow", ALLOW));
            h.push(hdr("Supported", SUPPORTED));
        }
        h.push(hdr("User-Agent", self.cfg.user_agent.clone()));
        for (n, v) in extra {
            h.push(hdr(&n, v));
        }
        let body = match body {
            Some((ct, b)) => {
                h.push(hdr("Content-Type", ct));
                b
            }
            None => Vec::new(),
        };
        Ok((Request { method, uri, version: rsip::Version::V2, headers: h.into(), body }, branch))
    }

    fn start_client(&mut self, now: Instant, req: Request, branch: &str, dest: Destination, owner: Owner) -> String {
        let key = format!("{branch}:{}", req.method);
        let bytes = msg::encode(&SipMessage::Request(req.clone()));
        let invite = req.method == Method::Invite;
        let tx = ClientTransaction::new(now, invite, dest.transport.is_reliable(), bytes.clone(), self.cfg.timers);
        self.send(dest, bytes);
        self.clients.insert(key.clone(), ClientEntry { tx, owner, dest, request: req });
        key
    }

    /// A response to `req` (Via, From, To, Call-ID, CSeq copied; To tag added if missing).
    fn build_response(
        &self,
        req: &Request,
        code: u16,
        to_tag: Option<&str>,
        extra: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Response {
        let mut h: Vec<rsip::Header> = Vec::new();
        for v in header_values(&req.headers, "via") {
            h.push(hdr("Via", v));
        }
        if (101..300).contains(&code) {
            for v in header_values(&req.headers, "record-route") {
                h.push(hdr("Record-Route", v));
            }
        }
        if let Some(f) = header_value(&req.headers, "from") {
            h.push(hdr("From", f));
        }
        if let Some(t) = header_value(&req.headers, "to") {
            let t = match (tag_of(&t), to_tag) {
                (None, Some(tag)) if code > 100 => format!("{t};tag={tag}"),
                _ => t,
            };
            h.push(hdr("To", t));
        }
        for n in ["call-id", "cseq"] {
            if let Some(v) = header_value(&req.headers, n) {
                h.push(hdr(if n == "call-id" { "Call-ID" } else { "CSeq" }, v));
            }
        }
        h.push(hdr("Server", self.cfg.user_agent.clone()));
        for (n, v) in extra {
            h.push(hdr(&n, v));
        }
        let body = match body {
            Some((ct, b)) => {
                h.push(hdr("Content-Type", ct));
                b
            }
            None => Vec::new(),
        };
        Response {
            // rsip's own Display would print "486 BusyHere"; keep the RFC reason phrases.
            status_code: rsip::StatusCode::Other(code, reason_phrase(code).into()),
            version: rsip::Version::V2,
            headers: h.into(),
            body,
        }
    }

    /// Sends a response through the server transaction `key` (if any), else directly.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        now: Instant,
        key: &str,
        req: &Request,
        dest: Destination,
        code: u16,
        to_tag: Option<&str>,
        extra: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) {
        let resp = self.build_response(req, code, to_tag, extra, body);
        let bytes = msg::encode(&SipMessage::Response(resp));
        if let Some(s) = self.servers.get_mut(key)
            && !s.tx.respond(now, code, bytes.clone())
        {
            return;
        }
        self.send(dest, bytes);
    }

    fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    // ----------------------------------------------------------------------------------------
    // Input

    /// Feeds received bytes. Never panics; malformed input is answered (400/501) when possible
    /// and dropped otherwise.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Datagram { from, bytes, .. } => {
                if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    return; // keep-alive
                }
                let dest = Destination { addr: from, transport: TransportKind::Udp };
                self.handle_bytes(now, bytes, dest, true);
            }
            Input::Stream { from, bytes, transport, .. } => {
                let limits = self.cfg.limits;
                let framer = self.framers.entry(from).or_insert_with(|| StreamFramer::new(limits));
                let results = framer.push(bytes);
                // A stream is TCP or TLS; a shell that says UDP gets TCP's framing and Via.
                let transport = if transport.is_reliable() { transport } else { TransportKind::Tcp };
                let dest = Destination { addr: from, transport };
                if framer.take_ping() {
                    // RFC 5626 §4.4.1: a double-CRLF ping is answered by a single-CRLF pong.
                    self.send(dest, b"\r\n".to_vec());
                }
                for r in results {
                    match r {
                        Ok(raw) => {
                            let mut whole = Vec::with_capacity(raw.wire_len);
                            whole.extend_from_slice(raw.start_line.as_bytes());
                            whole.extend_from_slice(b"\r\n");
                            for (n, v) in &raw.headers {
                                whole.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                            }
                            whole.extend_from_slice(b"\r\n");
                            whole.extend_from_slice(&raw.body);
                            self.handle_bytes(now, &whole, dest, false);
                        }
                        Err(error) => {
                            self.framers.remove(&from);
                            self.event(Event::CloseStream { peer: from, error });
                        }
                    }
                }
            }
            Input::StreamClosed { from } => {
                self.framers.remove(&from);
            }
        }
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8], src: Destination, datagram: bool) {
        match framing::parse_message(bytes, &self.cfg.limits, datagram) {
            Ok((_, SipMessage::Request(r))) => self.on_request(now, r, src),
            Ok((raw, SipMessage::Response(r))) => {
                let reason = raw.start_line.splitn(3, ' ').nth(2).unwrap_or("").to_string();
                self.on_response(now, r, reason)
            }
            Err((Some(raw), _)) => self.reply_raw(&raw, src),
            Err((None, _)) => {}
        }
    }

    /// Answers a request that `rsip` could not parse: 501 for unknown methods, 400 otherwise,
    /// if the mandatory headers are there to build a response at all.
    fn reply_raw(&mut self, raw: &RawMessage, src: Destination) {
        let Some(method) = raw.method() else { return };
        if method == "ACK" {
            return;
        }
        let known = Method::all().iter().any(|m| m.to_string() == method);
        let (code, reason) = if known { (400, "Bad Request") } else { (501, "Not Implemented") };
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        let mut vias = 0;
        for (n, v) in &raw.headers {
            if msg::name_matches(n, "via") {
                out.push_str(&format!("Via: {v}\r\n"));
                vias += 1;
            }
        }
        let (Some(f), Some(t), Some(c), Some(s)) =
            (raw.header("from"), raw.header("to"), raw.header("call-id"), raw.header("cseq"))
        else {
            return;
        };
        if vias == 0 || msg::parse_cseq(s).is_none() {
            return;
        }
        let t = if tag_of(t).is_some() { t.to_string() } else { format!("{t};tag={}", self.token()) };
        out.push_str(&format!("From: {f}\r\nTo: {t}\r\nCall-ID: {c}\r\nCSeq: {s}\r\n"));
        if code == 501 {
            out.push_str(&format!("Allow: {ALLOW}\r\n"));
        }
        out.push_str(&format!("Server: {}\r\nContent-Length: 0\r\n\r\n", self.cfg.user_agent));
        self.send(src, out.into_bytes());
    }

    fn on_request(&mut self, now: Instant, req: Request, src: Destination) {
        let Some((branch, sent_by)) = via_key(&req.headers) else {
            return;
        };
        let cseq = cseq_of(&req.headers);
        let from = header_value(&req.headers, "from");
        let to = header_value(&req.headers, "to");
        let call_id = header_value(&req.headers, "call-id");
        let (Some((cseq_n, cseq_m)), Some(from), Some(to), Some(call_id)) = (cseq, from, to, call_id) else {
            // Without these a valid response cannot even be formed: drop (RFC 3261 §8.1.1
            // makes them mandatory; Max-Forwards is not required of peers here).
            return;
        };
        if cseq_m != req.method.to_string() && !(req.method == Method::Ack && cseq_m == "ACK") {
            if req.method != Method::Ack {
                let tag = self.token();
                self.reply(now, "", &req, src, 400, Some(&tag), vec![], None);
            }
            return;
        }
        let key_method = if req.method == Method::Ack { Method::Invite } else { req.method };
        let key = if branch.starts_with("z9hG4bK") {
            format!("{branch}:{sent_by}:{key_method}")
        } else {
            // RFC 2543 peers: match on the request's identifying fields instead.
            format!("{call_id}:{cseq_n}:{}:{sent_by}:{key_method}", tag_of(&from).unwrap_or_default())
        };

        if req.method == Method::Ack {
            if let Some(s) = self.servers.get_mut(&key)
                && s.tx.state() == crate::transaction::ServerState::Completed
            {
                s.tx.on_ack(now);
                return;
            }
            self.on_ack_2xx(now, &req, &call_id, &to, cseq_n);
            return;
        }
        // Retransmission of a request we have a transaction for.
        if let Some(s) = self.servers.get(&key) {
            if let Some(b) = s.tx.on_retransmission() {
                let d = s.reply_to;
                self.send(d, b);
            }
            return;
        }
        if self.servers.len() >= self.cfg.max_server_transactions {
            return; // Flooded: drop before any further work; a real peer retransmits.
        }
        if req.method == Method::Cancel {
            self.on_cancel(now, req, &format!("{branch}:{sent_by}:INVITE"), &key, src);
            return;
        }
        // Merged request (RFC 3261 §8.2.2.2): same From tag, Call-ID and CSeq, other branch.
        let merge = tag_of(&to).is_none().then(|| (call_id.clone(), cseq_n, tag_of(&from).unwrap_or_default()));
        if let Some(m) = &merge
            && self.merge_index.contains_key(m)
        {
            let tag = self.token();
            self.reply(now, "", &req, src, 482, Some(&tag), vec![], None);
            return;
        }
        let invite = req.method == Method::Invite;
        self.insert_server(
            key.clone(),
            ServerEntry {
                tx: ServerTransaction::new(invite, src.transport.is_reliable(), self.cfg.timers),
                request: req.clone(),
                reply_to: src,
                call: None,
                merge,
            },
        );
        // Require: we support only "timer".
        if let Some(req_ext) = header_value(&req.headers, "require") {
            let unsupported: Vec<String> =
                msg::split_list(&req_ext).into_iter().filter(|t| !t.eq_ignore_ascii_case("timer")).collect();
            if !unsupported.is_empty() && req.method != Method::Cancel {
                let tag = self.token();
                self.reply(
                    now,
                    &key,
                    &req,
                    src,
                    420,
                    Some(&tag),
                    vec![("Unsupported".into(), unsupported.join(", "))],
                    None,
                );
                return;
            }
        }
        match tag_of(&to) {
            Some(local_tag) => self.on_in_dialog(now, req, key, src, &call_id, &local_tag, &from, cseq_n),
            None => self.on_out_of_dialog(now, req, key, src, &from, &to, &call_id, cseq_n),
        }
    }

    fn insert_server(&mut self, key: String, entry: ServerEntry) {
        if let Some(m) = &entry.merge {
            *self.merge_index.entry(m.clone()).or_default() += 1;
        }
        if let Some(old) = self.servers.insert(key, entry) {
            self.unindex(old.merge);
        }
    }

    fn remove_server(&mut self, key: &str) {
        if let Some(old) = self.servers.remove(key) {
            self.unindex(old.merge);
        }
    }

    fn unindex(&mut self, merge: Option<MergeKey>) {
        let Some(m) = merge else { return };
        if let Some(n) = self.merge_index.get_mut(&m) {
            *n -= 1;
            if *n == 0 {
                self.merge_index.remove(&m);
            }
        }
    }

    fn options_extra(&self) -> Vec<(String, String)> {
        vec![("Allow".into(), ALLOW.into()), ("Accept".into(), ACCEPT.into()), ("Supported".into(), SUPPORTED.into())]
    }

    #[allow(clippy::too_many_arguments)]
    fn on_out_of_dialog(
        &mut self,
        now: Instant,
        req: Request,
        key: String,
        src: Destination,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
    ) {
        let tag = self.token();
        match req.method {
            Method::Options => {
                let extra = self.options_extra();
                self.reply(now, &key, &req, src, 200, Some(&tag), extra, None);
            }
            Method::Invite => self.on_new_invite(now, req, key, src, from, to, call_id, cseq),
            Method::Bye | Method::Info | Method::Update | Method::PRack => {
                self.reply(now, &key, &req, src, 481, Some(&tag), vec![], None)
            }
            _ => self.reply(now, &key, &req, src, 405, Some(&tag), vec![("Allow".into(), ALLOW.into())], None),
        }
    }

    /// Session-Expires of a request: (interval, refresher-is-uac?), or 422 needed.
    fn session_expires(&self, headers: &Headers) -> Result<Option<(u32, Option<bool>)>, ()> {
        let Some(v) = header_value(headers, "session-expires") else {
            return Ok(None);
        };
        let n: u32 = v.split(';').next().unwrap_or("").trim().parse().map_err(|_| ())?;
        let refresher = header_param(&format!("x{}", &v[v.find(';').unwrap_or(v.len())..]), "refresher")
            .map(|r| r.eq_ignore_ascii_case("uac"));
        Ok(Some((n, refresher)))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_new_invite(
        &mut self,
        now: Instant,
        req: Request,
        key: String,
        src: Destination,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
    ) {
        let tag = self.token();
        // 100 Trying at once: the call manager may take a while.
        self.reply(now, &key, &req, src, 100, None, vec![], None);
        if self.active_calls() >= self.cfg.max_calls {
            self.reply(now, &key, &req, src, 486, Some(&tag), vec![], None);
            return;
        }
        let ct = header_value(&req.headers, "content-type");
        let remote_sdp = if req.body.is_empty() {
            None
        } else if !is_sdp(ct.as_deref()) {
            self.reply(now, &key, &req, src, 415, Some(&tag), vec![("Accept".into(), "application/sdp".into())], None);
            return;
        } else {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            let ok = SessionDescription::parse(&text).and_then(|offer| self.probe_media().answer(&offer).map(|_| ()));
            if ok.is_err() {
                self.reply(
                    now,
                    &key,
                    &req,
                    src,
                    488,
                    Some(&tag),
                    vec![("Warning".into(), "304 huis \"no common media\"".into())],
                    None,
                );
                return;
            }
            Some(text)
        };
        let Some(contact) = header_value(&req.headers, "contact") else {
            self.reply(now, &key, &req, src, 400, Some(&tag), vec![], None);
            return;
        };
        // Every URI kept from the network is re-serialised from its parsed form, or refused.
        let routes: Option<Vec<String>> = header_values(&req.headers, "record-route")
            .iter()
            .flat_map(|v| msg::split_list(v))
            .map(|r| msg::network_route(&r))
            .collect();
        let (Some(remote_target), Some(route_set)) = (msg::network_uri(&contact), routes) else {
            self.reply(now, &key, &req, src, 400, Some(&tag), vec![], None);
            return;
        };
        // Session timer (RFC 4028 §9): honour the peer's request, refuse too small intervals.
        let supports_timer = header_values(&req.headers, "supported")
            .iter()
            .any(|v| msg::split_list(v).iter().any(|t| t.eq_ignore_ascii_case("timer")));
        let pending_timer = match self.session_expires(&req.headers) {
            Err(()) => {
                self.reply(now, &key, &req, src, 400, Some(&tag), vec![], None);
                return;
            }
            Ok(None) => None,
            Ok(Some((n, _))) if n < self.cfg.min_se => {
                let min = self.cfg.min_se.max(90);
                self.reply(now, &key, &req, src, 422, Some(&tag), vec![("Min-SE".into(), min.to_string())], None);
                return;
            }
            Ok(Some((n, refresher_uac))) => {
                // Peer (UAC) refreshes if it says so or, supporting timers, leaves it to us.
                let peer_refreshes = refresher_uac.unwrap_or(supports_timer);
                Some((n, !peer_refreshes, supports_timer))
            }
        };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let allows_update =
            header_values(&req.headers, "allow").iter().any(|v| v.to_ascii_uppercase().contains("UPDATE"));
        let call = Call {
            id,
            outgoing: false,
            state: CallState::Ringing,
            call_id: call_id.to_string(),
            local_tag: tag.clone(),
            remote_tag: tag_of(from),
            local_uri: to.to_string(),
            remote_uri: strip_tag(from),
            local_cseq: 1 + (self.rand() % 10_000) as u32,
            remote_cseq: cseq,
            remote_target,
            route_set,
            dest: src,
            account: if self.cfg.accounts.is_empty() { None } else { Some(0) },
            local_sdp: String::new(),
            remote_sdp: remote_sdp.clone(),
            peer_allows_update: allows_update,
            invite_key: None,
            got_provisional: false,
            cancel_requested: false,
            cancel_deadline: None,
            auth_retry: false,
            se_retry: false,
            nc: 0,
            server_key: Some(key.clone()),
            reoffer: None,
            uas_2xx: None,
            uas_2xx_cseq: 0,
            bye_after_ack: false,
            ack: None,
            held_by_peer: false,
            timer: None,
            pending_timer,
            reinvite_sdp: None,
            reinvite_extra: Vec::new(),
            reinvite_retry_at: None,
            dtmf: VecDeque::new(),
            dtmf_next_at: None,
            dtmf_busy: false,
            fast_update_key: None,
            fast_update_last: None,
            fast_update_refused: false,
            auto_dtmf: Vec::new(),
            auto_dtmf_at: None,
            auto_dtmf_delay: Duration::ZERO,
            invite_headers: Vec::new(),
            ring_until: Some(now + self.cfg.ring_timeout),
            remove_at: None,
        };
        self.calls.insert(id, call);
        if let Some(s) = self.servers.get_mut(&key) {
            s.call = Some(id);
        }
        let contact = self.contact(src.transport);
        self.reply(now, &key, &req, src, 180, Some(&tag), vec![("Contact".into(), contact)], None);
        self.event(Event::IncomingCall {
            call: id,
            from: strip_tag(from),
            remote_sdp,
            auto_answer: self.cfg.auto_answer,
            transport: src.transport,
        });
    }

    /// LocalMedia used only to check offers against our codec list.
    fn probe_media(&self) -> LocalMedia {
        LocalMedia {
            address: IpAddr::from([0, 0, 0, 0]),
            audio_port: 9,
            codecs: self.cfg.codecs.clone(),
            telephone_event: self.cfg.telephone_event,
            session_id: 0,
            direction: Direction::SendRecv,
            security: crate::sdp_security::LocalSecurity::permissive(),
        }
    }

    fn find_dialog(&self, call_id: &str, local_tag: &str) -> Option<CallId> {
        self.calls.values().find(|c| c.call_id == call_id && c.local_tag == local_tag).map(|c| c.id)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_in_dialog(
        &mut self,
        now: Instant,
        req: Request,
        key: String,
        src: Destination,
        call_id: &str,
        local_tag: &str,
        from: &str,
        cseq: u32,
    ) {
        let Some(id) = self.find_dialog(call_id, local_tag) else {
            self.reply(now, &key, &req, src, 481, None, vec![], None);
            return;
        };
        let (ended, remote_cseq, remote_tag) = {
            let c = &self.calls[&id];
            (c.state == CallState::Ended, c.remote_cseq, c.remote_tag.clone())
        };
        if remote_tag.is_some() && tag_of(from) != remote_tag {
            self.reply(now, &key, &req, src, 481, None, vec![], None);
            return;
        }
        if ended {
            let code = if req.method == Method::Bye { 200 } else { 481 };
            self.reply(now, &key, &req, src, code, None, vec![], None);
            return;
        }
        if cseq <= remote_cseq && req.method != Method::Ack {
            self.reply(now, &key, &req, src, 500, None, vec![], None);
            return;
        }
        if let Some(c) = self.calls.get_mut(&id) {
            c.remote_cseq = cseq;
        }
        if let Some(s) = self.servers.get_mut(&key) {
            s.call = Some(id);
        }
        match req.method {
            Method::Bye => {
                self.reply(now, &key, &req, src, 200, None, vec![], None);
                // An incoming call still ringing: its INVITE is finished with 487.
                if let Some(sk) = self.calls[&id].server_key.clone()
                    && let Some(s) = self.servers.get(&sk)
                    && s.tx.is_proceeding()
                {
                    let (r, d) = (s.request.clone(), s.reply_to);
                    self.reply(now, &sk, &r, d, 487, None, vec![], None);
                }
                self.end_call(now, id, EndReason::RemoteHangup);
            }
            Method::Options => {
                let extra = self.options_extra();
                self.reply(now, &key, &req, src, 200, None, extra, None);
            }
            Method::Info => {
                let ct = header_value(&req.headers, "content-type").unwrap_or_default();
                if ct.to_ascii_lowercase().starts_with(dtmf::DTMF_RELAY) {
                    match dtmf::parse_info_body(&String::from_utf8_lossy(&req.body)) {
                        Some((digit, duration_ms)) => {
                            self.reply(now, &key, &req, src, 200, None, vec![], None);
                            self.event(Event::DtmfInfo { call: id, digit, duration_ms });
                        }
                        None => self.reply(now, &key, &req, src, 400, None, vec![], None),
                    }
                } else if ct.to_ascii_lowercase().starts_with(MEDIA_CONTROL) {
                    // RFC 5168: <media_control><vc_primitive><to_encoder><picture_fast_update/>...
                    let body = String::from_utf8_lossy(&req.body);
                    if body.contains("<media_control") && body.contains("picture_fast_update") {
                        self.reply(now, &key, &req, src, 200, None, vec![], None);
                        self.event(Event::PictureFastUpdate { call: id });
                    } else {
                        self.reply(now, &key, &req, src, 400, None, vec![], None);
                    }
                } else if req.body.is_empty() {
                    self.reply(now, &key, &req, src, 200, None, vec![], None);
                } else {
                    self.reply(now, &key, &req, src, 415, None, vec![("Accept".into(), dtmf::DTMF_RELAY.into())], None);
                }
            }
            Method::Invite | Method::Update => self.on_reinvite(now, id, req, key, src),
            _ => self.reply(now, &key, &req, src, 405, None, vec![("Allow".into(), ALLOW.into())], None),
        }
    }

    fn on_reinvite(&mut self, now: Instant, id: CallId, req: Request, key: String, src: Destination) {
        let is_invite = req.method == Method::Invite;
        let (state, our_pending, their_pending) = {
            let c = &self.calls[&id];
            (c.state, c.invite_key.is_some(), c.uas_2xx.is_some())
        };
        if state != CallState::Established {
            // Not up yet (early UPDATE is not supported) or still answering.
            let code = if state == CallState::Answered { 491 } else { 500 };
            self.reply(now, &key, &req, src, code, None, vec![("Retry-After".into(), "1".into())], None);
            return;
        }
        if self.calls[&id].reoffer.is_some() {
            // The shell is still answering the last offer.
            self.reply(now, &key, &req, src, 500, None, vec![("Retry-After".into(), "1".into())], None);
            return;
        }
        if our_pending && is_invite {
            self.reply(now, &key, &req, src, 491, None, vec![], None);
            return;
        }
        if their_pending && is_invite {
            self.reply(now, &key, &req, src, 500, None, vec![("Retry-After".into(), "1".into())], None);
            return;
        }
        // Remote target refresh.
        if let Some(t) = header_value(&req.headers, "contact").and_then(|v| msg::network_uri(&v))
            && let Some(c) = self.calls.get_mut(&id)
        {
            c.remote_target = t;
        }
        // Session refresh.
        let se = match self.session_expires(&req.headers) {
            Ok(Some((n, _))) if n < self.cfg.min_se => {
                let min = self.cfg.min_se.max(90);
                self.reply(now, &key, &req, src, 422, None, vec![("Min-SE".into(), min.to_string())], None);
                return;
            }
            Ok(v) => v,
            Err(()) => {
                self.reply(now, &key, &req, src, 400, None, vec![], None);
                return;
            }
        };
        let mut extra: Vec<(String, String)> = Vec::new();
        if let Some((n, refresher_uac)) = se {
            // The peer sending the refresh is the UAC of this transaction.
            let peer_refreshes = refresher_uac.unwrap_or(true);
            self.set_timer(now, id, n, !peer_refreshes);
            let r = if peer_refreshes { "uac" } else { "uas" };
            extra.push(("Session-Expires".into(), format!("{n};refresher={r}")));
            extra.push(("Require".into(), "timer".into()));
        } else if let Some(t) = self.calls[&id].timer {
            // A re-INVITE without the header still refreshes (RFC 4028 §10).
            self.set_timer(now, id, t.interval, t.we_refresh);
        }
        // Offer/answer.
        let mut body: Option<String> = None;
        if !req.body.is_empty() {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            let offer = match SessionDescription::parse(&text) {
                Ok(o) => o,
                Err(_) => {
                    self.reply(now, &key, &req, src, 488, None, vec![], None);
                    return;
                }
            };
            if self.cfg.shell_answers_reoffers {
                self.calls.get_mut(&id).expect("call exists").reoffer = Some((req, key, src, extra));
                self.event(Event::Reoffer { call: id, remote_sdp: text });
                return;
            }
            if self.probe_media().answer(&offer).is_err() {
                self.reply(now, &key, &req, src, 488, None, vec![], None);
                return;
            }
            let local = self.calls[&id].local_sdp.clone();
            let answer = match SessionDescription::parse(&local) {
                Ok(mut l) => {
                    let dir = offer.audio().map(|m| offer.media_direction(m)).unwrap_or(Direction::SendRecv);
                    l.set_direction(dir.answer_to(Direction::SendRecv));
                    l.bump_version();
                    l.to_text()
                }
                Err(_) => local,
            };
            body = Some(answer.clone());
            self.take_offer(id, &offer, text, answer);
        } else if is_invite {
            // Offer-less re-INVITE: our SDP is the offer, the answer comes in the ACK.
            body = Some(self.calls[&id].local_sdp.clone());
        }
        self.accept_reinvite(now, id, req, key, src, extra, body);
    }

    /// Records the peer's new offer and our answer; tells of a hold or resume.
    fn take_offer(&mut self, id: CallId, offer: &SessionDescription, text: String, answer: String) {
        let dir = offer.audio().map(|m| offer.media_direction(m)).unwrap_or(Direction::SendRecv);
        let (was_held, held) = {
            let c = self.calls.get_mut(&id).expect("call exists");
            let was = c.held_by_peer;
            c.held_by_peer = dir.is_hold();
            c.local_sdp = answer;
            c.remote_sdp = Some(text.clone());
            (was, c.held_by_peer)
        };
        self.event(Event::CallUpdated { call: id, remote_sdp: text });
        if held && !was_held {
            self.event(Event::CallHeld { call: id });
        } else if !held && was_held {
            self.event(Event::CallResumed { call: id });
        }
    }

    /// Answers the peer's re-offer handed over as [`Event::Reoffer`]: `Ok(sdp)` accepts it
    /// with our answer (200), `Err(code)` refuses it (4xx–6xx) and the session stays as it was.
    pub fn answer_reoffer(&mut self, now: Instant, call: CallId, answer: Result<&str, u16>) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall(call))?;
        let (req, key, src, extra) =
            c.reoffer.take().ok_or(UaError::InvalidState("no offer from the peer to answer"))?;
        match answer {
            Err(code) => {
                let code = if (400..700).contains(&code) { code } else { 488 };
                self.reply(now, &key, &req, src, code, None, vec![], None);
            }
            Ok(sdp) => {
                let offer_text = String::from_utf8_lossy(&req.body).into_owned();
                let parsed =
                    SessionDescription::parse(&offer_text).and_then(|o| SessionDescription::parse(sdp).map(|_| o));
                let offer = match parsed {
                    Ok(o) => o,
                    Err(e) => {
                        self.reply(now, &key, &req, src, 500, None, vec![], None);
                        return Err(e.into());
                    }
                };
                self.take_offer(call, &offer, offer_text, sdp.to_string());
                self.accept_reinvite(now, call, req, key, src, extra, Some(sdp.to_string()));
            }
        }
        Ok(())
    }

    /// The 200 to a re-INVITE or UPDATE (with our SDP, if any), retransmitted until the ACK.
    #[allow(clippy::too_many_arguments)]
    fn accept_reinvite(
        &mut self,
        now: Instant,
        id: CallId,
        req: Request,
        key: String,
        src: Destination,
        mut extra: Vec<(String, String)>,
        body: Option<String>,
    ) {
        let is_invite = req.method == Method::Invite;
        let contact = self.contact(src.transport);
        extra.push(("Contact".into(), contact));
        let b = body.map(|s| ("application/sdp", s.into_bytes()));
        let resp = self.build_response(&req, 200, None, extra, b);
        let bytes = msg::encode(&SipMessage::Response(resp));
        if let Some(s) = self.servers.get_mut(&key) {
            s.tx.respond(now, 200, bytes.clone());
        }
        let dest = self.calls[&id].dest;
        let reply_to = self.servers.get(&key).map(|s| s.reply_to).unwrap_or(dest);
        self.send(reply_to, bytes.clone());
        if is_invite {
            let t1 = self.cfg.timers.t1;
            let give_up_at = now + self.cfg.timers.t64();
            let cseq = cseq_of(&req.headers).map(|c| c.0);
            let c = self.calls.get_mut(&id).expect("call exists");
            c.uas_2xx_cseq = cseq.unwrap_or(c.remote_cseq);
            c.uas_2xx = Some(Retransmit {
                bytes,
                dest: reply_to,
                next_at: (!reply_to.transport.is_reliable()).then(|| now + t1),
                interval: t1,
                give_up_at,
            });
        }
    }

    fn on_ack_2xx(&mut self, now: Instant, req: &Request, call_id: &str, to: &str, cseq: u32) {
        let Some(tag) = tag_of(to) else { return };
        let Some(id) = self.find_dialog(call_id, &tag) else {
            return;
        };
        let (establish, bye) = {
            let c = self.calls.get_mut(&id).expect("call exists");
            if c.uas_2xx.is_none() || c.uas_2xx_cseq != cseq {
                return;
            }
            c.uas_2xx = None;
            if !req.body.is_empty() {
                c.remote_sdp = Some(String::from_utf8_lossy(&req.body).into_owned());
            }
            let establish = c.state == CallState::Answered;
            if establish {
                c.state = CallState::Established;
                if let Some((n, we, _)) = c.pending_timer.take() {
                    c.timer = Some(SessionTimer { interval: n, we_refresh: we, refresh_at: None, expire_at: now });
                }
            }
            (establish, c.bye_after_ack)
        };
        if let Some(t) = self.calls[&id].timer {
            self.set_timer(now, id, t.interval, t.we_refresh);
        }
        if bye {
            self.send_bye(now, id);
            return;
        }
        if establish {
            let remote_sdp = self.calls[&id].remote_sdp.clone();
            self.event(Event::CallEstablished { call: id, remote_sdp });
        }
    }

    fn on_cancel(&mut self, now: Instant, req: Request, invite_key: &str, key: &str, src: Destination) {
        let matched =
            self.servers.get(invite_key).map(|s| (s.tx.is_proceeding(), s.request.clone(), s.reply_to, s.call));
        self.insert_server(
            key.to_string(),
            ServerEntry {
                tx: ServerTransaction::new(false, src.transport.is_reliable(), self.cfg.timers),
                request: req.clone(),
                reply_to: src,
                call: None,
                merge: None,
            },
        );
        match matched {
            None => self.reply(now, key, &req, src, 481, None, vec![], None),
            Some((proceeding, invite, dest, call)) => {
                let tag = call.and_then(|c| self.calls.get(&c)).map(|c| c.local_tag.clone());
                self.reply(now, key, &req, src, 200, tag.as_deref(), vec![], None);
                if proceeding {
                    self.reply(now, invite_key, &invite, dest, 487, tag.as_deref(), vec![], None);
                    if let Some(id) = call {
                        self.end_call(now, id, EndReason::Cancelled);
                    }
                }
            }
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response, reason: String) {
        let Some((branch, _)) = via_key(&resp.headers) else {
            return;
        };
        let Some((cseq, method)) = cseq_of(&resp.headers) else {
            return;
        };
        let code = resp.status_code.code();
        let key = format!("{branch}:{method}");
        let Some(entry) = self.clients.get_mut(&key) else {
            // A 2xx retransmission after the INVITE transaction ended: re-send our ACK.
            if method == "INVITE" && (200..300).contains(&code) {
                self.resend_ack(&resp, cseq);
            }
            return;
        };
        let action = entry.tx.on_response(now, code);
        let owner = entry.owner;
        match action {
            ResponseAction::Absorb => return,
            ResponseAction::Resend(b) => {
                let d = entry.dest;
                self.send(d, b);
                return;
            }
            ResponseAction::Deliver => {}
        }
        // Non-2xx final response to INVITE: the transaction's ACK.
        if method == "INVITE" && code >= 300 {
            let entry = &self.clients[&key];
            let (req, dest) = (entry.request.clone(), entry.dest);
            let ack = self.ack_for_error(&req, &resp);
            if let Some(e) = self.clients.get_mut(&key) {
                e.tx.set_ack(ack.clone());
            }
            self.send(dest, ack);
        }
        if let Owner::InDialog(id, _) = owner
            && (code == 401 || code == 407)
            && self.retry_in_dialog_with_auth(now, id, &key, &resp, code)
        {
            return;
        }
        match owner {
            Owner::Register(a) => self.on_register_response(now, a, &key, &resp, code, &reason),
            Owner::Invite(id) => self.on_invite_response(now, id, &key, &resp, code, &reason, cseq),
            Owner::Cancel(_) => {}
            Owner::InDialog(id, m) => self.on_in_dialog_response(now, id, m, &key, &resp, code, cseq),
        }
    }

    /// A proxy challenged a request inside a dialog (BYE, re-INVITE, UPDATE, INFO): send it
    /// again once with credentials, a new CSeq and a new branch. Returns false when it cannot
    /// or must not (no account, or the request already carried credentials).
    fn retry_in_dialog_with_auth(&mut self, now: Instant, id: CallId, key: &str, resp: &Response, code: u16) -> bool {
        let Some(entry) = self.clients.get(key) else {
            return false;
        };
        let (orig, dest, owner) = (entry.request.clone(), entry.dest, entry.owner);
        let had_auth = orig.headers.iter().any(|h| {
            let (n, _) = msg::header_parts(h);
            n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("proxy-authorization")
        });
        let Some(acc) = self.calls.get(&id).and_then(|c| c.account).and_then(|a| self.cfg.accounts.get(a)).cloned()
        else {
            return false;
        };
        if had_auth {
            return false;
        }
        let proxy = code == 407;
        let values = header_values(&resp.headers, if proxy { "proxy-authenticate" } else { "www-authenticate" });
        let Ok(ch) = digest::pick_challenge(values.iter().map(|s| s.as_str())) else {
            return false;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        c.local_cseq += 1;
        let cseq = c.local_cseq;
        let cnonce = self.token();
        let method = orig.method.to_string();
        let uri = orig.uri.to_string();
        let auth = digest::authorization_value(&ch, &acc.username, &acc.password, &method, &uri, 1, &cnonce);
        let (via, branch) = self.via(dest.transport);
        let mut headers: Vec<rsip::Header> = vec![hdr("Via", via)];
        for h in orig.headers.iter() {
            let (n, _) = msg::header_parts(h);
            if msg::name_matches(&n, "via") {
                continue;
            }
            if msg::name_matches(&n, "cseq") {
                headers.push(hdr("CSeq", format!("{cseq} {method}")));
                continue;
            }
            headers.push(h.clone());
        }
        headers.push(hdr(if proxy { "Proxy-Authorization" } else { "Authorization" }, auth));
        let req = Request { headers: headers.into(), ..orig };
        let new_key = self.start_client(now, req, &branch, dest, owner);
        if let Some(c) = self.calls.get_mut(&id)
            && c.invite_key.as_deref() == Some(key)
        {
            c.invite_key = Some(new_key);
        }
        true
    }

    fn resend_ack(&mut self, resp: &Response, cseq: u32) {
        let call_id = header_value(&resp.headers, "call-id").unwrap_or_default();
        let from_tag = header_value(&resp.headers, "from").and_then(|f| tag_of(&f)).unwrap_or_default();
        let ack =
            self.calls.values().find(|c| c.call_id == call_id && c.local_tag == from_tag).and_then(|c| c.ack.clone());
        if let Some((bytes, dest, n)) = ack
            && n == cseq
        {
            self.send(dest, bytes);
        }
    }

    /// ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch and Request-URI.
    fn ack_for_error(&self, req: &Request, resp: &Response) -> Vec<u8> {
        let mut h: Vec<rsip::Header> = Vec::new();
        if let Some(v) = header_values(&req.headers, "via").into_iter().next() {
            h.push(hdr("Via", v));
        }
        h.push(hdr("Max-Forwards", "70"));
        for n in ["from", "call-id"] {
            if let Some(v) = header_value(&req.headers, n) {
                h.push(hdr(if n == "from" { "From" } else { "Call-ID" }, v));
            }
        }
        if let Some(v) = header_value(&resp.headers, "to") {
            h.push(hdr("To", v));
        }
        let n = cseq_of(&req.headers).map(|c| c.0).unwrap_or(1);
        h.push(hdr("CSeq", format!("{n} ACK")));
        for r in header_values(&req.headers, "route") {
            h.push(hdr("Route", r));
        }
        let ack = Request {
            method: Method::Ack,
            uri: req.uri.clone(),
            version: rsip::Version::V2,
            headers: h.into(),
            body: vec![],
        };
        msg::encode(&SipMessage::Request(ack))
    }

    // ----------------------------------------------------------------------------------------
    // Registration

    /// Starts (or restarts) registration of `account`. Also clears an `AuthFailed` state, so
    /// call it again only after the account's credentials changed or a person asked.
    pub fn register(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let r = self.regs.get_mut(account).ok_or(UaError::UnknownAccount(account))?;
        r.auth_retry = false;
        r.challenge = None;
        r.failures = 0;
        r.expires = self.cfg.accounts[account].expires;
        self.send_register(now, account);
        Ok(())
    }

    /// Removes the registration of `account` (REGISTER with expires 0).
    pub fn unregister(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let r = self.regs.get_mut(account).ok_or(UaError::UnknownAccount(account))?;
        r.expires = 0;
        r.refresh_at = None;
        r.retry_at = None;
        self.send_register(now, account);
        Ok(())
    }

    fn send_register(&mut self, now: Instant, a: AccountId) {
        let acc = self.cfg.accounts[a].clone();
        if self.regs[a].call_id.is_empty() {
            let cid = format!("{}@{}", self.token(), self.cfg.domain);
            let tag = self.token();
            let r = &mut self.regs[a];
            r.call_id = cid;
            r.local_tag = tag;
            r.cseq = 0;
        }
        if let Some(k) = self.regs[a].tx_key.take() {
            self.clients.remove(&k);
        }
        let r = &mut self.regs[a];
        r.cseq += 1;
        r.refresh_at = None;
        r.retry_at = None;
        let (cseq, call_id, tag, expires) = (r.cseq, r.call_id.clone(), r.local_tag.clone(), r.expires);
        let mut extra = vec![("Expires".to_string(), expires.to_string())];
        if let Some((ch, proxy)) = self.regs[a].challenge.clone() {
            self.regs[a].nc += 1;
            let nc = self.regs[a].nc;
            let cnonce = self.token();
            let v =
                digest::authorization_value(&ch, &acc.username, &acc.password, "REGISTER", &acc.registrar, nc, &cnonce);
            extra.push((if proxy { "Proxy-Authorization" } else { "Authorization" }.into(), v));
        }
        let from = format!("<{}>;tag={tag}", acc.aor);
        let to = format!("<{}>", acc.aor);
        match self.build_request(
            Method::Register,
            &acc.registrar,
            &from,
            &to,
            &call_id,
            cseq,
            &[],
            acc.proxy.transport,
            extra,
            None,
        ) {
            Ok((req, branch)) => {
                let key = self.start_client(now, req, &branch, acc.proxy, Owner::Register(a));
                self.regs[a].tx_key = Some(key);
                self.set_reg_state(a, RegistrationState::Registering);
            }
            Err(UaError::InvalidTarget(_, e)) => {
                self.set_reg_state(
                    a,
                    RegistrationState::Failed {
                        reason: RegistrationFailure::Rejected(0, format!("invalid registrar URI: {e}")),
                        retry_at: None,
                        failures: 0,
                    },
                );
            }
            Err(_) => {}
        }
    }

    fn set_reg_state(&mut self, a: AccountId, state: RegistrationState) {
        if self.regs[a].state != state {
            self.regs[a].state = state.clone();
            self.event(Event::Registration { account: a, state });
        }
    }

    fn reg_failed(&mut self, now: Instant, a: AccountId, reason: RegistrationFailure) {
        let (retry_at, failures) = if reason == RegistrationFailure::AuthFailed {
            (None, 0)
        } else {
            let random = self.rand();
            let r = &mut self.regs[a];
            r.failures = r.failures.saturating_add(1);
            (Some(now + self.cfg.register_retry.wait(r.failures, random)), r.failures)
        };
        let r = &mut self.regs[a];
        r.retry_at = retry_at;
        r.refresh_at = None;
        r.tx_key = None;
        self.set_reg_state(a, RegistrationState::Failed { reason, retry_at, failures });
    }

    fn on_register_response(
        &mut self,
        now: Instant,
        a: AccountId,
        key: &str,
        resp: &Response,
        code: u16,
        reason: &str,
    ) {
        if code < 200 {
            return;
        }
        if self.regs[a].tx_key.as_deref() == Some(key) {
            self.regs[a].tx_key = None;
        }
        match code {
            200..=299 => {
                let r = &mut self.regs[a];
                r.auth_retry = false;
                r.failures = 0;
                if r.expires == 0 {
                    self.set_reg_state(a, RegistrationState::Unregistered);
                    return;
                }
                let ours = self.contact(self.cfg.accounts[a].proxy.transport);
                let ours_uri = addr_uri(&ours).to_string();
                let from_contact = header_values(&resp.headers, "contact")
                    .iter()
                    .flat_map(|v| msg::split_list(v))
                    .find(|c| addr_uri(c) == ours_uri)
                    .and_then(|c| header_param(&c, "expires"))
                    .and_then(|e| e.parse::<u32>().ok());
                let granted = from_contact
                    .or_else(|| header_value(&resp.headers, "expires").and_then(|e| e.trim().parse().ok()))
                    .unwrap_or(self.regs[a].expires);
                if granted == 0 {
                    self.reg_failed(now, a, RegistrationFailure::Rejected(code, "registrar granted 0 s".into()));
                    return;
                }
                // Refresh at 70 % of the granted time (at least 5 s from now).
                let refresh = Duration::from_millis(u64::from(granted) * 700).max(Duration::from_secs(5));
                self.regs[a].refresh_at = Some(now + refresh);
                self.set_reg_state(a, RegistrationState::Registered { expires: granted });
            }
            401 | 407 => {
                let proxy = code == 407;
                let name = if proxy { "proxy-authenticate" } else { "www-authenticate" };
                let values = header_values(&resp.headers, name);
                match digest::pick_challenge(values.iter().map(|s| s.as_str())) {
                    Err(e) => self.reg_failed(now, a, RegistrationFailure::BadChallenge(e.to_string())),
                    Ok(ch) => {
                        if self.regs[a].auth_retry && !ch.stale {
                            // Our freshly computed credentials were refused: wrong password.
                            self.regs[a].challenge = None;
                            self.reg_failed(now, a, RegistrationFailure::AuthFailed);
                            return;
                        }
                        let r = &mut self.regs[a];
                        r.challenge = Some((ch, proxy));
                        r.nc = 0;
                        r.auth_retry = true;
                        self.send_register(now, a);
                    }
                }
            }
            403 if self.regs[a].auth_retry => {
                self.regs[a].challenge = None;
                self.reg_failed(now, a, RegistrationFailure::AuthFailed);
            }
            423 => {
                let min = header_value(&resp.headers, "min-expires").and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.regs[a].expires && m <= 86_400 => {
                        self.regs[a].expires = m;
                        self.send_register(now, a);
                    }
                    _ => self.reg_failed(now, a, RegistrationFailure::Rejected(code, reason.into())),
                }
            }
            _ => {
                self.regs[a].auth_retry = false;
                self.reg_failed(now, a, RegistrationFailure::Rejected(code, reason.into()));
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Calls: commands

    /// Places a call. `target` is a dial string (`sip:` URI, optionally with `;dtmf=` digits to
    /// send once connected); `next_hop` is where the INVITE goes (the account's proxy or the
    /// resolved target host); `local_sdp` is our offer.
    pub fn invite(
        &mut self,
        now: Instant,
        target: &str,
        next_hop: Destination,
        local_sdp: &str,
    ) -> Result<CallId, UaError> {
        self.invite_with(now, target, next_hop, local_sdp, InviteOptions::default())
    }

    /// [`UserAgent::invite`] with extra headers, a session timer we refresh, or a wait before
    /// the dial string's DTMF ([`InviteOptions`]).
    pub fn invite_with(
        &mut self,
        now: Instant,
        target: &str,
        next_hop: Destination,
        local_sdp: &str,
        opts: InviteOptions,
    ) -> Result<CallId, UaError> {
        for (name, value) in &opts.headers {
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
            if !token || value.len() > 1024 || value.chars().any(|c| c.is_control()) {
                return Err(UaError::InvalidTarget(target.into(), format!("header {name:?} cannot be sent")));
            }
        }
        let (uri, digits) = dtmf::parse_dial_string(target)?;
        if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
            return Err(UaError::InvalidTarget(target.into(), "not a sip: URI".into()));
        }
        SessionDescription::parse(local_sdp)?;
        let account = if self.cfg.accounts.is_empty() { None } else { Some(0) };
        let id = CallId(self.next_call);
        self.next_call += 1;
        let local_tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.cfg.domain);
        let local_uri = self.local_from(account);
        let remote_uri = format!("<{uri}>");
        let call = Call {
            id,
            outgoing: true,
            state: CallState::Calling,
            call_id,
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            local_cseq: 1,
            remote_cseq: 0,
            remote_target: uri.clone(),
            route_set: Vec::new(),
            dest: next_hop,
            account,
            local_sdp: local_sdp.to_string(),
            remote_sdp: None,
            peer_allows_update: false,
            invite_key: None,
            got_provisional: false,
            cancel_requested: false,
            cancel_deadline: None,
            auth_retry: false,
            se_retry: false,
            nc: 0,
            server_key: None,
            reoffer: None,
            uas_2xx: None,
            uas_2xx_cseq: 0,
            bye_after_ack: false,
            ack: None,
            held_by_peer: false,
            timer: None,
            pending_timer: opts.session_expires.map(|n| (n, true, true)),
            reinvite_sdp: None,
            reinvite_extra: Vec::new(),
            reinvite_retry_at: None,
            dtmf: VecDeque::new(),
            dtmf_next_at: None,
            dtmf_busy: false,
            fast_update_key: None,
            fast_update_last: None,
            fast_update_refused: false,
            auto_dtmf: digits,
            auto_dtmf_at: None,
            auto_dtmf_delay: opts.dtmf_delay,
            invite_headers: opts.headers,
            ring_until: None,
            remove_at: None,
        };
        self.calls.insert(id, call);
        let extra = self.se_extra(id);
        if let Err(e) = self.send_initial_invite(now, id, extra) {
            self.calls.remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    fn send_initial_invite(&mut self, now: Instant, id: CallId, more: Vec<(String, String)>) -> Result<(), UaError> {
        let c = &self.calls[&id];
        let mut extra = c.invite_headers.clone();
        extra.extend(more);
        let (uri, from, to, cid, cseq, dest, sdp) = (
            c.remote_target.clone(),
            format!("{};tag={}", c.local_uri, c.local_tag),
            c.remote_uri.clone(),
            c.call_id.clone(),
            c.local_cseq,
            c.dest,
            c.local_sdp.clone(),
        );
        let (req, branch) = self.build_request(
            Method::Invite,
            &uri,
            &from,
            &to,
            &cid,
            cseq,
            &[],
            dest.transport,
            extra,
            Some(("application/sdp", sdp.into_bytes())),
        )?;
        let key = self.start_client(now, req, &branch, dest, Owner::Invite(id));
        let c = self.calls.get_mut(&id).expect("call exists");
        c.invite_key = Some(key);
        c.got_provisional = false;
        Ok(())
    }

    /// Where a call to `target` should be sent when the caller has no better idea: the first
    /// account's proxy if there is an account, else the target's host if it is an IP address
    /// (port 5060 unless given, 5061 for TLS; UDP unless `;transport=` says otherwise, TLS for
    /// `sips:`). `None` means the shell must resolve the host name (RFC 3263).
    pub fn route_for(&self, target: &str) -> Option<Destination> {
        if let Some(a) = self.cfg.accounts.first() {
            return Some(a.proxy);
        }
        let (uri, _) = dtmf::parse_dial_string(target).ok()?;
        let (addr, t) = uri_socket(&uri)?;
        Some(Destination { addr, transport: t.unwrap_or(TransportKind::Udp) })
    }

    /// Moves `account` to another next hop (the shell fails over to the next server RFC 3263
    /// gave it). Takes effect from the next REGISTER or INVITE.
    pub fn set_proxy(&mut self, account: AccountId, proxy: Destination) -> Result<(), UaError> {
        let a = self.cfg.accounts.get_mut(account).ok_or(UaError::UnknownAccount(account))?;
        a.proxy = proxy;
        Ok(())
    }

    /// Sends `account`'s REGISTER now through `proxy`, the registrar's next server after the one
    /// in use failed, keeping the count of failures in a row: RFC 5626 §4.5 backs off on the
    /// failures of all flows, so a registrar whose every server is down is retried less and
    /// less often. ([`Self::register`] starts the count again: with it, a cycle through the
    /// servers went back to the shortest wait each time and never backed off.)
    pub fn fail_over(&mut self, now: Instant, account: AccountId, proxy: Destination) -> Result<(), UaError> {
        self.set_proxy(account, proxy)?;
        let r = &mut self.regs[account];
        // Another server: another realm and nonce.
        r.auth_retry = false;
        r.challenge = None;
        self.send_register(now, account);
        Ok(())
    }

    /// The shell could not deliver to `dest` (connection refused or timed out, TLS handshake or
    /// certificate refused): RFC 3261 §8.1.3.1 treats this like a timeout. Client transactions
    /// to `dest` end at once; a REGISTER's failure is [`RegistrationFailure::Transport`] (retried
    /// later like a timeout), an INVITE's ends its call with [`EndReason::Transport`].
    pub fn transport_failed(&mut self, now: Instant, dest: Destination) {
        self.framers.remove(&dest.addr);
        let keys: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, e)| e.dest == dest && !e.tx.is_terminated())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let Some(e) = self.clients.remove(&k) else {
                continue;
            };
            match e.owner {
                Owner::Register(a) => {
                    if self.regs[a].tx_key.as_deref() == Some(k.as_str()) {
                        self.reg_failed(now, a, RegistrationFailure::Transport);
                    }
                }
                Owner::Invite(id) => {
                    // A call already up (its INVITE lingers only to absorb retransmitted 2xx)
                    // does not hang on the hop that carried its INVITE: its media may be fine,
                    // and the media timeout ends it if not.
                    if self.calls.get(&id).is_some_and(|c| c.state == CallState::Established) {
                        continue;
                    }
                    let cancel = self.calls.get(&id).is_some_and(|c| c.cancel_requested);
                    self.end_call(now, id, if cancel { EndReason::LocalHangup } else { EndReason::Transport });
                }
                other => self.on_client_timeout(now, other, &k),
            }
        }
    }

    /// ACK and BYE for a 2xx from a fork other than the one we kept (RFC 3261 §13.2.2.4).
    fn end_stray_dialog(&mut self, now: Instant, id: CallId, resp: &Response, cseq: u32) {
        let c = &self.calls[&id];
        let from = format!("{};tag={}", c.local_uri, c.local_tag);
        let (call_id, fallback, target0) = (c.call_id.clone(), c.dest, c.remote_target.clone());
        let Some(to) = header_value(&resp.headers, "to") else {
            return;
        };
        let target = header_value(&resp.headers, "contact").and_then(|v| msg::network_uri(&v)).unwrap_or(target0);
        let mut routes: Vec<String> = header_values(&resp.headers, "record-route")
            .iter()
            .flat_map(|v| msg::split_list(v))
            .filter_map(|r| msg::network_route(&r))
            .collect();
        routes.reverse();
        let hop = routes.first().map(|r| addr_uri(r).to_string()).unwrap_or_else(|| target.clone());
        let dest = match uri_socket(&hop) {
            Some((addr, t)) => Destination { addr, transport: t.unwrap_or(fallback.transport) },
            None => fallback,
        };
        let t = dest.transport;
        if let Ok((ack, _)) =
            self.build_request(Method::Ack, &target, &from, &to, &call_id, cseq, &routes, t, vec![], None)
        {
            self.send(dest, msg::encode(&SipMessage::Request(ack)));
        }
        if let Ok((bye, branch)) =
            self.build_request(Method::Bye, &target, &from, &to, &call_id, cseq + 1, &routes, t, vec![], None)
        {
            self.start_client(now, bye, &branch, dest, Owner::Cancel(id));
        }
    }

    /// Answers an incoming call with our SDP (answer to the offer, or offer if the INVITE had
    /// none).
    pub fn answer(&mut self, now: Instant, call: CallId, local_sdp: &str) -> Result<(), UaError> {
        SessionDescription::parse(local_sdp)?;
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall(call))?;
        if c.outgoing || c.state != CallState::Ringing {
            return Err(UaError::InvalidState("only a ringing incoming call can be answered"));
        }
        let key = c.server_key.clone().ok_or(UaError::InvalidState("no pending INVITE"))?;
        let tag = c.local_tag.clone();
        let pending = c.pending_timer;
        let s = self.servers.get(&key).ok_or(UaError::InvalidState("INVITE transaction gone"))?;
        let (req, reply_to) = (s.request.clone(), s.reply_to);
        let mut extra = vec![("Contact".to_string(), self.contact(reply_to.transport))];
        extra.push(("Allow".into(), ALLOW.into()));
        extra.push(("Supported".into(), SUPPORTED.into()));
        if let Some((n, we_refresh, peer_supports)) = pending {
            let r = if we_refresh { "uas" } else { "uac" };
            extra.push(("Session-Expires".into(), format!("{n};refresher={r}")));
            if peer_supports {
                extra.push(("Require".into(), "timer".into()));
            }
        }
        let resp =
            self.build_response(&req, 200, Some(&tag), extra, Some(("application/sdp", local_sdp.as_bytes().to_vec())));
        let bytes = msg::encode(&SipMessage::Response(resp));
        if let Some(s) = self.servers.get_mut(&key) {
            s.tx.respond(now, 200, bytes.clone());
        }
        self.send(reply_to, bytes.clone());
        let t1 = self.cfg.timers.t1;
        let give_up_at = now + self.cfg.timers.t64();
        let c = self.calls.get_mut(&call).expect("call exists");
        c.state = CallState::Answered;
        c.local_sdp = local_sdp.to_string();
        c.uas_2xx_cseq = c.remote_cseq;
        c.uas_2xx = Some(Retransmit {
            bytes,
            dest: reply_to,
            next_at: (!reply_to.transport.is_reliable()).then(|| now + t1),
            interval: t1,
            give_up_at,
        });
        Ok(())
    }

    /// Refuses a ringing incoming call with `code` (486 busy, 603 decline, 480 ...).
    pub fn reject(&mut self, now: Instant, call: CallId, code: u16) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall(call))?;
        if c.outgoing || c.state != CallState::Ringing {
            return Err(UaError::InvalidState("only a ringing incoming call can be rejected"));
        }
        let code = if (300..700).contains(&code) { code } else { 603 };
        let (key, tag) = (c.server_key.clone().unwrap_or_default(), c.local_tag.clone());
        if let Some(s) = self.servers.get(&key) {
            let (req, d) = (s.request.clone(), s.reply_to);
            self.reply(now, &key, &req, d, code, Some(&tag), vec![], None);
        }
        let reason = EndReason::from_status(code, reason_phrase(code));
        self.end_call(now, call, reason);
        Ok(())
    }

    /// Ends a call: CANCEL for an unanswered outgoing call, 603 for a ringing incoming one,
    /// BYE once established.
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall(call))?;
        match (c.state, c.outgoing) {
            (CallState::Ended, _) => Err(UaError::UnknownCall(call)),
            (CallState::Ringing, false) => self.reject(now, call, 603),
            (CallState::Calling, true) => {
                let t64 = self.cfg.timers.t64();
                let c = self.calls.get_mut(&call).expect("call exists");
                c.cancel_requested = true;
                c.cancel_deadline = Some(now + t64);
                if c.got_provisional {
                    self.send_cancel(now, call);
                }
                Ok(())
            }
            (CallState::Answered, _) => {
                self.calls.get_mut(&call).expect("call exists").bye_after_ack = true;
                Ok(())
            }
            (CallState::Established, _) => {
                self.send_bye(now, call);
                Ok(())
            }
            _ => Err(UaError::InvalidState("call cannot be hung up now")),
        }
    }

    fn send_cancel(&mut self, now: Instant, id: CallId) {
        let Some(key) = self.calls[&id].invite_key.clone() else {
            return;
        };
        let Some(e) = self.clients.get(&key) else {
            return;
        };
        let (inv, dest) = (e.request.clone(), e.dest);
        let mut h: Vec<rsip::Header> = Vec::new();
        if let Some(v) = header_values(&inv.headers, "via").into_iter().next() {
            h.push(hdr("Via", v));
        }
        h.push(hdr("Max-Forwards", "70"));
        for (n, canon) in [("from", "From"), ("to", "To"), ("call-id", "Call-ID")] {
            if let Some(v) = header_value(&inv.headers, n) {
                h.push(hdr(canon, v));
            }
        }
        let n = cseq_of(&inv.headers).map(|c| c.0).unwrap_or(1);
        h.push(hdr("CSeq", format!("{n} CANCEL")));
        for r in header_values(&inv.headers, "route") {
            h.push(hdr("Route", r));
        }
        let branch = via_key(&inv.headers).map(|v| v.0).unwrap_or_default();
        let req = Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            version: rsip::Version::V2,
            headers: h.into(),
            body: vec![],
        };
        self.start_client(now, req, &branch, dest, Owner::Cancel(id));
    }

    /// Puts the call on hold: re-INVITE with `local_sdp` (which should say `a=sendonly` or
    /// `a=inactive`).
    pub fn hold(&mut self, now: Instant, call: CallId, local_sdp: &str) -> Result<(), UaError> {
        self.reinvite(now, call, local_sdp)
    }

    /// Takes the call off hold: re-INVITE with `local_sdp` (`a=sendrecv`).
    pub fn resume(&mut self, now: Instant, call: CallId, local_sdp: &str) -> Result<(), UaError> {
        self.reinvite(now, call, local_sdp)
    }

    /// Sends a re-INVITE with a new local SDP offer.
    pub fn reinvite(&mut self, now: Instant, call: CallId, local_sdp: &str) -> Result<(), UaError> {
        SessionDescription::parse(local_sdp)?;
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall(call))?;
        if c.state != CallState::Established {
            return Err(UaError::InvalidState("call is not established"));
        }
        if c.invite_key.is_some() || c.uas_2xx.is_some() {
            return Err(UaError::InvalidState("an INVITE transaction is already in progress"));
        }
        self.send_reinvite(now, call, local_sdp.to_string(), vec![]);
        Ok(())
    }

    fn send_reinvite(&mut self, now: Instant, id: CallId, sdp: String, extra: Vec<(String, String)>) {
        let body = Some(("application/sdp", sdp.clone().into_bytes()));
        if let Some(key) = self.send_in_dialog(now, id, Method::Invite, extra.clone(), body) {
            let c = self.calls.get_mut(&id).expect("call exists");
            c.invite_key = Some(key);
            c.reinvite_sdp = Some(sdp);
            c.reinvite_extra = extra;
        }
    }

    /// Sends DTMF digits by SIP INFO (`application/dtmf-relay`), one transaction at a time;
    /// `,` waits one second.
    pub fn send_info_dtmf(&mut self, now: Instant, call: CallId, digits: &str) -> Result<(), UaError> {
        let items = dtmf::parse_digits(digits)?;
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall(call))?;
        if c.state != CallState::Established {
            return Err(UaError::InvalidState("call is not established"));
        }
        c.dtmf.extend(items);
        if c.dtmf_next_at.is_none() {
            c.dtmf_next_at = Some(now);
        }
        self.pump_dtmf(now, call);
        Ok(())
    }

    /// Asks the peer for a video keyframe by SIP INFO `picture_fast_update` (RFC 5168), for
    /// peers without RTCP PLI/FIR. At most one a second and one at a time; after the peer
    /// refuses one (405, 415, 469, 501) none are sent in this call. Returns whether one went.
    pub fn send_info_picture_fast_update(&mut self, now: Instant, call: CallId) -> Result<bool, UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall(call))?;
        if c.state != CallState::Established {
            return Err(UaError::InvalidState("call is not established"));
        }
        if c.fast_update_refused
            || c.fast_update_key.is_some()
            || c.fast_update_last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return Ok(false);
        }
        let body = PICTURE_FAST_UPDATE.as_bytes().to_vec();
        let key = self.send_in_dialog(now, call, Method::Info, vec![], Some((MEDIA_CONTROL, body)));
        let c = self.calls.get_mut(&call).expect("call exists");
        c.fast_update_last = Some(now);
        c.fast_update_key = key;
        Ok(c.fast_update_key.is_some())
    }

    /// The response to (or timeout of) an INFO of ours that asked for a keyframe.
    fn fast_update_done(&mut self, id: CallId, key: &str, code: Option<u16>) -> bool {
        let Some(c) = self.calls.get_mut(&id) else { return false };
        if c.fast_update_key.as_deref() != Some(key) {
            return false;
        }
        c.fast_update_key = None;
        if code.is_some_and(|code| matches!(code, 405 | 415 | 469 | 501)) {
            c.fast_update_refused = true;
        }
        true
    }

    fn pump_dtmf(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.dtmf_busy || c.state != CallState::Established || c.dtmf_next_at.is_some_and(|t| t > now) {
            return;
        }
        match c.dtmf.pop_front() {
            None => c.dtmf_next_at = None,
            Some(DtmfItem::Pause) => c.dtmf_next_at = Some(now + Duration::from_secs(1)),
            Some(DtmfItem::Digit(d)) => {
                c.dtmf_busy = true;
                c.dtmf_next_at = None;
                let body = dtmf::info_body(d, 160).into_bytes();
                self.send_in_dialog(now, id, Method::Info, vec![], Some((dtmf::DTMF_RELAY, body)));
            }
        }
    }

    /// Sends a request inside the call's dialog; returns its client transaction key.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: CallId,
        method: Method,
        extra: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Option<String> {
        let (req, branch, dest) = self.dialog_request(id, method, extra, body)?;
        Some(self.start_client(now, req, &branch, dest, Owner::InDialog(id, method)))
    }

    /// Builds an in-dialog request (RFC 3261 §12.2.1.1, loose routing) and picks its next hop.
    fn dialog_request(
        &mut self,
        id: CallId,
        method: Method,
        extra: Vec<(String, String)>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Option<(Request, String, Destination)> {
        let c = self.calls.get_mut(&id)?;
        if method != Method::Ack {
            c.local_cseq += 1;
        }
        let (from, to) = if c.outgoing {
            (
                format!("{};tag={}", c.local_uri, c.local_tag),
                format!("{};tag={}", c.remote_uri, c.remote_tag.clone().unwrap_or_default()),
            )
        } else {
            (
                format!("{};tag={}", c.local_uri.split(";tag=").next().unwrap_or(""), c.local_tag),
                format!("{};tag={}", c.remote_uri, c.remote_tag.clone().unwrap_or_default()),
            )
        };
        let (cid, cseq, routes, target, fallback) =
            (c.call_id.clone(), c.local_cseq, c.route_set.clone(), c.remote_target.clone(), c.dest);
        let hop = routes.first().map(|r| addr_uri(r).to_string()).unwrap_or_else(|| target.clone());
        let dest = match uri_socket(&hop) {
            Some((addr, t)) => Destination { addr, transport: t.unwrap_or(fallback.transport) },
            None => fallback,
        };
        let (req, branch) =
            self.build_request(method, &target, &from, &to, &cid, cseq, &routes, dest.transport, extra, body).ok()?;
        Some((req, branch, dest))
    }

    fn send_bye(&mut self, now: Instant, id: CallId) {
        self.send_in_dialog(now, id, Method::Bye, vec![], None);
        self.end_call(now, id, EndReason::LocalHangup);
    }

    fn end_call(&mut self, now: Instant, id: CallId, reason: EndReason) {
        let t64 = self.cfg.timers.t64();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state == CallState::Ended {
            return;
        }
        c.state = CallState::Ended;
        c.uas_2xx = None;
        c.timer = None;
        c.cancel_deadline = None;
        c.reinvite_retry_at = None;
        c.dtmf.clear();
        c.dtmf_next_at = None;
        c.remove_at = Some(now + t64);
        self.event(Event::CallEnded { call: id, reason });
    }

    // ----------------------------------------------------------------------------------------
    // Calls: responses

    #[allow(clippy::too_many_arguments)]
    fn on_invite_response(
        &mut self,
        now: Instant,
        id: CallId,
        key: &str,
        resp: &Response,
        code: u16,
        reason: &str,
        cseq: u32,
    ) {
        let Some(c) = self.calls.get(&id) else { return };
        let (state, cancel_requested) = (c.state, c.cancel_requested);
        if code == 100 {
            return;
        }
        if code < 200 {
            if state != CallState::Calling {
                return;
            }
            self.update_dialog_from_response(id, resp);
            let c = self.calls.get_mut(&id).expect("call exists");
            let first = !c.got_provisional;
            c.got_provisional = true;
            if cancel_requested && first {
                self.send_cancel(now, id);
                return;
            }
            let early_sdp = (!resp.body.is_empty()).then(|| String::from_utf8_lossy(&resp.body).into_owned());
            self.event(Event::CallRinging { call: id, code, early_sdp });
            return;
        }
        if (200..300).contains(&code) {
            let to_tag = header_value(&resp.headers, "to").and_then(|t| tag_of(&t));
            let c = &self.calls[&id];
            if c.ack.is_some() && c.remote_tag.is_some() && to_tag != c.remote_tag {
                // A second fork answered too: confirm and end that dialog at once.
                self.end_stray_dialog(now, id, resp, cseq);
                return;
            }
            if c.ack.as_ref().is_some_and(|a| a.2 == cseq) {
                self.resend_ack(resp, cseq);
                return;
            }
            self.update_dialog_from_response(id, resp);
            let ack_ok = self.send_ack_2xx(id, cseq);
            if let Some(c) = self.calls.get_mut(&id) {
                c.invite_key = None;
                c.cancel_deadline = None;
            }
            if !ack_ok {
                return;
            }
            if state == CallState::Ended || cancel_requested {
                // CANCEL lost the race against 2xx: the call is up, so end it with BYE.
                self.send_in_dialog(now, id, Method::Bye, vec![], None);
                self.end_call(now, id, EndReason::LocalHangup);
                return;
            }
            let remote_sdp = (!resp.body.is_empty()).then(|| String::from_utf8_lossy(&resp.body).into_owned());
            let usable = remote_sdp.as_deref().map(|s| {
                SessionDescription::parse(s)
                    .map_err(|_| ())
                    .and_then(|a| self.probe_media().accept_answer(&a).map_err(|_| ()))
            });
            if let Some(Err(())) = usable {
                self.send_in_dialog(now, id, Method::Bye, vec![], None);
                self.end_call(now, id, EndReason::NoCommonCodec);
                return;
            }
            let allows_update =
                header_values(&resp.headers, "allow").iter().any(|v| v.to_ascii_uppercase().contains("UPDATE"));
            {
                let c = self.calls.get_mut(&id).expect("call exists");
                c.state = CallState::Established;
                c.remote_sdp = remote_sdp.clone();
                c.peer_allows_update = allows_update;
            }
            self.timer_from_2xx(now, id, resp, true);
            self.event(Event::CallEstablished { call: id, remote_sdp: remote_sdp.clone() });
            self.start_auto_dtmf(now, id, remote_sdp.as_deref());
            return;
        }
        // Final failure.
        if let Some(c) = self.calls.get_mut(&id) {
            c.invite_key = None;
        }
        let _ = key;
        if state == CallState::Ended {
            return;
        }
        if cancel_requested {
            self.end_call(now, id, EndReason::LocalHangup);
            return;
        }
        match code {
            401 | 407 => {
                let proxy = code == 407;
                let name = if proxy { "proxy-authenticate" } else { "www-authenticate" };
                let values = header_values(&resp.headers, name);
                let ch = digest::pick_challenge(values.iter().map(|s| s.as_str()));
                let c = &self.calls[&id];
                let Some(acc) = c.account.and_then(|a| self.cfg.accounts.get(a)).cloned() else {
                    self.end_call(now, id, EndReason::AuthFailed);
                    return;
                };
                match ch {
                    Ok(ch) if !c.auth_retry || ch.stale => {
                        let cnonce = self.token();
                        let c = self.calls.get_mut(&id).expect("call exists");
                        c.auth_retry = true;
                        c.nc = 1;
                        c.local_cseq += 1;
                        let uri = c.remote_target.clone();
                        let v =
                            digest::authorization_value(&ch, &acc.username, &acc.password, "INVITE", &uri, 1, &cnonce);
                        let h = if proxy { "Proxy-Authorization" } else { "Authorization" };
                        let mut extra = vec![(h.to_string(), v)];
                        extra.extend(self.se_extra(id));
                        if self.send_initial_invite(now, id, extra).is_err() {
                            self.end_call(now, id, EndReason::AuthFailed);
                        }
                    }
                    _ => self.end_call(now, id, EndReason::AuthFailed),
                }
            }
            403 if self.calls[&id].auth_retry => self.end_call(now, id, EndReason::AuthFailed),
            422 if !self.calls[&id].se_retry => {
                let min = header_value(&resp.headers, "min-se")
                    .and_then(|v| v.split(';').next().and_then(|n| n.trim().parse::<u32>().ok()))
                    .unwrap_or(self.cfg.session_expires)
                    .max(90);
                let c = self.calls.get_mut(&id).expect("call exists");
                c.se_retry = true;
                let we = c.pending_timer.is_some_and(|p| p.1);
                c.pending_timer = Some((min, we, true));
                c.local_cseq += 1;
                let extra = self.se_extra(id);
                if self.send_initial_invite(now, id, extra).is_err() {
                    self.end_call(now, id, EndReason::Other(code, reason.into()));
                }
            }
            _ => self.end_call(now, id, EndReason::from_status(code, reason)),
        }
    }

    /// Session-Expires/Min-SE headers for an INVITE retried after 422.
    fn se_extra(&self, id: CallId) -> Vec<(String, String)> {
        match self.calls[&id].pending_timer {
            Some((n, we, _)) if self.calls[&id].outgoing => {
                let se = if we { format!("{n};refresher=uac") } else { n.to_string() };
                vec![("Session-Expires".into(), se), ("Min-SE".into(), if we { n.min(90) } else { n }.to_string())]
            }
            _ => vec![],
        }
    }

    /// Dialog state from a 1xx-with-tag or 2xx (RFC 3261 §12.1.2).
    fn update_dialog_from_response(&mut self, id: CallId, resp: &Response) {
        let to_tag = header_value(&resp.headers, "to").and_then(|t| tag_of(&t));
        let contact = header_value(&resp.headers, "contact").and_then(|v| msg::network_uri(&v));
        let mut rr: Vec<String> = header_values(&resp.headers, "record-route")
            .iter()
            .flat_map(|v| msg::split_list(v))
            .filter_map(|r| msg::network_route(&r))
            .collect();
        rr.reverse();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if to_tag.is_none() {
            return;
        }
        if c.state == CallState::Established && c.remote_tag.is_some() {
            // In-dialog response (re-INVITE): only the target may change.
            if let Some(t) = contact {
                c.remote_target = t;
            }
            return;
        }
        c.remote_tag = to_tag;
        if let Some(t) = contact {
            c.remote_target = t;
        }
        c.route_set = rr;
    }

    /// ACK for a 2xx (a new transaction-less request, RFC 3261 §13.2.2.4). Returns false if it
    /// cannot be built.
    fn send_ack_2xx(&mut self, id: CallId, cseq: u32) -> bool {
        let saved = self.calls[&id].local_cseq;
        if let Some(c) = self.calls.get_mut(&id) {
            c.local_cseq = cseq;
        }
        let built = self.dialog_request(id, Method::Ack, vec![], None);
        if let Some(c) = self.calls.get_mut(&id) {
            c.local_cseq = saved.max(cseq);
        }
        let Some((req, _, dest)) = built else {
            return false;
        };
        let bytes = msg::encode(&SipMessage::Request(req));
        self.send(dest, bytes.clone());
        self.calls.get_mut(&id).expect("call exists").ack = Some((bytes, dest, cseq));
        true
    }

    /// Applies Session-Expires from a 2xx to our INVITE/UPDATE (we are the UAC).
    fn timer_from_2xx(&mut self, now: Instant, id: CallId, resp: &Response, initial: bool) {
        match self.session_expires(&resp.headers) {
            Ok(Some((n, refresher_uac))) if n >= 1 => {
                let we = refresher_uac.unwrap_or(true);
                self.set_timer(now, id, n, we);
            }
            _ => {
                if !initial && let Some(t) = self.calls[&id].timer {
                    self.set_timer(now, id, t.interval, t.we_refresh);
                } else if initial && let Some((n, _, _)) = self.calls[&id].pending_timer {
                    // We asked after a 422 and the peer did not answer with the header:
                    // we refresh (RFC 4028 §7.2: a 2xx without it means no timer; be safe).
                    let _ = n;
                }
            }
        }
    }

    /// (Re)starts the session timer: refresh at half the interval when we refresh, BYE at
    /// interval − min(32, interval/3) when the peer should (RFC 4028 §10).
    fn set_timer(&mut self, now: Instant, id: CallId, interval: u32, we_refresh: bool) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let iv = interval.max(1);
        let margin = (iv / 3).min(32);
        c.timer = Some(SessionTimer {
            interval: iv,
            we_refresh,
            refresh_at: we_refresh.then(|| now + Duration::from_secs(u64::from(iv) / 2)),
            expire_at: now + Duration::from_secs(u64::from(iv - margin)),
        });
    }

    fn start_auto_dtmf(&mut self, now: Instant, id: CallId, remote_sdp: Option<&str>) {
        let c = self.calls.get_mut(&id).expect("call exists");
        if !c.auto_dtmf.is_empty() && !c.auto_dtmf_delay.is_zero() && c.auto_dtmf_at.is_none() {
            // Later, from handle_timeout (the peer's prompt plays first).
            c.auto_dtmf_at = Some(now + c.auto_dtmf_delay);
            return;
        }
        c.auto_dtmf_at = None;
        let digits = std::mem::take(&mut c.auto_dtmf);
        if digits.is_empty() {
            return;
        }
        let rfc4733 = self.cfg.telephone_event
            && remote_sdp
                .and_then(|s| SessionDescription::parse(s).ok())
                .and_then(|a| self.probe_media().accept_answer(&a).ok())
                .is_some_and(|n| n.telephone_event_pt.is_some());
        if !rfc4733 {
            let c = self.calls.get_mut(&id).expect("call exists");
            c.dtmf.extend(digits.iter().copied());
            c.dtmf_next_at = Some(now);
        }
        self.event(Event::AutoDtmf { call: id, digits, rfc4733 });
        self.pump_dtmf(now, id);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_in_dialog_response(
        &mut self,
        now: Instant,
        id: CallId,
        m: Method,
        key: &str,
        resp: &Response,
        code: u16,
        cseq: u32,
    ) {
        if code < 200 {
            return;
        }
        let Some(c) = self.calls.get(&id) else { return };
        if c.state == CallState::Ended {
            if m == Method::Invite && (200..300).contains(&code) {
                self.send_ack_2xx(id, cseq);
            }
            return;
        }
        match m {
            Method::Invite => {
                let _ = key;
                if (200..300).contains(&code) {
                    if self.calls[&id].ack.as_ref().is_some_and(|a| a.2 == cseq) {
                        self.resend_ack(resp, cseq);
                        return;
                    }
                    self.update_dialog_from_response(id, resp);
                    self.send_ack_2xx(id, cseq);
                    let c = self.calls.get_mut(&id).expect("call exists");
                    c.invite_key = None;
                    if let Some(s) = c.reinvite_sdp.take() {
                        c.local_sdp = s;
                    }
                    let body = (!resp.body.is_empty()).then(|| String::from_utf8_lossy(&resp.body).into_owned());
                    self.timer_from_2xx(now, id, resp, false);
                    if let Some(b) = body {
                        self.calls.get_mut(&id).expect("call exists").remote_sdp = Some(b.clone());
                        self.event(Event::CallUpdated { call: id, remote_sdp: b });
                    }
                } else {
                    let c = self.calls.get_mut(&id).expect("call exists");
                    c.invite_key = None;
                    match code {
                        491 => {
                            let owner = self.calls[&id].outgoing;
                            let wait = glare_wait(owner, self.rand());
                            self.calls.get_mut(&id).expect("call exists").reinvite_retry_at = Some(now + wait);
                        }
                        408 | 481 => {
                            if code == 408 {
                                self.send_in_dialog(now, id, Method::Bye, vec![], None);
                            }
                            self.end_call(now, id, EndReason::from_status(code, "re-INVITE failed"));
                        }
                        _ => {
                            self.calls.get_mut(&id).expect("call exists").reinvite_sdp = None;
                            self.event(Event::CallUpdateFailed { call: id, code });
                        }
                    }
                }
            }
            Method::Update => {
                if (200..300).contains(&code) {
                    self.timer_from_2xx(now, id, resp, false);
                } else if code == 408 || code == 481 {
                    self.end_call(now, id, EndReason::from_status(code, "session refresh failed"));
                }
            }
            Method::Info if self.fast_update_done(id, key, Some(code)) => {}
            Method::Info => {
                let c = self.calls.get_mut(&id).expect("call exists");
                c.dtmf_busy = false;
                if matches!(code, 405 | 415 | 469 | 501) {
                    // The peer does not take DTMF in INFO: stop trying.
                    c.dtmf.clear();
                } else {
                    c.dtmf_next_at = Some(now);
                }
                self.pump_dtmf(now, id);
            }
            _ => {}
        }
    }

    // ----------------------------------------------------------------------------------------
    // Time

    /// Runs everything due at `now`: retransmissions, transaction timeouts, registration
    /// refresh and retry, 2xx retransmission, session timers, DTMF pauses.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Client transactions.
        let due: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, e)| e.tx.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(e) = self.clients.get_mut(&k) else {
                continue;
            };
            let outs = e.tx.on_timer(now);
            let (owner, dest, terminated) = (e.owner, e.dest, e.tx.is_terminated());
            for o in outs {
                match o {
                    TxOutput::Retransmit(b) => self.send(dest, b),
                    TxOutput::Timeout => self.on_client_timeout(now, owner, &k),
                }
            }
            if terminated {
                self.clients.remove(&k);
            }
        }
        // Server transactions.
        let due: Vec<String> = self
            .servers
            .iter()
            .filter(|(_, e)| e.tx.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(e) = self.servers.get_mut(&k) else {
                continue;
            };
            let outs = e.tx.on_timer(now);
            let (dest, terminated) = (e.reply_to, e.tx.is_terminated());
            for o in outs {
                if let TxOutput::Retransmit(b) = o {
                    self.send(dest, b);
                }
            }
            if terminated {
                self.remove_server(&k);
            }
        }
        // Calls.
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.call_timers(now, id);
        }
        // Registrations.
        for a in 0..self.regs.len() {
            let r = &self.regs[a];
            if r.refresh_at.is_some_and(|t| t <= now) || r.retry_at.is_some_and(|t| t <= now) {
                self.send_register(now, a);
            }
        }
    }

    fn on_client_timeout(&mut self, now: Instant, owner: Owner, key: &str) {
        match owner {
            Owner::Register(a) => {
                if self.regs[a].tx_key.as_deref() == Some(key) {
                    self.reg_failed(now, a, RegistrationFailure::Timeout);
                }
            }
            Owner::Invite(id) => {
                let cancel = self.calls.get(&id).is_some_and(|c| c.cancel_requested);
                self.end_call(now, id, if cancel { EndReason::LocalHangup } else { EndReason::Timeout });
            }
            Owner::Cancel(_) => {}
            Owner::InDialog(id, Method::Info) if self.fast_update_done(id, key, None) => {}
            Owner::InDialog(id, m) => {
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                match m {
                    Method::Info => {
                        c.dtmf_busy = false;
                        c.dtmf.clear();
                    }
                    Method::Bye => {}
                    _ => {
                        // RFC 3261 §12.2.1.2: a timeout in a dialog ends it.
                        c.invite_key = None;
                        self.send_in_dialog(now, id, Method::Bye, vec![], None);
                        self.end_call(now, id, EndReason::Timeout);
                    }
                }
            }
        }
    }

    fn call_timers(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.remove_at.is_some_and(|t| t <= now) {
            self.calls.remove(&id);
            return;
        }
        // UAS 2xx retransmission (RFC 3261 §13.3.1.4).
        if let Some(r) = &mut c.uas_2xx {
            if r.give_up_at <= now {
                c.uas_2xx = None;
                // No ACK: RFC 3261 §13.3.1.4 says end the dialog with BYE.
                self.send_in_dialog(now, id, Method::Bye, vec![], None);
                self.end_call(now, id, EndReason::Timeout);
                return;
            }
            if let Some(t) = r.next_at
                && t <= now
            {
                let (b, d) = (r.bytes.clone(), r.dest);
                r.interval = (r.interval * 2).min(self.cfg.timers.t2);
                r.next_at = Some(t + r.interval);
                self.send(d, b);
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state == CallState::Ringing && c.ring_until.is_some_and(|t| t <= now) {
            c.ring_until = None;
            let _ = self.reject(now, id, 480);
            // reject() reported the end; make the reason say what happened.
            if let Some(Event::CallEnded { reason, .. }) = self.events.back_mut() {
                *reason = EndReason::Timeout;
            }
            return;
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.cancel_deadline.is_some_and(|t| t <= now) {
            c.cancel_deadline = None;
            if let Some(k) = c.invite_key.take() {
                self.clients.remove(&k);
            }
            self.end_call(now, id, EndReason::LocalHangup);
            return;
        }
        if let Some(t) = c.timer {
            // Only the side that is refreshed ends the session when the interval passes; the
            // refresher ends it when its refresh fails (408, 481), not while a refresh that met
            // glare waits for its retry (RFC 4028 §10).
            if t.expire_at <= now && !t.we_refresh {
                self.send_in_dialog(now, id, Method::Bye, vec![], None);
                self.end_call(now, id, EndReason::SessionExpired);
                return;
            }
            if t.refresh_at.is_some_and(|r| r <= now) && c.invite_key.is_some() {
                // An INVITE is in progress: try the refresh a second later (no busy loop).
                c.timer = Some(SessionTimer { refresh_at: Some(now + Duration::from_secs(1)), ..t });
            } else if t.refresh_at.is_some_and(|r| r <= now) {
                c.timer = Some(SessionTimer { refresh_at: None, ..t });
                let extra = vec![
                    ("Session-Expires".to_string(), format!("{};refresher=uac", t.interval)),
                    ("Require".to_string(), "timer".to_string()),
                ];
                if c.peer_allows_update {
                    self.send_in_dialog(now, id, Method::Update, extra, None);
                } else {
                    let sdp = c.local_sdp.clone();
                    self.send_reinvite(now, id, sdp, extra);
                }
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.auto_dtmf_at.is_some_and(|t| t <= now) {
            if c.state == CallState::Established {
                let remote = c.remote_sdp.clone();
                self.start_auto_dtmf(now, id, remote.as_deref());
            } else {
                c.auto_dtmf_at = None;
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.reinvite_retry_at.is_some_and(|t| t <= now) {
            c.reinvite_retry_at = None;
            if let Some(sdp) = c.reinvite_sdp.clone()
                && c.invite_key.is_none()
            {
                let extra = c.reinvite_extra.clone();
                self.send_reinvite(now, id, sdp, extra);
            }
        }
        self.pump_dtmf(now, id);
    }
}

/// How long to wait before retrying a re-INVITE that got 491 (glare, RFC 3261 §14.1): the
/// owner of the Call-ID (it sent the dialog's first INVITE) waits a random 2.1–4 s, the other
/// side 0–2 s, in 10 ms units, so the two sides' retries do not collide again.
pub fn glare_wait(call_id_owner: bool, random: u64) -> Duration {
    let (base, span) = if call_id_owner { (210, 191) } else { (0, 201) };
    Duration::from_millis((base + random % span) * 10)
}
