//! The slides stream a room sends while it holds the presentation floor: the content input's
//! live raw video, limited in rate and scaled, encoded for text and sent as H.264 RTP on the
//! port of the call's `a=content:slides` m-line.
//!
//! ```text
//!  ContentSource::gst_source() ─▶ videorate ─▶ videoscale ─▶ videoconvert ─▶ I420 w×h @ fps
//!      ─▶ H.264 encoder (the board's; x264 tuned for text) ─▶ rtph264pay ─▶ udpsink
//! ```
//!
//! Slides change seldom and must stay sharp: few frames (5 to 15 a second), a short GOP so a
//! late joiner or a loss recovers quickly, and the bitrate the call gives the presentation (its
//! share of the video budget). The first frame is a keyframe, so the far end shows the content
//! as soon as the floor is granted. Not yet started by calls (see `firmware/MEDIA.md`, *Content*).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;

use gst::prelude::*;

use super::MediaError;
use super::elements::{link_chain, make};
use super::video::{configure_encoder, pick_decoder, set_encoder_bitrate};

/// What the slides stream is sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlidesParams {
    /// The H.264 encoder element (hal's probing picked it).
    pub encoder: String,
    /// The presentation's share of the call's video bitrate.
    pub kbps: u32,
    /// Frames per second at most (5 to 15 for slides).
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    pub payload_type: u8,
    /// The far end's slides RTP port.
    pub remote: SocketAddr,
}

/// The running slides stream; stops when dropped.
pub struct SlidesSender {
    pipeline: gst::Pipeline,
    packets: Arc<AtomicU64>,
}

impl SlidesSender {
    /// Starts sending `source` (the content input's live element).
    pub fn start(source: gst::Element, p: &SlidesParams) -> Result<SlidesSender, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let pipeline = gst::Pipeline::with_name("slides");
        let rate = make("videorate", "slides frame rate")?;
        rate.set_property("drop-only", true);
        let scale = make("videoscale", "slides scaling")?;
        let convert = make("videoconvert", "slides conversion")?;
        let caps = make("capsfilter", "slides format")?;
        let fps = p.fps.clamp(1, 30);
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", p.width as i32)
                .field("height", p.height as i32)
                .field("framerate", gst::Fraction::new(fps as i32, 1))
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        let enc = gst::ElementFactory::make(&p.encoder).build().map_err(|_| {
            MediaError::Pipeline(format!("the H.264 encoder {} cannot be created", crate::text::excerpt(&p.encoder)))
        })?;
        configure_encoder(&enc, &p.encoder, p.kbps, fps, false);
        if p.encoder == "x264enc" {
            // Text: no psychovisual tuning that trades edges for texture, a keyframe every 2 s.
            enc.set_property("option-string", "psy=0:aq-mode=0");
            enc.set_property("key-int-max", fps * 2);
        }
        set_encoder_bitrate(&enc, &p.encoder, p.kbps);
        let pay = make("rtph264pay", "slides RTP packetizer")?;
        pay.set_property("pt", u32::from(p.payload_type));
        pay.set_property("mtu", 1200u32);
        // SPS and PPS with every keyframe: the far end decodes from any keyframe.
        pay.set_property("config-interval", -1i32);
        let sink = make("udpsink", "slides RTP")?;
        sink.set_property("host", p.remote.ip().to_string());
        sink.set_property("port", i32::from(p.remote.port()));
        sink.set_property("sync", false);
        sink.set_property("async", false);
        let els = [&source, &rate, &scale, &convert, &caps, &enc, &pay, &sink];
        pipeline.add_many(els).map_err(MediaError::pipeline)?;
        link_chain(&els)?;
        let packets = Arc::new(AtomicU64::new(0));
        if let Some(pad) = sink.static_pad("sink") {
            let n = packets.clone();
            pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
                let k = match &info.data {
                    Some(gst::PadProbeData::BufferList(l)) => l.len() as u64,
                    _ => 1,
                };
                n.fetch_add(k, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::warn!("slides stream: {} ({:?})", e.error(), e.debug());
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("the slides stream does not start: {e}")))?;
        Ok(SlidesSender { pipeline, packets })
    }

    /// RTP packets handed to the socket so far.
    pub fn packets_sent(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

impl Drop for SlidesSender {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The far end's slides, received and decoded into an inter channel (the screen's
/// [`super::screen::CONTENT_CHANNEL`]: content large, people small); stops when dropped.
pub struct SlidesReceiver {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    size: Arc<std::sync::Mutex<(u32, u32)>>,
}

impl SlidesReceiver {
    /// Receives H.264 RTP of `payload_type` on UDP `port` into `channel`.
    pub fn start(port: u16, payload_type: u8, channel: &str) -> Result<SlidesReceiver, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let pipeline = gst::Pipeline::with_name("slides-in");
        let src = make("udpsrc", "slides RTP")?;
        src.set_property("port", i32::from(port));
        src.set_property(
            "caps",
            gst::Caps::builder("application/x-rtp")
                .field("media", "video")
                .field("encoding-name", "H264")
                .field("clock-rate", 90000i32)
                .field("payload", i32::from(payload_type))
                .build(),
        );
        let jb = make("rtpjitterbuffer", "slides jitter buffer")?;
        jb.set_property("latency", 200u32);
        let depay = make("rtph264depay", "slides RTP depacketizer")?;
        let dec = pick_decoder()?;
        let convert = make("videoconvert", "slides conversion")?;
        let sink = make("intervideosink", "the slides on the screen")?;
        sink.set_property("channel", channel);
        let els = [&src, &jb, &depay, &dec, &convert, &sink];
        pipeline.add_many(els).map_err(MediaError::pipeline)?;
        link_chain(&els)?;
        let frames = Arc::new(AtomicU64::new(0));
        let size = Arc::new(std::sync::Mutex::new((0, 0)));
        if let Some(pad) = sink.static_pad("sink") {
            let (n, sz) = (frames.clone(), size.clone());
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
                // The size, on the first frame and every 30th after (the far end may change it).
                let k = n.fetch_add(1, Ordering::Relaxed);
                let caps = pad.current_caps().filter(|_| k.is_multiple_of(30));
                if let Some(info) = caps.and_then(|c| gstreamer_video::VideoInfo::from_caps(&c).ok()) {
                    *sz.lock().unwrap_or_else(|e| e.into_inner()) = (info.width(), info.height());
                }
                gst::PadProbeReturn::Ok
            });
        }
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, msg| {
                if let gst::MessageView::Error(e) = msg.view() {
                    tracing::warn!("received slides: {} ({:?})", e.error(), e.debug());
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("the slides receiver does not start: {e}")))?;
        Ok(SlidesReceiver { pipeline, frames, size })
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The received content's width and height (zeros before the first frame).
    pub fn size(&self) -> (u32, u32) {
        *self.size.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SlidesReceiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use gstreamer_app as gst_app;
    use huis_hal::content::{
        ContentSource, Frame, SimContent, SimContentConfig, VideoMode, page_index_of, psnr_luma, render_page,
    };

    use super::*;

    /// The deck, sent as the slides stream at 1080p, 10 fps, 1.5 Mbit/s, received and decoded on
    /// loopback: the page reads back and is sharp (luma PSNR against the page as drawn); stopping
    /// stops the packets at once.
    #[test]
    fn slides_reach_the_far_end_legibly_and_stop_at_once() {
        gst::init().unwrap();
        if gst::ElementFactory::find("x264enc").is_none() || gst::ElementFactory::find("avdec_h264").is_none() {
            eprintln!("x264enc or avdec_h264 missing: slides stream not checked");
            return;
        }
        let deck = SimContent::new(SimContentConfig {
            mode: Some(VideoMode::progressive(1920, 1080, 15)),
            page_interval: Duration::from_secs(60),
            ..SimContentConfig::default()
        })
        .unwrap();
        let (w, h) = (1920u32, 1080u32);
        let rx = gst::parse::launch(
            "udpsrc name=src port=0 caps=\"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96\" \
             ! rtpjitterbuffer latency=200 ! rtph264depay ! avdec_h264 ! videoconvert \
             ! video/x-raw,format=I420 ! appsink name=out sync=false max-buffers=4 drop=true",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        rx.set_state(gst::State::Playing).unwrap();
        let src = rx.by_name("src").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let port = loop {
            let p: i32 = src.property("port");
            if p != 0 {
                break p as u16;
            }
            assert!(Instant::now() < deadline, "udpsrc never bound");
            std::thread::sleep(Duration::from_millis(20));
        };
        let params = SlidesParams {
            encoder: "x264enc".into(),
            kbps: 1500,
            fps: 10,
            width: w,
            height: h,
            payload_type: 96,
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let sender = SlidesSender::start(deck.gst_source().unwrap(), &params).unwrap();
        let out = rx.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        let mut best: Option<(u32, f64)> = None;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut frames = 0;
        while Instant::now() < deadline && frames < 20 {
            let Some(s) = out.try_pull_sample(gst::ClockTime::from_mseconds(500)) else { continue };
            let buf = s.buffer().unwrap().map_readable().unwrap();
            let frame = Frame::from_bytes(w, h, &buf).unwrap();
            frames += 1;
            if let Some(page) = page_index_of(&frame) {
                let psnr = psnr_luma(&frame, &render_page(page, w, h)).unwrap();
                if best.is_none_or(|(_, b)| psnr > b) {
                    best = Some((page, psnr));
                }
            }
        }
        let (page, psnr) = best.expect("no decoded slide read back");
        eprintln!("slides stream: {frames} frames decoded, page {page} at {psnr:.1} dB luma PSNR");
        assert_eq!(page, 0);
        assert!(psnr >= 30.0, "page {page} at only {psnr:.1} dB");

        // Stopping (the floor released) stops the packets at once.
        assert!(sender.packets_sent() > 0);
        let t = Instant::now();
        drop(sender);
        assert!(t.elapsed() < Duration::from_secs(1), "stopping took {:?}", t.elapsed());
        // Nothing arrives any more once what was in flight is out of the jitter buffer.
        std::thread::sleep(Duration::from_millis(500));
        while out.try_pull_sample(gst::ClockTime::from_mseconds(50)).is_some() {}
        assert!(out.try_pull_sample(gst::ClockTime::from_mseconds(700)).is_none(), "frames still arrive after stop");
        rx.set_state(gst::State::Null).unwrap();
    }

    /// The receiver decodes the far end's slides into its inter channel, at their size.
    #[test]
    fn received_slides_go_to_the_screen_channel() {
        gst::init().unwrap();
        if gst::ElementFactory::find("x264enc").is_none() || gst::ElementFactory::find("avdec_h264").is_none() {
            eprintln!("x264enc or avdec_h264 missing: slides receiver not checked");
            return;
        }
        let deck = SimContent::new(SimContentConfig {
            mode: Some(VideoMode::progressive(1280, 720, 15)),
            page_interval: Duration::from_secs(60),
            ..SimContentConfig::default()
        })
        .unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let channel = "huis-test-slides";
        let rx = SlidesReceiver::start(port, 96, channel).unwrap();
        let screen = gst::parse::launch(&format!(
            "intervideosrc channel={channel} ! videoconvert ! video/x-raw,format=I420 ! appsink name=out sync=false max-buffers=2 drop=true"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        screen.set_state(gst::State::Playing).unwrap();
        let params = SlidesParams {
            encoder: "x264enc".into(),
            kbps: 1200,
            fps: 10,
            width: 1280,
            height: 720,
            payload_type: 96,
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let _tx = SlidesSender::start(deck.gst_source().unwrap(), &params).unwrap();
        let out = screen.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut best = 0.0f64;
        while Instant::now() < deadline && best < 30.0 {
            let Some(s) = out.try_pull_sample(gst::ClockTime::from_mseconds(500)) else { continue };
            let info = gstreamer_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
            if (info.width(), info.height()) != (1280, 720) {
                continue;
            }
            let buf = s.buffer().unwrap().map_readable().unwrap();
            let frame = Frame::from_bytes(1280, 720, &buf).unwrap();
            if page_index_of(&frame) == Some(0) {
                best = best.max(psnr_luma(&frame, &render_page(0, 1280, 720)).unwrap());
            }
        }
        eprintln!("slides receiver: {} frames, {:?}, page 0 at {best:.1} dB", rx.frames(), rx.size());
        assert!(best >= 30.0, "the received page reached only {best:.1} dB");
        assert!(rx.frames() > 0);
        assert_eq!(rx.size(), (1280, 720));
        screen.set_state(gst::State::Null).unwrap();
    }
}
