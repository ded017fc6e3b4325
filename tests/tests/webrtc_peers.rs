//! The WebRTC peers prove themselves without huisd: Janus's VideoRoom with two
//! headless Chromium participants in one network namespace. Each decodes the
//! other's video and hears the other's tone; Janus lists both as publishers;
//! when one leaves, Janus lists only the other. Every wait is bounded and every
//! failure prints both pages' reports and logs and Janus's log.
//!
//! Needs root (Janus's ICE interface lives in a private namespace): skipped,
//! saying so, otherwise.

use std::time::{Duration, Instant};

use huis_tests::peers::netns::is_root;
use huis_tests::peers::*;

const SEC: Duration = Duration::from_secs(1);
const ROOM: u64 = 1234;

/// Both pages' reports and logs and the tail of Janus's log.
fn explain(janus: &Janus, pages: &[&Chromium]) -> String {
    let mut s = String::new();
    for p in pages {
        s.push_str(&p.explain());
    }
    let log = janus.log();
    let lines: Vec<&str> = log.lines().collect();
    s.push_str(&format!("--- janus log (last 120 lines):\n{}\n", lines[lines.len().saturating_sub(120)..].join("\n")));
    s
}

/// Waits until `who` decodes video from `from` (frames growing, a size) and
/// hears `from`'s tone of `hz` (audio packets, energy, the analyser's peak).
fn assert_sees_and_hears(janus: &Janus, who: &Chromium, other: &Chromium, from: &str, hz: f64) -> FeedStats {
    let first = who
        .wait_until(|s| s.feed(from).is_some_and(|f| f.frames_decoded > 0 && f.frame_width > 0), 20 * SEC)
        .unwrap_or_else(|e| panic!("{} decodes no video from {from}: {e}\n{}", who.display, explain(janus, &[other])));
    let n0 = first.feed(from).unwrap().frames_decoded;
    let s = who
        .wait_until(
            |s| {
                s.feed(from).is_some_and(|f| {
                    f.frames_decoded >= n0 + 10
                        && f.audio_packets_received > 50
                        && f.total_audio_energy > 0.0
                        && (f.audio_peak_hz - hz).abs() < 20.0
                })
            },
            15 * SEC,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{} does not keep decoding {from}'s video or hear its {hz} Hz tone: {e}\n{}",
                who.display,
                explain(janus, &[other])
            )
        });
    let f = s.feed(from).unwrap().clone();
    eprintln!("{} receives {from}: {f:?}", who.display);
    f
}

#[test]
fn two_chromiums_in_a_janus_room_see_and_hear_each_other_and_one_leaves() {
    if !is_root() {
        eprintln!(
            "SKIPPED two_chromiums_in_a_janus_room…: needs root (Janus's ICE interface is made in a private network namespace)"
        );
        return;
    }
    let _w = watchdog("webrtc_peers", 90);
    let t0 = Instant::now();
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room(ROOM, None, "huis test room").unwrap();
    assert_eq!(janus.participants(ROOM).unwrap(), vec![], "a new room has no participants");

    let a = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("A").tone(440.0))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", explain(&janus, &[])));
    let b = Chromium::start(&ns, ChromiumOpts::new(&janus.http_url(), ROOM).display("B").tone(880.0))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", explain(&janus, &[&a])));
    eprintln!("janus and both pages joined after {:?}", t0.elapsed());

    let ab = assert_sees_and_hears(&janus, &b, &a, "A", 440.0);
    let ba = assert_sees_and_hears(&janus, &a, &b, "B", 880.0);
    eprintln!("codecs: {} / {}, {} / {}", ab.video_codec, ab.audio_codec, ba.video_codec, ba.audio_codec);
    for s in [a.stats(), b.stats()] {
        assert!(s.errors.is_empty(), "{} page errors: {:?}\n{}", s.display, s.errors, explain(&janus, &[&a, &b]));
        assert!(s.publish.video_packets_sent > 0 && s.publish.audio_packets_sent > 0, "{s:?}");
    }

    let mut listed = janus.participants(ROOM).unwrap();
    listed.sort_by(|x, y| x.display.cmp(&y.display));
    let shown: Vec<(&str, bool)> = listed.iter().map(|p| (p.display.as_str(), p.publisher)).collect();
    assert_eq!(shown, [("A", true), ("B", true)], "participants\n{}", explain(&janus, &[&a, &b]));

    // A leaves: Janus forgets it, and B drops its feed.
    let t_leave = Instant::now();
    a.leave().unwrap_or_else(|e| panic!("A does not leave: {e}\n{}", explain(&janus, &[&b])));
    let deadline = Instant::now() + 5 * SEC;
    let mut listed = janus.participants(ROOM).unwrap();
    while listed.iter().any(|p| p.display == "A") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        listed = janus.participants(ROOM).unwrap();
    }
    let shown: Vec<(&str, bool)> = listed.iter().map(|p| (p.display.as_str(), p.publisher)).collect();
    assert_eq!(shown, [("B", true)], "participants 5 s after A left\n{}", explain(&janus, &[&a, &b]));
    b.wait_until(|s| s.feed("A").is_none(), 5 * SEC)
        .unwrap_or_else(|e| panic!("B still has A's feed: {e}\n{}", explain(&janus, &[&a])));
    eprintln!("A gone from Janus and B after {:?}; whole test {:?}", t_leave.elapsed(), t0.elapsed());
}
