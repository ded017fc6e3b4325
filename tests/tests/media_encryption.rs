//! Media encryption in SIP calls with a real peer: huisd and baresip 1.0 in a network namespace
//! of their own. What is checked is what people care about: with DTLS-SRTP both rooms hear and
//! see each other, huisd says how the media is protected (and does not call the call encrypted
//! while its SIP is clear), nothing on the wire gives the tone or a key away; with
//! `media_encryption = "required"` a peer without encryption gets no call and people are told
//! why; with best-effort the call goes ahead, unencrypted, and the screen shows no lock.

use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::picture::Picture;
use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction, tone_fraction_of, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl, stderr};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
/// huisd's RTP ports: audio takes the first pair, video the second.
const RTP_MIN: u16 = 30000;

/// Video calls are two encoders and two decoders in real time: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn json(bus: &Bus, args: &[&str]) -> Value {
    huis_tests::huisctl_json(bus, args)
}

fn wait_json(bus: &Bus, args: &[&str], what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = json(bus, args);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}; huisctl {args:?}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(dir: &Path, port: u16, policy: &str, video: bool) -> String {
    config_with_sip(dir, port, policy, video, "")
}

/// [`config`], with more `[sip]` lines (TLS settings).
fn config_with_sip(dir: &Path, port: u16, policy: &str, video: bool, sip_extra: &str) -> String {
    let tone = dir.join("room-tone.wav");
    write_room_tone_wav(&tone).unwrap();
    let video =
        if video { "[video]\nwidth = 640\nheight = 360\nframerate = 30\n" } else { "[video]\nenable = false\n" };
    format!(
        "[room]\nname = \"Crypt 1\"\n[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n{sip_extra}\
         rtp_port_min = {RTP_MIN}\nrtp_port_max = {}\n[call]\nauto_answer = true\naudio_codecs = [\"pcmu\"]\n\
         media_encryption = \"{policy}\"\n{video}",
        tone.display(),
        RTP_MIN + 20
    )
}

/// What a person debugging a failure needs: huisd's and baresip's logs and LastError.
fn logs(bus: &Bus, d: &Huisd, b: &Baresip) -> String {
    let st = json(bus, &["status"]);
    format!("LastError: {}\n--- huisd:\n{}\n--- baresip:\n{}", st["last_error"], d.log_text(), b.log_text())
}

fn assert_baresip_hears(b: &Baresip, hz: f32, why: impl Fn() -> String) {
    let r = b.wait_received_tone(hz, 15, 10 * SEC).unwrap_or_else(|e| panic!("baresip: {e}\n{}", why()));
    assert!(r.fraction >= 0.8, "baresip hears {hz} Hz in only {:.0}% ({r:?})\n{}", r.fraction * 100.0, why());
}

fn speaker_ms(d: &Huisd) -> u32 {
    let bytes = std::fs::metadata(d.state_dir.join("speaker.wav")).map(|m| m.len()).unwrap_or(0);
    (bytes.saturating_sub(44) / (48 * 2 * 2)) as u32
}

fn assert_room_hears(d: &Huisd, hz: f32, skip_ms: u32, why: impl Fn() -> String) {
    let speaker = d.state_dir.join("speaker.wav");
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let r = tone_fraction(&speaker, hz, 25.0, 100, skip_ms).unwrap();
        if r.voiced >= 15 && r.fraction >= 0.8 {
            return;
        }
        assert!(Instant::now() < deadline, "the room's loudspeaker does not carry {hz} Hz: {r:?}\n{}", why());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_video_both_ways(bus: &Bus, b: &Baresip, why: impl Fn() -> String) {
    let deadline = Instant::now() + 20 * SEC;
    loop {
        let v = b.video_debug().unwrap_or_default();
        let ours = json(bus, &["video"])["stats"]["frames_decoded"].as_f64().unwrap_or(0.0);
        if v.display_frames >= 30 && ours >= 30.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "video both ways: baresip shows {} frames, huisd decoded {ours}\n{}",
            v.display_frames,
            why()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one call: its `MediaEncryption` once the handshake is done.
fn wait_media_encryption(bus: &Bus, prefix: &str, why: impl Fn() -> String) -> Value {
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let calls = json(bus, &["calls"]);
        if calls[0]["media_encryption"].as_str().is_some_and(|m| m.starts_with(prefix)) {
            return calls[0].clone();
        }
        assert!(Instant::now() < deadline, "MediaEncryption is not {prefix}…: {calls}\n{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The PCMU (S)RTP packets of the room's audio port in a capture, and a check that neither tone
/// (the room's 1000 Hz, baresip's 440 Hz) can be heard from their payloads played as µ-law
/// after the 12-byte header, without the 10-byte authentication tag.
fn assert_no_tone_on_wire(packets: &Udp, why: impl Fn() -> String) {
    let rtp: Vec<_> = packets
        .iter()
        .filter(|p| p.0 == RTP_MIN || p.1 == RTP_MIN)
        .filter(|p| p.2.len() > 12 + 10 && p.2[0] >> 6 == 2 && p.2[1] & 0x7f == 0)
        .collect();
    assert!(rtp.len() > 50, "only {} PCMU (S)RTP packets captured of {}\n{}", rtp.len(), packets.len(), why());
    for (from_room, hz) in [(true, ROOM_TONE_HZ), (false, 440.0)] {
        let samples: Vec<f32> = rtp
            .iter()
            .filter(|p| (p.0 == RTP_MIN) == from_room)
            .flat_map(|p| p.2[12..p.2.len() - 10].iter().map(|&b| huis_tests::peers::tone::ulaw_sample(b)))
            .collect();
        let r = tone_fraction_of(&samples, 8000, hz, 25.0, 100, 0);
        eprintln!("captured {} payload: {r:?}", if from_room { "room→baresip" } else { "baresip→room" });
        assert!(r.windows >= 20, "too little payload captured: {r:?}");
        assert!(r.fraction < 0.2, "the {hz} Hz tone can be heard from the wire: {r:?}");
    }
}

/// G.711 µ-law to linear.
/// The room calls baresip and baresip calls the room, both with DTLS-SRTP (UDP signalling):
/// tones and pictures both ways, `MediaEncryption` names DTLS-SRTP and its suite, `Encrypted`
/// stays false because the SIP is clear. A capture of the first call holds no RTP that plays
/// the tone and no SDES key.
#[test]
fn dtls_srtp_with_baresip_both_ways_audio_and_video_and_nothing_in_clear() {
    let _serial = one_at_a_time();
    let _w = watchdog("DTLS-SRTP calls", 240);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let port = ns.port();
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("b")
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .video(640, 360)
            .mediaenc(MediaEnc::DtlsSrtp)
            .rtcp_mux(true),
    )
    .unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), port, "best-effort", true));
    let why = || logs(&bus, &d, &b);

    // The room calls baresip, while the namespace's traffic is captured.
    let cap = capture(&ns, 9);
    let before = speaker_ms(&d);
    let dialled = Instant::now();
    json(&bus, &["dial", &b.contact_uri()]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "DTLS-SRTP AES_CM_128_HMAC_SHA1_", why);
    eprintln!("outgoing call: {call}; DTLS up {:?} after the dial", dialled.elapsed());
    assert_eq!(call["encrypted"], false, "SIP over UDP: the call is not encrypted end to end\n{}", why());
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_room_hears(&d, 440.0, before + 500, why);
    assert_video_both_ways(&bus, &b, why);
    let packets = cap.join().unwrap();

    // On the wire: the media went encrypted, with a DTLS handshake, and gives nothing away.
    let ours = |p: &(u16, u16, Vec<u8>)| p.0 == RTP_MIN || p.1 == RTP_MIN;
    let audio: Vec<_> = packets.iter().filter(|p| ours(p)).collect();
    assert!(audio.len() > 100, "captured only {} audio packets of {}\n{}", audio.len(), packets.len(), why());
    assert!(audio.iter().any(|p| p.2.first() == Some(&22)), "no DTLS handshake record on the audio port");
    assert_no_tone_on_wire(&packets, why);
    let clear = |needle: &[u8]| packets.iter().any(|p| p.2.windows(needle.len()).any(|w| w == needle));
    assert!(clear(b"INVITE sip:"), "the SIP (UDP) is in the capture, as a control");
    assert!(!clear(b"a=crypto") && !clear(b"inline:"), "an SDES key crossed clear SIP");
    json(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");

    // baresip calls the room, which answers by itself.
    let room_uri = json(&bus, &["status"])["sip_uri"].as_str().unwrap().to_owned();
    let before = speaker_ms(&d);
    b.dial(&room_uri).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "outgoing", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "DTLS-SRTP AES_CM_128_HMAC_SHA1_", why);
    eprintln!("incoming call: {call}");
    assert_eq!(call["encrypted"], false);
    assert_room_hears(&d, 440.0, before + 500, why);
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_video_both_ways(&bus, &b, why);
    assert!(
        b.log_text().contains("verified") || b.log_text().contains("fingerprint"),
        "baresip checked our fingerprint\n{}",
        why()
    );
    b.hangup().unwrap();
    let s = wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");
    assert_eq!(s["last_error"], "", "{}", why());
}

/// `required`: a peer without media encryption gets no call either way, and people read why.
/// `best-effort`: the same peer gets its call, unencrypted, and the screen shows no lock.
/// The peer also refuses rtcp-mux, so RTCP goes on its own port.
#[test]
fn required_refuses_a_plain_peer_and_best_effort_calls_it_without_the_lock() {
    let _w = watchdog("encryption policy", 180);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let b =
        Baresip::start(&ns, BaresipOpts::new("b").codecs(&["PCMU/8000/1"]).source(AudioSource::Sine(440.0))).unwrap();
    let port = ns.port();
    let mut d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), port, "required", false));
    let why = |d: &Huisd| logs(&bus, d, &b);
    const REASON: &str = "the far end does not support encryption";

    // The room calls: refused, with the reason.
    json(&bus, &["dial", &b.contact_uri()]);
    let s = wait_json(&bus, &["status"], "the refusal", 10 * SEC, |s| s["last_error"] != "");
    assert!(s["last_error"].as_str().unwrap_or("").ends_with(REASON), "{}", why(&d));
    wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");
    assert!(!b.events().iter().any(|e| e.kind == "CALL_ESTABLISHED"), "baresip never had a call up\n{}", why(&d));

    // baresip calls the room: 488, never rings.
    let room_uri = json(&bus, &["status"])["sip_uri"].as_str().unwrap().to_owned();
    let t = Instant::now();
    b.dial(&room_uri).unwrap();
    let closed = b
        .wait_event_where(|e| e.kind == "CALL_CLOSED" && e.at > t, 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why(&d)));
    eprintln!("baresip's call closed: {}", closed.param);
    assert!(closed.param.contains("488"), "baresip is told 488: {}\n{}", closed.param, why(&d));
    let s = wait_json(&bus, &["status"], "the refusal", 5 * SEC, |s| {
        s["last_error"].as_str().is_some_and(|e| e.starts_with("call from"))
    });
    assert!(s["last_error"].as_str().unwrap_or("").ends_with(REASON), "{}", why(&d));
    assert_ne!(s["state"], "in-call");
    d.terminate(10 * SEC);

    // Best-effort: the call goes ahead, plain, and says so.
    let mut d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), port, "best-effort", false));
    json(&bus, &["dial", &b.contact_uri()]);
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "incoming", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why(&d)));
    let calls = wait_json(&bus, &["calls"], "the call", 5 * SEC, |c| c[0]["state"] == "active");
    assert_eq!(calls[0]["media_encryption"], "none", "{calls}\n{}", why(&d));
    assert_eq!(calls[0]["encrypted"], false);
    assert_baresip_hears(&b, ROOM_TONE_HZ, || why(&d));
    // The screen: "Not encrypted", and no lock (the lock is drawn in its green).
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-encryption-best-effort-screen.png");
    let out = huisctl(&bus, &["screenshot", &shot.display().to_string()]);
    assert!(out.status.success(), "huisctl screenshot: {}", stderr(&out));
    let pic = Picture::load_png(&shot).unwrap();
    let bar = pic.region(0, 20, 1000, 60);
    assert!(bar.luma_spread > 5.0, "the status bar has text: {bar:?}");
    let lock_green = pic.fraction_near(0, 20, 1000, 60, [0x34, 0xc7, 0x59], 40);
    assert!(lock_green < 0.001, "a lock shows on an unencrypted call ({lock_green})");
    json(&bus, &["hangup"]);
    b.wait_event_where(|e| e.kind == "CALL_CLOSED", 5 * SEC).unwrap();
    d.terminate(10 * SEC);
}

/// A DTLS-SRTP peer that refuses rtcp-mux: RTCP gets its own port and its own handshake, both
/// certificates are checked, tones cross both ways, and hold/resume keeps the DTLS association
/// (our re-offers keep our role).
#[test]
fn dtls_srtp_without_rtcp_mux_and_across_hold() {
    let _w = watchdog("DTLS-SRTP without rtcp-mux", 120);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let port = ns.port();
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("b")
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .mediaenc(MediaEnc::DtlsSrtp)
            .rtcp_mux(false),
    )
    .unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), port, "required", false));
    let why = || logs(&bus, &d, &b);
    let before = speaker_ms(&d);
    json(&bus, &["dial", &b.contact_uri()]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "DTLS-SRTP AES_CM_128_HMAC_SHA1_", why);
    assert_eq!(call["encrypted"], false);
    assert!(d.log_text().contains("rtcp_mux=false"), "the call runs without rtcp-mux\n{}", why());
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_room_hears(&d, 440.0, before + 500, why);
    let rtcp = |c: &Value| c["stats"]["rtcp_received"].as_f64().unwrap_or(0.0);
    wait_json(&bus, &["calls"], "SRTCP from baresip on the RTCP port", 15 * SEC, |c| rtcp(&c[0]) >= 1.0);

    // Hold and resume: media comes back on the same DTLS association.
    json(&bus, &["hold"]);
    wait_json(&bus, &["calls"], "held", 5 * SEC, |c| c[0]["state"] == "held");
    // The room takes one new offer at a time: resume once the hold's re-INVITE is answered.
    let deadline = Instant::now() + 5 * SEC;
    loop {
        let out = huisctl(&bus, &["resume"]);
        if out.status.success() {
            break;
        }
        assert!(
            stderr(&out).contains("already in progress") && Instant::now() < deadline,
            "huisctl resume: {}\n{}",
            stderr(&out),
            why()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_json(&bus, &["calls"], "active again", 5 * SEC, |c| c[0]["state"] == "active");
    let before = speaker_ms(&d);
    assert_room_hears(&d, 440.0, before + 500, why);
    let call = json(&bus, &["calls"]);
    assert!(
        call[0]["media_encryption"].as_str().unwrap_or("").starts_with("DTLS-SRTP AES_CM_128_HMAC_SHA1_"),
        "{call}\n{}",
        why()
    );
    json(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    let s = wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");
    assert_eq!(s["last_error"], "", "{}", why());
}

/// A room and a baresip that both speak SIP over TLS with certificates of one test CA, in a
/// namespace: baresip with `mediaenc` and a 440 Hz tone and video, the room with a TLS listener,
/// `media_encryption = "required"` and video.
struct TlsPair {
    ns: NetNs,
    bus: Bus,
    _dir: tempfile::TempDir,
    b: Baresip,
    d: Huisd,
    /// baresip's SIP port; its TLS listens on the next one.
    b_port: u16,
    /// The room's TLS listener.
    tls_port: u16,
}

impl TlsPair {
    fn start(mediaenc: MediaEnc) -> TlsPair {
        let ns = NetNs::new();
        let bus = Bus::start();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "rooms").unwrap();
        let room_cert = ca.issue("room", &["IP:127.0.0.1"]).unwrap();
        let peer_cert = ca.issue("peer", &["IP:127.0.0.1"]).unwrap();
        // baresip's TLS listens on its SIP port + 1: keep that one free.
        let b_port = ns.port();
        let _b_tls = ns.port();
        let mut opts = BaresipOpts::new("b")
            .port(b_port)
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .video(640, 360)
            .mediaenc(mediaenc);
        opts.uri_params = ";transport=tls".into();
        opts.extra_config.push(format!("sip_certificate\t{}", peer_cert.both.display()));
        opts.extra_config.push(format!("sip_cafile\t{}", ca.cert.display()));
        let b = Baresip::start(&ns, opts).unwrap();
        let port = ns.port();
        let tls_port = ns.port();
        let sip_tls = format!(
            "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\ntls_ca_file = \"{}\"\n",
            room_cert.cert.display(),
            room_cert.key.display(),
            ca.cert.display()
        );
        let text = config_with_sip(dir.path(), port, "required", true, &sip_tls);
        let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &text);
        TlsPair { ns, bus, _dir: dir, b, d, b_port, tls_port }
    }
}

/// SIP over TLS with SDES-SRTP, against baresip with `mediaenc=srtp-mand` over TLS: the room
/// calls baresip (tones and pictures both ways) and baresip calls the room on the room's TLS
/// listener (the same again), `MediaEncryption` names SDES and its suite, and `Encrypted` is
/// true because the signalling and every stream are. The capture holds no SIP in clear (no `a=crypto`, no
/// `INVITE`), and no RTP payload that plays either tone.
#[test]
fn sdes_srtp_over_tls_with_baresip_both_ways_encrypted_and_nothing_in_clear() {
    let _serial = one_at_a_time();
    let _w = watchdog("SDES-SRTP over TLS calls", 240);
    let t = TlsPair::start(MediaEnc::SrtpMand);
    let (ns, bus, b, d, b_port, tls_port) = (&t.ns, &t.bus, &t.b, &t.d, t.b_port, t.tls_port);
    let why = || logs(bus, d, b);

    // The room calls baresip over TLS, while the namespace's traffic is captured.
    let cap = capture(&ns, 9);
    let before = speaker_ms(&d);
    json(&bus, &["dial", &format!("sip:b@127.0.0.1:{};transport=tls", b_port + 1)]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "SDES AES_CM_128_HMAC_SHA1_", why);
    eprintln!("outgoing call: {call}");
    assert_eq!(call["encrypted"], true, "TLS signalling and SRTP audio and video\n{}", why());
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_room_hears(&d, 440.0, before + 500, why);
    assert_video_both_ways(&bus, &b, why);
    let packets = cap.join().unwrap();
    let clear = |needle: &[u8]| packets.iter().any(|p| p.2.windows(needle.len()).any(|w| w == needle));
    assert!(!clear(b"INVITE sip:") && !clear(b"a=crypto") && !clear(b"inline:"), "SIP or a key crossed in clear");
    assert_no_tone_on_wire(&packets, why);
    json(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");

    // baresip calls the room on its TLS listener; the room answers by itself.
    let before = speaker_ms(&d);
    b.dial(&format!("sip:room@127.0.0.1:{tls_port};transport=tls")).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "outgoing", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "SDES AES_CM_128_HMAC_SHA1_", why);
    eprintln!("incoming call: {call}");
    assert_eq!(call["encrypted"], true, "{}", why());
    assert_room_hears(&d, 440.0, before + 500, why);
    // The room's second call, after its echo canceller heard the first: baresip hears the room.
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_video_both_ways(&bus, &b, why);
    b.hangup().unwrap();
    let s = wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");
    assert_eq!(s["last_error"], "", "{}", why());
}

/// SIP over TLS with DTLS-SRTP, against baresip with `mediaenc=dtls_srtp` over TLS: the room's
/// SDES offer is refused, so it calls again offering DTLS-SRTP (one call for the room); baresip
/// calls the room offering DTLS-SRTP and the room answers it. Tones and pictures both ways, and
/// `Encrypted` true each time: the signalling and every stream are encrypted.
#[test]
fn dtls_srtp_over_tls_with_baresip_both_ways_encrypted() {
    let _serial = one_at_a_time();
    let _w = watchdog("DTLS-SRTP over TLS calls", 240);
    let t = TlsPair::start(MediaEnc::DtlsSrtp);
    let (bus, b, d, b_port, tls_port) = (&t.bus, &t.b, &t.d, t.b_port, t.tls_port);
    let why = || logs(bus, d, b);

    let before = speaker_ms(&d);
    json(&bus, &["dial", &format!("sip:b@127.0.0.1:{};transport=tls", b_port + 1)]);
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "incoming", 15 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "DTLS-SRTP AES_CM_128_HMAC_SHA1_", why);
    eprintln!("outgoing call: {call}");
    assert_eq!(call["encrypted"], true, "TLS signalling and DTLS-SRTP audio and video\n{}", why());
    assert!(d.log_text().contains("calling again with DTLS-SRTP"), "the SDES offer was refused first\n{}", why());
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_room_hears(&d, 440.0, before + 500, why);
    assert_video_both_ways(&bus, &b, why);
    json(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
    wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");

    let before = speaker_ms(&d);
    b.dial(&format!("sip:room@127.0.0.1:{tls_port};transport=tls")).unwrap();
    b.wait_event_where(|e| e.kind == "CALL_ESTABLISHED" && e.direction == "outgoing", 10 * SEC)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let call = wait_media_encryption(&bus, "DTLS-SRTP AES_CM_128_HMAC_SHA1_", why);
    eprintln!("incoming call: {call}");
    assert_eq!(call["encrypted"], true, "{}", why());
    assert_room_hears(&d, 440.0, before + 500, why);
    assert_baresip_hears(&b, ROOM_TONE_HZ, why);
    assert_video_both_ways(&bus, &b, why);
    b.hangup().unwrap();
    let s = wait_json(&bus, &["status"], "idle", 5 * SEC, |s| s["state"] == "idle");
    assert_eq!(s["last_error"], "", "{}", why());
}
