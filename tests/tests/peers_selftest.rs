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

/// The call set-up benchmark behind `bench/sip-setup.sh` (ignored in normal
/// runs). Environment: `HUIS_BENCH_CALLS` (default 20); a second dialer row
/// from `HUIS_BENCH_DIALER_CMD` (`sh -c` inside the namespace, `{uri}` is
/// the callee), with optional `HUIS_BENCH_DIALER_LABEL`,
/// `HUIS_BENCH_DIALER_SETUP` (started in the background first),
/// `HUIS_BENCH_DIALER_READY` (polled until it succeeds) and
/// `HUIS_BENCH_DIALER_PROCESS` (process name for RSS, e.g. `huisd`).
#[test]
#[ignore = "benchmark; run bench/sip-setup.sh"]
fn bench_sip_setup() {
    use huis_tests::peers::bench::{HuisdDial, HuisdDialer, markdown, measure};
    let calls: usize = std::env::var("HUIS_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let _w = watchdog("bench", 60 + calls as u64 * 10);
    let ns = NetNs::new();
    let codecs = ["opus/48000/2", "PCMU/8000/1"];
    let callee =
        Baresip::start(&ns, BaresipOpts::new("callee").codecs(&codecs).source(AudioSource::Sine(440.0))).unwrap();
    let hold = Duration::from_millis(300);
    let mut rows = Vec::new();
    {
        let mut dialer =
            Baresip::start(&ns, BaresipOpts::new("dialer").codecs(&codecs).source(AudioSource::Sine(1000.0))).unwrap();
        rows.push(measure(&mut dialer, &callee, calls, hold).unwrap());
    }
    {
        // Released huisd when the script builds with --release (its default).
        let bus = huis_tests::Bus::start();
        for how in [HuisdDial::OpenConnection, HuisdDial::Huisctl] {
            let mut huisd = HuisdDialer::start(&ns, &bus, "", how).unwrap();
            rows.push(measure(&mut huisd, &callee, calls, hold).unwrap());
        }
    }
    println!("<<<TABLE\n{}TABLE>>>", markdown(&rows));
    for r in &rows {
        assert_eq!(r.failures, 0, "{}: {} of {} calls failed", r.label, r.failures, r.calls);
    }
}
