//! The presentation's glass-to-glass latency and legibility on this machine, through huisd's own
//! code: the sim board's slide deck (1080p, a new page every few seconds) through huisd's
//! `ContentFeed` and its tap, a slides [`VideoSession`] (`text: true`: the encoder
//! tuned for text, at a fixed bitrate) sending it over loopback RTP to a second session that
//! decodes it into the screen's content channel, and the real [`Screen`] compositor showing it
//! full screen, as a far end's room does.
//!
//! Latency: the deck's pages change at known instants (plug time + k × interval); one sample is
//! the time from a change to the first frame at the screen's sink whose page index (read off the
//! picture, `page_index_of`) is the new page. It includes the capture's frame period, the
//! encoder, RTP, the 100 ms jitter buffer, the decoder and the screen's compositor.
//!
//! Legibility: decoded frames at full size (a second reader of the content channel, 1080p) are
//! compared with the page as the deck draws it: luma SSIM (8×8 windows) and PSNR, for frames at
//! least 1 s after their page appeared (settled), and the worst first second after a change.
//! Bitrate: RTP payload bytes received over the measured time.
//!
//! `cargo run -p huis-firmware --example content_quality -- [SECONDS] [ENCODER] [KBPS] [FPS] [WxH]`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use huis_firmware::media::content_tap;
use huis_firmware::media::screen::{CONTENT_CHANNEL, ContentFeed, Screen, ScreenStatus};
use huis_firmware::media::video::CaptureHook;
use huis_firmware::media::{Direction, RtpSockets, VideoFeedback, VideoSession, VideoSessionParams};
use huis_hal::content::{
    ContentSource, Frame, SimContent, SimContentConfig, VideoMode, page_index_of, psnr_luma, render_page, ssim_luma,
};

use gst::prelude::*;

const DECK_CHANNEL: &str = "bench-deck";
/// Not a multiple of any frame period, so the page changes fall at every phase of the capture.
const PAGE_INTERVAL: Duration = Duration::from_millis(3037);
const PAGES: u32 = 10;
/// As the SIP backend's slides sessions (`proto/sip/content.rs`).
const JITTER_BUFFER: Duration = Duration::from_millis(50);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The first capture of each new page, ms after the page changed (the capture side's share).
fn capture_hook(
    page_start: impl Fn(u32) -> Option<Instant> + Send + Sync + 'static,
) -> (CaptureHook, Arc<Mutex<Vec<f64>>>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let last = Mutex::new(None::<u32>);
    let out = samples.clone();
    let hook: CaptureHook = Arc::new(move |buf: &mut gst::BufferRef, info: &gst_video::VideoInfo| {
        let Ok(caps) = info.to_caps() else { return };
        let Some(page) = frame_of(buf, &caps).as_ref().and_then(page_index_of) else { return };
        let mut last = last.lock().unwrap();
        if *last != Some(page) {
            if last.is_some()
                && let Some(t) = page_start(page)
            {
                out.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
            *last = Some(page);
        }
    });
    (hook, samples)
}

#[allow(clippy::too_many_arguments)]
fn session(
    sockets: RtpSockets,
    remote: SocketAddr,
    encoder: &str,
    source: &str,
    (w, h, fps): (u32, u32, u32),
    kbps: u32,
    far: &str,
    direction: Direction,
    on_capture: Option<CaptureHook>,
) -> VideoSession {
    VideoSession::start(VideoSessionParams {
        sockets,
        remote_rtp: remote,
        send_pt: 96,
        recv_pt: 96,
        packetization_mode: 1,
        source: source.into(),
        width: w,
        height: h,
        framerate: fps,
        encoder: encoder.into(),
        start_kbps: kbps,
        min_kbps: kbps,
        max_kbps: kbps,
        feedback: VideoFeedback { nack: true, pli: true, fir: true, tmmbr: false, remb: false },
        rtx: None,
        cname: "bench".into(),
        direction,
        jitter_buffer: JITTER_BUFFER,
        rtcp_interval: Duration::from_secs(1),
        far_channel: far.into(),
        self_channel: format!("{far}-unshown"),
        on_capture,
        rtcp_mux: false,
        srtp: None,
        dtls: None,
        text: true,
    })
    .expect("start a video session")
}

/// An I420 buffer as a deck frame (`None` for other formats).
fn frame_of(buf: &gst::BufferRef, caps: &gst::CapsRef) -> Option<Frame> {
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    if info.format() != gst_video::VideoFormat::I420 {
        return None;
    }
    let map = buf.map_readable().ok()?;
    Frame::from_bytes(info.width(), info.height(), &map).ok()
}

/// Quality of one decoded frame against its page: (seconds since the page appeared, SSIM, PSNR).
type Quality = (f64, f64, f64);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let encoder = args.get(2).cloned().unwrap_or_else(|| "x264enc".into());
    let kbps: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let fps: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(15);
    let (w, h) = args
        .get(5)
        .and_then(|s| s.split_once('x'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((1920u32, 1080u32));
    gst::init().expect("GStreamer");

    // The far end's screen, showing content.
    let status =
        ScreenStatus { room_name: "bench".into(), state: "in-call".into(), content: true, ..Default::default() };
    let screen = Screen::start(1280, 720, 30, "appsink name=screen max-buffers=1 drop=true sync=false", status)
        .expect("start the screen");

    // The laptop: the deck at 1080p15 through huisd's ContentFeed (its local picture into a
    // channel of its own here, since this process's screen is the far end's).
    let deck = SimContent::new(SimContentConfig {
        mode: None,
        page_interval: PAGE_INTERVAL,
        pages: PAGES,
        ..SimContentConfig::default()
    })
    .expect("the sim deck");
    let plugged = Instant::now();
    deck.plug(VideoMode::progressive(1920, 1080, 15)).expect("plug the deck");
    let page_start = move |page: u32| -> Option<Instant> {
        // The latest instant at or before now at which `page` appeared.
        let n = (plugged.elapsed().as_millis() / PAGE_INTERVAL.as_millis()) as u32;
        (0..=n).rev().find(|k| k % PAGES == page % PAGES).map(|k| plugged + PAGE_INTERVAL * k)
    };
    let feed =
        ContentFeed::start_into(deck.gst_source().expect("the deck's source"), DECK_CHANNEL).expect("the content feed");

    // Latency at the screen: the first frame of each new page.
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let last_page = Arc::new(Mutex::new(None::<u32>));
    {
        let (latencies, last_page) = (latencies.clone(), last_page.clone());
        screen.on_frame(move |buf, caps| {
            let Some(page) = frame_of(buf, caps).as_ref().and_then(page_index_of) else { return };
            let mut last = last_page.lock().unwrap();
            if *last != Some(page) {
                if last.is_some()
                    && let Some(t) = page_start(page)
                {
                    latencies.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                }
                *last = Some(page);
            }
        });
    }

    // The call: A sends the deck as slides, B decodes into the screen's content channel.
    let lo = "127.0.0.1:0".parse().unwrap();
    let (sa, sb) = (RtpSockets::bind(lo).unwrap(), RtpSockets::bind(lo).unwrap());
    let (ra, rb) = (sa.local_rtp(), sb.local_rtp());
    let source = std::env::var("HUIS_BENCH_SOURCE").unwrap_or_else(|_| content_tap::TAP_SOURCE.to_owned());
    let (hook, captured) = capture_hook(page_start);
    let a = session(sa, rb, &encoder, &source, (w, h, fps), kbps, "bench-a-far", Direction::SendRecv, Some(hook));
    let b = session(
        sb,
        ra,
        &encoder,
        "videotestsrc is-live=true pattern=black",
        (320, 180, 5),
        kbps,
        CONTENT_CHANNEL,
        Direction::RecvOnly,
        None,
    );

    // Legibility at full size: a second reader of the content channel.
    let reader = gst::parse::launch(&format!(
        "intervideosrc channel={CONTENT_CHANNEL} ! video/x-raw,framerate={fps}/1 ! videoconvert \
         ! video/x-raw,format=I420 ! appsink name=out sync=false max-buffers=1 drop=true"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    reader.set_state(gst::State::Playing).unwrap();
    let out = reader.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();

    // Warm-up (the first keyframe), then measure.
    std::thread::sleep(Duration::from_secs(3));
    latencies.lock().unwrap().clear();
    captured.lock().unwrap().clear();
    let bytes0 = b.stats().bytes_received;
    let t0 = Instant::now();
    let mut quality: Vec<Quality> = Vec::new();
    let mut next_sample = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let Some(s) = out.try_pull_sample(gst::ClockTime::from_mseconds(200)) else { continue };
        if Instant::now() < next_sample {
            continue;
        }
        let (Some(buf), Some(caps)) = (s.buffer(), s.caps()) else { continue };
        let Some(f) = frame_of(buf, caps).filter(|f| (f.width, f.height) == (w, h)) else { continue };
        let Some(page) = page_index_of(&f) else { continue };
        let Some(since) = page_start(page) else { continue };
        let reference = render_page(page, w, h);
        if let (Some(ss), Some(db)) = (ssim_luma(&f, &reference), psnr_luma(&f, &reference)) {
            quality.push((since.elapsed().as_secs_f64(), ss, db));
        }
        // SSIM of a 1080p frame is costly: about four samples a second.
        next_sample = Instant::now() + Duration::from_millis(250);
    }
    let measured = t0.elapsed().as_secs_f64();
    let (sa_stats, sb_stats) = (a.stats(), b.stats());
    let kbit = (sb_stats.bytes_received - bytes0) as f64 * 8.0 / 1000.0 / measured;
    a.stop();
    b.stop();
    reader.set_state(gst::State::Null).unwrap();
    drop(feed);
    screen.stop();

    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let mut cap = captured.lock().unwrap().clone();
    cap.sort_by(f64::total_cmp);
    let settled: Vec<&Quality> = quality.iter().filter(|q| q.0 >= 1.0).collect();
    let mut ss: Vec<f64> = settled.iter().map(|q| q.1).collect();
    ss.sort_by(f64::total_cmp);
    let mut db: Vec<f64> = settled.iter().map(|q| q.2).collect();
    db.sort_by(f64::total_cmp);
    let first = quality.iter().filter(|q| q.0 < 1.0).map(|q| q.1).fold(f64::INFINITY, f64::min);
    println!(
        "slides {w}x{h}@{fps}, encoder {encoder} at {kbps} kbit/s, a page every {:.3} s, {measured:.0} s measured",
        PAGE_INTERVAL.as_secs_f64()
    );
    println!(
        "  glass-to-glass (page change -> far screen) ms: n={} p50={:.0} p95={:.0} min={:.0} max={:.0}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        lat.first().copied().unwrap_or(f64::NAN),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  of which page change -> captured for encoding (deck frame, channel, rate): p50={:.0} max={:.0}",
        percentile(&cap, 0.5),
        cap.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  settled frames (>= 1 s on their page): n={} SSIM p50={:.4} min={:.4}; PSNR p50={:.1} dB min={:.1} dB",
        ss.len(),
        percentile(&ss, 0.5),
        ss.first().copied().unwrap_or(f64::NAN),
        percentile(&db, 0.5),
        db.first().copied().unwrap_or(f64::NAN)
    );
    println!("  first second after a change: worst SSIM {first:.4}");
    println!(
        "  received {kbit:.0} kbit/s of RTP payload; A sent {} frames ({} keyframes), B decoded {} at {}x{}",
        sa_stats.frames_sent,
        sa_stats.keyframes_sent,
        sb_stats.frames_decoded,
        sb_stats.recv_width,
        sb_stats.recv_height
    );
}
