//! Glass-to-glass latency and CPU of call video on this machine, through huisd's own code:
//! two [`VideoSession`]s (the sim camera, the configured encoder, RTP over loopback, the jitter
//! buffer, the decoder) calling each other, and the real [`Screen`] compositor showing B's far
//! end (A's camera) full screen with a self-view.
//!
//! Capture time: every frame leaving A's camera gets the wall-clock time (ms) written into its
//! picture as 32 black/white blocks (24 bits of time, 8 check bits; `media::stamp`). Display time: when a frame
//! reaches the screen's sink, the blocks are read back from the far-end picture and the
//! difference to now is one latency sample. Frames whose check bits do not match (a block
//! under the ball, a damaged frame) are not counted.
//!
//! CPU: the process's user+system time from /proc/self/stat, first with only the screen
//! running (idle), then during the call; per stream = (call - idle) / 2, since the call carries
//! two 720p30 streams (A→B and B→A), each encoded once and decoded once.
//!
//! `cargo run --release -p huis-firmware --example video_latency -- [SECONDS] [ENCODER] [WIDTHxHEIGHT] [FPS]`

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use huis_firmware::media::screen::{Screen, ScreenStatus};
use huis_firmware::media::stamp;
use huis_firmware::media::video::{CaptureHook, FAR_CHANNEL};
use huis_firmware::media::{Direction, RtpSockets, VideoFeedback, VideoSession, VideoSessionParams};
use huis_hal::camera::{Camera, SimCamera};

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[allow(clippy::too_many_arguments)]
fn session(
    sockets: RtpSockets,
    remote: SocketAddr,
    encoder: &str,
    (w, h, fps): (u32, u32, u32),
    far: &str,
    own: &str,
    on_capture: Option<CaptureHook>,
) -> VideoSession {
    VideoSession::start(VideoSessionParams {
        sockets,
        remote_rtp: remote,
        send_pt: 96,
        recv_pt: 96,
        packetization_mode: 1,
        source: SimCamera::default().gst_source(w, h, fps),
        width: w,
        height: h,
        framerate: fps,
        encoder: encoder.into(),
        start_kbps: 1500,
        min_kbps: 150,
        max_kbps: 2000,
        feedback: VideoFeedback { nack: false, pli: true, fir: true, tmmbr: false, remb: false },
        rtx: None,
        cname: "bench".into(),
        direction: Direction::SendRecv,
        jitter_buffer: Duration::from_millis(50),
        rtcp_interval: Duration::from_secs(1),
        far_channel: far.into(),
        self_channel: own.into(),
        on_capture,
        rtcp_mux: false,
        srtp: None,
        dtls: None,
        text: false,
    })
    .expect("start a video session")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let encoder = args.get(2).cloned().unwrap_or_else(|| "x264enc".into());
    let (w, h) = args
        .get(3)
        .and_then(|s| s.split_once('x'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((1280u32, 720u32));
    let fps: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(30);
    gst::init().expect("GStreamer");

    let status =
        ScreenStatus { room_name: "bench".into(), state: "in-call".into(), self_view: true, ..Default::default() };
    let screen = Screen::start(1280, 720, fps, "appsink name=screen max-buffers=1 drop=true sync=false", status)
        .expect("start the screen");
    let samples = Arc::new(Mutex::new(Vec::<f64>::new()));
    let unreadable = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (samples, unreadable) = (samples.clone(), unreadable.clone());
        screen.on_frame(move |buf, caps| match stamp::latency_ms(buf, caps) {
            Some(d) => samples.lock().unwrap().push(f64::from(d)),
            None => {
                unreadable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    // Idle: the screen alone.
    std::thread::sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();

    let lo = "127.0.0.1:0".parse().unwrap();
    let (sa, sb) = (RtpSockets::bind(lo).unwrap(), RtpSockets::bind(lo).unwrap());
    let (ra, rb) = (sa.local_rtp(), sb.local_rtp());
    let hook: CaptureHook = Arc::new(stamp::write);
    let a = session(sa, rb, &encoder, (w, h, fps), "bench-a-far", "huis-self", Some(hook));
    let b = session(sb, ra, &encoder, (w, h, fps), FAR_CHANNEL, "bench-b-self", None);
    // Warm-up (first keyframes, jitter buffers filling), then measure.
    std::thread::sleep(Duration::from_secs(3));
    samples.lock().unwrap().clear();
    unreadable.store(0, std::sync::atomic::Ordering::Relaxed);
    let (c1, t1) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let call_cpu = (cpu_seconds() - c1) / t1.elapsed().as_secs_f64();
    let (sa_stats, sb_stats) = (a.stats(), b.stats());
    a.stop();
    b.stop();
    screen.stop();

    let mut v = samples.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    println!("video glass-to-glass, {w}x{h}@{fps}, encoder {encoder}, {secs} s measured");
    println!(
        "  latency ms: n={} p50={:.0} p95={:.0} min={:.0} max={:.0}  (frames without a readable stamp: {})",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
        unreadable.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "  CPU (one core = 100 %): screen alone {:.0} %, call {:.0} %, per {w}x{h}@{fps} stream (encode + decode) {:.0} %",
        idle_cpu * 100.0,
        call_cpu * 100.0,
        (call_cpu - idle_cpu) / 2.0 * 100.0
    );
    println!(
        "  A: sent {} frames, decoded {}; B: sent {}, decoded {} ({}x{}); bitrate A {} kbit/s",
        sa_stats.frames_sent,
        sa_stats.frames_decoded,
        sb_stats.frames_sent,
        sb_stats.frames_decoded,
        sb_stats.recv_width,
        sb_stats.recv_height,
        sa_stats.bitrate_kbps
    );
}
