//! re-INVITEs that change a call's media, against SIPp playing a peer whose media moves and
//! whose camera goes on and off: the room follows the moved audio, starts sending video when
//! the peer adds it and stops when the peer drops it, and says so in `Call1`.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use huis_tests::peers::sipp::{Scenario, Sipp, SippOpts, reinvite_media_scenario};
use huis_tests::peers::tone::{ROOM_TONE_HZ, tone_fraction_of, write_room_tone_wav};
use huis_tests::peers::*;
use huis_tests::{Bus, huisctl, stderr};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn json(bus: &Bus, args: &[&str]) -> Value {
    huis_tests::huisctl_json(bus, args)
}

/// The room: a 1 kHz tone in its mics, PCMU, 640×360 video, SIP on `port`.
fn room_config(dir: &std::path::Path, port: u16, auto_answer: bool) -> String {
    let tone = dir.join("room-tone.wav");
    write_room_tone_wav(&tone).unwrap();
    format!(
        "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n\
         [call]\nauto_answer = {auto_answer}\naudio_codecs = [\"pcmu\"]\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 30\n",
        tone.display()
    )
}

/// What arrived on a UDP port: (when, payload type, payload after the RTP header).
type Arrivals = Vec<(Instant, u8, Vec<u8>)>;

/// Listens on 127.0.0.1:`port` inside the namespace for `secs` seconds.
fn listen(ns: &NetNs, port: u16, secs: u64) -> std::thread::JoinHandle<Arrivals> {
    let ns = ns.clone();
    std::thread::spawn(move || {
        ns.enter(move || {
            let s = UdpSocket::bind(("127.0.0.1", port)).expect("a media port of the test");
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            let end = Instant::now() + Duration::from_secs(secs);
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while Instant::now() < end {
                if let Ok(n) = s.recv(&mut buf)
                    && n > 12
                    && buf[0] >> 6 == 2
                    && !(200..=204).contains(&buf[1])
                {
                    got.push((Instant::now(), buf[1] & 0x7f, buf[12..n].to_vec()));
                }
            }
            got
        })
        .expect("inside the namespace")
    })
}

#[test]
fn the_room_follows_moved_media_and_video_added_and_dropped_by_the_peer() {
    let _w = watchdog("re-INVITE media changes", 120);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &room_config(dir.path(), port, true));
    let (a1, a2, v) = (ns.port(), ns.port(), ns.port());
    const HOLD_MS: u32 = 3000;
    let listeners = [listen(&ns, a1, 14), listen(&ns, a2, 14), listen(&ns, v, 14)];
    std::thread::sleep(Duration::from_millis(300));
    let mut o = SippOpts::uac(&format!("127.0.0.1:{port}"), 1);
    o.scenario = Scenario::Xml(reinvite_media_scenario([a1, a2], v, HOLD_MS));
    o.service = Some("room".into());
    o.timeout = Duration::from_secs(30);
    let sipp = Sipp::spawn(&ns, o).unwrap();

    // Call1 while it runs: video appears with the peer's camera, and goes with it.
    let (mut saw_video, mut saw_dropped) = (false, false);
    let end = Instant::now() + 3 * HOLD_MS * Duration::from_millis(1) + 2 * SEC;
    while Instant::now() < end {
        let calls = json(&bus, &["calls"]);
        if calls[0]["state"] == "active" {
            let codec = calls[0]["video_codec"].as_str().unwrap_or("");
            if codec.starts_with("H264/90000") {
                saw_video = true;
            } else if saw_video && codec.is_empty() {
                saw_dropped = true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = sipp.wait().unwrap();
    let log = d.log_text();
    assert!(
        r.success(),
        "SIPp's re-INVITEs (both answered 200, with video then without): {r}\n{}\nhuisd:\n{log}",
        r.messages
    );
    assert!(
        saw_video && saw_dropped,
        "Call1.VideoCodec showed video {saw_video}, then none {saw_dropped}\nhuisd:\n{log}"
    );
    let [a1, a2, v] = listeners.map(|l| l.join().unwrap());

    // Audio: first to the old port, then only to the new one, and it still plays the room.
    assert!(a1.len() >= 20, "only {} audio packets before the move\nhuisd:\n{log}", a1.len());
    assert!(a2.len() >= 100, "only {} audio packets after the move\nhuisd:\n{log}", a2.len());
    let moved = a2[0].0;
    let late = a1.iter().filter(|p| p.0 > moved + Duration::from_millis(200)).count();
    assert_eq!(late, 0, "{late} audio packets still went to the old port after the move\nhuisd:\n{log}");
    let samples: Vec<f32> = a2
        .iter()
        .filter(|p| p.1 == 0)
        .flat_map(|p| p.2.iter().map(|&b| huis_tests::peers::tone::ulaw_sample(b)))
        .collect();
    let t = tone_fraction_of(&samples, 8000, ROOM_TONE_HZ, 25.0, 100, 300);
    assert!(
        t.voiced >= 20 && t.fraction >= 0.8,
        "the moved audio does not carry the room's 1 kHz: {t:?}\nhuisd:\n{log}"
    );

    // Video: H.264 (PT 96) while the peer had video, none once it dropped it; audio went on.
    let h264: Vec<_> = v.iter().filter(|p| p.1 == 96).collect();
    assert!(h264.len() >= 60, "only {} H.264 packets while the peer had video\nhuisd:\n{log}", h264.len());
    let last_video = h264.last().unwrap().0;
    let last_audio = a2.last().unwrap().0;
    assert!(
        last_audio > last_video + SEC + SEC / 2,
        "video went on after the peer dropped it (last video {:?} before the last audio)\nhuisd:\n{log}",
        last_audio - last_video
    );
    for line in ["the peer moved the call's audio", "the peer added video", "the peer dropped video"] {
        assert!(log.contains(line), "the log does not say {line:?}\nhuisd:\n{log}");
    }
}

/// Frames baresip's display gets over `window`, as the sum of its counter's increases (the
/// counter may restart with a new video stream).
fn frames_shown(b: &Baresip, window: Duration) -> u64 {
    let end = Instant::now() + window;
    let mut last = b.video_debug().map(|v| v.display_frames).unwrap_or(0);
    let mut shown = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        let now = b.video_debug().map(|v| v.display_frames).unwrap_or(0);
        shown += now.saturating_sub(last);
        last = now;
    }
    shown
}

/// The room stops and restarts video in a call with baresip (`huisctl call-video off|on`): each
/// time a new offer, baresip's display stops and starts again, `Call1.VideoCodec` says so, and
/// the audio goes on throughout.
#[test]
fn the_room_stops_and_restarts_video_in_a_call() {
    let _w = watchdog("video off and on", 120);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    // baresip sends 440 Hz: the same 1 kHz both ways would be one coherent tone, which an echo
    // canceller rightly takes for echo.
    let b = Baresip::start(
        &ns,
        BaresipOpts::new("b").codecs(&["PCMU/8000/1"]).source(AudioSource::Sine(440.0)).video(640, 360),
    )
    .unwrap();
    let port = ns.port();
    let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &room_config(dir.path(), port, false));
    let why = || format!("huisd:\n{}\nbaresip:\n{}", d.log_text(), b.log_text());
    json(&bus, &["dial", &b.contact_uri()]);
    b.wait_event("CALL_ESTABLISHED", 10 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let shown = frames_shown(&b, 3 * SEC);
    assert!(shown >= 30, "baresip shows {shown} frames in 3 s before the change\n{}", why());

    let out = huisctl(&bus, &["call-video", "off"]);
    assert!(out.status.success(), "huisctl call-video off: {}\n{}", stderr(&out), why());
    std::thread::sleep(SEC);
    assert_eq!(json(&bus, &["calls"])[0]["video_codec"], "", "Call1.VideoCodec after video off\n{}", why());
    let shown = frames_shown(&b, 3 * SEC);
    assert!(shown <= 2, "baresip still shows {shown} frames in 3 s after video off\n{}", why());
    assert_eq!(json(&bus, &["calls"])[0]["state"], "active", "the call goes on\n{}", why());

    let out = huisctl(&bus, &["call-video", "on"]);
    assert!(out.status.success(), "huisctl call-video on: {}\n{}", stderr(&out), why());
    let shown = frames_shown(&b, 4 * SEC);
    assert!(shown >= 30, "baresip shows {shown} frames in 4 s after video on\n{}", why());
    let codec = json(&bus, &["calls"])[0]["video_codec"].clone();
    assert!(
        codec.as_str().unwrap_or("").starts_with("H264/90000"),
        "Call1.VideoCodec after video on: {codec}\n{}",
        why()
    );
    let r = b.wait_received_tone(ROOM_TONE_HZ, 15, 5 * SEC).unwrap_or_else(|e| panic!("{e}\n{}", why()));
    assert!(r.fraction >= 0.8, "baresip hears the room in only {:.0}% ({r:?})\n{}", r.fraction * 100.0, why());
    json(&bus, &["hangup"]);
    b.wait_event("CALL_CLOSED", 5 * SEC).unwrap();
}
