//! The room joins a Janus VideoRoom as a participant, with real programs in one network
//! namespace: Janus (Debian's `janus`) and headless Chromium publishing a fake camera and a
//! 440 Hz tone. huisd decodes Chromium's video and plays its tone on the loudspeaker; Chromium
//! decodes the room's video and hears the room's 1 kHz; hanging up leaves the room cleanly
//! (Janus lists the room no more). Bad destinations end with a reason and the room idle.
//!
//! Needs root (namespaces): skipped, saying so, otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::bench;
use huis_tests::peers::netns::is_root;
use huis_tests::peers::picture::Picture;
use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
const ROOM: u64 = 1234;
const ROOM_NAME: &str = "Salle Curie";

/// Video calls are encoders and decoders in real time: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(dir: &Path, port: u16) -> String {
    config_with(dir, port, "")
}

/// [`config`] with more sections (`[webrtc]`).
fn config_with(dir: &Path, port: u16, extra: &str) -> String {
    let tone = dir.join("room-tone.wav");
    write_room_tone_wav(&tone).unwrap();
    format!(
        "[room]\nname = \"{ROOM_NAME}\"\n[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 30\n{extra}",
        tone.display()
    )
}

fn why(bus: &Bus, d: &Huisd, janus: &Janus, pages: &[&Chromium]) -> String {
    let st = huisctl_json(bus, &["status"]);
    let mut s = format!("LastError: {}\n--- huisd:\n{}\n", st["last_error"], d.log_text());
    for p in pages {
        s.push_str(&p.explain());
    }
    let log = janus.log();
    let lines: Vec<&str> = log.lines().collect();
    s.push_str(&format!("--- janus (last 80 lines):\n{}\n", lines[lines.len().saturating_sub(80)..].join("\n")));
    s
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

/// Waits until the room's loudspeaker carries `hz` (at least `voiced` voiced windows after
/// `skip_ms`, 80 % of them at `hz`).
fn assert_speaker_tone(d: &Huisd, hz: f32, skip_ms: u32, voiced: usize, explain: impl Fn() -> String) {
    let speaker = d.state_dir.join("speaker.wav");
    let deadline = Instant::now() + 15 * SEC;
    loop {
        let r = tone_fraction(&speaker, hz, 25.0, 100, skip_ms).unwrap();
        if r.voiced >= voiced && r.fraction >= 0.8 {
            eprintln!("the loudspeaker plays {hz} Hz: {r:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the loudspeaker does not carry {hz} Hz: {r:?}\n{}", explain());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Hangs up and waits until the room is idle.
fn hang_up_to_idle(bus: &Bus, explain: impl Fn() -> String) {
    let out = huisctl(bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}\n{}", stderr(&out), explain());
    let deadline = Instant::now() + 5 * SEC;
    while huisctl_json(bus, &["status"])["state"] != "idle" {
        assert!(Instant::now() < deadline, "the room is not idle after hang-up\n{}", explain());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn huis_joins_a_janus_room_sees_and_hears_chromium_and_leaves_cleanly() {
    if !is_root() {
        eprintln!("SKIPPED huis_joins_a_janus_room…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("huis in a Janus room", 150);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "huis test room").unwrap();
    let chromium = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("Chromium").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let explain = || why(&bus, &d, &janus, &[&chromium]);

    let before = speaker_ms(&d);
    let pressed = Instant::now();
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial {dial}: {}\n{}", stderr(&out), explain());
    let call = wait_call(&bus, |c| c["state"] == "active", 15 * SEC, explain);
    assert_eq!(call["protocol"], "webrtc", "{call}");
    assert_eq!(call["media_encryption"], "DTLS-SRTP", "{call}");
    assert_eq!(call["encrypted"], false, "signalling over plain HTTP: not encrypted end to end\n{call}");

    // huisd decodes Chromium's video and plays its tone.
    let deadline = Instant::now() + 20 * SEC;
    let first_frame = loop {
        let v = huisctl_json(&bus, &["video"]);
        if v["stats"]["frames_decoded"].as_f64().unwrap_or(0.0) >= 30.0 {
            break pressed.elapsed();
        }
        assert!(Instant::now() < deadline, "huisd decodes no video from Chromium: {v}\n{}", explain());
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("30 frames from Chromium decoded {first_frame:?} after the dial");
    assert_speaker_tone(&d, 440.0, before + 1000, 15, explain);

    // Chromium decodes the room's video and hears the room's 1 kHz.
    let s = chromium
        .wait_until(
            |s| {
                s.feed(ROOM_NAME).is_some_and(|f| {
                    f.frames_decoded > 30
                        && f.audio_packets_received > 50
                        && (f.audio_peak_hz - f64::from(ROOM_TONE_HZ)).abs() < 30.0
                })
            },
            20 * SEC,
        )
        .unwrap_or_else(|e| panic!("Chromium does not see and hear the room: {e}\n{}", explain()));
    eprintln!("Chromium receives the room: {:?}", s.feed(ROOM_NAME));
    let listed = janus.participants(ROOM).unwrap();
    assert!(listed.iter().any(|p| p.display == ROOM_NAME && p.publisher), "{listed:?}\n{}", explain());

    // Hanging up leaves the room: Janus forgets us, the room is idle.
    hang_up_to_idle(&bus, explain);
    let deadline = Instant::now() + 5 * SEC;
    while janus.participants(ROOM).unwrap().iter().any(|p| p.display == ROOM_NAME) {
        assert!(Instant::now() < deadline, "Janus still lists the room 5 s after hang-up\n{}", explain());
        std::thread::sleep(Duration::from_millis(200));
    }
    chromium
        .wait_until(|s| s.feed(ROOM_NAME).is_none_or(|f| f.gone), 5 * SEC)
        .unwrap_or_else(|e| panic!("Chromium still has the room's feed: {e}\n{}", explain()));
}

#[test]
fn bad_conferences_end_with_a_reason_and_the_room_idle() {
    if !is_root() {
        eprintln!("SKIPPED bad_conferences_end_with_a_reason…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("bad conferences", 90);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, Some("4711"), "with a PIN").unwrap();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let closed = ns.port();
    let cases = [
        (format!("janus+http://127.0.0.1:{closed}/janus?room={ROOM}"), "cannot be reached"),
        (format!("janus+{}?room=999", janus.http_url()), "No such room"),
        (format!("janus+{}?room={ROOM}&pin=0000", janus.http_url()), "wrong pin"),
    ];
    for (dest, expect) in cases {
        let out = huisctl(&bus, &["dial", &dest]);
        assert!(out.status.success(), "dial {dest}: {}", stderr(&out));
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
                why(&bus, &d, &janus, &[])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn screenshot(bus: &Bus, dir: &Path, name: &str) -> Picture {
    let path = dir.join(name);
    let out = huisctl(bus, &["screenshot", &path.display().to_string()]);
    assert!(out.status.success(), "huisctl screenshot: {}", stderr(&out));
    Picture::load_png(&path).unwrap()
}

/// Is the region (fractions of the picture) showing something rather than the black layout?
fn shows(p: &Picture, x: f64, y: f64, w: f64, h: f64) -> bool {
    let (pw, ph) = (f64::from(p.width), f64::from(p.height));
    let r = p.region((x * pw) as u32, (y * ph) as u32, (w * pw) as u32, (h * ph) as u32);
    !r.near([0, 0, 0], 12.0)
}

/// Waits until `huisctl video` counts `n` far ends, all connected.
fn wait_far_ends(bus: &Bus, n: f64, explain: impl Fn() -> String) {
    let deadline = Instant::now() + 20 * SEC;
    loop {
        let v = huisctl_json(bus, &["video"]);
        if v["stats"]["far_ends"] == n && v["stats"]["far_ends_connected"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "not {n} far ends within 20 s: {v}\n{}", explain());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_parties_share_the_screen_and_one_leaving_relays_it() {
    if !is_root() {
        eprintln!("SKIPPED three_parties_share_the_screen…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("three parties in a Janus room", 150);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "three parties").unwrap();
    let a = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("A").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial {dial}: {}", stderr(&out));
    wait_far_ends(&bus, 1.0, || why(&bus, &d, &janus, &[&a]));

    // B comes after the room joined: the room subscribes to it as it arrives.
    let b = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("B").tone(880.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let explain = || why(&bus, &d, &janus, &[&a, &b]);
    wait_far_ends(&bus, 2.0, explain);
    // Two far ends side by side, letterboxed: both halves show a picture, the band above
    // them is the black layout. The screenshots stay in target/tmp for a person to look at.
    // The layout changes with B's first decoded picture, which a loaded machine may take
    // seconds to bring.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let deadline = Instant::now() + 20 * SEC;
    loop {
        let p = screenshot(&bus, shots, "janus-two-far-ends.png");
        let (left, right, above) =
            (shows(&p, 0.2, 0.45, 0.1, 0.1), shows(&p, 0.7, 0.45, 0.1, 0.1), shows(&p, 0.4, 0.13, 0.2, 0.06));
        if left && right && !above {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the screen does not show two far ends side by side (left {left}, right {right}, band above {above}); \
             see {}\nhuisctl video: {}\n{}",
            shots.join("janus-two-far-ends.png").display(),
            huisctl_json(&bus, &["video"]),
            explain()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // B leaves: A alone fills the screen again.
    b.leave().unwrap_or_else(|e| panic!("B does not leave: {e}"));
    wait_far_ends(&bus, 1.0, explain);
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let p = screenshot(&bus, shots, "janus-one-far-end.png");
        if shows(&p, 0.4, 0.13, 0.2, 0.06) && shows(&p, 0.45, 0.45, 0.1, 0.1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A does not fill the screen after B left; see {}\nhuisctl video: {}\n{}",
            shots.join("janus-one-far-end.png").display(),
            huisctl_json(&bus, &["video"]),
            explain()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}", stderr(&out));
}

/// `huisctl video` figures of the conference.
fn video_stats(bus: &Bus) -> Value {
    huisctl_json(bus, &["video"])["stats"].clone()
}

/// Waits until `key` of the conference's video figures reaches `at_least`.
fn wait_video_stat(bus: &Bus, key: &str, at_least: f64, timeout: Duration, explain: impl Fn() -> String) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = video_stats(bus);
        let n = v[key].as_f64().unwrap_or(0.0);
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < deadline, "{key} not ≥ {at_least} within {timeout:?}: {v}\n{}", explain());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_five_second_network_cut_interrupts_the_conference_and_media_comes_back() {
    if !is_root() {
        eprintln!("SKIPPED a_five_second_network_cut…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("a network cut in a Janus room", 150);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "network cut").unwrap();
    let chromium = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("Chromium").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let explain = || why(&bus, &d, &janus, &[&chromium]);
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial {dial}: {}", stderr(&out));
    wait_video_stat(&bus, "frames_decoded", 30.0, 20 * SEC, explain);

    // Everything in the namespace is dropped for 5 s.
    let nft = netfault::Nft::new(&ns).unwrap();
    nft.cut().unwrap();
    std::thread::sleep(5 * SEC);
    let during = video_stats(&bus);
    nft.heal().unwrap();
    let healed = Instant::now();
    let healed_ms = speaker_ms(&d);
    eprintln!("figures at the end of the cut: {during}");
    assert_eq!(during["media_interrupted"], 1.0, "Call1 does not show the interruption: {during}\n{}", explain());

    // Media comes back by itself: frames decoded again, Chromium's tone on the loudspeaker,
    // the room's picture at Chromium; one interruption counted, the call still up.
    let before = during["frames_decoded"].as_f64().unwrap_or(0.0);
    wait_video_stat(&bus, "frames_decoded", before + 30.0, 20 * SEC, explain);
    eprintln!("video back {:?} after the cut healed", healed.elapsed());
    assert_speaker_tone(&d, 440.0, healed_ms + 500, 10, explain);
    let seen = chromium.stats().feed(ROOM_NAME).map_or(0, |f| f.frames_decoded);
    chromium
        .wait_until(|s| s.feed(ROOM_NAME).is_some_and(|f| f.frames_decoded > seen + 30), 20 * SEC)
        .unwrap_or_else(|e| panic!("Chromium does not see the room again: {e}\n{}", explain()));
    let after = video_stats(&bus);
    assert_eq!(after["interruptions"], 1.0, "{after}");
    assert_eq!(after["media_interrupted"], 0.0, "{after}");
    let calls = huisctl_json(&bus, &["calls"]);
    assert_eq!(calls[0]["state"], "active", "{calls}");
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}", stderr(&out));
}

#[test]
fn browsers_vp8_and_vp9_are_decoded() {
    if !is_root() {
        eprintln!("SKIPPED browsers_vp8_and_vp9_are_decoded: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("VP8 and VP9 from Chromium", 150);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    for (room, codecs, name) in [(2001u64, "vp8,h264", "VP8"), (2002, "vp9,h264", "VP9")] {
        janus.create_room_with_codecs(room, None, name, codecs).unwrap();
        let chromium = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), room).display("Chromium").tone(440.0))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let explain = || why(&bus, &d, &janus, &[&chromium]);
        let dial = format!("janus+{}?room={room}", janus.http_url());
        let out = huisctl(&bus, &["dial", &dial]);
        assert!(out.status.success(), "dial {dial}: {}", stderr(&out));
        // Chromium publishes the room's first codec, and huisd decodes it.
        let deadline = Instant::now() + 20 * SEC;
        while !d.log_text().contains(&format!("media=video encoding={name}")) {
            assert!(Instant::now() < deadline, "no {name} stream from Chromium within 20 s\n{}", explain());
            std::thread::sleep(Duration::from_millis(200));
        }
        // This call's own figures (Video1's may still be the last call's).
        wait_call(&bus, |c| c["stats"]["video_frames_decoded"].as_f64().unwrap_or(0.0) >= 30.0, 20 * SEC, explain);
        // The room's H.264 reaches Chromium in the same room.
        chromium
            .wait_until(|s| s.feed(ROOM_NAME).is_some_and(|f| f.frames_decoded > 30), 20 * SEC)
            .unwrap_or_else(|e| panic!("Chromium does not see the room: {e}\n{}", explain()));
        hang_up_to_idle(&bus, explain);
    }
}

#[test]
fn a_relay_only_room_joins_through_turn() {
    relay_only_join(false);
}

#[test]
fn a_relay_only_room_joins_through_turn_over_tls() {
    relay_only_join(true);
}

/// The room behind a relay-only policy joins through coturn (over UDP, or over TLS only) and
/// media flows both ways through the room user's allocations; the credentials never show.
fn relay_only_join(tls: bool) {
    let what = if tls { "TURN over TLS" } else { "TURN" };
    if !is_root() {
        eprintln!("SKIPPED a relay-only room through {what}: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("a Janus room through TURN", 150);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "through TURN").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Over TLS, the relay's certificate comes from the test's CA, which huisd is given.
    let (turn, ca_file) = if tls {
        let ca = certs::Ca::new(dir.path(), "turn").unwrap();
        let cert = ca.issue("turn", &[&format!("IP:{}", netns::ICE_ADDR)]).unwrap();
        (Turn::start_tls(&ns, "huis", "s3cret", &cert).unwrap(), format!("ca_file = \"{}\"\n", ca.cert.display()))
    } else {
        (Turn::start(&ns, "huis", "s3cret").unwrap(), String::new())
    };
    let chromium = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("Chromium").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let webrtc = format!(
        "[webrtc]\nturn_servers = [\"{}\"]\nice_transport_policy = \"relay\"\n{ca_file}",
        turn.uri("huis", "s3cret")
    );
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config_with(dir.path(), ns.port(), &webrtc));
    let explain = || format!("{}--- coturn:\n{}", why(&bus, &d, &janus, &[&chromium]), turn.log_text());
    let before = speaker_ms(&d);
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial {dial}: {}", stderr(&out));
    wait_video_stat(&bus, "frames_decoded", 30.0, 20 * SEC, explain);
    assert_speaker_tone(&d, 440.0, before + 1000, 15, explain);
    chromium
        .wait_until(|s| s.feed(ROOM_NAME).is_some_and(|f| f.frames_decoded > 30), 20 * SEC)
        .unwrap_or_else(|e| panic!("Chromium does not see the room: {e}\n{}", explain()));
    // Relay only: the media went through allocations coturn granted to the room's user.
    let log = turn.log_text();
    assert!(
        log.contains("user <huis>") && log.contains("ALLOCATE processed, success"),
        "coturn granted the room no allocation\n{}",
        explain()
    );
    if tls {
        // coturn listens on TLS only, and says which cipher the room's session took.
        assert!(
            log.contains("username=<huis>, lifetime=600, cipher=TLS_"),
            "the room's TURN session did not run over TLS\n{}",
            explain()
        );
    }
    assert!(!huisctl_json(&bus, &["config", "get", "webrtc.turn_servers"]).to_string().contains("s3cret"));
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}", stderr(&out));
}

/// VmRSS of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// huisd's CPU (percent of one core) over `window`.
fn huisd_cpu(pid: u32, window: Duration) -> f64 {
    let t0 = bench::cpu_ticks(pid).unwrap_or(0);
    let started = Instant::now();
    std::thread::sleep(window);
    let t1 = bench::cpu_ticks(pid).unwrap_or(0);
    (t1 - t0) as f64 / bench::ticks_per_second() / started.elapsed().as_secs_f64() * 100.0
}

fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.95))
}

/// The benchmark behind `bench/webrtc-join.sh` (ignored in normal runs): from the button to the
/// first far-end frame decoded, for huisd (from its backend taking the dial) beside headless
/// Chromium (from its page's start), joining the same Janus room where Chromium "A" publishes;
/// then huisd's CPU and RSS with one and with three far ends.
#[test]
#[ignore = "benchmark; run bench/webrtc-join.sh"]
fn bench_webrtc_join() {
    let runs: usize = std::env::var("HUIS_BENCH_JOINS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "bench").unwrap();
    let a = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("A").tone(440.0)).unwrap();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let explain = || why(&bus, &d, &janus, &[&a]);
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());

    let mut ours = Vec::new();
    for _ in 0..runs {
        let out = huisctl(&bus, &["dial", &dial]);
        assert!(out.status.success(), "dial: {}", stderr(&out));
        let c = wait_call(&bus, |c| c["stats"]["video_first_frame_ms"].as_f64().is_some(), 20 * SEC, explain);
        ours.push(c["stats"]["video_first_frame_ms"].as_f64().unwrap());
        hang_up_to_idle(&bus, explain);
    }
    let mut theirs = Vec::new();
    for i in 0..runs {
        let c =
            Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display(&format!("viewer {i}"))).unwrap();
        let s = c
            .wait_until(|s| s.feed("A").is_some_and(|f| f.first_frame_ms > 0.0), 20 * SEC)
            .unwrap_or_else(|e| panic!("the viewer sees no frame from A: {e}"));
        theirs.push(s.feed("A").unwrap().first_frame_ms);
    }
    let (m1, p1) = median_p95(ours.clone());
    let (m2, p2) = median_p95(theirs.clone());

    // CPU and RSS in the conference with one far end, then three.
    let pid = d.child.id();
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial: {}", stderr(&out));
    wait_far_ends(&bus, 1.0, explain);
    std::thread::sleep(3 * SEC);
    let (cpu1, rss1) = (huisd_cpu(pid, 10 * SEC), rss_mib(pid));
    let b = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("B").tone(660.0)).unwrap();
    let c = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("C").tone(880.0)).unwrap();
    wait_far_ends(&bus, 3.0, || why(&bus, &d, &janus, &[&a, &b, &c]));
    std::thread::sleep(3 * SEC);
    let (cpu3, rss3) = (huisd_cpu(pid, 10 * SEC), rss_mib(pid));

    println!("<<<TABLE");
    println!("| joining a Janus room, {runs} runs | first far-end frame, median (ms) | p95 (ms) |");
    println!("| --- | --- | --- |");
    println!("| huisd (from the dial reaching its WebRTC backend) | {m1:.0} | {p1:.0} |");
    println!("| headless Chromium (from its page's start) | {m2:.0} | {p2:.0} |");
    println!();
    println!("| huisd in the conference | CPU (% of one core, 10 s) | RSS (MiB) |");
    println!("| --- | --- | --- |");
    println!("| 1 far end | {cpu1:.1} | {rss1:.1} |");
    println!("| 3 far ends | {cpu3:.1} | {rss3:.1} |");
    println!("TABLE>>>");
    println!("NOTE huisd: {ours:.0?}; Chromium: {theirs:.0?}");
    if std::env::var_os("HUIS_BENCH_LOG").is_some() {
        eprintln!("{}", d.log_text());
    }
}

#[test]
fn a_fifteen_second_cut_makes_the_room_join_again_and_leave_no_ghost() {
    if !is_root() {
        eprintln!("SKIPPED a_fifteen_second_cut…: needs root (network namespaces)");
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("a long network cut in a Janus room", 180);
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "long network cut").unwrap();
    let chromium = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("Chromium").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config(dir.path(), ns.port()));
    let explain = || why(&bus, &d, &janus, &[&chromium]);
    let dial = format!("janus+{}?room={ROOM}", janus.http_url());
    let out = huisctl(&bus, &["dial", &dial]);
    assert!(out.status.success(), "dial {dial}: {}", stderr(&out));
    wait_video_stat(&bus, "frames_decoded", 30.0, 20 * SEC, explain);
    let first_id = janus.participants(ROOM).unwrap().into_iter().find(|p| p.display == ROOM_NAME).map(|p| p.id);

    // 15 s without any packet: longer than the 10 s of silence after which the room leaves
    // and joins again, shorter than Chromium's own 30 s before its connections fail.
    let nft = netfault::Nft::new(&ns).unwrap();
    nft.cut().unwrap();
    std::thread::sleep(15 * SEC);
    let during = video_stats(&bus);
    nft.heal().unwrap();
    let healed_ms = speaker_ms(&d);

    // The room is back in by itself: its video and tone at Chromium, Chromium's at the room,
    // the call never ended, and Call1 counts the rejoin.
    let v = wait_video_stat(&bus, "rejoins", 1.0, 30 * SEC, explain);
    eprintln!("rejoins: {v}");
    let before = during["frames_decoded"].as_f64().unwrap_or(0.0);
    wait_video_stat(&bus, "frames_decoded", before + 30.0, 30 * SEC, explain);
    assert_speaker_tone(&d, 440.0, healed_ms + 500, 10, explain);
    chromium
        .wait_until(|s| s.feed(ROOM_NAME).is_some_and(|f| f.frames_decoded > 30), 30 * SEC)
        .unwrap_or_else(|e| panic!("Chromium does not see the room again: {e}\n{}", explain()));
    let calls = huisctl_json(&bus, &["calls"]);
    assert_eq!(calls[0]["state"], "active", "{calls}\n{}", explain());
    assert_eq!(calls[0]["path"], "/org/huis/Room1/Calls/1", "the same call goes on: {calls}");

    // No ghost: the room is in the room once, as a new participant (the session it could not
    // leave during the cut was destroyed when it came back).
    let deadline = Instant::now() + 10 * SEC;
    loop {
        let ps = janus.participants(ROOM).unwrap();
        let us: Vec<_> = ps.iter().filter(|p| p.display == ROOM_NAME).collect();
        if us.len() == 1 && Some(us[0].id) != first_id {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the room is not in Janus exactly once, anew: {ps:?} (first id {first_id:?})\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "hangup: {}", stderr(&out));
}
