//! SIP over TLS with real peers, each test in its own network namespace: Kamailio with its TLS
//! module as registrar and proxy (digest auth, calls both ways with a baresip registered over
//! TLS, tones both ways), registrars whose certificate must be refused (another CA, another
//! host) with the reason over D-Bus and nothing sent in clear instead, and RFC 3263 server
//! location through a dnsmasq inside the namespace (SRV, failover). Certificates are made at
//! run time with openssl.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl, stderr, wait_status};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn status(bus: &Bus) -> Value {
    let out = huisctl(bus, &["--json", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ok(bus: &Bus, args: &[&str]) {
    let out = huisctl(bus, args);
    assert!(out.status.success(), "huisctl {args:?}: {}", stderr(&out));
}

fn tone_recording(dir: &Path) -> String {
    let p = dir.join("room-tone.wav");
    write_room_tone_wav(&p).unwrap();
    p.display().to_string()
}

fn speaker_ms(d: &Huisd) -> u32 {
    let bytes = std::fs::metadata(d.state_dir.join("speaker.wav")).map(|m| m.len()).unwrap_or(0);
    (bytes.saturating_sub(44) / (48 * 2 * 2)) as u32
}

fn assert_room_hears(d: &Huisd, hz: f32, skip_ms: u32) {
    let speaker = d.state_dir.join("speaker.wav");
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let r = tone_fraction(&speaker, hz, 25.0, 100, skip_ms).unwrap();
        if r.voiced >= 15 && r.fraction >= 0.8 {
            eprintln!("room hears: {r:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the room's loudspeaker does not carry {hz} Hz: {r:?}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_baresip_hears(b: &Baresip, hz: f32) {
    let r = b.wait_received_tone(hz, 15, 10 * SEC).unwrap_or_else(|e| panic!("baresip: {e}"));
    eprintln!("baresip hears: {r:?}");
    assert!(r.fraction >= 0.8, "{hz} Hz dominates only {:.0}% of baresip's windows ({r:?})", r.fraction * 100.0);
}

fn kamailio_tls(ns: &NetNs, server: &Issued, ca: &Ca, users: &[(&str, &str)]) -> Kamailio {
    let mut o = KamailioOpts::new(users);
    o.tls = Some(KamailioTls { port: None, cert: server.cert.clone(), key: server.key.clone(), ca: ca.cert.clone() });
    Kamailio::start_with(ns, o).unwrap()
}

/// UDP and TCP sockets on 127.0.0.1:5060 inside the namespace: whatever reaches them was sent
/// in clear where TLS was asked for.
struct ClearWatch {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl ClearWatch {
    fn new(ns: &NetNs) -> ClearWatch {
        let (udp, tcp) = ns
            .enter(|| (UdpSocket::bind("127.0.0.1:5060").unwrap(), TcpListener::bind("127.0.0.1:5060").unwrap()))
            .unwrap();
        udp.set_nonblocking(true).unwrap();
        tcp.set_nonblocking(true).unwrap();
        ClearWatch { udp, tcp }
    }

    fn assert_nothing(&self) {
        let mut buf = [0u8; 2048];
        if let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            panic!("SIP went over UDP in clear from {from}: {}", String::from_utf8_lossy(&buf[..n]));
        }
        if let Ok((_, from)) = self.tcp.accept() {
            panic!("a clear TCP connection came from {from}");
        }
    }
}

#[test]
fn huisd_registers_over_tls_and_calls_through_kamailio_both_ways_with_tones() {
    let _w = watchdog("kamailio tls", 150);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pbx").unwrap();
    let server = ca.issue("kamailio", &["IP:127.0.0.1", "DNS:pbx.test"]).unwrap();
    let baresip_cert = ca.issue("baresip", &["IP:127.0.0.1"]).unwrap();
    let k = kamailio_tls(&ns, &server, &ca, &[("room", "roompw"), ("bob", "bobpw")]);
    let tls_port = k.tls_port.unwrap();

    // bob registers over TLS; baresip's TLS listens on its SIP port + 1: keep that one free.
    let bob_port = ns.port();
    let _reserved = ns.port();
    let mut opts = BaresipOpts::new("bob")
        .port(bob_port)
        .registrar(&format!("127.0.0.1:{tls_port}"), "bobpw")
        .codecs(&["PCMU/8000/1"])
        .source(AudioSource::Sine(440.0));
    opts.uri_params = ";transport=tls".into();
    opts.extra_config.push(format!("sip_certificate\t{}", baresip_cert.both.display()));
    opts.extra_config.push(format!("sip_cafile\t{}", ca.cert.display()));
    let b = Baresip::start(&ns, opts).unwrap();
    b.wait_registered(10 * SEC).unwrap_or_else(|e| panic!("bob: {e}\n{}\n{}", b.log_text(), k.log_text()));

    let port = ns.port();
    let started = Instant::now();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\n\
             [call]\nauto_answer = true\naudio_codecs = [\"pcmu\"]\nsip_tls = \"required\"\n\
             [account]\nregistrar = \"sips:127.0.0.1:{tls_port}\"\nuser = \"room\"\npassword = \"roompw\"\n",
            tone_recording(dir.path()),
            ca.cert.display()
        ),
    );
    let s = wait_status(&bus, &d, "registered over TLS", 15 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("registered")
    });
    eprintln!("registered over TLS {} ms after huisd started", started.elapsed().as_millis());
    assert_eq!(s["last_error"], "", "{s}");
    let regs: Vec<_> = k.requests().into_iter().filter(|r| r.method == "REGISTER" && r.user == "room").collect();
    assert!(!regs.is_empty() && regs.iter().all(|r| r.proto == "tls"), "the room registers over TLS only: {regs:?}");

    // bob calls the room through the proxy: Kamailio reaches the room over the connection of
    // its registration (the room has no TLS listener).
    let before = speaker_ms(&d);
    b.dial(&format!("sip:room@127.0.0.1:{tls_port};transport=tls")).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\nhuisd:\n{}\nkamailio:\n{}", d.log_text(), k.log_text()));
    wait_status(&bus, &d, "in call from bob", 10 * SEC, |s| s["state"] == "in-call");
    assert_baresip_hears(&b, ROOM_TONE_HZ);
    assert_room_hears(&d, 440.0, before + 500);
    let invites: Vec<_> = k.requests().into_iter().filter(|r| r.method == "INVITE").collect();
    assert!(invites.iter().all(|r| r.proto == "tls"), "every INVITE leg is TLS: {invites:?}");
    b.hangup().unwrap();
    wait_status(&bus, &d, "idle", 5 * SEC, |s| s["state"] == "idle");

    // The room calls bob through the proxy, over the same TLS connection.
    let before = speaker_ms(&d);
    ok(&bus, &["dial", &k.aor("bob")]);
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "incoming", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\nhuisd:\n{}\nkamailio:\n{}", d.log_text(), k.log_text()));
    wait_status(&bus, &d, "in call to bob", 10 * SEC, |s| s["state"] == "in-call");
    assert_baresip_hears(&b, ROOM_TONE_HZ);
    assert_room_hears(&d, 440.0, before + 500);
    let from_room: Vec<_> = k.requests().into_iter().filter(|r| r.user == "room").collect();
    assert!(from_room.iter().all(|r| r.proto == "tls"), "all the room's requests came over TLS: {from_room:?}");
    let sources: std::collections::HashSet<_> = from_room.iter().map(|r| r.src.clone()).collect();
    assert_eq!(sources.len(), 1, "the room reuses its registration's connection: {sources:?}");
    // One TLS handshake in all: the registration's; the call in and the call out reused it.
    let handshakes = d.log_text().matches("TLS connection up").count();
    assert_eq!(handshakes, 1, "TLS handshakes by the room (one expected):\n{}", d.log_text());
    ok(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
}

/// Starts huisd against a TLS registrar whose certificate it must refuse; returns LastError.
fn refused(server_names: &[&str], trusted_ca_is_other: bool, registrar_host: &str) -> (String, Kamailio) {
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pbx").unwrap();
    let other = Ca::new(dir.path(), "other").unwrap();
    let server = ca.issue("kamailio", server_names).unwrap();
    // The namespace's first port is 5060: the clear-text watch takes it, Kamailio the next ones.
    let clear_port = ns.port();
    assert_eq!(clear_port, 5060);
    let watch = ClearWatch::new(&ns);
    let k = kamailio_tls(&ns, &server, &ca, &[("room", "roompw")]);
    let tls_port = k.tls_port.unwrap();
    let trusted = if trusted_ca_is_other { &other } else { &ca };
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\n\
             [account]\nregistrar = \"sips:{registrar_host}:{tls_port}\"\nuser = \"room\"\npassword = \"roompw\"\n",
            trusted.cert.display()
        ),
    );
    let s = wait_status(&bus, &d, "registration refused", 10 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("failed")
    });
    let last = s["last_error"].as_str().unwrap_or("").to_owned();
    eprintln!("LastError: {last}");
    // Give a fallback the time it would take, then check nothing went in clear.
    std::thread::sleep(3 * SEC);
    watch.assert_nothing();
    assert_eq!(k.count("REGISTER", None), 0, "Kamailio saw a REGISTER:\n{}", k.log_text());
    assert!(
        d.log_text().contains(&last.replace("registration failed: ", "")),
        "the log says it too:\n{}",
        d.log_text()
    );
    (last, k)
}

#[test]
fn a_registrar_certificate_from_another_ca_is_refused_and_nothing_goes_in_clear() {
    let _w = watchdog("tls unknown ca", 60);
    let (last, _k) = refused(&["IP:127.0.0.1"], true, "127.0.0.1");
    assert!(last.contains("certificate for 127.0.0.1 is signed by an unknown authority"), "LastError: {last}");
}

#[test]
fn a_registrar_certificate_for_another_host_is_refused_and_nothing_goes_in_clear() {
    let _w = watchdog("tls name mismatch", 60);
    let (last, _k) = refused(&["DNS:other.example"], false, "127.0.0.1");
    assert!(
        last.contains("certificate for other.example does not name host 127.0.0.1 (host name mismatch)"),
        "LastError: {last}"
    );
}

/// RFC 3263: the room is given a domain alone (`sip:pbx.test`). NAPTR says SIPS over TCP, SRV
/// names two servers: the preferred one is down (nothing listens: connection refused), the
/// next one is Kamailio over TLS with a certificate for pbx.test. The room registers there.
#[test]
fn a_domain_alone_is_located_by_naptr_and_srv_and_fails_over_to_the_next_server() {
    let _w = watchdog("rfc 3263", 90);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pbx").unwrap();
    let server = ca.issue("kamailio", &["DNS:pbx.test"]).unwrap();
    let k = kamailio_tls(&ns, &server, &ca, &[("room", "roompw")]);
    let tls_port = k.tls_port.unwrap();
    let dead_port = ns.port();
    let dns = Dnsmasq::start(
        &ns,
        &[
            "--host-record=pbx.test,127.0.0.1".into(),
            "--host-record=down.pbx.test,127.0.0.1".into(),
            "--naptr-record=pbx.test,10,10,S,SIPS+D2T,,_sips._tcp.pbx.test".into(),
            format!("--srv-host=_sips._tcp.pbx.test,down.pbx.test,{dead_port},10,0"),
            format!("--srv-host=_sips._tcp.pbx.test,pbx.test,{tls_port},20,0"),
        ],
    )
    .unwrap();
    let port = ns.port();
    let started = Instant::now();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\n\
             [account]\nregistrar = \"sip:pbx.test\"\nuser = \"room\"\npassword = \"roompw\"\n",
            ca.cert.display()
        ),
    );
    let s = wait_status(&bus, &d, "registered through SRV", 15 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("registered")
    });
    eprintln!("registered {} ms after start; LastError {:?}", started.elapsed().as_millis(), s["last_error"]);
    let log = d.log_text();
    assert!(
        log.contains(&format!("127.0.0.1:{dead_port}/tls")) && log.contains(&format!("127.0.0.1:{tls_port}/tls")),
        "both SRV targets, in order, over TLS:\n{log}\n{}",
        dns.log_text()
    );
    assert!(log.contains("registrar failover"), "the room failed over from the server that is down:\n{log}");
    let regs: Vec<_> = k.requests().into_iter().filter(|r| r.method == "REGISTER" && r.user == "room").collect();
    assert!(!regs.is_empty() && regs.iter().all(|r| r.proto == "tls"), "{regs:?}");
    assert!(k.has_registered("room"));
    let queries = dns.log_text();
    assert!(
        queries.contains("query[NAPTR] pbx.test") && queries.contains("query[SRV] _sips._tcp.pbx.test"),
        "{queries}"
    );
}

/// `call.sip_tls = "required"` without an account: a dial that would go in clear is refused with
/// the reason, and nothing is sent; an incoming call in clear is turned away.
#[test]
fn required_tls_refuses_a_clear_dial_with_the_reason() {
    let _w = watchdog("sip_tls required", 60);
    let ns = NetNs::new();
    let bus = Bus::start();
    let clear_port = ns.port();
    assert_eq!(clear_port, 5060);
    let watch = ClearWatch::new(&ns);
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!("[sip]\nlisten = \"127.0.0.1:{port}\"\n[call]\nsip_tls = \"required\"\n"),
    );
    let out = huisctl(&bus, &["dial", "sip:bob@127.0.0.1:5060"]);
    let why = stderr(&out);
    eprintln!("huisctl: {why}");
    assert!(!out.status.success(), "the clear dial was accepted");
    assert!(why.contains("call.sip_tls is \"required\"") && why.contains("over udp"), "{why}");
    let s = status(&bus);
    eprintln!("LastError: {}", s["last_error"]);
    std::thread::sleep(SEC);
    watch.assert_nothing();
    // A caller in clear is refused (403) and never rings the room.
    let b = Baresip::start(&ns, BaresipOpts::new("caller")).unwrap();
    b.dial(&format!("sip:room@127.0.0.1:{port}")).unwrap();
    let ev = b.wait_event("CALL_CLOSED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", d.log_text()));
    eprintln!("caller: {ev:?}");
    assert_eq!(status(&bus)["state"], "idle");
    assert!(d.log_text().contains("incoming call refused"), "{}", d.log_text());
}

/// RFC 5626 keep-alive on the registration's TLS flow: Kamailio answers the pings (the room
/// stays registered over the same connection); when the path to Kamailio goes silent
/// (nftables drops what reaches its TLS port), the room finds the flow dead within ping
/// interval + 10 s and registers again once the path is back.
#[test]
fn a_tls_flow_that_stops_answering_keepalives_is_replaced() {
    let _w = watchdog("keepalive", 150);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pbx").unwrap();
    let server = ca.issue("kamailio", &["IP:127.0.0.1"]).unwrap();
    let k = kamailio_tls(&ns, &server, &ca, &[("room", "roompw")]);
    let tls_port = k.tls_port.unwrap();
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\nkeepalive_interval = 10\n\
             [account]\nregistrar = \"sips:127.0.0.1:{tls_port}\"\nuser = \"room\"\npassword = \"roompw\"\n",
            ca.cert.display()
        ),
    );
    wait_status(&bus, &d, "registered", 10 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("registered")
    });
    // Two pings answered: still registered, no new connection.
    std::thread::sleep(23 * SEC);
    assert!(!d.log_text().contains("no pong"), "Kamailio's pongs were missed:\n{}", d.log_text());
    let conns = |k: &Kamailio| {
        k.requests()
            .iter()
            .filter(|r| r.method == "REGISTER")
            .map(|r| r.src.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    assert_eq!(conns(&k).len(), 1, "one connection while pongs come back");
    // The path goes silent.
    let nft = |args: &str| {
        let st = ns.cmd("nft").args(args.split_whitespace()).status().unwrap();
        assert!(st.success(), "nft {args}");
    };
    nft("add table inet huis");
    nft("add chain inet huis in { type filter hook input priority 0 ; }");
    nft(&format!("add rule inet huis in tcp dport {tls_port} drop"));
    let cut = Instant::now();
    let deadline = cut + 25 * SEC;
    while !d.log_text().contains("no pong within 10 s") {
        assert!(Instant::now() < deadline, "the dead flow was not noticed in 25 s:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("dead flow noticed {} ms after the cut", cut.elapsed().as_millis());
    assert!(d.log_text().contains("registering again"), "{}", d.log_text());
    nft("delete table inet huis");
    // Back: a new connection carries a new registration (the core retries within 30 s).
    let deadline = Instant::now() + 45 * SEC;
    while conns(&k).len() < 2 || !status(&bus)["registration"].as_str().unwrap_or("").starts_with("registered") {
        assert!(Instant::now() < deadline, "no new registration:\n{}\n{}", status(&bus), d.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A dialled domain without a port goes through RFC 3263 too: `sips:bob@pbx.test`, SRV says a
/// server that is down first, then baresip over TLS (certificate for pbx.test). The call moves
/// on to the second and is up, over TLS, tone both ways.
#[test]
fn a_dialled_domain_fails_over_to_the_next_srv_target() {
    let _w = watchdog("dial srv", 90);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pbx").unwrap();
    let cert = ca.issue("bob", &["DNS:pbx.test"]).unwrap();
    let dead_port = ns.port();
    let mut opts = BaresipOpts::new("bob").codecs(&["PCMU/8000/1"]).source(AudioSource::Sine(440.0));
    opts.extra_config.push(format!("sip_certificate\t{}", cert.both.display()));
    opts.extra_config.push(format!("sip_cafile\t{}", ca.cert.display()));
    let b = Baresip::start(&ns, opts).unwrap();
    let bob_tls = b.sip_port + 1;
    let _dns = Dnsmasq::start(
        &ns,
        &[
            "--host-record=pbx.test,127.0.0.1".into(),
            "--host-record=down.pbx.test,127.0.0.1".into(),
            format!("--srv-host=_sips._tcp.pbx.test,down.pbx.test,{dead_port},10,0"),
            format!("--srv-host=_sips._tcp.pbx.test,pbx.test,{bob_tls},20,0"),
        ],
    )
    .unwrap();
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\n\
             [call]\naudio_codecs = [\"pcmu\"]\n",
            tone_recording(dir.path()),
            ca.cert.display()
        ),
    );
    let before = speaker_ms(&d);
    ok(&bus, &["dial", "sips:bob@pbx.test"]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.log_text(), b.log_text()));
    let s = wait_status(&bus, &d, "in call", 10 * SEC, |s| s["state"] == "in-call");
    eprintln!("LastError: {}", s["last_error"]);
    assert!(d.log_text().contains("trying the next one"), "{}", d.log_text());
    assert_baresip_hears(&b, ROOM_TONE_HZ);
    assert_room_hears(&d, 440.0, before + 500);
    ok(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
}
