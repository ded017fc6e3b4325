//! The HDMI screen: one long-running compositor pipeline, idle or in a call.
//!
//! ```text
//!  videotestsrc (background) ─▶ textoverlay "idle" (room name, how to call it) ─┐
//!  intervideosrc "huis-far"     (full screen) ───────────────────────────────────┤
//!  intervideosrc "huis-self"    (quarter size, bottom right: PiP) ────────────────┼▶ compositor
//!  intervideosrc "huis-content" (the presentation, full screen) ──────────────────┘      │
//!       ─▶ textoverlay "status" (room · call state · mute · encryption) ─▶ clockoverlay ─▶ display sink
//! ```
//!
//! The compositor scales each input to its place (pad `width`/`height`, aspect kept).
//!
//! While idle the far-end and self-view inputs are transparent (the compositor skips them) and
//! the idle text shows; in a call the idle text is hidden and both pictures show. The display
//! sink comes from hal (`kmssink`, `waylandsink`, or on the sim board an appsink holding the
//! last frame); [`Screen::screenshot_png`] encodes the frame last shown, whatever the sink.

use std::sync::Mutex;
use std::time::Duration;

use gstreamer as gst;
use gstreamer_video as gst_video;

use gst::prelude::*;

use super::MediaError;
use super::video::{FAR_CHANNEL, SELF_CHANNEL};

/// The inter channel the presentation (the HDMI input, or later the far end's slides) is fed
/// into, see [`ContentFeed`].
pub const CONTENT_CHANNEL: &str = "huis-content";

/// What the status bar and the idle screen say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenStatus {
    pub room_name: String,
    /// idle, dialing, ringing, in-call, error.
    pub state: String,
    pub muted: bool,
    /// The call is encrypted: its SIP over TLS and every media stream encrypted
    /// (`Call1.Encrypted`). Only then does the status bar show the lock.
    pub encrypted: bool,
    /// How to call the room (`sip:room@…`).
    pub sip_uri: String,
    /// Show the self-view picture-in-picture in calls.
    pub self_view: bool,
    /// A presentation is fed into [`CONTENT_CHANNEL`]: it fills the screen, and in a call the
    /// far end's camera goes small (bottom right) and the self-view away.
    pub content: bool,
}

pub struct Screen {
    pipeline: gst::Pipeline,
    sink: gst::Element,
    idle_text: gst::Element,
    status_text: gst::Element,
    far_pad: gst::Pad,
    self_pad: gst::Pad,
    content_pad: gst::Pad,
    /// Screen size and the picture-in-picture's size and place.
    size: (u32, u32),
    pip: (u32, u32, i32, i32),
    status: Mutex<ScreenStatus>,
}

/// After each `intervideosrc`: it answers the latency query with a maximum of 0, below the
/// compositor's minimum of one frame, and the compositor then posts a latency warning with
/// every frame it makes. A short leaky queue gives the branch room to buffer (and adds no
/// latency: the inter source produces at the output's rate, so the queue stays empty).
const INTER_QUEUE: &str = "queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream";

/// The same warning is logged again after this long at the earliest.
const WARNING_REPEAT: Duration = Duration::from_secs(60);

/// The screen runs for days and nobody pops its bus: every message would stay queued there
/// forever (a warning per frame grew an idle huisd by 250 MiB an hour). So messages are handled
/// as they are posted and dropped: errors and warnings go to the log, a repeated warning at most
/// once a minute, everything else is let go.
fn drain_bus(pipeline: &gst::Pipeline) -> Result<(), MediaError> {
    let bus = pipeline.bus().ok_or_else(|| MediaError::pipeline("the screen pipeline has no bus"))?;
    let last_warning: Mutex<Option<(String, std::time::Instant)>> = Mutex::new(None);
    bus.set_sync_handler(move |_, msg| {
        let src = || msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
        match msg.view() {
            gst::MessageView::Error(e) => {
                tracing::error!(element = %src(), debug = ?e.debug(), "the screen failed: {}", e.error());
            }
            gst::MessageView::Warning(w) => {
                let text = format!("{}: {} ({})", src(), w.error(), w.debug().unwrap_or_default());
                let mut last = last_warning.lock().unwrap_or_else(|e| e.into_inner());
                let repeat = last.as_ref().is_some_and(|(t, at)| *t == text && at.elapsed() < WARNING_REPEAT);
                if !repeat {
                    tracing::warn!("screen: {text}");
                    *last = Some((text, std::time::Instant::now()));
                }
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
    Ok(())
}

fn escape(s: &str) -> String {
    gst::glib::markup_escape_text(s).to_string()
}

impl Screen {
    /// Starts the screen at `width`×`height`@`fps` into the sink described by `sink_desc`.
    pub fn start(
        width: u32,
        height: u32,
        fps: u32,
        sink_desc: &str,
        status: ScreenStatus,
    ) -> Result<Screen, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let (pw, ph) = (width / 4 / 2 * 2, height / 4 / 2 * 2);
        let margin = height / 40;
        let desc = format!(
            "compositor name=mix background=black ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
             ! textoverlay name=status valignment=top halignment=left shaded-background=true font-desc=\"Sans 14\" \
             ! clockoverlay valignment=top halignment=right shaded-background=true font-desc=\"Sans 14\" time-format=\"%H:%M\" \
             ! videoconvert ! {sink_desc} \
             videotestsrc is-live=true pattern=solid-color foreground-color=0xff14213d \
             ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
             ! textoverlay name=idle valignment=center halignment=center line-alignment=center font-desc=\"Sans 28\" \
             ! mix.sink_0 \
             intervideosrc channel={FAR_CHANNEL} timeout=2000000000 ! {INTER_QUEUE} ! videoconvert \
             ! video/x-raw,format=I420 ! mix.sink_1 \
             intervideosrc channel={SELF_CHANNEL} timeout=2000000000 ! {INTER_QUEUE} ! videoconvert \
             ! video/x-raw,format=I420 ! mix.sink_2 \
             intervideosrc channel={CONTENT_CHANNEL} timeout=2000000000 ! {INTER_QUEUE} ! videoconvert \
             ! video/x-raw,format=I420 ! mix.sink_3"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| MediaError::Pipeline(format!("screen pipeline: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| MediaError::pipeline("the screen is not a pipeline"))?;
        let by_name = |n: &str| {
            pipeline.by_name(n).ok_or_else(|| MediaError::Pipeline(format!("screen pipeline has no element {n}")))
        };
        drain_bus(&pipeline)?;
        let mix = by_name("mix")?;
        // The display sink is the last element: the one with no source pads.
        let sink = pipeline
            .iterate_sinks()
            .into_iter()
            .flatten()
            .find(|e| !e.is::<gst::Bin>() && e.factory().is_some_and(|f| !f.name().starts_with("intervideo")))
            .ok_or_else(|| MediaError::pipeline("screen pipeline has no sink"))?;
        let far_pad = mix.static_pad("sink_1").ok_or_else(|| MediaError::pipeline("compositor sink_1"))?;
        let self_pad = mix.static_pad("sink_2").ok_or_else(|| MediaError::pipeline("compositor sink_2"))?;
        let content_pad = mix.static_pad("sink_3").ok_or_else(|| MediaError::pipeline("compositor sink_3"))?;
        // The compositor scales each picture to its pad's size, keeping its aspect (black bars
        // around a 4:3 slide). Not a videoscale per branch: each would make a full-screen frame
        // of every black frame its idle intervideosrc produces, 30 times a second, and hold a
        // pool of them (18 MB of a 1080p screen's memory); a pad at alpha 0 is skipped whole.
        for (pad, (w, h)) in [(&far_pad, (width, height)), (&self_pad, (pw, ph)), (&content_pad, (width, height))] {
            pad.set_property("width", w as i32);
            pad.set_property("height", h as i32);
            pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        }
        // Under the people's pictures: in a call with a presentation the far end is drawn small
        // over it.
        content_pad.set_property("zorder", 1u32);
        content_pad.set_property("alpha", 0.0f64);
        self_pad.set_property("xpos", (width - pw - margin) as i32);
        self_pad.set_property("ypos", (height - ph - margin) as i32);
        if let Some(p) = mix.static_pad("sink_0") {
            p.set_property("zorder", 0u32);
        }
        far_pad.set_property("zorder", 2u32);
        self_pad.set_property("zorder", 3u32);
        let pip = (pw, ph, (width - pw - margin) as i32, (height - ph - margin) as i32);
        let s = Screen {
            idle_text: by_name("idle")?,
            status_text: by_name("status")?,
            pipeline,
            sink,
            far_pad,
            self_pad,
            content_pad,
            size: (width, height),
            pip,
            status: Mutex::new(ScreenStatus::default()),
        };
        s.set_status(status);
        s.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("the screen does not start: {e}")))?;
        Ok(s)
    }

    /// Updates the status bar, the idle text and which pictures show.
    pub fn set_status(&self, st: ScreenStatus) {
        let mut cur = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let in_call = st.state == "in-call";
        let state = match st.state.as_str() {
            "in-call" => "In a call",
            "dialing" => "Calling…",
            "ringing" => "Incoming call",
            "error" => "Problem",
            _ => "Ready",
        };
        let mut bar = format!("{}  ·  {state}", escape(&st.room_name));
        if st.muted {
            bar.push_str("  ·  Microphones off");
        }
        if in_call {
            // The lock (U+1F512, from fonts-symbola on the image) in the lock's green; a person
            // sees it only when signalling and all media are encrypted.
            bar.push_str(if st.encrypted {
                "  ·  <span foreground=\"#34c759\">\u{1F512} Encrypted</span>"
            } else {
                "  ·  Not encrypted"
            });
        }
        self.status_text.set_property("text", bar);
        let idle = if st.sip_uri.is_empty() {
            format!("<b>{}</b>", escape(&st.room_name))
        } else {
            format!("<b>{}</b>\nCall this room: {}", escape(&st.room_name), escape(&st.sip_uri))
        };
        self.idle_text.set_property("text", idle);
        self.idle_text.set_property("silent", in_call || st.content);
        self.content_pad.set_property("alpha", if st.content { 1.0f64 } else { 0.0 });
        // Content large, people small: the far end's camera takes the picture-in-picture's place.
        let (w, h, x, y) = if st.content { self.pip } else { (self.size.0, self.size.1, 0, 0) };
        self.far_pad.set_property("width", w as i32);
        self.far_pad.set_property("height", h as i32);
        self.far_pad.set_property("xpos", x);
        self.far_pad.set_property("ypos", y);
        self.far_pad.set_property("alpha", if in_call { 1.0f64 } else { 0.0 });
        self.self_pad.set_property("alpha", if in_call && st.self_view && !st.content { 1.0f64 } else { 0.0 });
        *cur = st;
    }

    pub fn status(&self) -> ScreenStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The frame the screen shows now, as PNG.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, MediaError> {
        // Right after start-up the first frame may still be on its way.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let sample = loop {
            if let Some(s) = self.sink.property::<Option<gst::Sample>>("last-sample") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                return Err(MediaError::Stream {
                    element: self.sink.name().to_string(),
                    message: "the screen has shown nothing yet".into(),
                    debug: None,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let png = gst_video::convert_sample(
            &sample,
            &gst::Caps::builder("image/png").build(),
            Some(gst::ClockTime::from_seconds(5)),
        )
        .map_err(|e| MediaError::Pipeline(format!("cannot encode the screenshot: {e}")))?;
        let buf = png.buffer().ok_or_else(|| MediaError::pipeline("empty screenshot"))?;
        let map = buf.map_readable().map_err(MediaError::pipeline)?;
        Ok(map.to_vec())
    }

    /// Calls `f` with every frame handed to the display (benchmarks read it).
    pub fn on_frame(&self, f: impl Fn(&gst::BufferRef, &gst::Caps) + Send + Sync + 'static) {
        let Some(pad) = self.sink.static_pad("sink") else { return };
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let (Some(gst::PadProbeData::Buffer(b)), Some(caps)) = (&info.data, pad.current_caps()) {
                f(b, &caps);
            }
            gst::PadProbeReturn::Ok
        });
    }

    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = self.pipeline.state(gst::ClockTime::from_mseconds(Duration::from_secs(1).as_millis() as u64));
    }
}

/// The presentation fed to the screen: a content source (the HDMI input's live raw video)
/// into [`CONTENT_CHANNEL`]. Stops when dropped.
pub struct ContentFeed {
    pipeline: gst::Pipeline,
}

impl ContentFeed {
    pub fn start(source: gst::Element) -> Result<ContentFeed, MediaError> {
        Self::start_into(source, CONTENT_CHANNEL)
    }

    /// The feed into `channel` (benchmarks use their own), and into the slides session's tap
    /// ([`super::content_tap`]).
    pub fn start_into(source: gst::Element, channel: &str) -> Result<ContentFeed, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let pipeline = gst::Pipeline::with_name("content-feed");
        let rest = gst::parse::bin_from_description(
            &format!(
                // Not synchronised to the clock: the source is live and stamps on capture.
                "queue max-size-buffers=2 leaky=downstream ! videoconvert ! tee name=t \
                 t. ! queue max-size-buffers=2 leaky=downstream ! intervideosink sync=false channel={channel} \
                 t. ! queue max-size-buffers=2 leaky=downstream ! appsink name=tap sync=false max-buffers=1 drop=true"
            ),
            true,
        )
        .map_err(|e| MediaError::Pipeline(format!("content feed: {e}")))?;
        let tap = rest
            .by_name("tap")
            .and_then(|t| t.downcast::<gstreamer_app::AppSink>().ok())
            .ok_or_else(|| MediaError::pipeline("the content feed has no tap"))?;
        tap.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(|sink| {
                    if let Ok(s) = sink.pull_sample() {
                        super::content_tap::push(&s);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.add_many([&source, rest.upcast_ref()]).map_err(MediaError::pipeline)?;
        source.link(&rest).map_err(MediaError::pipeline)?;
        drain_bus(&pipeline)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("the content feed does not start: {e}")))?;
        Ok(ContentFeed { pipeline })
    }
}

impl Drop for ContentFeed {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.stop();
    }
}
