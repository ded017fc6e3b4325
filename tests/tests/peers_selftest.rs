//! The peer harness proves itself against the real programs, without huisd:
//! baresip calls baresip (directly and through Kamailio with digest auth),
//! SIPp calls and answers baresip, and hostile SIP leaves Kamailio and
//! baresip alive and answering. Each test runs in its own network namespace
//! (as root) and every wait is bounded.

use std::time::{Duration, Instant};

use huis_tests::peers::malformed::{self, Transport};
use huis_tests::peers::sipp::{self, Scenario};
use huis_tests::peers::tone::tone_fraction;
use huis_tests::peers::*;

const SEC: Duration = Duration::from_secs(1);

/// Checks that `b` received `hz` in at least 80% of voiced 100 ms windows,
/// once its recording holds `min_voiced` of them (polled up to 10 s).
fn assert_tone(who: &str, b: &Baresip, hz: f32, min_voiced: usize) {
    let r = b.wait_received_tone(hz, min_voiced, 10 * SEC).unwrap_or_else(|e| panic!("{who}: {e}"));
    eprintln!("{who}: {r:?}");
    assert!(
        r.fraction >= 0.8,
        "{who}: {hz} Hz dominates only {:.0}% of voiced windows (typically {} Hz)",
        r.fraction * 100.0,
        r.typical_hz
    );
}

#[test]
fn baresip_calls_baresip_directly_with_tones_dtmf_hold_and_hangup() {
    let _w = watchdog("direct", 60);
    let ns = NetNs::new();
    let a =
        Baresip::start(&ns, BaresipOpts::new("a").codecs(&["opus/48000/2"]).source(AudioSource::Sine(1000.0))).unwrap();
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("b")
            .codecs(&["opus/48000/2"])
            .answer(AnswerMode::Manual)
            .source(AudioSource::ToneWav { hz: 440.0, seconds: 30.0 }),
    )
    .unwrap();

    let t0 = Instant::now();
    a.dial(&b.contact_uri()).unwrap();
    let inc = b.wait_event("CALL_INCOMING", 5 * SEC).unwrap();
    assert_eq!(inc.peer_uri, a.contact_uri());
    a.wait_event("CALL_RINGING", 5 * SEC).unwrap();
    b.answer().unwrap();
    a.wait_event("CALL_ESTABLISHED", 5 * SEC).unwrap();
    b.wait_event("CALL_ESTABLISHED", 5 * SEC).unwrap();
    eprintln!("dial to established: {:?}", t0.elapsed());

    // Each side hears the other's tone, not its own.
    assert_tone("a hears b", &a, 440.0, 20);
    assert_tone("b hears a", &b, 1000.0, 20);
    let wrong = tone_fraction(&a.received_wav_path().unwrap(), 1000.0, 25.0, 100, 300).unwrap();
    assert!(wrong.fraction < 0.2, "a's recording also passes for 1000 Hz: {wrong:?}");

    // DTMF, RFC 4733, both ways.
    a.send_dtmf("12#").unwrap();
    b.send_dtmf("9").unwrap();
    let deadline = Instant::now() + 3 * SEC;
    while (b.received_dtmf() != "12#" || a.received_dtmf() != "9") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.received_dtmf(), "12#");
    assert_eq!(a.received_dtmf(), "9");

    // Hold and resume: the far end sees the direction change.
    assert_eq!(b.audio_debug().unwrap().dir, "sendrecv");
    a.hold().unwrap();
    let deadline = Instant::now() + 3 * SEC;
    let mut dir = String::new();
    while Instant::now() < deadline {
        dir = b.audio_debug().unwrap().dir;
        if dir != "sendrecv" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir == "recvonly" || dir == "inactive", "b's direction while held: {dir}");
    a.resume().unwrap();
    let deadline = Instant::now() + 3 * SEC;
    while b.audio_debug().unwrap().dir != "sendrecv" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.audio_debug().unwrap().dir, "sendrecv");

    // The callee hangs up; the caller learns it.
    b.hangup().unwrap();
    let closed = a.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    eprintln!("a: closed: {}", closed.param);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
}

#[test]
fn baresips_register_and_call_through_kamailio_and_a_wrong_password_fails_quietly() {
    let _w = watchdog("kamailio", 60);
    let ns = NetNs::new();
    let k = Kamailio::start(&ns, None, &[("alice", "alicepw"), ("bob", "bobpw")], Algorithm::Md5).unwrap();
    // The intruder starts first, so the 10 s window overlaps the call.
    let bad_start = Instant::now();
    let bad = Baresip::start(&ns, BaresipOpts::new("alice").registrar(&k.host_port(), "not-the-password")).unwrap();
    let a = Baresip::start(
        &ns,
        BaresipOpts::new("alice")
            .registrar(&k.host_port(), "alicepw")
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(1000.0)),
    )
    .unwrap();
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("bob")
            .registrar(&k.host_port(), "bobpw")
            .tcp()
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0)),
    )
    .unwrap();
    a.wait_registered(5 * SEC).unwrap();
    b.wait_registered(5 * SEC).unwrap();
    assert!(k.has_registered("alice") && k.has_registered("bob"));
    let proto = |u: &str| k.requests().iter().find(|r| r.method == "REGISTER" && r.user == u).map(|r| r.proto.clone());
    assert_eq!(proto("bob").as_deref(), Some("tcp"));
    assert_eq!(proto("alice").as_deref(), Some("udp"));

    // alice (UDP) calls bob (registered over TCP) by his AOR: the proxy
    // authenticates her (407) and finds bob's contact in its location table.
    a.dial(&k.aor("bob")).unwrap();
    b.wait_event("CALL_ESTABLISHED", 5 * SEC).unwrap();
    a.wait_event("CALL_ESTABLISHED", 5 * SEC).unwrap();
    assert!(k.count("INVITE", Some("alice")) >= 2, "the INVITE was not challenged");
    assert_tone("bob hears alice", &b, 1000.0, 15);
    assert_tone("alice hears bob", &a, 440.0, 15);
    // Hang up from the caller's side; the BYE passes the proxy (record-route).
    a.hangup().unwrap();
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    assert!(k.count("BYE", None) >= 1, "BYE did not pass the proxy");

    // The wrong password: never registered, and no storm of REGISTERs.
    let rest = Duration::from_secs(10).saturating_sub(bad_start.elapsed());
    std::thread::sleep(rest);
    assert!(!bad.is_registered().unwrap(), "registered with a wrong password");
    let src = format!("127.0.0.1:{}", bad.sip_port);
    let regs: Vec<f64> = k.requests().iter().filter(|r| r.method == "REGISTER" && r.src == src).map(|r| r.t).collect();
    eprintln!("REGISTERs from the wrong password in 10 s: {}", regs.len());
    assert!(!regs.is_empty(), "the intruder never tried");
    let last5 = regs.iter().filter(|&&t| t > regs[0] + 5.0).count();
    // baresip 1.0 (libre) answers each new challenge once more, then gives up
    // for a while: a short burst (16 seen), nothing in the second half.
    assert!(regs.len() <= 20 && last5 <= 2, "retry storm: {} REGISTERs ({last5} in the last 5 s)", regs.len());
}

#[test]
fn sipp_calls_baresip_and_answers_baresip() {
    let _w = watchdog("sipp", 60);
    let ns = NetNs::new();
    let b = Baresip::start(&ns, BaresipOpts::new("b").codecs(&["PCMU/8000/1"])).unwrap();
    let mut o = SippOpts::uac(&format!("127.0.0.1:{}", b.sip_port), 3);
    o.service = Some("b".into());
    o.rate = Some(5);
    let r = Sipp::run(&ns, o).unwrap();
    assert!(r.success(), "{r}");
    assert_eq!((r.successful, r.failed), (3, 0), "{r}");
    let established = b.events().iter().filter(|e| e.kind == "CALL_ESTABLISHED").count();
    assert_eq!(established, 3, "baresip saw {established} calls");

    // DTMF by SIP INFO (huis's fallback) is reported like RFC 4733 digits.
    let mut o = SippOpts::uac(&format!("127.0.0.1:{}", b.sip_port), 1);
    o.scenario = Scenario::Xml(sipp::info_dtmf_scenario("5*0"));
    o.service = Some("b".into());
    let r = Sipp::run(&ns, o).unwrap();
    assert!(r.success(), "{r}");
    assert_eq!(b.received_dtmf(), "5*0");

    // SIPp answers; baresip calls it and hangs up.
    let port = ns.port();
    let uas = Sipp::spawn(&ns, SippOpts::uas(port, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    b.dial(&format!("sip:service@127.0.0.1:{port}")).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "outgoing", 5 * SEC).unwrap();
    std::thread::sleep(SEC);
    b.hangup().unwrap();
    let r = uas.wait().unwrap();
    assert!(r.success(), "{r}");
    assert_eq!(r.successful, 1, "{r}");
}

#[test]
fn malformed_sip_leaves_kamailio_and_baresip_alive_and_answering() {
    let _w = watchdog("malformed", 60);
    let ns = NetNs::new();
    let mut k = Kamailio::start(&ns, None, &[("alice", "pw")], Algorithm::Md5).unwrap();
    let mut b = Baresip::start(&ns, BaresipOpts::new("b")).unwrap();
    let k_addr = format!("127.0.0.1:{}", k.port).parse().unwrap();
    let b_addr = format!("127.0.0.1:{}", b.sip_port).parse().unwrap();

    // SIPp's malformed scenario ends with an OPTIONS that must get a 200.
    let mut o = SippOpts::uac(&format!("127.0.0.1:{}", b.sip_port), 1);
    o.scenario = Scenario::Xml(sipp::malformed_scenario());
    o.service = Some("b".into());
    let r = Sipp::run(&ns, o).unwrap();
    assert!(r.success(), "baresip after SIPp's malformed messages: {r}");
    // The final screen lists each <send> with its count: all went out.
    let sent =
        r.stdout.lines().filter(|l| l.contains("---------->") && l.split_whitespace().nth(2) == Some("1")).count();
    assert!(sent >= 13, "SIPp sent only {sent} of 13 messages:\n{}", r.stdout);

    // Raw bytes, both transports, at both programs.
    for (name, addr, ruri) in [("kamailio", k_addr, format!("sip:{k_addr}")), ("baresip", b_addr, b.contact_uri())] {
        let rep = malformed::send_cases(&ns, addr, malformed::cases(&ruri), &[Transport::Udp, Transport::Tcp]).unwrap();
        eprintln!("{name}: {} hostile messages sent", rep.sent.len());
        for t in [Transport::Udp, Transport::Tcp] {
            let code = options_ping_uri(&ns, t, addr, &ruri, 5 * SEC)
                .unwrap_or_else(|e| panic!("{name} stopped answering OPTIONS over {t:?}: {e}"));
            assert_eq!(code, 200, "{name} over {t:?}");
        }
    }
    assert!(k.is_running(), "kamailio died:\n{}", k.log_text());
    assert!(b.is_running(), "baresip died:\n{}", b.log_text());
}

/// Janus with a pin-protected room: a publishing Chromium and one that only
/// subscribes (both with the pin) get in, the subscriber decodes the
/// publisher, Janus lists one publisher and one non-publisher, and a wrong
/// pin keeps a third out. The two-way case is `tests/webrtc_peers.rs`.
#[test]
fn janus_room_with_a_pin_a_subscriber_only_chromium_and_a_wrong_pin() {
    if !huis_tests::peers::netns::is_root() {
        eprintln!(
            "SKIPPED janus_room_with_a_pin…: needs root (Janus's ICE interface is made in a private network namespace)"
        );
        return;
    }
    let _w = watchdog("janus", 60);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(42, Some("2468"), "pin room").unwrap();
    assert!(janus.create_room(42, None, "again").is_err(), "a second room 42");
    assert!(janus.participants(43).is_err(), "participants of a room that does not exist");
    let opts = || ChromiumOpts::new(&janus.http_url(), 42).pin("2468");
    let p = Chromium::start(&ns, opts().display("P").tone(1000.0)).unwrap_or_else(|e| panic!("{e:#}\n{}", janus.log()));
    let s = Chromium::start(&ns, opts().display("S")).unwrap_or_else(|e| panic!("{e:#}\n{}", janus.log()));
    let got = s
        .wait_until(
            |st| st.feed("P").is_some_and(|f| f.frames_decoded > 10 && (f.audio_peak_hz - 1000.0).abs() < 20.0),
            20 * SEC,
        )
        .unwrap_or_else(|e| panic!("S gets nothing from P: {e}\n{}\n{}", p.explain(), janus.log()));
    eprintln!("S receives P: {:?}", got.feed("P").unwrap());
    assert_eq!(got.publish.pc_state, "none", "S published");
    assert!(p.stats().feeds.is_empty(), "P subscribed to a non-publisher: {:?}", p.stats().feeds);
    let mut listed: Vec<(String, bool)> =
        janus.participants(42).unwrap().into_iter().map(|x| (x.display, x.publisher)).collect();
    listed.sort();
    assert_eq!(listed, [("P".to_string(), true), ("S".to_string(), false)]);

    let wrong = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), 42).pin("1111").display("W"));
    let err = format!("{:#}", wrong.err().expect("joined with a wrong pin"));
    assert!(err.contains("433") || err.to_lowercase().contains("pin"), "{err}");
}

/// The call set-up benchmark behind `bench/sip-setup.sh` (ignored in normal
/// runs). Environment: `HUIS_BENCH_CALLS` (default 20). Three cases, each with
/// a baresip and a huisd row against the same auto-answering callee:
/// plain SIP/UDP and RTP straight to the callee; SIP over TLS with SDES-SRTP
/// through Kamailio, every party registered over TLS (calls reuse the
/// registration's connection); DTLS-SRTP with SIP/UDP straight to the callee.
#[test]
#[ignore = "benchmark; run bench/sip-setup.sh"]
fn bench_sip_setup() {
    use huis_tests::peers::bench::{HuisdDial, HuisdDialer, TlsProxy, markdown, measure};
    let calls: usize = std::env::var("HUIS_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let _w = watchdog("bench", 120 + calls as u64 * 40);
    let ns = NetNs::new();
    let codecs = ["opus/48000/2", "PCMU/8000/1"];
    let hold = Duration::from_millis(300);
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    // Plain SIP over UDP, RTP.
    let case = "SIP/UDP, RTP";
    {
        let callee =
            Baresip::start(&ns, BaresipOpts::new("callee").codecs(&codecs).source(AudioSource::Sine(440.0))).unwrap();
        let uri = callee.contact_uri();
        let mut dialer =
            Baresip::start(&ns, BaresipOpts::new("dialer").codecs(&codecs).source(AudioSource::Sine(1000.0))).unwrap();
        rows.push(measure(&mut dialer, &callee, &uri, case, calls, hold).unwrap());
        // Released huisd when the script builds with --release (its default).
        for how in [HuisdDial::OpenConnection, HuisdDial::Huisctl] {
            // A bus per huisd: the one before may still own the name while it exits.
            let bus = huis_tests::Bus::start();
            let mut huisd = HuisdDialer::start(&ns, &bus, "", how).unwrap();
            rows.push(measure(&mut huisd, &callee, &uri, case, calls, hold).unwrap());
        }
    }

    // SIP over TLS through Kamailio, SDES-SRTP (baresip `srtp-mand`).
    let case = "SIP/TLS via Kamailio, SDES-SRTP";
    {
        let users = [("room", "roompw"), ("alice", "alicepw"), ("bob", "bobpw")];
        let proxy = TlsProxy::start(&ns, &users).unwrap();
        let srtp = |user: &str, hz: f32| {
            BaresipOpts::new(user).codecs(&codecs).source(AudioSource::Sine(hz)).mediaenc(MediaEnc::SrtpMand)
        };
        let callee = proxy.baresip(&ns, srtp("bob", 440.0), "bobpw").unwrap();
        let uri = proxy.aor("bob");
        let mut dialer = proxy.baresip(&ns, srtp("alice", 1000.0), "alicepw").unwrap();
        rows.push(measure(&mut dialer, &callee, &uri, case, calls, hold).unwrap());
        let config = proxy.huisd_config(ns.port(), "room", "roompw", "");
        let bus = huis_tests::Bus::start();
        let mut huisd = HuisdDialer::start(&ns, &bus, &config, HuisdDial::OpenConnection).unwrap();
        huisd.wait_registered(15 * SEC).unwrap();
        let row = measure(&mut huisd, &callee, &uri, case, calls, hold)
            .unwrap_or_else(|e| panic!("{e}\nhuisd:\n{}\nkamailio:\n{}", huisd.log_text(), proxy.kamailio.log_text()));
        let handshakes = huisd.tls_handshakes();
        notes.push(format!(
            "huisd over TLS: {handshakes} TLS handshake(s) for its registration and {} calls",
            row.calls
        ));
        if row.failures > 0 {
            eprintln!("huisd:\n{}\nkamailio:\n{}", huisd.log_text(), proxy.kamailio.log_text());
        }
        rows.push(row);
        let from_room: std::collections::HashSet<String> =
            proxy.kamailio.requests().into_iter().filter(|r| r.user == "room").map(|r| r.src).collect();
        assert_eq!(handshakes, 1, "huisd opened more than one TLS connection:\n{}", huisd.log_text());
        assert_eq!(from_room.len(), 1, "the room's requests came over several connections: {from_room:?}");
    }

    // DTLS-SRTP, SIP over UDP straight to the callee (`dtls_srtp`, rtcp-mux like huisd's offer).
    let case = "SIP/UDP, DTLS-SRTP";
    {
        let dtls = |user: &str, hz: f32| {
            BaresipOpts::new(user)
                .codecs(&codecs)
                .source(AudioSource::Sine(hz))
                .mediaenc(MediaEnc::DtlsSrtp)
                .rtcp_mux(true)
        };
        let callee = Baresip::start(&ns, dtls("carol", 440.0)).unwrap();
        let uri = callee.contact_uri();
        let mut dialer = Baresip::start(&ns, dtls("dave", 1000.0)).unwrap();
        rows.push(measure(&mut dialer, &callee, &uri, case, calls, hold).unwrap());
        let config = "[call]\nmedia_encryption = \"required\"\n";
        let bus = huis_tests::Bus::start();
        let mut huisd = HuisdDialer::start(&ns, &bus, config, HuisdDial::OpenConnection).unwrap();
        let row = measure(&mut huisd, &callee, &uri, case, calls, hold).unwrap();
        if row.failures > 0 {
            eprintln!("huisd:\n{}\ncallee:\n{}", huisd.log_text(), callee.log_text());
        }
        rows.push(row);
    }

    println!("<<<TABLE\n{}TABLE>>>", markdown(&rows));
    for n in &notes {
        println!("NOTE {n}");
    }
    for r in &rows {
        assert_eq!(r.failures, 0, "{} ({}): {} of {} calls failed", r.label, r.case, r.failures, r.calls);
    }
}

/// The CPU cost of SRTP in a call, behind `bench/srtp-cpu.sh` (ignored in normal runs): huisd
/// calls baresip with audio (PCMU) and video (H.264 640×360 at 30 frames/s both ways) and its
/// CPU time is read from /proc over a window of the established call, in plain RTP, SDES-SRTP
/// (SIP over TLS) and DTLS-SRTP (SIP over UDP), rounds alternating. The baresip peers differ
/// only in `mediaenc`. Environment: `HUIS_BENCH_CPU_SECS` (window, default 60),
/// `HUIS_BENCH_CPU_ROUNDS` (default 2).
#[test]
#[ignore = "benchmark; run bench/srtp-cpu.sh"]
fn bench_srtp_cpu() {
    use huis_tests::peers::bench::{cpu_in_call, cpu_markdown};
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (secs, rounds) = (env("HUIS_BENCH_CPU_SECS", 60), env("HUIS_BENCH_CPU_ROUNDS", 2) as usize);
    let _w = watchdog("bench cpu", 120 + rounds as u64 * 3 * (secs + 40));
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cpu").unwrap();
    let room_cert = ca.issue("room", &["IP:127.0.0.1"]).unwrap();
    let peer_cert = ca.issue("peer", &["IP:127.0.0.1"]).unwrap();

    // One huisd at a time, started for its window on a bus of its own: an idle huisd (the sim
    // board's screen) costs CPU that would load the machine for the one measured.
    struct Mode {
        name: &'static str,
        b: Baresip,
        config: String,
        uri: String,
    }
    let peer = |user: &str, enc: MediaEnc, tls: bool| {
        let port = ns.port();
        let _tls_listener = ns.port();
        let mut o = BaresipOpts::new(user)
            .port(port)
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .video(640, 360)
            .mediaenc(enc)
            .rtcp_mux(true);
        if tls {
            o.uri_params = ";transport=tls".into();
            o.extra_config.push(format!("sip_certificate\t{}", peer_cert.both.display()));
            o.extra_config.push(format!("sip_cafile\t{}", ca.cert.display()));
        }
        Baresip::start(&ns, o).unwrap()
    };
    let tone = dir.path().join("room-tone.wav");
    tone::write_room_tone_wav(&tone).unwrap();
    let sip_port = ns.port();
    let tls_port = ns.port();
    let room = |policy: &str, tls: bool| {
        let sip_tls = if tls {
            format!(
                "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_ca_file = \"{}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
                ca.cert.display(),
                room_cert.cert.display(),
                room_cert.key.display()
            )
        } else {
            String::new()
        };
        format!(
            "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n{sip_tls}\
             [call]\naudio_codecs = [\"pcmu\"]\nmedia_encryption = \"{policy}\"\n\
             [video]\nwidth = 640\nheight = 360\nframerate = 30\n",
            tone.display()
        )
    };
    let mut modes = Vec::new();
    {
        let b = peer("plain", MediaEnc::None, false);
        let uri = b.contact_uri();
        modes.push(Mode { name: "plain RTP (SIP/UDP)", b, config: room("off", false), uri });
        let b = peer("sdes", MediaEnc::SrtpMand, true);
        let uri = format!("sip:sdes@127.0.0.1:{};transport=tls", b.sip_port + 1);
        modes.push(Mode { name: "SDES-SRTP (SIP/TLS)", b, config: room("required", true), uri });
        let b = peer("dtls", MediaEnc::DtlsSrtp, false);
        let uri = b.contact_uri();
        modes.push(Mode { name: "DTLS-SRTP (SIP/UDP)", b, config: room("required", false), uri });
    }
    let calls_json = |bus: &huis_tests::Bus| -> anyhow::Result<serde_json::Value> {
        let out = huis_tests::huisctl(bus, &["--json", "calls"]);
        anyhow::ensure!(out.status.success(), "huisctl calls: {}", huis_tests::stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v[0].clone())
    };
    let mut windows = Vec::new();
    for round in 1..=rounds {
        for m in &modes {
            let bus = huis_tests::Bus::start();
            let mut d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &m.config);
            let why = || format!("--- huisd:\n{}\n--- baresip:\n{}", d.log_text(), m.b.log_text());
            let out = huis_tests::huisctl(&bus, &["dial", &m.uri]);
            assert!(out.status.success(), "{}: huisctl dial: {}\n{}", m.name, huis_tests::stderr(&out), why());
            m.b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{}: {e}\n{}", m.name, why()));
            // Let the media settle (DTLS, first keyframes, encoder warm-up).
            std::thread::sleep(5 * SEC);
            let w =
                cpu_in_call(m.name, round, d.child.id(), m.b.pid(), Duration::from_secs(secs), &|| calls_json(&bus))
                    .unwrap_or_else(|e| panic!("{e}\n{}", why()));
            eprintln!("{w:?}");
            assert!(
                w.video_frames_per_s > 20.0,
                "{}: video is not flowing ({:.1} frames/s): the windows would not compare\n{}",
                m.name,
                w.video_frames_per_s,
                why()
            );
            windows.push(w);
            m.b.hangup().unwrap();
            m.b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
            d.terminate(5 * SEC);
            std::thread::sleep(SEC);
        }
    }
    println!("<<<TABLE\n{}TABLE>>>", cpu_markdown(&windows));
}
