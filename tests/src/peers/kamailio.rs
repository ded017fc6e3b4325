//! Kamailio 5.6 as registrar and proxy with digest auth, no database.
//!
//! The generated config: `usrloc` in memory (`db_mode 0`), `registrar`,
//! `tm`, `sl`, `rr`, `sanity`, `auth` with users in an `htable` filled at
//! start-up, checked with `pv_auth_check` / challenged with `auth_challenge`.
//! It listens on UDP and TCP `127.0.0.1:PORT` with `auto_aliases=no` and
//! `dns=no`, and no `alias` (with `alias=127.0.0.1` every contact on
//! 127.0.0.1 counts as the proxy itself and ACKs loop).
//!
//! Routing: REGISTER must authenticate (401). INVITE, MESSAGE, SUBSCRIBE,
//! OPTIONS and INFO whose From is one of our users (From domain is the
//! proxy) must authenticate too (407), when [`KamailioOpts::auth_requests`]
//! is on (the default) — a UA that registers here must also answer a 407 on
//! its INVITE. Requests to `sip:USER@127.0.0.1:PORT` are looked up in
//! `location` (404 when not registered); everything else is relayed by its
//! R-URI. INVITEs are record-routed, so in-dialog requests (re-INVITE for
//! hold, BYE) pass the proxy too. An OPTIONS to the proxy itself (no user
//! part) gets `200 Keepalive`, unauthenticated.
//!
//! Every request is logged as one line to stderr (the log file in the
//! test's temp dir): `HUIS-REQ t=<unix.usec> m=<method> user=<From user>
//! proto=<udp|tcp> src=<ip:port> ruri=<R-URI>`; also `HUIS-AUTH-FAIL`, `HUIS-REGISTERED`,
//! `HUIS-NOT-FOUND`, `HUIS-MALFORMED`. [`Kamailio::requests`] parses them.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::baresip::wait_exit;
use super::malformed::{Transport, options_ping};
use super::netns::NetNs;

/// Digest algorithm offered in challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    /// RFC 8760 `SHA-256` (baresip 1.0 can't answer it; see README-peers.md).
    Sha256,
}

/// Options for [`Kamailio::start`].
#[derive(Debug, Clone)]
pub struct KamailioOpts {
    /// `None`: one from [`NetNs::port`].
    pub port: Option<u16>,
    /// `(user, password)`. The realm in challenges is the request's From
    /// domain (`$fd`), i.e. `127.0.0.1` for AORs `sip:USER@127.0.0.1:PORT`.
    pub users: Vec<(String, String)>,
    pub algorithm: Algorithm,
    /// Authenticate out-of-dialog non-REGISTER requests from our users (407).
    pub auth_requests: bool,
    /// Also listen for TLS (module `tls`, Debian package `kamailio-tls-modules`).
    pub tls: Option<KamailioTls>,
}

/// Kamailio's TLS listener: its certificate and key, and the CA its clients' certificates
/// would be checked against (they are not asked for one).
#[derive(Debug, Clone)]
pub struct KamailioTls {
    /// `None`: one from [`NetNs::port`].
    pub port: Option<u16>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl KamailioOpts {
    pub fn new(users: &[(&str, &str)]) -> KamailioOpts {
        KamailioOpts {
            port: None,
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            algorithm: Algorithm::Md5,
            auth_requests: true,
            tls: None,
        }
    }
}

/// One request Kamailio received, from its log.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Unix time, seconds.
    pub t: f64,
    pub method: String,
    /// User part of From.
    pub user: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// `ip:port` it came from.
    pub src: String,
    pub ruri: String,
}

/// A running Kamailio.
pub struct Kamailio {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    ns: NetNs,
    pub port: u16,
    /// The TLS port, when [`KamailioOpts::tls`] was set.
    pub tls_port: Option<u16>,
}

impl Kamailio {
    /// Shorthand for [`Kamailio::start_with`]: `port` (None: allocate), users
    /// and algorithm, authenticating requests too.
    pub fn start(ns: &NetNs, port: Option<u16>, users: &[(&str, &str)], algorithm: Algorithm) -> Result<Kamailio> {
        let mut o = KamailioOpts::new(users);
        o.port = port;
        o.algorithm = algorithm;
        Self::start_with(ns, o)
    }

    /// Writes the config, checks it (`kamailio -c`), starts Kamailio in the
    /// foreground inside `ns` and waits (up to 10 s) until it answers an
    /// OPTIONS on UDP.
    pub fn start_with(ns: &NetNs, opts: KamailioOpts) -> Result<Kamailio> {
        let dir = tempfile::Builder::new().prefix("kamailio-").tempdir()?;
        let port = opts.port.unwrap_or_else(|| ns.port());
        let cfg = dir.path().join("kamailio.cfg");
        let tls_port = opts.tls.as_ref().map(|t| t.port.unwrap_or_else(|| ns.port()));
        if let (Some(t), Some(tp)) = (&opts.tls, tls_port) {
            std::fs::write(
                dir.path().join("tls.cfg"),
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                     private_key = {}\ncertificate = {}\nca_list = {}\n\n\
                     [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                    t.key.display(),
                    t.cert.display(),
                    t.ca.display()
                ),
            )?;
            let _ = tp;
        }
        std::fs::write(&cfg, config(port, tls_port, dir.path(), &opts))?;
        let out = ns
            .cmd("kamailio")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .context("run kamailio (Debian package kamailio)")?;
        if !out.status.success() {
            bail!("kamailio rejects the generated config:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let log = std::fs::File::create(dir.path().join("kamailio.log"))?;
        let child = ns
            .cmd("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-P"])
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .arg("-Y")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start kamailio")?;
        let mut k = Kamailio { child: Some(child), dir: Some(dir), ns: ns.clone(), port, tls_port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(200) = options_ping(ns, Transport::Udp, ("127.0.0.1", port), Duration::from_millis(300)) {
                return Ok(k);
            }
            if let Some(Ok(Some(st))) = k.child.as_mut().map(|c| c.try_wait()) {
                bail!("kamailio exited with {st}:\n{}", k.log_text());
            }
            if Instant::now() > deadline {
                bail!("kamailio not answering OPTIONS within 10 s:\n{}", k.log_text());
            }
        }
    }

    /// `127.0.0.1:PORT`: the domain of our users' AORs and the registrar.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `sip:USER@127.0.0.1:PORT`.
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("kamailio.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Requests received so far (every one, retransmissions included).
    pub fn requests(&self) -> Vec<Request> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let i = l.find("HUIS-REQ ")?;
                let mut r = Request {
                    t: 0.0,
                    method: String::new(),
                    user: String::new(),
                    proto: String::new(),
                    src: String::new(),
                    ruri: String::new(),
                };
                for kv in l[i + 9..].split_whitespace() {
                    let (k, v) = kv.split_once('=')?;
                    match k {
                        "t" => r.t = v.parse().ok()?,
                        "m" => r.method = v.into(),
                        "user" => r.user = v.into(),
                        "proto" => r.proto = v.into(),
                        "src" => r.src = v.into(),
                        "ruri" => r.ruri = v.into(),
                        _ => {}
                    }
                }
                Some(r)
            })
            .collect()
    }

    /// How many `method` requests from `user` (`None`: anyone) arrived.
    pub fn count(&self, method: &str, user: Option<&str>) -> usize {
        self.requests().iter().filter(|r| r.method == method && user.is_none_or(|u| r.user == u)).count()
    }

    /// True once a REGISTER from `user` was accepted (HUIS-REGISTERED logged).
    pub fn has_registered(&self, user: &str) -> bool {
        self.log_text().lines().any(|l| l.contains(&format!("HUIS-REGISTERED user={user} ")))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// True while the main process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if let Some(st) = wait_exit(&mut child, Duration::from_secs(3)) {
            return Some(st);
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn netns(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HUIS_KEEP_PEERS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept kamailio files in {}", d.keep().display());
            }
        }
    }
}

fn config(port: u16, tls_port: Option<u16>, dir: &Path, o: &KamailioOpts) -> String {
    // TLS: a listener, the module, and flows: a REGISTER's source (the connection it came on)
    // is saved as `received` (nathelper's fix_nated_register), so requests for that contact go
    // back over the same connection (RFC 5626 style) rather than to a new one.
    //
    // In dialogs, a TCP/TLS UA's Contact (its listening address, which it may not have) gets
    // nathelper's `;alias=` of the connection it came on, in requests (add_contact_alias) and
    // in replies (onreply_route), and requests inside the dialog follow that alias back
    // (handle_ruri_alias): the usual Kamailio set-up for clients behind NAT or without a
    // listener, and what lets a room that has none take calls over its registration's flow.
    let (tls_listen, tls_modules, fix_register, alias_in, alias_out, on_reply) = match tls_port {
        Some(tp) => (
            format!("enable_tls=yes\nlisten=tls:127.0.0.1:{tp}\n"),
            format!(
                "loadmodule \"tls.so\"\nloadmodule \"nathelper.so\"\n\
                 modparam(\"tls\", \"config\", \"{}\")\n\
                 modparam(\"nathelper\", \"received_avp\", \"$avp(RECEIVED)\")\n\
                 modparam(\"registrar\", \"received_avp\", \"$avp(RECEIVED)\")\n",
                dir.join("tls.cfg").display()
            ),
            "        if (proto==TLS || proto==TCP) { fix_nated_register(); }\n",
            "            handle_ruri_alias();\n",
            "    if (is_method(\"INVITE\") && (proto==TLS || proto==TCP)) { add_contact_alias(); }\n    t_on_reply(\"ALIAS\");\n",
            "onreply_route[ALIAS] {\n    if (proto==TLS || proto==TCP) { add_contact_alias(); }\n}\n",
        ),
        None => (String::new(), String::new(), "", "", "", ""),
    };
    let algorithm = match o.algorithm {
        Algorithm::Md5 => "MD5",
        Algorithm::Sha256 => "SHA-256",
    };
    let mut users = String::new();
    for (u, p) in &o.users {
        // htable keys and values are config strings: keep them simple.
        assert!(
            u.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !p.contains('"') && !p.contains('\\'),
            "user names [A-Za-z0-9._-], passwords without quotes or backslashes"
        );
        users.push_str(&format!("    $sht(users=>{u}) = \"{p}\";\n"));
    }
    let auth_requests = if o.auth_requests {
        "    if (is_method(\"INVITE|MESSAGE|SUBSCRIBE|OPTIONS|INFO\") && from_uri==myself) {\n\
         \x20       if (!pv_auth_check(\"$fd\", \"$sht(users=>$fU)\", \"0\", \"1\")) {\n\
         \x20           xlog(\"L_NOTICE\", \"HUIS-AUTH-FAIL m=$rm user=$fU rc=$rc\\n\");\n\
         \x20           auth_challenge(\"$fd\", \"0\");\n\
         \x20           exit;\n\
         \x20       }\n\
         \x20       consume_credentials();\n\
         \x20   }\n"
    } else {
        ""
    };
    format!(
        r#"#!KAMAILIO
# Generated by huis-tests (tests/src/peers/kamailio.rs): registrar + proxy, digest auth, loopback only.
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
{tls_listen}auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
dns_try_ipv6=no

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "auth.so"
loadmodule "htable.so"
{tls_modules}
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("rr", "enable_full_lr", 1)
modparam("auth", "algorithm", "{algorithm}")
modparam("htable", "htable", "users=>size=4;")

event_route[htable:mod-init] {{
{users}}}

request_route {{
    xlog("L_NOTICE", "HUIS-REQ t=$TV(Sn) m=$rm user=$fU proto=$pr src=$si:$sp ruri=$ru\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (!sanity_check("17895", "7")) {{
        xlog("L_NOTICE", "HUIS-MALFORMED src=$si:$sp\n");
        exit;
    }}
    if (is_method("OPTIONS") && uri==myself && $rU==$null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
{alias_in}            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{ t_relay(); }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {{
            xlog("L_NOTICE", "HUIS-AUTH-FAIL m=REGISTER user=$fU rc=$rc\n");
            auth_challenge("$fd", "0");
            exit;
        }}
        consume_credentials();
{fix_register}        if (!save("location")) {{
            sl_reply_error();
            exit;
        }}
        xlog("L_NOTICE", "HUIS-REGISTERED user=$fU contact=$ct\n");
        exit;
    }}
{auth_requests}    if (is_method("INVITE")) {{
        record_route();
    }}
{alias_out}
    if (uri==myself) {{
        if (!lookup("location")) {{
            xlog("L_NOTICE", "HUIS-NOT-FOUND ruri=$ru\n");
            sl_send_reply("404", "Not Found");
            exit;
        }}
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
{on_reply}"#
    )
}
