//! The content input (the HDMI a laptop is plugged into) on the simulated board, through the real
//! huisd and huisctl: plugging the simulated laptop shows it on the room's screen (a local
//! presentation), `share start|stop|status` and the Room1 properties follow, and pulling the
//! cable ends the presentation.

use std::time::{Duration, Instant};

use huis_hal::content::{Frame, page_index_of, psnr_luma, render_page};
use huis_tests::peers::picture::Picture;
use huis_tests::{Bus, Huisd, huisctl, huisctl_json, stderr, stdout};

/// Luma PSNR a page on the room's screen must reach against the same page drawn by the deck at
/// the screen's size (the input is 1080p, scaled to the 720p screen; the status bar is left out).
/// Measured 27.9 dB; the same page drawn directly at 720p (other glyph geometry, so not what a
/// 1080p laptop shows) measured 15.2 dB against the screenshot.
const MIN_SCREEN_PSNR_DB: f64 = 24.0;

/// The screenshot's luma as a deck frame (BT.601, limited range, as the deck draws).
fn luma_frame(p: &Picture) -> Frame {
    let mut f = Frame::new(p.width, p.height);
    let stride = f.layout().stride[0];
    for y in 0..p.height {
        for x in 0..p.width {
            let [r, g, b] = p.pixel(x, y).map(f64::from);
            let l = 16.0 + (65.738 * r + 129.057 * g + 25.064 * b) / 256.0;
            f.data[y as usize * stride + x as usize] = l.round().clamp(0.0, 255.0) as u8;
        }
    }
    f
}

/// `f` scaled to `w`×`h` (bilinear at pixel centres, as the screen's videoscale does): the
/// page as a 1080p laptop's deck looks on a smaller screen.
fn scaled(f: &Frame, w: u32, h: u32) -> Frame {
    let mut out = Frame::new(w, h);
    let stride = out.layout().stride[0];
    let (fx, fy) = (f64::from(f.width) / f64::from(w), f64::from(f.height) / f64::from(h));
    for y in 0..h {
        let sy = ((f64::from(y) + 0.5) * fy - 0.5).clamp(0.0, f64::from(f.height - 1));
        let (y0, ty) = (sy.floor() as u32, sy.fract());
        let y1 = (y0 + 1).min(f.height - 1);
        for x in 0..w {
            let sx = ((f64::from(x) + 0.5) * fx - 0.5).clamp(0.0, f64::from(f.width - 1));
            let (x0, tx) = (sx.floor() as u32, sx.fract());
            let x1 = (x0 + 1).min(f.width - 1);
            let l = |x, y| f64::from(f.luma(x, y));
            let top = l(x0, y0) * (1.0 - tx) + l(x1, y0) * tx;
            let bottom = l(x0, y1) * (1.0 - tx) + l(x1, y1) * tx;
            out.data[y as usize * stride + x as usize] = (top * (1.0 - ty) + bottom * ty).round() as u8;
        }
    }
    out
}

/// Blanks the rows of the status bar (its text and clock are not the slide's).
fn without_status_bar(mut f: Frame) -> Frame {
    let stride = f.layout().stride[0];
    let rows = (f.height / 14) as usize;
    f.data[..rows * stride].fill(16);
    f
}

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

    // The room's screen shows the deck's current page, legibly.
    let shot_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("content-local-screen.png");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (page, psnr) = loop {
        let out = huisctl(&bus, &["screenshot", &shot_path.display().to_string()]);
        assert!(out.status.success(), "huisctl screenshot: {}", stderr(&out));
        let shot = luma_frame(&Picture::load_png(&shot_path).unwrap());
        if let Some(page) = page_index_of(&shot) {
            let reference = scaled(&render_page(page, 1920, 1080), shot.width, shot.height);
            let psnr = psnr_luma(&without_status_bar(shot), &without_status_bar(reference)).unwrap();
            if psnr >= MIN_SCREEN_PSNR_DB {
                break (page, psnr);
            }
            assert!(Instant::now() < deadline, "page {page} on the screen at only {psnr:.1} dB");
        }
        assert!(Instant::now() < deadline, "no deck page on the screen (see {})", shot_path.display());
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("local presentation: page {page} on the screen at {psnr:.1} dB luma PSNR");

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

/// In a call without a presentation channel (here: rooms without video, so neither offers the
/// slides stream and BFCP) presenting is refused with a reason, a laptop plugged in waits, and
/// is shown once the call ends.
#[tokio::test]
async fn in_a_call_the_presentation_waits_for_the_call_to_end() {
    let bus_a = Bus::start();
    let bus_b = Bus::start();
    let _a = Huisd::start(&bus_a, Some("[video]\nenable = false\n")).await;
    let _b = Huisd::start(&bus_b, Some("[video]\nenable = false\n[call]\nauto_answer = true\n")).await;
    let uri_b = huisctl_json(&bus_b, &["status"])["sip_uri"].as_str().unwrap().to_owned();
    assert!(uri_b.starts_with("sip:"), "{uri_b}");
    huisctl_json(&bus_a, &["dial", &uri_b]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while huisctl_json(&bus_a, &["status"])["state"] != "in-call" {
        assert!(Instant::now() < deadline, "room A never got into the call");
        std::thread::sleep(Duration::from_millis(100));
    }

    let v = share(&bus_a, "plug");
    assert_eq!((v["input"].as_str(), v["presentation"].as_str()), (Some("active"), Some("none")), "{v}");
    let out = huisctl(&bus_a, &["share", "start"]);
    assert!(!out.status.success() && stderr(&out).contains("no presentation channel"), "{}", stderr(&out));

    huisctl_json(&bus_a, &["hangup"]);
    let v = wait_share(&bus_a, Duration::from_secs(10), |v| v["presentation"] == "local");
    assert_eq!(v["width"], 1920, "{v}");
}

/// The presentation as `huisctl calls` shows it for the room's call: the floor word and the
/// content mode.
fn call_presentation(bus: &Bus) -> (String, serde_json::Value) {
    let calls = huisctl_json(bus, &["calls"]);
    let c = &calls[0];
    (c["presentation"].as_str().unwrap_or("").to_owned(), c["content_mode"].clone())
}

fn wait_call_presentation(bus: &Bus, want: &str, within: Duration, logs: &dyn Fn() -> String) -> Duration {
    let t = Instant::now();
    loop {
        let (p, _) = call_presentation(bus);
        if p == want {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "the call's presentation stayed {p:?}, not {want:?}:\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The page of the deck on `bus`'s screen, and how sharp it is (luma PSNR in dB against the
/// page as drawn), with the status bar and the picture-in-picture corner left out.
fn content_on_screen(bus: &Bus, path: &std::path::Path) -> Option<(u32, f64)> {
    let out = huisctl(bus, &["screenshot", &path.display().to_string()]);
    assert!(out.status.success(), "huisctl screenshot: {}", stderr(&out));
    let shot = luma_frame(&Picture::load_png(path).unwrap());
    let page = page_index_of(&shot)?;
    let reference = scaled(&render_page(page, 1920, 1080), shot.width, shot.height);
    let mask = |f: Frame| without_corner(without_status_bar(f));
    Some((page, psnr_luma(&mask(shot), &mask(reference)).unwrap()))
}

/// Blanks the bottom-right quarter (the far end's camera, small, while content is shown).
fn without_corner(mut f: Frame) -> Frame {
    let stride = f.layout().stride[0];
    for y in f.height / 2..f.height {
        let row = y as usize * stride;
        f.data[row + f.width as usize / 2..row + f.width as usize].fill(16);
    }
    f
}

/// Waits until `bus`'s screen shows a deck page at `min_db` or better.
fn wait_content_on_screen(bus: &Bus, name: &str, min_db: f64, logs: &dyn Fn() -> String) -> (u32, f64) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("content-{name}.png"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if let Some((page, db)) = content_on_screen(bus, &path) {
            if db >= min_db {
                return (page, db);
            }
            last = Some((page, db));
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no legible deck page on the screen (best {last:?}, see {}):\n{}",
            path.display(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Two rooms in a call share content both ways over BFCP and the slides stream: room A's laptop
/// is plugged in, A gets the floor and its deck is legible on B's screen (large, B's camera
/// view small); B plugs its own laptop in, takes the floor over, A yields and shows B's deck;
/// pulling B's cable stops B's slides and frees the floor within a second.
#[tokio::test]
async fn two_rooms_share_content_both_ways_and_unplugging_frees_the_floor() {
    let video = "[video]\nwidth = 640\nheight = 360\nframerate = 15\n";
    let bus_a = Bus::start();
    let bus_b = Bus::start();
    let a = Huisd::start(&bus_a, Some(video)).await;
    let b = Huisd::start(&bus_b, Some(&format!("{video}[call]\nauto_answer = true\n"))).await;
    let logs = || format!("room A:\n{}\nroom B:\n{}", a.log_text(), b.log_text());
    let uri_b = huisctl_json(&bus_b, &["status"])["sip_uri"].as_str().unwrap().to_owned();
    huisctl_json(&bus_a, &["dial", &uri_b]);
    // Both sides agree a presentation channel: the floor is free on both.
    wait_call_presentation(&bus_a, "free", Duration::from_secs(20), &logs);
    wait_call_presentation(&bus_b, "free", Duration::from_secs(5), &logs);

    // A's laptop is plugged in: A asks for the floor and sends; B receives it, 1080p.
    let v = share(&bus_a, "plug");
    assert_eq!(v["input"], "active", "{v}");
    wait_call_presentation(&bus_a, "sending", Duration::from_secs(3), &logs);
    wait_call_presentation(&bus_b, "receiving", Duration::from_secs(3), &logs);
    let (page, db) = wait_content_on_screen(&bus_b, "a-on-b", MIN_SCREEN_PSNR_DB, &logs);
    eprintln!("A's deck on B's screen: page {page} at {db:.1} dB luma PSNR");
    let v = wait_share(&bus_b, Duration::from_secs(5), |v| v["width"] == 1920);
    assert_eq!((v["presentation"].as_str(), v["height"].as_u64()), (Some("receiving"), Some(1080)), "{v}");
    assert!(v["holder"].as_str().unwrap_or("").contains("sip:"), "B names A as the holder: {v}");
    let v = share(&bus_a, "status");
    assert_eq!((v["presentation"].as_str(), v["holder"].as_str()), (Some("sending"), Some("local")), "{v}");

    // B plugs its laptop in: it takes the floor, A yields and shows B's deck.
    share(&bus_b, "plug");
    wait_call_presentation(&bus_b, "sending", Duration::from_secs(3), &logs);
    wait_call_presentation(&bus_a, "receiving", Duration::from_secs(3), &logs);
    let (page, db) = wait_content_on_screen(&bus_a, "b-on-a", MIN_SCREEN_PSNR_DB, &logs);
    eprintln!("B's deck on A's screen: page {page} at {db:.1} dB luma PSNR");
    // A's laptop is still plugged in but A no longer presents: its slides have stopped.
    // (Call1.Stats is published every second: read it once that second has passed.)
    let sent = |bus: &Bus| huisctl_json(bus, &["calls"])[0]["stats"]["content_frames_sent"].as_f64().unwrap_or(0.0);
    std::thread::sleep(Duration::from_millis(1500));
    let a_sent = sent(&bus_a);
    std::thread::sleep(Duration::from_millis(1500));
    let a_later = sent(&bus_a);
    assert_eq!(a_later, a_sent, "A still sends slides after yielding the floor ({a_sent} then {a_later}):\n{}", logs());

    // B's cable is pulled: B stops sending and the floor is free on both sides within 1 s.
    let t = Instant::now();
    share(&bus_b, "unplug");
    let b_free = wait_call_presentation(&bus_b, "free", Duration::from_secs(1), &logs);
    let a_free = wait_call_presentation(&bus_a, "free", Duration::from_secs(1), &logs);
    eprintln!("unplugged: B free after {b_free:?}, A after {a_free:?} (both within {:?})", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(1) + Duration::from_millis(300), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(1500));
    let b_sent = sent(&bus_b);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sent(&bus_b), b_sent, "B still sends slides after its cable was pulled");
    huisctl_json(&bus_a, &["hangup"]);
}
