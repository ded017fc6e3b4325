//! huisd in SIP calls with real peers, each test in its own network
//! namespace: baresip directly (tones both ways, DTMF, hold, hang-up from
//! either side), Kamailio with digest authentication (register, calls both
//! ways through the proxy, a wrong password), and hostile SIP from SIPp and
//! raw sockets.

use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::malformed::{self, Transport};
use huis_tests::peers::sipp::{self, Scenario};
use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl, stderr};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn status(bus: &Bus) -> Value {
    let out = huisctl(bus, &["--json", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `huisctl status` until `pred` holds; returns the last status.
fn wait_status(bus: &Bus, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(bus);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}; status: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ok(bus: &Bus, args: &[&str]) {
    let out = huisctl(bus, args);
    assert!(out.status.success(), "huisctl {args:?}: {}", stderr(&out));
}

/// A room recording that carries a 1 kHz tone, so the far end can tell it.
fn tone_recording(dir: &Path) -> String {
    let p = dir.join("room-tone.wav");
    write_room_tone_wav(&p).unwrap();
    p.display().to_string()
}

fn assert_baresip_hears(b: &Baresip, hz: f32) {
    let r = b.wait_received_tone(hz, 15, 10 * SEC).unwrap_or_else(|e| panic!("baresip: {e}"));
    eprintln!("baresip hears: {r:?}");
    assert!(r.fraction >= 0.8, "{hz} Hz dominates only {:.0}% of baresip's voiced windows ({r:?})", r.fraction * 100.0);
}

/// Checks the room's loudspeaker file for `hz` in the audio written after `skip_ms`.
fn assert_room_hears(d: &Huisd, hz: f32, skip_ms: u32) {
    let speaker = d.state_dir.join("speaker.wav");
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let r = tone_fraction(&speaker, hz, 25.0, 100, skip_ms).unwrap();
        if r.voiced >= 15 && r.fraction >= 0.8 {
            eprintln!("room hears: {r:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the room's loudspeaker does not carry {hz} Hz: {r:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn speaker_ms(d: &Huisd) -> u32 {
    let bytes = std::fs::metadata(d.state_dir.join("speaker.wav")).map(|m| m.len()).unwrap_or(0);
    // 48 kHz stereo 16-bit on the sim board.
    (bytes.saturating_sub(44) / (48 * 2 * 2)) as u32
}

#[test]
fn huisd_and_baresip_call_each_other_with_tones_dtmf_hold_and_hangup() {
    let _w = watchdog("baresip", 120);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let port = ns.port();
    let b =
        Baresip::start(&ns, BaresipOpts::new("b").codecs(&["opus/48000/2"]).source(AudioSource::Sine(440.0))).unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n[call]\nauto_answer = true\n",
            tone_recording(dir.path())
        ),
    );

    // The room calls baresip.
    let before = speaker_ms(&d);
    ok(&bus, &["dial", &b.contact_uri()]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap();
    let s = wait_status(&bus, "in call", 10 * SEC, |s| s["state"] == "in-call");
    assert_eq!(s["leds"], "in-call");
    assert_baresip_hears(&b, ROOM_TONE_HZ);
    assert_room_hears(&d, 440.0, before + 500);

    // DTMF from the room arrives at the peer (RFC 4733 with Opus).
    ok(&bus, &["dtmf", "12#"]);
    let deadline = Instant::now() + 5 * SEC;
    while b.received_dtmf() != "12#" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.received_dtmf(), "12#");

    // Hold and resume: the peer sees the direction change.
    ok(&bus, &["hold"]);
    let deadline = Instant::now() + 5 * SEC;
    let mut dir_seen = String::new();
    while Instant::now() < deadline {
        dir_seen = b.audio_debug().unwrap().dir;
        if dir_seen != "sendrecv" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir_seen == "recvonly" || dir_seen == "inactive", "peer's direction while held: {dir_seen}");
    let out = huisctl(&bus, &["--json", "calls"]);
    let calls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls[0]["state"], "held");
    ok(&bus, &["resume"]);
    let deadline = Instant::now() + 5 * SEC;
    while b.audio_debug().unwrap().dir != "sendrecv" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.audio_debug().unwrap().dir, "sendrecv");

    // The room hangs up.
    ok(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    wait_status(&bus, "idle after hang-up", 5 * SEC, |s| s["state"] == "idle");

    // A destination that carries a meeting PIN: the digits go out by
    // themselves once the call is up.
    ok(&bus, &["dial", &format!("{};dtmf=4%2A7%23", b.contact_uri())]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap();
    let deadline = Instant::now() + 8 * SEC;
    while !b.received_dtmf().ends_with("4*7#") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.received_dtmf(), "12#4*7#", "the dial string's digits did not arrive");
    ok(&bus, &["hangup"]);
    b.wait_event_where(|e| e.kind == "CALL_CLOSED", 5 * SEC).unwrap();
    wait_status(&bus, "idle after the PIN call", 5 * SEC, |s| s["state"] == "idle");

    // Baresip calls the room, which answers by itself; baresip hangs up.
    let room_uri = status(&bus)["sip_uri"].as_str().unwrap().to_owned();
    let before = speaker_ms(&d);
    b.dial(&room_uri).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "outgoing", 10 * SEC).unwrap();
    wait_status(&bus, "in call (incoming)", 10 * SEC, |s| s["state"] == "in-call");
    assert_room_hears(&d, 440.0, before + 500);
    assert_baresip_hears(&b, ROOM_TONE_HZ);
    b.hangup().unwrap();
    let s = wait_status(&bus, "idle after the peer hung up", 5 * SEC, |s| s["state"] == "idle");
    assert_eq!(s["last_error"], "", "a normal hang-up is not an error");
}

#[test]
fn huisd_registers_with_kamailio_and_calls_go_through_the_proxy() {
    let _w = watchdog("kamailio", 120);
    let ns = NetNs::new();
    let bus = Bus::start();
    let k = Kamailio::start(&ns, None, &[("room", "roompw"), ("bob", "bobpw")], Algorithm::Md5).unwrap();
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("bob")
            .registrar(&k.host_port(), "bobpw")
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0)),
    )
    .unwrap();
    b.wait_registered(10 * SEC).unwrap();
    let port = ns.port();
    let _d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\n[call]\nauto_answer = true\naudio_codecs = [\"pcmu\"]\n\
             [account]\nregistrar = \"sip:{}\"\ntransport = \"tcp\"\nuser = \"room\"\npassword = \"roompw\"\n",
            k.host_port()
        ),
    );
    let s = wait_status(&bus, "registered", 10 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("registered")
    });
    assert_eq!(s["last_error"], "");
    assert!(k.has_registered("room"), "Kamailio has no registration for the room");
    let proto = k.requests().iter().find(|r| r.method == "REGISTER" && r.user == "room").map(|r| r.proto.clone());
    assert_eq!(proto.as_deref(), Some("tcp"), "the room registers over TCP as configured");

    // bob calls the room by its address of record, through the proxy.
    b.dial(&k.aor("room")).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED", 10 * SEC).unwrap();
    wait_status(&bus, "in call from bob", 10 * SEC, |s| s["state"] == "in-call");
    b.hangup().unwrap();
    wait_status(&bus, "idle", 5 * SEC, |s| s["state"] == "idle");

    // The room calls bob by his address of record: the proxy challenges the
    // INVITE (407) and the room answers the challenge.
    ok(&bus, &["dial", &k.aor("bob")]);
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "incoming", 10 * SEC).unwrap();
    wait_status(&bus, "in call to bob", 10 * SEC, |s| s["state"] == "in-call");
    assert!(k.count("INVITE", Some("room")) >= 2, "the room's INVITE was not challenged and answered");
    let deadline = Instant::now() + 5 * SEC;
    let mut rtp = b.audio_debug().unwrap();
    while rtp.rx_packets.unwrap_or(0) < 25 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        rtp = b.audio_debug().unwrap();
    }
    assert!(rtp.rx_packets.unwrap_or(0) >= 25, "bob receives no RTP from the room: {rtp:?}");
    ok(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
}

#[test]
fn a_wrong_password_is_a_clear_error_without_a_retry_storm() {
    let _w = watchdog("wrong password", 60);
    let ns = NetNs::new();
    let bus = Bus::start();
    let k = Kamailio::start(&ns, None, &[("room", "roompw")], Algorithm::Sha256).unwrap();
    let port = ns.port();
    let started = Instant::now();
    let _d = huis_tests::peers::huisd::start_in_blocking(
        &ns,
        &bus,
        &format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\n[account]\nregistrar = \"sip:{}\"\nuser = \"room\"\npassword = \"not-the-password\"\n",
            k.host_port()
        ),
    );
    let s = wait_status(&bus, "registration failed", 10 * SEC, |s| {
        s["registration"].as_str().unwrap_or("").starts_with("failed")
    });
    assert!(s["registration"].as_str().unwrap().contains("authentication failed"), "{s}");
    assert!(s["last_error"].as_str().unwrap().contains("account.password"), "{s}");
    assert_eq!(s["leds"], "error");
    // Ten seconds later Kamailio has seen no more than the first try and its answer to the challenge.
    std::thread::sleep((10 * SEC).saturating_sub(started.elapsed()));
    // One try and one answer to the challenge (a UDP retransmission may add
    // one under load), all at the start: nothing after that.
    let times: Vec<f64> =
        k.requests().iter().filter(|r| r.method == "REGISTER" && r.user == "room").map(|r| r.t).collect();
    assert!(!times.is_empty() && times.len() <= 3, "{} REGISTERs from the room in 10 s", times.len());
    let late = times.iter().filter(|&&t| t > times[0] + 4.0).count();
    assert_eq!(late, 0, "the room kept retrying: {times:?}");
    assert!(!k.has_registered("room"));
}

#[test]
fn hostile_sip_neither_crashes_nor_hangs_huisd() {
    let _w = watchdog("malformed", 90);
    let ns = NetNs::new();
    let bus = Bus::start();
    let port = ns.port();
    let mut d =
        huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &format!("[sip]\nlisten = \"127.0.0.1:{port}\"\n"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let ruri = format!("sip:room@127.0.0.1:{port}");

    // SIPp's malformed scenario: truncated bodies, missing headers, oversized
    // headers, garbage; it ends with an OPTIONS that must get a 200.
    let mut o = SippOpts::uac(&format!("127.0.0.1:{port}"), 1);
    o.scenario = Scenario::Xml(sipp::malformed_scenario());
    o.service = Some("room".into());
    let r = Sipp::run(&ns, o).unwrap();
    assert!(r.success(), "huisd after SIPp's malformed messages: {r}\n{}", d.log_text());

    // Raw hostile bytes over UDP and TCP.
    let rep = malformed::send_cases(&ns, addr, malformed::cases(&ruri), &[Transport::Udp, Transport::Tcp]).unwrap();
    eprintln!("{} hostile messages sent", rep.sent.len());
    for t in [Transport::Udp, Transport::Tcp] {
        let code = options_ping_uri(&ns, t, addr, &ruri, 5 * SEC)
            .unwrap_or_else(|e| panic!("huisd stopped answering OPTIONS over {t:?}: {e}\n{}", d.log_text()));
        assert_eq!(code, 200, "OPTIONS over {t:?}");
    }
    assert!(d.child.try_wait().unwrap().is_none(), "huisd died:\n{}", d.log_text());
    // And it still manages the room.
    assert_eq!(status(&bus)["state"], "idle");
}
