//! The boot health check: after an update the new slot runs on trial (GRUB
//! boots it once); huisd keeps it only when the room really works.
//!
//! Within [`DEADLINE`] of start, all of: huisd's bus name is owned by huisd
//! and answers (through the room task), the board was resolved, the audio
//! thread is running, and the board's camera → H.264 encoder pipeline
//! reaches PLAYING and delivers encoded frames. Then RAUC `Mark("good",
//! "booted")`. On failure `Mark("bad", "booted")` and a reboot through
//! logind — only when the other slot is marked good, so a room with nothing
//! better to go back to stays up and can still be updated. A slot holding
//! `/usr/lib/huis/test-fail-health-check` fails on purpose (image tests).
//!
//! Runs only where RAUC answers on the system bus; elsewhere it logs that
//! and does nothing. The verdict is also printed on stdout, which the
//! image's huisd.service sends to the console.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::audio::Meters;
use crate::update::Updater;

pub const DEADLINE: Duration = Duration::from_secs(120);
pub const TEST_FAIL_MARKER: &str = "/usr/lib/huis/test-fail-health-check";
/// Prefix of the console lines (image/tests/ waits for them).
const TAG: &str = "huis health check";

/// What the check looks at.
pub struct Inputs {
    pub board: String,
    pub meters: Option<Arc<Meters>>,
    /// The capture pipeline's source (from the board's camera).
    pub video_source: String,
    /// The H.264 encoder element huisd picked, "" when none is usable.
    pub encoder: String,
}

pub async fn run(own: zbus::Connection, updater: Arc<Updater>, inputs: Inputs) {
    let rauc = match updater.rauc().await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!("boot health check skipped: {e}");
            return;
        }
    };
    let sys = match updater.system_bus().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("boot health check skipped: {e}");
            return;
        }
    };
    let version = crate::update::image_version().unwrap_or_else(|| crate::VERSION.to_owned());
    let booted = rauc.boot_slot().await.unwrap_or_default();

    let verdict = match tokio::time::timeout(DEADLINE, check(&own, &sys, &inputs)).await {
        Ok(r) => r,
        Err(_) => Err(format!("not healthy within {} s", DEADLINE.as_secs())),
    };
    // huisd restarted while RAUC writes the other slot (a fleet update): RAUC marks nothing
    // until that ends, so the verdict waits rather than report a failure that is not one.
    let mut waited = 0;
    while rauc.operation().await.is_ok_and(|op| op != "idle") && waited < 3600 {
        if waited == 0 {
            tracing::info!("boot health check: RAUC is installing; the verdict is marked when it ends");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        waited += 2;
    }
    match verdict {
        Ok(what) => match rauc.mark("good", "booted").await {
            Ok((slot, msg)) => {
                tracing::info!(%slot, %msg, %what, "slot marked good");
                say(&format!("slot {booted} marked good (version {version})"));
                updater.refresh(&rauc).await;
                updater.set_health("passed".into());
            }
            Err(e) => {
                let m = format!("slot {booted} is healthy but RAUC did not mark it good: {e}");
                say(&m);
                updater.report(m);
            }
        },
        Err(why) => {
            say(&format!("slot {booted} (version {version}) failed its health check: {why}"));
            updater.report(format!("slot {booted} failed its boot health check: {why}"));
            updater.set_health(format!("failed: {why}"));
            let slots = rauc.get_slot_status().await.unwrap_or_default();
            let other_good = crate::update::slots_from_status(&slots, "")
                .iter()
                .any(|s| s.bootname != booted && s.boot_status == "good");
            if !other_good {
                say(&format!(
                    "the other slot is not marked good: staying on slot {booted} so the room can still be updated"
                ));
                return;
            }
            if let Err(e) = rauc.mark("bad", "booted").await {
                say(&format!("RAUC did not mark slot {booted} bad: {e}; staying"));
                return;
            }
            say(&format!("slot {booted} marked bad; rebooting into the other slot"));
            if let Err(e) = updater.reboot().await {
                let m = format!("cannot reboot into the other slot: {e}");
                say(&m);
                updater.report(m);
            }
        }
    }
}

fn say(line: &str) {
    use std::io::Write;
    tracing::info!("{TAG}: {line}");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{TAG}: {line}");
    let _ = out.flush();
}

/// Every condition in turn; Ok says what was seen, Err the first that failed.
async fn check(own: &zbus::Connection, sys: &zbus::Connection, inputs: &Inputs) -> Result<String, String> {
    if std::path::Path::new(TEST_FAIL_MARKER).exists() {
        return Err(format!("test marker {TEST_FAIL_MARKER} is present"));
    }
    // The bus name: owned by this huisd, and answering through the room task
    // (Config1.Get is served by the room task), asked over the system bus
    // like any client would.
    let dbus = zbus::fdo::DBusProxy::new(sys).await.map_err(|e| format!("system bus: {e}"))?;
    let owner = dbus
        .get_name_owner(crate::dbus::BUS_NAME.try_into().expect("valid name"))
        .await
        .map_err(|e| format!("{} is not owned: {e}", crate::dbus::BUS_NAME))?;
    if own.unique_name().map(|n| n.as_str()) != Some(owner.as_str()) {
        return Err(format!("{} is owned by {owner}, not by this huisd", crate::dbus::BUS_NAME));
    }
    let cfg = crate::dbus::client::Config1Proxy::new(sys).await.map_err(|e| format!("Config1: {e}"))?;
    tokio::time::timeout(Duration::from_secs(20), cfg.get("room.name"))
        .await
        .map_err(|_| "huisd's room task does not answer within 20 s".to_string())?
        .map_err(|e| format!("huisd does not answer on the system bus: {e}"))?;
    if inputs.board.is_empty() {
        return Err("no board".into());
    }
    // The audio thread: frames must keep coming.
    let Some(m) = &inputs.meters else {
        return Err("the audio thread is not running".into());
    };
    let f0 = m.frames.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let f1 = m.frames.load(Ordering::Relaxed);
    if f1 <= f0 {
        return Err("the audio thread processes no frames".into());
    }
    // Video: capture → encoder → sink, PLAYING, encoded frames out.
    if inputs.encoder.is_empty() {
        return Err("no usable H.264 encoder".into());
    }
    let desc = format!(
        "{} ! videoconvert ! {} ! fakesink name=sink sync=false",
        inputs.video_source,
        encoder_desc(&inputs.encoder)
    );
    let d2 = desc.clone();
    tokio::task::spawn_blocking(move || video_pipeline(&d2, Duration::from_secs(60)))
        .await
        .map_err(|e| format!("video check: {e}"))?
        .map_err(|e| format!("video pipeline `{desc}`: {e}"))?;
    Ok(format!("board {}, audio {} frames/s, video through {}", inputs.board, f1 - f0, inputs.encoder))
}

/// The encoder with settings that give frames at once (no look-ahead).
fn encoder_desc(enc: &str) -> String {
    match enc {
        "x264enc" => "x264enc tune=zerolatency speed-preset=ultrafast".into(),
        other => other.into(),
    }
}

/// Runs the pipeline until the sink has received an encoded frame.
fn video_pipeline(desc: &str, within: Duration) -> Result<(), String> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(desc).map_err(|e| e.to_string())?;
    let bin = pipeline.clone().downcast::<gst::Bin>().map_err(|_| "not a bin".to_string())?;
    let sink = bin.by_name("sink").ok_or("no sink")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start: {e}"))?;
    let t0 = std::time::Instant::now();
    let result = loop {
        if t0.elapsed() > within {
            break Err(format!("no encoded frame within {} s", within.as_secs()));
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            if let gst::MessageView::Error(e) = msg.view() {
                break Err(format!("{} ({})", e.error(), e.debug().map(|d| d.to_string()).unwrap_or_default()));
            }
        }
        let (_, state, _) = pipeline.state(gst::ClockTime::ZERO);
        let sample: Option<gst::Sample> = sink.property("last-sample");
        if state == gst::State::Playing && sample.is_some() {
            break Ok(());
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
