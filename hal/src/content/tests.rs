//! Unit tests: the deck's pages and their code, the sim's signal and its
//! GStreamer source, and the pure parts of the V4L2 backend (structure
//! layouts, request numbers, timings to signal, UVC mode choice). The V4L2
//! backend itself needs a bridge or a dongle and is not run here.

use std::sync::mpsc;

use super::*;

fn channel_sink() -> (SignalSink, mpsc::Receiver<Signal>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(move |s| drop(tx.send(s))), rx)
}

#[test]
fn layout_is_gstreamers() {
    gst::init().unwrap();
    for (w, h) in [(1920, 1080), (1280, 720), (1366, 768), (161, 121), (640, 480)] {
        let ours = I420Layout::new(w, h);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h).build().unwrap();
        let stride: Vec<usize> = info.stride().iter().map(|&s| s as usize).collect();
        assert_eq!(ours.stride.to_vec(), stride, "{w}x{h}");
        assert_eq!(ours.offset.to_vec(), info.offset().to_vec(), "{w}x{h}");
        assert_eq!(ours.size, info.size(), "{w}x{h}");
    }
}

#[test]
fn pages_are_deterministic_and_carry_their_index() {
    for (w, h) in [(1920, 1080), (1280, 720), (1366, 768), (640, 480), (320, 240)] {
        for i in [0, 1, 7, 255, 4242, 65535] {
            let a = render_page(i, w, h);
            assert_eq!(a, render_page(i, w, h));
            assert_eq!(a.data.len(), I420Layout::new(w, h).size);
            assert_eq!(page_index_of(&a), Some(i), "{w}x{h} page {i}");
        }
        assert_ne!(render_page(0, w, h), render_page(1, w, h));
    }
    assert_eq!(page_index_of(&Frame::new(1280, 720)), None, "a blank frame is no page");
}

#[test]
fn pages_have_text_and_fine_detail() {
    let p = render_page(3, 1920, 1080);
    // Count luma transitions along rows: text and the wedge make many.
    let l = p.layout();
    let mut edges = 0;
    for y in 0..p.height as usize {
        let row = &p.data[y * l.stride[0]..y * l.stride[0] + p.width as usize];
        edges += row.windows(2).filter(|w| w[0].abs_diff(w[1]) > 100).count();
    }
    assert!(edges > 50_000, "only {edges} sharp edges");
}

#[test]
fn the_index_survives_noise_and_psnr_measures_it() {
    let p = render_page(1234, 1280, 720);
    let mut noisy = p.clone();
    // Deterministic noise of up to +-24 on luma.
    let mut x: u32 = 1;
    for b in &mut noisy.data[..I420Layout::new(1280, 720).offset[1]] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = ((x >> 16) % 49) as i32 - 24;
        *b = (i32::from(*b) + n).clamp(0, 255) as u8;
    }
    assert_eq!(page_index_of(&noisy), Some(1234));
    let db = psnr_luma(&p, &noisy).unwrap();
    assert!((20.0..40.0).contains(&db), "{db} dB");
    assert_eq!(psnr_luma(&p, &p), Some(f64::INFINITY));
    assert_eq!(psnr_luma(&p, &render_page(0, 640, 480)), None);
}

#[test]
fn ssim_is_one_for_equal_pages_and_falls_with_blur_more_than_with_a_shift_of_light() {
    let p = render_page(7, 640, 360);
    assert!((ssim_luma(&p, &p).unwrap() - 1.0).abs() < 1e-9);
    // A 3-tap horizontal blur smears the glyphs' edges: structure is lost.
    let stride = p.layout().stride[0];
    let mut blur = p.clone();
    for y in 0..360usize {
        for x in 1..639usize {
            let i = y * stride + x;
            blur.data[i] = ((u32::from(p.data[i - 1]) + u32::from(p.data[i]) + u32::from(p.data[i + 1])) / 3) as u8;
        }
    }
    // A uniform brightening of 8 levels keeps every edge.
    let mut light = p.clone();
    for b in &mut light.data[..I420Layout::new(640, 360).offset[1]] {
        *b = b.saturating_add(8);
    }
    let (sb, sl) = (ssim_luma(&p, &blur).unwrap(), ssim_luma(&p, &light).unwrap());
    assert!(sb < 0.95 && sl > 0.98 && sl > sb, "blur {sb}, light {sl}");
    assert_eq!(ssim_luma(&p, &render_page(7, 320, 180)), None);
}

#[test]
fn sim_signal_changes_arrive_in_order() {
    let sim = SimContent::default();
    let (sink, rx) = channel_sink();
    sim.watch(sink).unwrap();
    let hd = VideoMode::progressive(1920, 1080, 15);
    let hd720 = VideoMode::progressive(1280, 720, 30);
    let ntsc = VideoMode { width: 1280, height: 720, fps_num: 60000, fps_den: 1001, interlaced: false };
    sim.unplug();
    sim.plug(hd720).unwrap();
    sim.plug(hd720).unwrap(); // no change, no event
    sim.plug(ntsc).unwrap();
    sim.unplug();
    sim.unplug();
    let got: Vec<Signal> = rx.try_iter().collect();
    assert_eq!(
        got,
        vec![Signal::Active(hd), Signal::NoSignal, Signal::Active(hd720), Signal::Active(ntsc), Signal::NoSignal]
    );
    assert_eq!(sim.signal().unwrap(), Signal::NoSignal);
    assert_eq!(sim.current_page(), None);
    assert_eq!(ntsc.fps_milli(), 59940);
}

#[test]
fn sim_refuses_modes_a_cable_cannot_carry() {
    let sim = SimContent::default();
    for m in [
        VideoMode::progressive(8000, 1080, 30),
        VideoMode::progressive(100, 100, 30),
        VideoMode::progressive(1920, 1080, 0),
        VideoMode { interlaced: true, ..VideoMode::progressive(1920, 1080, 30) },
    ] {
        let e = sim.plug(m).unwrap_err();
        assert!(matches!(e, HalError::Invalid { .. }), "{e}");
    }
    assert!(matches!(sim.signal().unwrap(), Signal::Active(_)), "a refused plug changes nothing");
    let unplugged = SimContent::new(SimContentConfig { mode: None, ..Default::default() }).unwrap();
    assert!(matches!(unplugged.gst_source().unwrap_err(), HalError::NoSignal { .. }));
}

#[test]
fn sim_reports_modes_beyond_the_boards_limits_as_unsupported() {
    let limits = ContentLimits { max_width: Some(1920), max_height: Some(1080), max_fps: Some(30) };
    let sim = SimContent::new(SimContentConfig { limits, ..Default::default() }).unwrap();
    let (sink, rx) = channel_sink();
    sim.watch(sink).unwrap();
    sim.plug(VideoMode::progressive(3840, 2160, 30)).unwrap();
    sim.plug(VideoMode::progressive(1920, 1080, 60)).unwrap();
    sim.plug(VideoMode::progressive(1280, 720, 30)).unwrap();
    let got: Vec<Signal> = rx.try_iter().collect();
    assert_eq!(got[0], Signal::Active(VideoMode::progressive(1920, 1080, 15)));
    assert!(matches!(&got[1], Signal::Unsupported { reason } if reason.contains("wider")), "{got:?}");
    assert!(matches!(&got[2], Signal::Unsupported { reason } if reason.contains("frames per second")), "{got:?}");
    assert_eq!(got[3], Signal::Active(VideoMode::progressive(1280, 720, 30)));
    sim.plug(VideoMode::progressive(3840, 2160, 30)).unwrap();
    assert!(matches!(sim.gst_source().unwrap_err(), HalError::Device { .. }));
}

/// A pipeline `source ! appsink`, playing.
struct Capture {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Capture {
    fn new(source: gst::Element) -> Capture {
        let pipeline = gst::Pipeline::new();
        let sink = gst_app::AppSink::builder().sync(false).max_buffers(2).drop(true).build();
        pipeline.add_many([&source, sink.upcast_ref()]).unwrap();
        source.link(&sink).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Capture { pipeline, sink }
    }

    fn pull(&self, timeout_ms: u64) -> Option<Frame> {
        let s = self.sink.try_pull_sample(gst::ClockTime::from_mseconds(timeout_ms))?;
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        assert_eq!(info.format(), gst_video::VideoFormat::I420);
        let map = s.buffer().unwrap().map_readable().unwrap();
        Some(Frame::from_bytes(info.width(), info.height(), &map).unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[test]
fn sim_source_gives_the_rendered_pages_exactly_and_follows_the_cable() {
    let sim = SimContent::default();
    let cap = Capture::new(sim.gst_source().unwrap());
    let f = cap.pull(5000).expect("a frame");
    assert_eq!((f.width, f.height), (1920, 1080));
    assert_eq!(f, render_page(0, 1920, 1080), "the first frame is page 0, bit for bit");

    // A resolution change renegotiates; the page stays.
    sim.plug(VideoMode::progressive(1280, 720, 30)).unwrap();
    let f = (0..50).filter_map(|_| cap.pull(1000)).find(|f| f.width == 1280).expect("a 720p frame");
    assert_eq!(f, render_page(0, 1280, 720));

    // Unplugged: no frames (after the few already queued).
    sim.unplug();
    while cap.pull(300).is_some() {}
    assert!(cap.pull(500).is_none(), "frames without a signal");

    // Plugged again: the deck starts over.
    sim.plug(VideoMode::progressive(640, 480, 15)).unwrap();
    let f = cap.pull(5000).expect("a frame after plugging in");
    assert_eq!(f, render_page(0, 640, 480));
}

#[test]
fn sim_turns_pages_on_time() {
    let sim = SimContent::new(SimContentConfig {
        mode: Some(VideoMode::progressive(320, 240, 30)),
        page_interval: Duration::from_millis(500),
        pages: 3,
        ..Default::default()
    })
    .unwrap();
    let cap = Capture::new(sim.gst_source().unwrap());
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_millis(2200) {
        if let Some(f) = cap.pull(1000) {
            let i = page_index_of(&f).expect("every frame is a page");
            assert_eq!(f, render_page(i, 320, 240));
            if seen.last() != Some(&i) {
                seen.push(i);
            }
        }
    }
    // 2.2 s at 0.5 s a page: 0, 1, 2, 0, 1 (a page is half a second, so
    // even a loaded machine does not skip one).
    assert!(seen.len() >= 4, "{seen:?}");
    for w in seen.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 3, "{seen:?}");
    }
}

// ---------------------------------------------------------------------------
// V4L2.

#[test]
fn v4l2_structures_have_the_kernels_sizes() {
    // linux/videodev2.h: v4l2_bt_timings and v4l2_dv_timings are packed.
    assert_eq!(size_of::<V4l2BtTimings>(), 124);
    assert_eq!(size_of::<V4l2DvTimings>(), 132);
    assert_eq!(size_of::<V4l2EventSubscription>(), 32);
    // The same structures as bindgen read them from this machine's headers.
    use v4l::v4l_sys as k;
    assert_eq!(size_of::<V4l2BtTimings>(), size_of::<k::v4l2_bt_timings>());
    assert_eq!(size_of::<V4l2DvTimings>(), size_of::<k::v4l2_dv_timings>());
    assert_eq!(size_of::<V4l2EventSubscription>(), size_of::<k::v4l2_event_subscription>());
    assert_eq!(size_of::<V4l2Event>(), size_of::<k::v4l2_event>());
    assert_eq!(align_of::<V4l2Event>(), align_of::<k::v4l2_event>());
    assert_eq!(V4L2_EVENT_SOURCE_CHANGE, k::V4L2_EVENT_SOURCE_CHANGE);
    assert_eq!(V4L2_DV_FL_REDUCED_FPS, k::V4L2_DV_FL_REDUCED_FPS);
    assert_eq!(V4L2_DV_INTERLACED, k::V4L2_DV_INTERLACED);
    assert_eq!(V4L2_DV_BT_656_1120, k::V4L2_DV_BT_656_1120);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn v4l2_request_numbers_are_the_kernels_on_64_bit() {
    assert_eq!(size_of::<V4l2Event>(), 136);
    assert_eq!(VIDIOC_QUERY_DV_TIMINGS, 0x8084_5663);
    assert_eq!(VIDIOC_S_DV_TIMINGS, 0xc084_5657);
    assert_eq!(VIDIOC_SUBSCRIBE_EVENT, 0x4020_565a);
    assert_eq!(VIDIOC_DQEVENT, 0x8088_5659);
}

/// CEA-861 timings: `(w, h, pixel clock, hfp, hsync, hbp, vfp, vsync, vbp)`.
fn bt(w: u32, h: u32, pc: u64, hb: [u32; 3], vb: [u32; 3]) -> V4l2DvTimings {
    // SAFETY: all-zero bytes are a valid V4l2DvTimings.
    let mut t: V4l2DvTimings = unsafe { std::mem::zeroed() };
    t.bt.width = w;
    t.bt.height = h;
    t.bt.pixelclock = pc;
    [t.bt.hfrontporch, t.bt.hsync, t.bt.hbackporch] = hb;
    [t.bt.vfrontporch, t.bt.vsync, t.bt.vbackporch] = vb;
    t
}

#[test]
fn timings_become_signals() {
    let none = ContentLimits::default();
    let p1080_60 = bt(1920, 1080, 148_500_000, [88, 44, 148], [4, 5, 36]);
    assert_eq!(signal_from_query(Ok(p1080_60), &none), Signal::Active(VideoMode::progressive(1920, 1080, 60)));

    let mut p720_5994 = bt(1280, 720, 74_175_824, [110, 40, 220], [5, 5, 20]);
    assert_eq!(
        signal_from_query(Ok(p720_5994), &none),
        Signal::Active(VideoMode { width: 1280, height: 720, fps_num: 60000, fps_den: 1001, interlaced: false })
    );
    // The nominal clock with the reduced-rate flag says the same.
    p720_5994.bt.pixelclock = 74_250_000;
    p720_5994.bt.flags = V4L2_DV_FL_REDUCED_FPS;
    assert_eq!(timings_fps(&p720_5994.bt), (60000, 1001));

    let mut i1080 = bt(1920, 1080, 74_250_000, [88, 44, 148], [2, 5, 15]);
    i1080.bt.interlaced = V4L2_DV_INTERLACED;
    [i1080.bt.il_vfrontporch, i1080.bt.il_vsync, i1080.bt.il_vbackporch] = [2, 5, 16];
    assert_eq!(
        signal_from_query(Ok(i1080), &none),
        Signal::Active(VideoMode { interlaced: true, ..VideoMode::progressive(1920, 1080, 30) })
    );

    // VESA 1024x768@60 (65 MHz) runs at 60.004: nominally 60.
    let xga = bt(1024, 768, 65_000_000, [24, 136, 160], [3, 6, 29]);
    assert_eq!(timings_fps(&xga.bt), (60, 1));
    // 1366x768 at 85.5 MHz runs at 59.79: neither 60 nor 59.94, kept exact.
    let wxga = bt(1366, 768, 85_500_000, [70, 143, 213], [3, 3, 24]);
    let (n, d) = timings_fps(&wxga.bt);
    assert_eq!(u64::from(n) * 1_430_016, 85_500_000 * u64::from(d), "{n}/{d}");

    assert_eq!(signal_from_query(Err(libc::ENOLINK), &none), Signal::NoSignal);
    assert_eq!(signal_from_query(Err(libc::ENOLCK), &none), Signal::NoSignal);
    assert!(
        matches!(signal_from_query(Err(libc::ERANGE), &none), Signal::Unsupported { reason } if reason.contains("range"))
    );
    assert!(matches!(signal_from_query(Err(libc::EIO), &none), Signal::Unsupported { .. }));

    let pi = ContentLimits { max_width: Some(1920), max_height: Some(1080), max_fps: Some(30) };
    assert!(
        matches!(signal_from_query(Ok(p1080_60), &pi), Signal::Unsupported { reason } if reason.contains("more than this board takes (30)"))
    );
    let p1080_30 = bt(1920, 1080, 74_250_000, [88, 44, 148], [4, 5, 36]);
    assert_eq!(signal_from_query(Ok(p1080_30), &pi), Signal::Active(VideoMode::progressive(1920, 1080, 30)));
    let p2160_30 = bt(3840, 2160, 297_000_000, [176, 88, 296], [8, 10, 72]);
    assert!(matches!(signal_from_query(Ok(p2160_30), &pi), Signal::Unsupported { reason } if reason.contains("wider")));
}

#[test]
fn uvc_mode_is_the_largest_then_fastest_then_raw() {
    let f = |fourcc: &str, w, h, rates: &[u32]| crate::camera::VideoFormat {
        fourcc: fourcc.into(),
        width: w,
        height: h,
        framerates: rates.to_vec(),
    };
    let formats = vec![
        f("YUYV", 1920, 1080, &[5]),
        f("YUYV", 1280, 720, &[10]),
        f("YUYV", 640, 480, &[30]),
        f("MJPG", 1920, 1080, &[60, 30]),
        f("MJPG", 1280, 720, &[30]),
        f("NV12", 1280, 720, &[30]),
        f("H264", 3840, 2160, &[30]),
    ];
    let none = ContentLimits::default();
    assert_eq!(pick_uvc_mode(&formats, &none), Some(("MJPG".into(), VideoMode::progressive(1920, 1080, 60))));
    let fps30 = ContentLimits { max_fps: Some(30), ..none };
    assert_eq!(pick_uvc_mode(&formats, &fps30), Some(("MJPG".into(), VideoMode::progressive(1920, 1080, 30))));
    let hd = ContentLimits { max_width: Some(1280), ..fps30 };
    assert_eq!(pick_uvc_mode(&formats, &hd), Some(("NV12".into(), VideoMode::progressive(1280, 720, 30))));
    assert_eq!(pick_uvc_mode(&[f("H264", 1920, 1080, &[30])], &none), None);
}

#[test]
fn gstreamer_descriptions() {
    assert_eq!(
        dv_description("/dev/video0", 1920, 1080),
        "v4l2src device=/dev/video0 io-mode=dmabuf ! capsfilter caps=video/x-raw,width=1920,height=1080"
    );
    let m = VideoMode::progressive(1920, 1080, 30);
    assert_eq!(
        uvc_description("/dev/video2", "MJPG", &m),
        "v4l2src device=/dev/video2 io-mode=mmap ! image/jpeg,width=1920,height=1080,framerate=30/1 ! jpegdec"
    );
    assert_eq!(
        uvc_description("/dev/video2", "YUYV", &m),
        "v4l2src device=/dev/video2 io-mode=mmap ! capsfilter caps=video/x-raw,format=YUY2,width=1920,height=1080,framerate=30/1"
    );
    gst::init().unwrap();
    for d in [dv_description("/dev/video0", 1920, 1080), uvc_description("/dev/video2", "YUYV", &m)] {
        gst::parse::bin_from_description(&d, true).unwrap_or_else(|e| panic!("{d}: {e}"));
    }
}

#[test]
fn missing_devices_are_clear() {
    let dv = V4l2Content::new(
        V4l2Kind::DvTimings,
        DeviceMatch::Path("/nonexistent/video9".into()),
        ContentLimits::default(),
    );
    let e = dv.signal().unwrap_err().to_string();
    assert!(e.contains("/nonexistent/video9") && e.contains("not found"), "{e}");
    assert!(dv.gst_source().is_err());

    // A dongle that is not there is no signal; the watcher says so and stops with the source.
    let uvc =
        V4l2Content::new(V4l2Kind::Uvc, DeviceMatch::Name("huis-no-such-dongle".into()), ContentLimits::default());
    assert_eq!(uvc.signal().unwrap(), Signal::NoSignal);
    let (sink, rx) = channel_sink();
    uvc.watch(sink).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Signal::NoSignal);
    let t = Instant::now();
    drop(uvc);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn deck_pages_read_back_after_h264() {
    gst::init().unwrap();
    for e in ["x264enc", "avdec_h264", "videoconvert"] {
        if gst::ElementFactory::find(e).is_none() {
            eprintln!("skipped: {e} is not installed");
            return;
        }
    }
    let sim = SimContent::new(SimContentConfig {
        mode: Some(VideoMode::progressive(1280, 720, 15)),
        page_interval: Duration::from_millis(400),
        pages: 10,
        ..Default::default()
    })
    .unwrap();
    let source = sim.gst_source().unwrap();
    let chain = gst::parse::bin_from_description(
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=15 ! avdec_h264 \
         ! videoconvert ! capsfilter caps=video/x-raw,format=I420",
        true,
    )
    .unwrap();
    let pipeline = gst::Pipeline::new();
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline.add_many([&source, chain.upcast_ref(), sink.upcast_ref()]).unwrap();
    gst::Element::link_many([&source, chain.upcast_ref(), sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let cap = Capture { pipeline, sink };
    // Frames after a page turn are what a far end sees while the encoder
    // catches up; the measure is the best frame of each page.
    let mut best: std::collections::BTreeMap<u32, f64> = Default::default();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let Some(f) = cap.pull(2000) else { break };
        let i = page_index_of(&f).expect("the code reads back after H.264");
        let db = psnr_luma(&f, &render_page(i, f.width, f.height)).unwrap();
        let e = best.entry(i).or_insert(0.0);
        *e = e.max(db);
    }
    assert!(best.len() >= 3, "pages seen: {best:?}");
    for (page, db) in &best {
        assert!(*db >= 30.0, "page {page}: {db:.1} dB");
    }
    eprintln!("best luma PSNR per page at 1280x720, x264 2 Mbit/s: {best:?}");
}
