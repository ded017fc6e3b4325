//! The room publishes over WHIP (RFC 9725) and receives over WHEP, with our own aiortc server
//! (`tests/src/peers/whip_server.py`, Debian's `python3-aiortc`) in the test's network
//! namespace: the server decodes the room's video and hears its 1 kHz; the room decodes the
//! server's video and plays its 440 Hz; hanging up DELETEs both sessions. A wrong token and a
//! malformed SDP answer end with a reason, the room idle.
//!
//! Needs root (namespaces): skipped, saying so, otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::netns::is_root;
use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
const ROOM_NAME: &str = "Salle Curie";
const TOKEN: &str = "whip-test-token-5f2c9a";

/// Video calls are encoders and decoders in real time: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `%XX` for everything but letters and digits (the WHEP URL in the fragment).
fn encode(url: &str) -> String {
    url.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The room's configuration: a 1 kHz microphone, and named destinations on `server`.
fn config(dir: &Path, port: u16, server: &WhipServer) -> String {
    let tone = dir.join("room-tone.wav");
    write_room_tone_wav(&tone).unwrap();
    let both = format!("whip+{}#whep={}", server.whip_url("room"), encode(&server.whep_url("room")));
    format!(
        "[room]\nname = \"{ROOM_NAME}\"\n[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 30\n\
         [[destination]]\nname = \"stream\"\nuri = \"{both}\"\ntoken = \"{TOKEN}\"\n\
         [[destination]]\nname = \"wrong-token\"\nuri = \"whip+{}\"\ntoken = \"not-the-token\"\n\
         [[destination]]\nname = \"bad-answer\"\nuri = \"whip+{}\"\ntoken = \"{TOKEN}\"\n",
        tone.display(),
        server.whip_url("room"),
        server.whip_url("malformed"),
    )
}

fn why(bus: &Bus, d: &Huisd, server: &WhipServer) -> String {
    let st = huisctl_json(bus, &["status"]);
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "LastError: {}\n--- huisd:\n{}\n--- WHIP server (last 80 lines):\n{}\n--- its figures: {:?}\n",
        st["last_error"],
        d.log_text(),
        lines[lines.len().saturating_sub(80)..].join("\n"),
        server.stats()
    )
}

fn speaker_ms(d: &Huisd) -> u32 {
    let bytes = std::fs::metadata(d.state_dir.join("speaker.wav")).map(|m| m.len()).unwrap_or(0);
    (bytes.saturating_sub(44) / (48 * 2 * 2)) as u32
}

/// The current call as `huisctl calls --json` shows it, once `pred` holds.
fn wait_call(bus: &Bus, pred: impl Fn(&Value) -> bool, timeout: Duration, explain: impl Fn() -> String) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let calls = huisctl_json(bus, &["calls"]);
        if let Some(c) = calls.as_array().and_then(|a| a.iter().find(|c| pred(c))) {
            return c.clone();
        }
        assert!(Instant::now() < deadline, "no call as expected within {timeout:?}: {calls}\n{}", explain());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_idle(bus: &Bus, within: Duration, explain: impl Fn() -> String) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = huisctl_json(bus, &["status"]);
        if st["state"] == "idle" {
            return st;
        }
        assert!(Instant::now() < deadline, "the room is not idle within {within:?}: {st}\n{}", explain());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn huis_publishes_over_whip_receives_over_whep_and_deletes_both() {
    if !is_root() {
        eprintln!("SKIPPED huis_publishes_over_whip…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("huis over WHIP and WHEP", 90);
    let ns = NetNs::new();
    let server = WhipServer::start(&ns, TOKEN).unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port(), &server));
    let explain = || why(&bus, &d, &server);

    let before = speaker_ms(&d);
    let out = huisctl(&bus, &["dial", "stream"]);
    assert!(out.status.success(), "dial stream: {}\n{}", stderr(&out), explain());
    let call = wait_call(&bus, |c| c["state"] == "active", 15 * SEC, explain);
    assert_eq!(call["protocol"], "webrtc", "{call}\n{}", explain());
    assert_eq!(call["media_encryption"], "DTLS-SRTP", "{call}\n{}", explain());
    // The token is shown nowhere: not in the call, not in the configuration.
    let shown = format!("{call}{}", String::from_utf8_lossy(&huisctl(&bus, &["config", "get"]).stdout));
    assert!(!shown.contains(TOKEN), "the token is shown: {shown}\n{}", explain());
    assert!(shown.contains("(hidden)"), "the configuration shows no hidden token: {shown}\n{}", explain());

    // The server decodes our video and hears the room's 1 kHz.
    let s = server
        .wait_until(
            |s| {
                s.last("whip").is_some_and(|w| {
                    w.state == "connected"
                        && w.frames_decoded >= 30
                        && (w.audio_peak_hz - f64::from(ROOM_TONE_HZ)).abs() < 30.0
                })
            },
            20 * SEC,
        )
        .unwrap_or_else(|e| panic!("the WHIP server does not see and hear the room: {e}\n{}", explain()));
    eprintln!("the WHIP server receives the room: {:?}", s.last("whip"));

    // huisd decodes the server's video and plays its 440 Hz.
    let deadline = Instant::now() + 20 * SEC;
    loop {
        let v = huisctl_json(&bus, &["video"]);
        if v["stats"]["frames_decoded"].as_f64().unwrap_or(0.0) >= 30.0 {
            break;
        }
        assert!(Instant::now() < deadline, "huisd decodes no WHEP video: {v}\n{}", explain());
        std::thread::sleep(Duration::from_millis(100));
    }
    let speaker = d.state_dir.join("speaker.wav");
    let deadline = Instant::now() + 15 * SEC;
    loop {
        let r = tone_fraction(&speaker, 440.0, 25.0, 100, before + 1000).unwrap();
        if r.voiced >= 15 && r.fraction >= 0.8 {
            eprintln!("the loudspeaker plays the WHEP tone: {r:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the loudspeaker does not carry the WHEP 440 Hz: {r:?}\n{}", explain());
        std::thread::sleep(Duration::from_millis(300));
    }

    // Hanging up DELETEs both sessions; the room is idle.
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}\n{}", stderr(&out), explain());
    let s = server
        .wait_until(|s| s.sessions.len() == 2 && s.sessions.iter().all(|x| x.deleted), 5 * SEC)
        .unwrap_or_else(|e| panic!("the server did not see both DELETEs: {e}\n{}", explain()));
    assert_eq!(s.refused, 0, "{s:?}\n{}", explain());
    eprintln!("WHEP sent {:?}", s.last("whep"));
    wait_idle(&bus, 5 * SEC, explain);
}

#[test]
fn a_wrong_token_and_a_malformed_answer_end_with_a_reason() {
    if !is_root() {
        eprintln!("SKIPPED a_wrong_token_and_a_malformed_answer…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("bad WHIP sessions", 90);
    let ns = NetNs::new();
    let server = WhipServer::start(&ns, TOKEN).unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port(), &server));
    let explain = || why(&bus, &d, &server);

    for (dest, expect) in [
        ("wrong-token", "the WHIP server refused the token (401 Unauthorized)"),
        ("bad-answer", "the WHIP server's SDP answer is malformed"),
    ] {
        let out = huisctl(&bus, &["dial", dest]);
        assert!(out.status.success(), "dial {dest}: {}\n{}", stderr(&out), explain());
        let deadline = Instant::now() + 15 * SEC;
        loop {
            let st = huisctl_json(&bus, &["status"]);
            let err = st["last_error"].as_str().unwrap_or("");
            if st["state"] == "idle" && err.contains(expect) {
                eprintln!("{dest}: {err}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{dest}: expected the room idle with a LastError containing {expect:?}, got {st}\n{}",
                explain()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The refused POST left nothing; the malformed answer's session was created, and deleted.
    let s = server
        .wait_until(|s| s.sessions.iter().all(|x| x.deleted), 5 * SEC)
        .unwrap_or_else(|e| panic!("sessions left on the server: {e}\n{}", explain()));
    assert_eq!(s.refused, 1, "{s:?}\n{}", explain());
    assert_eq!(s.sessions.len(), 1, "only the malformed answer's session: {s:?}\n{}", explain());
    assert_eq!(s.sessions[0].name, "malformed", "{s:?}\n{}", explain());
    // huisd is still there.
    let st = huisctl(&bus, &["status"]);
    assert!(st.status.success(), "huisctl status after the bad sessions: {}\n{}", stderr(&st), explain());
    assert!(
        d.log_text().lines().all(|l| !l.contains(TOKEN) && !l.contains("not-the-token")),
        "a token is logged\n{}",
        explain()
    );
}

/// `huisctl video`'s figures of the conference.
fn video_stat(bus: &Bus, key: &str) -> f64 {
    huisctl_json(bus, &["video"])["stats"][key].as_f64().unwrap_or(0.0)
}

fn wait_video_stat(bus: &Bus, key: &str, at_least: f64, within: Duration, explain: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while video_stat(bus, key) < at_least {
        assert!(
            Instant::now() < deadline,
            "{key} not ≥ {at_least} within {within:?}: {}\n{}",
            huisctl_json(bus, &["video"]),
            explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_fifteen_second_cut_makes_the_room_post_again_and_delete_its_old_sessions() {
    if !is_root() {
        eprintln!("SKIPPED a_fifteen_second_cut…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("a long network cut over WHIP and WHEP", 150);
    let ns = NetNs::new();
    let server = WhipServer::start(&ns, TOKEN).unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port(), &server));
    let explain = || why(&bus, &d, &server);
    let out = huisctl(&bus, &["dial", "stream"]);
    assert!(out.status.success(), "dial stream: {}\n{}", stderr(&out), explain());
    wait_video_stat(&bus, "frames_decoded", 30.0, 20 * SEC, explain);

    // 15 s without a packet: the WHEP stream is silent for more than 10 s, so the room leaves
    // (its DELETEs cannot get through) and POSTs again until the server answers.
    let nft = Nft::new(&ns).unwrap();
    nft.cut().unwrap();
    std::thread::sleep(15 * SEC);
    let before = video_stat(&bus, "frames_decoded");
    nft.heal().unwrap();

    wait_video_stat(&bus, "rejoins", 1.0, 30 * SEC, explain);
    wait_video_stat(&bus, "frames_decoded", before + 30.0, 30 * SEC, explain);
    // The server has new WHIP and WHEP sessions carrying media, and the two it had before the
    // cut were deleted once the room was back.
    let s = server
        .wait_until(
            |s| {
                s.sessions.len() >= 4
                    && s.sessions[..2].iter().all(|x| x.deleted)
                    && s.last("whip").is_some_and(|w| !w.deleted && w.state == "connected" && w.frames_decoded >= 30)
            },
            20 * SEC,
        )
        .unwrap_or_else(|e| panic!("the room did not come back cleanly: {e}\n{}", explain()));
    eprintln!("sessions after the cut: {:?}", s.sessions.iter().map(|x| (&x.kind, x.deleted)).collect::<Vec<_>>());
    let calls = huisctl_json(&bus, &["calls"]);
    assert_eq!(calls[0]["state"], "active", "the call goes on: {calls}\n{}", explain());
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}\n{}", stderr(&out), explain());
    server
        .wait_until(|s| s.sessions.iter().all(|x| x.deleted), 5 * SEC)
        .unwrap_or_else(|e| panic!("sessions left on the server after hanging up: {e}\n{}", explain()));
}
