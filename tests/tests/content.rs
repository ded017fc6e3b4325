//! The content input (the HDMI a laptop is plugged into) on the simulated board, through the real
//! huisd and huisctl: plugging the simulated laptop shows it on the room's screen (a local
//! presentation), `share start|stop|status` and the Room1 properties follow, and pulling the
//! cable ends the presentation.

use std::time::{Duration, Instant};

use huis_tests::{Bus, Huisd, huisctl, huisctl_json, stderr, stdout};

fn share(bus: &Bus, op: &str) -> serde_json::Value {
    huisctl_json(bus, &["share", op])
}

/// Waits up to `within` for `huisctl share status` to satisfy `ok`.
fn wait_share(bus: &Bus, within: Duration, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let v = share(bus, "status");
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "share status never became as expected: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_simulated_laptop_is_presented_locally_while_plugged_in() {
    let bus = Bus::start();
    let _d = Huisd::start(&bus, None).await;

    // The sim board's input starts with nothing plugged in.
    let v = share(&bus, "status");
    assert_eq!(v["input"], "no-signal", "{v}");
    assert_eq!(v["presentation"], "none", "{v}");

    // Presenting with nothing plugged in is refused with a reason; nothing changes.
    let out = huisctl(&bus, &["share", "start"]);
    assert!(!out.status.success(), "share start without a laptop succeeded: {}", stdout(&out));
    assert!(stderr(&out).contains("nothing is plugged"), "{}", stderr(&out));
    assert_eq!(share(&bus, "status")["presentation"], "none");

    // Plugging the laptop in presents it on the room's screen: 1080p at 15 fps.
    let v = share(&bus, "plug");
    assert_eq!(v["input"], "active", "{v}");
    assert_eq!(v["presentation"], "local", "{v}");
    assert_eq!(v["holder"], "local", "{v}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64(), v["framerate"].as_u64()),
        (Some(1920), Some(1080), Some(15))
    );

    // Stop and start again while plugged.
    let v = share(&bus, "stop");
    assert_eq!(v["presentation"], "none", "{v}");
    assert_eq!(v["width"], 0, "{v}");
    let out = huisctl(&bus, &["share", "stop"]);
    assert!(!out.status.success() && stderr(&out).contains("nothing is being presented"), "{}", stderr(&out));
    let v = share(&bus, "start");
    assert_eq!(v["presentation"], "local", "{v}");

    // The human-readable form names the holder and the mode.
    let out = huisctl(&bus, &["share", "status"]);
    let text = stdout(&out);
    assert!(text.contains("1920x1080 at 15 fps") && text.contains("floor holder: local"), "{text}");

    // Pulling the cable ends the presentation at once (the method returns with it applied; the
    // watcher's later message changes nothing).
    let t = Instant::now();
    let v = share(&bus, "unplug");
    assert_eq!(v["input"], "no-signal", "{v}");
    assert_eq!(v["presentation"], "none", "{v}");
    wait_share(&bus, Duration::from_secs(1), |v| v["presentation"] == "none" && v["holder"] == "");
    assert!(t.elapsed() < Duration::from_secs(1), "unplug took {:?}", t.elapsed());
}
