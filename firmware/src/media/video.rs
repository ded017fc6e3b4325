//! One call's video: H.264 over RTP beside the audio session, in a pipeline of its own.
//!
//! ```text
//!  send:    camera (hal source) ─▶ videoconvert ─▶ videoscale ─▶ I420 W×H@fps ─▶ tee
//!             tee ─▶ intervideosink "huis-self"                  (self-view, to the screen)
//!             tee ─▶ valve (direction) ─▶ H.264 encoder ─▶ constrained-baseline caps ─▶ rtph264pay
//!                ─▶ rtpbin (session 0, RTCP, feedback) ─▶ udpsink
//!  receive: udpsrc ─▶ rtpbin (jitter buffer) ─▶ rtph264depay ─▶ h264parse ─▶ decoder ─▶ videoconvert
//!             ─▶ intervideosink "huis-far"                      (far end, to the screen)
//! ```
//!
//! rtpbin with its UDP elements is the RTP transport the audio uses too (`rtp.rs`): RTCP on the
//! next port or, with rtcp-mux, on the RTP port, and SDES-SRTP when the call has keys.
//!
//! **Keyframes.** A PLI or FIR from the peer makes rtpsession send a GstForceKeyUnit event up to
//! the encoder; so does [`VideoSession::force_keyframe`] (SIP INFO `picture_fast_update`). Each
//! request is counted and the time to the next keyframe out of the encoder measured. When our
//! decoding breaks (the depayloader sees loss, the decoder a corrupt frame) an upstream
//! GstForceKeyUnit reaches rtpsession, which sends PLI (or FIR) when the peer offered it.
//!
//! **Retransmission.** With generic NACK and RFC 4588 RTX agreed ([`RtxPayloadTypes`]), the
//! jitter buffer asks for each missing packet (rtpsession sends the NACK as early RTCP feedback)
//! and an `rtprtxreceive` in rtpbin's receive path puts the repaired packets back into the
//! stream in time for the decoder; an `rtprtxsend` in the send path keeps what we sent for
//! [`RTX_KEEP_MS`] and answers the peer's NACKs in the RTX stream. Only what is not repaired in
//! time breaks decoding and costs a keyframe request.
//!
//! **Bitrate.** Every second the bitrate controller looks at the peer's receiver reports on our
//! stream and at REMB/TMMBR it sent: loss above 10 % lowers the target by half the loss, loss
//! below 2 % raises it by 8 %, capped by the SDP bandwidth, the last REMB/TMMBR and our maximum,
//! never below the minimum. The encoder's bitrate is changed in place.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_video as gst_video;

use gst::glib;
use gst::prelude::*;

use super::elements::{link_chain, link_pads, make, random_ssrc};
use super::rtp::{Retransmission, RtpTransport, TransportParams};
use super::{Direction, MediaError, RtpSockets, SrtpParams};

/// intervideo channel the far end's decoded picture goes to (read by the screen).
pub const FAR_CHANNEL: &str = "huis-far";
/// intervideo channel the camera's picture goes to for the self-view.
pub const SELF_CHANNEL: &str = "huis-self";

/// How long sent packets are kept for retransmission, ms (the `rtx-time` we announce).
pub const RTX_KEEP_MS: u32 = 1000;

/// With retransmission, the jitter buffer grows by this step each second in which a packet
/// (under loss, a retransmission) arrived after its deadline, up to [`RTX_JITTER_MAX`].
const RTX_JITTER_STEP: Duration = Duration::from_millis(10);
/// The most the jitter buffer grows to for late retransmissions.
const RTX_JITTER_MAX: Duration = Duration::from_millis(100);

/// The most SSRCs in a video session for which feedback is sent without waiting (see where
/// it is used).
const IMMEDIATE_FEEDBACK_MAX_SSRCS: u32 = 6;

/// Retransmission payload types agreed in SDP (RFC 4588, SSRC-multiplexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxPayloadTypes {
    /// The RTX payload type we retransmit with (the peer's number).
    pub send: u8,
    /// The one the peer retransmits to us with (ours).
    pub recv: u8,
}

/// RTCP feedback both sides agreed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoFeedback {
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
    pub tmmbr: bool,
    pub remb: bool,
}

/// Everything [`VideoSession::start`] needs.
pub struct VideoSessionParams {
    pub sockets: RtpSockets,
    pub remote_rtp: SocketAddr,
    /// Payload type we send with (remote SDP) and receive with (ours).
    pub send_pt: u8,
    pub recv_pt: u8,
    /// H.264 packetization mode 0 or 1.
    pub packetization_mode: u8,
    /// gst-launch description of a live raw-video source (the camera, from hal).
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    /// H.264 encoder element (from hal's probe).
    pub encoder: String,
    /// Start, floor and ceiling of the send bitrate, kbit/s.
    pub start_kbps: u32,
    pub min_kbps: u32,
    pub max_kbps: u32,
    pub feedback: VideoFeedback,
    /// Retransmission, when agreed (then `feedback.nack` is set too).
    pub rtx: Option<RtxPayloadTypes>,
    pub cname: String,
    pub direction: Direction,
    pub jitter_buffer: Duration,
    pub rtcp_interval: Duration,
    /// intervideo channels for the decoded far end and the self-view ([`FAR_CHANNEL`],
    /// [`SELF_CHANNEL`] for the screen; a benchmark running two sessions uses others).
    pub far_channel: String,
    pub self_channel: String,
    /// Called on every captured frame before it is encoded. Benchmarks stamp the capture time
    /// into the picture with it; calls leave it `None`.
    pub on_capture: Option<CaptureHook>,
    /// `a=rtcp-mux` negotiated: RTP and RTCP share the RTP port both ways.
    pub rtcp_mux: bool,
    /// SRTP (SDES) keys; `None` sends plain RTP.
    pub srtp: Option<SrtpParams>,
    /// DTLS-SRTP instead of SDES keys (not both).
    pub dtls: Option<super::DtlsParams>,
    /// The stream is a presentation (slides): the encoder keeps edges sharp rather than
    /// texture, and sends a keyframe every 2 s so a lost one is not missed for long.
    pub text: bool,
}

/// See [`VideoSessionParams::on_capture`].
pub type CaptureHook = Arc<dyn Fn(&mut gst::BufferRef, &gst_video::VideoInfo) + Send + Sync>;

/// Figures for Video1.Stats and the tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoStats {
    pub encoder: String,
    pub decoder: String,
    pub send_width: u32,
    pub send_height: u32,
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub frames_decoded: u64,
    pub recv_width: u32,
    pub recv_height: u32,
    /// PLI/FIR from the peer plus SIP INFO picture_fast_update.
    pub keyframe_requests_received: u64,
    /// Requests answered by a keyframe, and the slowest answer in ms.
    pub keyframe_requests_answered: u64,
    pub keyframe_answer_max_ms: u64,
    /// Keyframe requests we sent (our decoding broke).
    pub keyframe_requests_sent: u64,
    pub bitrate_kbps: u32,
    /// Last REMB / TMMBR limit from the peer, kbit/s (0: none).
    pub remb_kbps: u32,
    pub tmmbr_kbps: u32,
    /// Loss the peer reports on our stream, percent (last receiver report).
    pub remote_loss_percent: f64,
    pub packets_received: u64,
    /// RTP payload bytes of the peer's stream received.
    pub bytes_received: u64,
    /// Packets of the peer's stream lost on the network.
    pub packets_lost: u64,
    /// Retransmissions we asked for (NACKed packets) and received in the RTX stream.
    pub retransmissions_requested: u64,
    pub retransmissions_received: u64,
    /// Packets missing when their time to be decoded came (lost and not repaired).
    pub packets_unrepaired: u64,
    /// Round trip from our NACK to the retransmitted packet, ms (jitter buffer's estimate).
    pub retransmission_rtt_ms: f64,
    /// The peer's NACKed packets, and those we could retransmit.
    pub retransmission_requests_received: u64,
    pub retransmissions_sent: u64,
    /// Packets (mostly retransmissions) that arrived after their deadline and were dropped.
    pub packets_late: u64,
    /// The jitter buffer's latency now, ms: the configured one, grown for late
    /// retransmissions (see [`next_jitter_buffer`]).
    pub jitter_buffer_ms: u32,
}

struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    frames_sent: AtomicU64,
    keyframes_sent: AtomicU64,
    frames_decoded: AtomicU64,
    recv_size: AtomicU64,
    requests_received: AtomicU64,
    requests_answered: AtomicU64,
    answer_max_ms: AtomicU64,
    /// ms since epoch of the oldest unanswered request + 1; 0 = none pending.
    pending_since: AtomicU64,
    requests_sent: AtomicU64,
    bitrate_kbps: AtomicU32,
    remb_kbps: AtomicU32,
    tmmbr_kbps: AtomicU32,
    remote_loss_permille: AtomicU32,
    encoder_name: String,
    decoder_name: Mutex<String>,
    /// RTP packets into the depayloader, and the depayloader (to ask again for a keyframe when
    /// the picture stays frozen).
    depay_packets: AtomicU64,
    depay: Mutex<Option<glib::WeakRef<gst::Element>>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
    fn request_arrived(&self) {
        self.requests_received.fetch_add(1, Ordering::Relaxed);
        let _ = self.pending_since.compare_exchange(0, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }
    fn keyframe_left(&self) {
        self.keyframes_sent.fetch_add(1, Ordering::Relaxed);
        let since = self.pending_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.requests_answered.fetch_add(1, Ordering::Relaxed);
            self.answer_max_ms.fetch_max(self.now_ms().saturating_sub(since), Ordering::Relaxed);
        }
    }
}

/// The video of one call.
pub struct VideoSession {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    /// Shared with the control thread.
    transport: Arc<RtpTransport>,
    encoder: gst::Element,
    send_valve: gst::Element,
    send_size: (u32, u32),
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

pub(super) fn make_named(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| MediaError::Pipeline(format!("cannot create the {factory} element: {e}")))
}

/// H.264 decoders, hardware first; the first that exists and reaches READY is used.
const DECODERS: &[&str] = &["v4l2slh264dec", "v4l2h264dec", "vah264dec", "vaapih264dec", "avdec_h264"];

pub(super) fn pick_decoder() -> Result<gst::Element, MediaError> {
    for name in DECODERS {
        if gst::ElementFactory::find(name).is_none() {
            continue;
        }
        let Ok(el) = gst::ElementFactory::make(name).build() else { continue };
        if el.set_state(gst::State::Ready).is_ok() {
            let _ = el.set_state(gst::State::Null);
            return Ok(el);
        }
        let _ = el.set_state(gst::State::Null);
    }
    make("avdec_h264", "H.264 decoder")
}

/// Configures a known encoder for real-time calls at `kbps`.
pub(super) fn configure_encoder(enc: &gst::Element, name: &str, kbps: u32, fps: u32, mode0: bool) {
    let has = |p: &str| enc.find_property(p).is_some();
    match name {
        "x264enc" => {
            enc.set_property_from_str("tune", "zerolatency");
            enc.set_property_from_str("speed-preset", "ultrafast");
            enc.set_property("key-int-max", fps.max(1) * 10);
            // A one-frame VBV keeps frames even in size (no bursts that overflow the jitter buffer).
            enc.set_property("vbv-buf-capacity", 1000u32 / fps.max(1) * 4);
            if mode0 {
                // Packetization mode 0: every NAL unit must fit in one packet.
                enc.set_property("option-string", "slice-max-size=1100");
            }
        }
        "openh264enc" => {
            enc.set_property_from_str("complexity", "low");
            enc.set_property_from_str("rate-control", "bitrate");
            enc.set_property("gop-size", fps.max(1) * 10);
            if mode0 {
                enc.set_property_from_str("slice-mode", "n-slices");
            }
        }
        _ => {
            if has("key-int-max") {
                enc.set_property_from_str("key-int-max", &(fps * 10).to_string());
            }
        }
    }
    set_encoder_bitrate(enc, name, kbps);
}

/// Tunes a configured encoder for slides: x264's psychovisual and adaptive-quantisation tools
/// trade edges for texture, which blurs text; and a keyframe every 2 s.
pub(super) fn tune_for_text(enc: &gst::Element, name: &str, fps: u32, mode0: bool) {
    let every = fps.max(1) * 2;
    match name {
        "x264enc" => {
            let slices = if mode0 { ":slice-max-size=1100" } else { "" };
            enc.set_property("option-string", format!("psy=0:aq-mode=0{slices}"));
            enc.set_property("key-int-max", every);
        }
        "openh264enc" => enc.set_property("gop-size", every),
        _ if enc.find_property("key-int-max").is_some() => enc.set_property_from_str("key-int-max", &every.to_string()),
        _ => {}
    }
}

/// Sets the encoder's target bitrate (each family names and scales it its own way).
pub(super) fn set_encoder_bitrate(enc: &gst::Element, name: &str, kbps: u32) {
    match name {
        "x264enc" | "vah264enc" | "vah264lpenc" | "vaapih264enc" | "qsvh264enc" | "nvh264enc"
            if enc.find_property("bitrate").is_some() =>
        {
            enc.set_property_from_str("bitrate", &kbps.to_string());
        }
        "openh264enc" | "mpph264enc" | "nvv4l2h264enc" | "omxh264enc" if enc.find_property("bitrate").is_some() => {
            enc.set_property_from_str("bitrate", &(u64::from(kbps) * 1000).to_string());
        }
        "v4l2h264enc" => {
            let s = gst::Structure::builder("controls").field("video_bitrate", (kbps * 1000) as i32).build();
            enc.set_property("extra-controls", s);
        }
        _ => {}
    }
}

impl VideoSession {
    /// Builds and starts the pipeline for a negotiated video stream.
    pub fn start(p: VideoSessionParams) -> Result<VideoSession, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let bad_rtx = p.rtx.is_some_and(|r| r.send > 127 || r.recv > 127 || r.send == p.send_pt || r.recv == p.recv_pt);
        if p.send_pt > 127 || p.recv_pt > 127 || p.packetization_mode > 1 || p.remote_rtp.port() == 0 || bad_rtx {
            return Err(MediaError::InvalidParams("bad video payload type, packetization mode or port".into()));
        }
        if let Some(srtp) = &p.srtp {
            srtp.validate()?;
        }
        build(p)
    }

    /// Asks the encoder for a keyframe now (SIP INFO picture_fast_update, RFC 5168).
    pub fn force_keyframe(&self) {
        let ev = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        if let Some(pad) = self.encoder.static_pad("src") {
            pad.send_event(ev);
        }
    }

    /// Keyframe requests our decoding made so far (sent as PLI/FIR when the peer takes them).
    pub fn keyframe_requests_sent(&self) -> u64 {
        self.shared.requests_sent.load(Ordering::Relaxed)
    }

    /// Send to a new remote address (a re-INVITE moved the far end's video). `rtcp`: `None`
    /// means RTP port + 1, or the RTP address with rtcp-mux.
    pub fn set_remote(&self, rtp: SocketAddr, rtcp: Option<SocketAddr>) -> Result<(), MediaError> {
        self.transport.set_remote(rtp, rtcp)
    }

    /// Hold/resume: sending stops for recvonly/inactive.
    pub fn set_direction(&self, d: Direction) {
        self.send_valve.set_property("drop", !d.sends());
        if d.sends() {
            self.force_keyframe();
        }
    }

    /// How the call's video is protected now.
    pub fn protection(&self) -> super::Protection {
        self.transport.protection()
    }

    pub fn stats(&self) -> VideoStats {
        let s = &self.shared;
        let size = s.recv_size.load(Ordering::Relaxed);
        let mut out = VideoStats {
            encoder: s.encoder_name.clone(),
            decoder: s.decoder_name.lock().map(|d| d.clone()).unwrap_or_default(),
            send_width: self.send_size.0,
            send_height: self.send_size.1,
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            keyframes_sent: s.keyframes_sent.load(Ordering::Relaxed),
            frames_decoded: s.frames_decoded.load(Ordering::Relaxed),
            recv_width: (size >> 32) as u32,
            recv_height: size as u32,
            keyframe_requests_received: s.requests_received.load(Ordering::Relaxed),
            keyframe_requests_answered: s.requests_answered.load(Ordering::Relaxed),
            keyframe_answer_max_ms: s.answer_max_ms.load(Ordering::Relaxed),
            keyframe_requests_sent: s.requests_sent.load(Ordering::Relaxed),
            bitrate_kbps: s.bitrate_kbps.load(Ordering::Relaxed),
            remb_kbps: s.remb_kbps.load(Ordering::Relaxed),
            tmmbr_kbps: s.tmmbr_kbps.load(Ordering::Relaxed),
            remote_loss_percent: f64::from(s.remote_loss_permille.load(Ordering::Relaxed)) / 10.0,
            ..Default::default()
        };
        let st = self.transport.rtp_session().property::<gst::Structure>("stats");
        if let Ok(sources) = st.get::<glib::ValueArray>("source-stats") {
            for v in sources.as_slice() {
                let Ok(src) = v.get::<gst::Structure>() else { continue };
                if src.get::<bool>("internal").unwrap_or(false) {
                    continue;
                }
                out.packets_received += num(&src, "packets-received") as u64;
                out.bytes_received += num(&src, "octets-received") as u64;
                out.packets_lost += num(&src, "packets-lost").max(0.0) as u64;
            }
        }
        out.jitter_buffer_ms = self.transport.latency().as_millis() as u32;
        for st in self.transport.jitter_stats() {
            out.packets_unrepaired += num(&st, "num-lost") as u64;
            out.packets_late += num(&st, "num-late") as u64;
            out.retransmissions_requested += num(&st, "rtx-count") as u64;
            out.retransmission_rtt_ms = out.retransmission_rtt_ms.max(num(&st, "rtx-rtt") / 1e6);
        }
        let rtx = self.transport.rtx_counts();
        out.retransmissions_received = rtx.received;
        out.retransmission_requests_received = rtx.requests_received;
        out.retransmissions_sent = rtx.sent;
        out
    }

    /// Ends the video: pipeline stopped, threads joined, ports freed. Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!("video pipeline did not stop cleanly: {e}");
        }
        self.transport.close();
        for t in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = t.join();
        }
    }
}

impl Drop for VideoSession {
    fn drop(&mut self) {
        self.stop();
    }
}

fn num(s: &gst::StructureRef, field: &str) -> f64 {
    let Ok(v) = s.value(field) else { return 0.0 };
    v.get::<u64>()
        .map(|x| x as f64)
        .or_else(|_| v.get::<u32>().map(f64::from))
        .or_else(|_| v.get::<i32>().map(f64::from))
        .or_else(|_| v.get::<i64>().map(|x| x as f64))
        .unwrap_or(0.0)
}

fn pad(el: &gst::Element, name: &str) -> Result<gst::Pad, MediaError> {
    el.static_pad(name)
        .or_else(|| el.request_pad_simple(name))
        .ok_or_else(|| MediaError::Pipeline(format!("{} has no pad {name}", el.name())))
}

fn recv_caps(pt: u8, fb: VideoFeedback) -> gst::Caps {
    let mut b = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("clock-rate", 90_000i32)
        .field("encoding-name", "H264")
        .field("payload", i32::from(pt));
    // rtpsession sends PLI / FIR for an upstream GstForceKeyUnit only when these are present.
    if fb.pli {
        b = b.field("rtcp-fb-nack-pli", true);
    }
    if fb.fir {
        b = b.field("rtcp-fb-ccm-fir", true);
    }
    if fb.nack {
        b = b.field("rtcp-fb-nack", true);
    }
    b.build()
}

fn build(p: VideoSessionParams) -> Result<VideoSession, MediaError> {
    let local_rtp = p.sockets.local_rtp();
    let ssrc = random_ssrc();
    let start_kbps = p.start_kbps.clamp(p.min_kbps, p.max_kbps);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        frames_sent: AtomicU64::new(0),
        keyframes_sent: AtomicU64::new(0),
        frames_decoded: AtomicU64::new(0),
        recv_size: AtomicU64::new(0),
        requests_received: AtomicU64::new(0),
        requests_answered: AtomicU64::new(0),
        answer_max_ms: AtomicU64::new(0),
        pending_since: AtomicU64::new(0),
        requests_sent: AtomicU64::new(0),
        bitrate_kbps: AtomicU32::new(start_kbps),
        remb_kbps: AtomicU32::new(0),
        tmmbr_kbps: AtomicU32::new(0),
        remote_loss_permille: AtomicU32::new(0),
        encoder_name: p.encoder.clone(),
        decoder_name: Mutex::new(String::new()),
        depay_packets: AtomicU64::new(0),
        depay: Mutex::new(None),
    });

    let pipeline = gst::Pipeline::with_name(&format!("huis-video-{}", local_rtp.port()));
    let add = |els: &[&gst::Element]| pipeline.add_many(els.iter().copied()).map_err(MediaError::pipeline);

    // ---- transport: one RTP session with RTCP and feedback, RTX and SRTP when agreed ----
    let mut recv_formats = vec![recv_caps(p.recv_pt, p.feedback)];
    recv_formats.extend(p.rtx.map(|r| {
        gst::Caps::builder("application/x-rtp")
            .field("media", "video")
            .field("clock-rate", 90_000i32)
            .field("encoding-name", "RTX")
            .field("payload", i32::from(r.recv))
            .field("apt", i32::from(p.recv_pt))
            .build()
    }));
    let transport = Arc::new(RtpTransport::new(
        &pipeline,
        TransportParams {
            sockets: &p.sockets,
            remote_rtp: p.remote_rtp,
            remote_rtcp: None,
            rtcp_mux: p.rtcp_mux,
            srtp: p.srtp.as_ref(),
            dtls: p.dtls.as_ref(),
            dscp: None,
            cname: &p.cname,
            jitter_buffer: p.jitter_buffer,
            rtcp_interval: p.rtcp_interval,
            // Early feedback (RFC 4585) when the peer takes feedback at all.
            avpf: p.feedback.pli || p.feedback.fir || p.feedback.nack,
            report_lost: false,
            recv_formats,
            recv_other_payloads: true,
            rtx: p.rtx.map(|r| Retransmission {
                send_pt: p.send_pt,
                send_rtx_pt: r.send,
                recv_pt: p.recv_pt,
                recv_rtx_pt: r.recv,
                clock_rate: 90_000,
                keep: Duration::from_millis(u64::from(RTX_KEEP_MS)),
            }),
        },
    )?);

    // ---- send path ----
    let caps = format!(
        "video/x-raw,format=I420,width={},height={},framerate={}/1,pixel-aspect-ratio=1/1",
        p.width, p.height, p.framerate
    );
    let camera = gst::parse::bin_from_description(
        &format!("{} ! videoconvert ! videoscale ! videorate drop-only=true ! capsfilter caps=\"{caps}\"", p.source),
        true,
    )
    .map_err(|e| MediaError::Pipeline(format!("camera source '{}': {e}", p.source)))?;
    if let Some(tap) = camera.by_name(super::content_tap::TAP_NAME) {
        super::content_tap::attach(&tap);
    }
    let camera: gst::Element = camera.upcast();
    let tee = make("tee", "tee")?;
    let q_self = make("queue", "queue")?;
    q_self.set_property_from_str("leaky", "downstream");
    q_self.set_property("max-size-buffers", 2u32);
    let self_sink = make("intervideosink", "self-view")?;
    self_sink.set_property("channel", &p.self_channel);
    self_sink.set_property("sync", false);
    self_sink.set_property("async", false);
    let q_enc = make("queue", "queue")?;
    q_enc.set_property_from_str("leaky", "downstream");
    q_enc.set_property("max-size-buffers", 2u32);
    q_enc.set_property("max-size-time", 0u64);
    q_enc.set_property("max-size-bytes", 0u32);
    let send_valve = make("valve", "send switch (hold)")?;
    send_valve.set_property_from_str("drop-mode", "forward-sticky-events");
    send_valve.set_property("drop", !p.direction.sends());
    let encoder = make_named(&p.encoder)?;
    configure_encoder(&encoder, &p.encoder, start_kbps, p.framerate, p.packetization_mode == 0);
    if p.text {
        tune_for_text(&encoder, &p.encoder, p.framerate, p.packetization_mode == 0);
    }
    let enc_caps = make("capsfilter", "caps filter")?;
    enc_caps.set_property("caps", gst::Caps::builder("video/x-h264").field("profile", "constrained-baseline").build());
    let parse = make("h264parse", "H.264 parser")?;
    let pay = make("rtph264pay", "H.264 RTP payloader")?;
    pay.set_property("pt", u32::from(p.send_pt));
    pay.set_property("ssrc", ssrc);
    pay.set_property("mtu", 1200u32);
    pay.set_property("config-interval", -1i32);
    pay.set_property_from_str("aggregate-mode", if p.packetization_mode == 0 { "none" } else { "zero-latency" });
    add(&[&camera, &tee, &q_self, &self_sink, &q_enc, &send_valve, &encoder, &enc_caps, &parse, &pay])?;
    link_chain(&[&camera, &tee])?;
    if let Some(hook) = p.on_capture.clone() {
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, p.width, p.height)
            .fps(gst::Fraction::new(p.framerate as i32, 1))
            .build()
            .map_err(MediaError::pipeline)?;
        pad(&tee, "sink")?.add_probe(gst::PadProbeType::BUFFER, move |_, probe| {
            if let Some(gst::PadProbeData::Buffer(b)) = &mut probe.data {
                hook(b.make_mut(), &info);
            }
            gst::PadProbeReturn::Ok
        });
    }
    link_chain(&[&tee, &q_self, &self_sink])?;
    link_chain(&[&tee, &q_enc, &send_valve, &encoder, &enc_caps, &parse, &pay])?;
    link_pads(&pad(&pay, "src")?, transport.send_pad())?;
    {
        // Frames out of the encoder: count them and the keyframes; a keyframe answers requests.
        let sh = shared.clone();
        pad(&encoder, "src")?.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_UPSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        sh.frames_sent.fetch_add(1, Ordering::Relaxed);
                        if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                            sh.keyframe_left();
                        }
                    }
                    Some(gst::PadProbeData::Event(ev)) if gst_video::ForceKeyUnitEvent::is(ev) => {
                        // From rtpsession (the peer's PLI or FIR) or force_keyframe() (SIP INFO).
                        sh.request_arrived();
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    // ---- receive path ----
    {
        let shared = shared.clone();
        let recv_pt = p.recv_pt;
        let far_channel = p.far_channel.clone();
        transport.on_receive(move |pipeline, new_pad, pt| {
            let r = if pt == recv_pt {
                add_receiver(pipeline, new_pad, &shared, &far_channel)
            } else {
                add_discard(pipeline, new_pad)
            };
            if let Err(e) = r {
                tracing::error!("video receive path: {e}");
            }
        });
    }

    let session = transport.rtp_session();
    // RFC 4585 §3.5.3: a small session may send every feedback packet at once ("immediate
    // feedback mode"). rtpsession counts SSRCs, and a call with video and RTX both ways already
    // has 4, one over its default threshold of 3: then NACKs after the first early packet wait
    // for the regular report and most are dropped as too late. 6 leaves room for a peer's
    // changed SSRC while the old one times out.
    session.set_property("rtcp-immediate-feedback-threshold", IMMEDIATE_FEEDBACK_MAX_SSRCS);
    {
        // Feedback from the peer: PLI/FIR are acted upon by rtpsession itself (GstForceKeyUnit to
        // the encoder); here they are counted, and REMB/TMMBR read as bitrate caps. A TMMBR is
        // acknowledged with a TMMBN (RFC 5104 §4.2.2), which rtpsession does not do.
        // (The handler lives in rtpbin, which the transport holds: a weak reference, no cycle.)
        let sh = shared.clone();
        let tmmbn_to = Arc::downgrade(&transport);
        let cname = p.cname.clone();
        session.connect("on-feedback-rtcp", false, move |args| {
            let sender_ssrc = args.get(3).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let typ = args.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let fbtype = args.get(2).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let media_ssrc = args.get(4).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let fci = args.get(5).and_then(|v| v.get::<Option<gst::Buffer>>().ok()).flatten();
            let fci = fci.as_ref().and_then(|b| b.map_readable().ok());
            let fci: &[u8] = fci.as_deref().unwrap_or(&[]);
            match (typ, fbtype) {
                (206, 1) | (206, 4) => {
                    tracing::debug!(typ, fbtype, media_ssrc, ours = ssrc, "keyframe request (PLI/FIR)");
                }
                (206, 15) => {
                    if let Some(bps) = parse_remb(fci) {
                        sh.remb_kbps.store((bps / 1000).min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
                    }
                }
                (205, 3) => {
                    if let Some(bps) = parse_tmmbr(fci, ssrc) {
                        sh.tmmbr_kbps.store((bps / 1000).min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
                        if let Some(pkt) = tmmbn_packet(fci, ssrc, sender_ssrc, &cname)
                            && let Some(transport) = tmmbn_to.upgrade()
                            && let Err(e) = transport.send_rtcp(&pkt)
                        {
                            tracing::debug!("cannot send TMMBN: {e}");
                        }
                    }
                }
                _ => {}
            }
            None
        });
    }

    let bus = pipeline.bus().ok_or_else(|| MediaError::pipeline("the video pipeline has no bus"))?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = bus
            .pop_filtered(&[gst::MessageType::Error])
            .map(|m| match m.view() {
                gst::MessageView::Error(e) => MediaError::Pipeline(format!(
                    "{}: {}",
                    m.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                    e.error()
                )),
                _ => MediaError::pipeline("the video pipeline refused to start"),
            })
            .unwrap_or_else(|| MediaError::pipeline("the video pipeline refused to start"));
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }

    let mut threads = Vec::new();
    {
        let (sh, transport, encoder, name) = (shared.clone(), transport.clone(), encoder.clone(), p.encoder.clone());
        let (min, max) = (p.min_kbps, p.max_kbps);
        let repair = p.rtx.is_some();
        threads.push(
            std::thread::Builder::new()
                .name(format!("vctl-{}", local_rtp.port()))
                .spawn(move || control(sh, bus, transport, encoder, name, min, max, repair))
                .map_err(MediaError::pipeline)?,
        );
    }
    tracing::info!(encoder = %p.encoder, size = %format!("{}x{}", p.width, p.height), kbps = start_kbps, "call video started");
    Ok(VideoSession {
        pipeline,
        shared,
        transport,
        encoder,
        send_valve,
        send_size: (p.width, p.height),
        threads: Mutex::new(threads),
        stopped: AtomicBool::new(false),
    })
}

/// Depayload, decode, convert, and hand the picture to the screen.
fn add_receiver(
    pipeline: &gst::Pipeline,
    src: &gst::Pad,
    shared: &Arc<Shared>,
    far_channel: &str,
) -> Result<(), MediaError> {
    let depay = make("rtph264depay", "H.264 RTP depayloader")?;
    depay.set_property("request-keyframe", true);
    depay.set_property("wait-for-keyframe", true);
    let parse = make("h264parse", "H.264 parser")?;
    let dec = pick_decoder()?;
    if let Some(f) = dec.factory() {
        *shared.decoder_name.lock().unwrap_or_else(|e| e.into_inner()) = f.name().to_string();
    }
    if dec.find_property("max-errors").is_some() {
        dec.set_property("max-errors", -1i32);
    }
    if dec.find_property("automatic-request-sync-points").is_some() {
        dec.set_property("automatic-request-sync-points", true);
        dec.set_property("discard-corrupted-frames", true);
    }
    let conv = make("videoconvert", "video converter")?;
    let sink = make("intervideosink", "far-end picture to the screen")?;
    sink.set_property("channel", far_channel);
    sink.set_property("sync", false);
    sink.set_property("async", false);
    let els = [&depay, &parse, &dec, &conv, &sink];
    pipeline.add_many(els).map_err(MediaError::pipeline)?;
    link_chain(&els)?;
    {
        let sh = shared.clone();
        pad(&dec, "src")?.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => {
                    sh.frames_decoded.fetch_add(1, Ordering::Relaxed);
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Caps(c) = ev.view()
                        && let Ok(info) = gst_video::VideoInfo::from_caps(c.caps())
                    {
                        sh.recv_size
                            .store((u64::from(info.width()) << 32) | u64::from(info.height()), Ordering::Relaxed);
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        });
        // Keyframe requests going upstream out of the depayloader become PLI/FIR in rtpsession
        // (or SIP INFO, see the SIP backend); packets going in are counted.
        let sh = shared.clone();
        pad(&depay, "sink")?.add_probe(
            gst::PadProbeType::EVENT_UPSTREAM | gst::PadProbeType::BUFFER,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Event(ev)) if gst_video::ForceKeyUnitEvent::is(ev) => {
                        sh.requests_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(gst::PadProbeData::Buffer(_)) => {
                        sh.depay_packets.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
        *shared.depay.lock().unwrap_or_else(|e| e.into_inner()) = Some(depay.downgrade());
    }
    for e in els {
        e.sync_state_with_parent().map_err(MediaError::pipeline)?;
    }
    link_pads(src, &pad(&depay, "sink")?)
}

fn add_discard(pipeline: &gst::Pipeline, src: &gst::Pad) -> Result<(), MediaError> {
    let sink = make("fakesink", "sink for unused payload types")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline.add(&sink).map_err(MediaError::pipeline)?;
    sink.sync_state_with_parent().map_err(MediaError::pipeline)?;
    link_pads(src, &pad(&sink, "sink")?)
}

/// REMB (draft-alvestrand-rmcat-remb): "REMB", #SSRCs, 6-bit exponent and 18-bit mantissa.
pub(crate) fn parse_remb(fci: &[u8]) -> Option<u64> {
    if fci.len() < 8 || &fci[0..4] != b"REMB" {
        return None;
    }
    let exp = u32::from(fci[5] >> 2);
    let mantissa = (u64::from(fci[5] & 0x03) << 16) | (u64::from(fci[6]) << 8) | u64::from(fci[7]);
    mantissa.checked_shl(exp)
}

/// For `cargo fuzz`: the REMB and TMMBR parsers and the TMMBN built from a TMMBR, on arbitrary bytes.
#[doc(hidden)]
pub fn fuzz_tmmbr(fci: &[u8], ssrc: u32) -> Option<u64> {
    let _ = tmmbn_packet(fci, ssrc, ssrc.wrapping_add(1), "huis@fuzz");
    let _ = parse_remb(fci);
    parse_tmmbr(fci, ssrc)
}

/// TMMBR (RFC 5104 §4.2.1): entries of SSRC, 6-bit exponent, 17-bit mantissa, 9-bit overhead;
/// the entry for `ssrc` (ours).
pub(crate) fn parse_tmmbr(fci: &[u8], ssrc: u32) -> Option<u64> {
    fci.chunks_exact(8).find_map(|e| {
        if u32::from_be_bytes([e[0], e[1], e[2], e[3]]) != ssrc {
            return None;
        }
        let exp = u32::from(e[4] >> 2);
        let mantissa = (u64::from(e[4] & 0x03) << 15) | (u64::from(e[5]) << 7) | u64::from(e[6] >> 1);
        mantissa.checked_shl(exp)
    })
}

/// RTCP compound packet acknowledging a TMMBR (RFC 5104 §4.2.2): an empty receiver report and
/// our CNAME (RFC 3550 §6.1), then a TMMBN whose bounding set is the request for `ours`, owned
/// by its sender. `None` when the request holds no entry for us.
pub(crate) fn tmmbn_packet(tmmbr_fci: &[u8], ours: u32, requester: u32, cname: &str) -> Option<Vec<u8>> {
    let entry = tmmbr_fci.chunks_exact(8).find(|e| e[..4] == ours.to_be_bytes())?;
    let mut p = Vec::with_capacity(64);
    // RR, no report blocks.
    p.extend_from_slice(&[0x80, 201, 0, 1]);
    p.extend_from_slice(&ours.to_be_bytes());
    // SDES with one chunk: SSRC, CNAME item, end marker, padded to 32 bits.
    let name = &cname.as_bytes()[..cname.len().min(255)];
    let mut chunk = ours.to_be_bytes().to_vec();
    chunk.extend_from_slice(&[1, name.len() as u8]);
    chunk.extend_from_slice(name);
    chunk.push(0);
    while chunk.len() % 4 != 0 {
        chunk.push(0);
    }
    p.extend_from_slice(&[0x81, 202]);
    p.extend_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&chunk);
    // RTPFB, FMT 4 (TMMBN): our SSRC, media source 0, one tuple owned by the requester.
    p.extend_from_slice(&[0x80 | 4, 205, 0, 4]);
    p.extend_from_slice(&ours.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&requester.to_be_bytes());
    p.extend_from_slice(&entry[4..8]);
    Some(p)
}

/// The bitrate rule (see the module docs): the next target from the current one, the loss the
/// peer reports (0..1, `None` without a new report) and the caps.
pub(crate) fn next_bitrate(current: u32, loss: Option<f64>, min: u32, cap: u32) -> u32 {
    let next = match loss {
        Some(l) if l > 0.10 => f64::from(current) * (1.0 - 0.5 * l),
        Some(l) if l < 0.02 => f64::from(current) * 1.08,
        _ => f64::from(current),
    };
    (next as u32).min(cap).max(min.min(cap))
}

/// Once a second: is the far end's picture frozen while its packets still arrive?
#[derive(Default)]
pub(crate) struct FrozenPicture {
    packets: u64,
    frames: u64,
}

impl FrozenPicture {
    pub(crate) fn check(&mut self, packets: u64, frames: u64) -> bool {
        let frozen = frames == self.frames && frames > 0 && packets > self.packets + 5;
        (self.packets, self.frames) = (packets, frames);
        frozen
    }
}

/// The jitter buffer's latency for the next second, from the current one and how many packets
/// came too late in the last. Under loss those are retransmissions, each of which would have
/// repaired its packet with a longer buffer; so the buffer grows a step, to at most
/// [`RTX_JITTER_MAX`]. It never shrinks within a call: a path that lost packets once tends to
/// again, and each change of latency stalls the picture for the difference.
pub(crate) fn next_jitter_buffer(current: Duration, late: u64) -> Duration {
    if late == 0 || current >= RTX_JITTER_MAX {
        return current;
    }
    (current + RTX_JITTER_STEP).min(RTX_JITTER_MAX)
}

/// Grows the jitter buffer when packets came late (with RTX agreed), once a second.
#[derive(Default)]
struct RepairLatency {
    late: u64,
}

impl RepairLatency {
    /// Counts the late packets of the transport's jitter buffers; the latency set on the
    /// transport applies to them and to any made later (a new SSRC of the peer).
    fn check(&mut self, transport: &RtpTransport) {
        let late: u64 = transport.jitter_stats().iter().map(|st| num(st, "num-late") as u64).sum();
        let fresh = late.saturating_sub(self.late);
        self.late = late;
        let cur = transport.latency();
        let next = next_jitter_buffer(cur, fresh);
        if next != cur {
            tracing::info!(
                from_ms = cur.as_millis() as u64,
                to_ms = next.as_millis() as u64,
                late = fresh,
                "video jitter buffer grown: packets came too late to be repaired"
            );
            transport.set_latency(next);
        }
    }
}

/// Bus errors are logged; once a second the bitrate is adapted, and with retransmission
/// (`repair`) the jitter buffer's latency.
#[allow(clippy::too_many_arguments)]
fn control(
    sh: Arc<Shared>,
    bus: gst::Bus,
    transport: Arc<RtpTransport>,
    encoder: gst::Element,
    name: String,
    min: u32,
    max: u32,
    repair: bool,
) {
    let mut repair_latency = RepairLatency::default();
    let mut last_check = Instant::now();
    let mut last_rb_seq: Option<u64> = None;
    let mut frozen = FrozenPicture::default();
    while !sh.stop.load(Ordering::Relaxed) {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Error(e) => tracing::error!(
                    "video pipeline: {}: {} ({:?})",
                    msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                    e.error(),
                    e.debug()
                ),
                gst::MessageView::Warning(w) => tracing::debug!("video pipeline warning: {}", w.error()),
                _ => {}
            }
        }
        if last_check.elapsed() < Duration::from_secs(1) {
            continue;
        }
        last_check = Instant::now();
        if repair {
            repair_latency.check(&transport);
        }
        if frozen.check(sh.depay_packets.load(Ordering::Relaxed), sh.frames_decoded.load(Ordering::Relaxed)) {
            // Packets arrive but nothing decodes: the keyframe asked for was lost too, and the
            // depayloader waits for one without asking again. Ask again, once a second.
            let depay = sh.depay.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|w| w.upgrade());
            if let Some(sink) = depay.and_then(|d| d.static_pad("sink")) {
                tracing::debug!("far-end picture frozen; asking for a keyframe again");
                sink.push_event(gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true).build());
            }
        }
        let st = transport.rtp_session().property::<gst::Structure>("stats");
        let mut loss = None;
        if let Ok(sources) = st.get::<glib::ValueArray>("source-stats") {
            for v in sources.as_slice() {
                let Ok(src) = v.get::<gst::Structure>() else { continue };
                if src.get::<bool>("internal").unwrap_or(false) || !src.get::<bool>("have-rb").unwrap_or(false) {
                    continue;
                }
                let seq = num(&src, "rb-exthighestseq") as u64;
                if last_rb_seq != Some(seq) {
                    last_rb_seq = Some(seq);
                    let l = num(&src, "rb-fractionlost") / 256.0;
                    sh.remote_loss_permille.store((l * 1000.0) as u32, Ordering::Relaxed);
                    loss = Some(l);
                }
            }
        }
        let mut cap = max;
        for c in [sh.remb_kbps.load(Ordering::Relaxed), sh.tmmbr_kbps.load(Ordering::Relaxed)] {
            if c > 0 {
                cap = cap.min(c);
            }
        }
        let cur = sh.bitrate_kbps.load(Ordering::Relaxed);
        let next = next_bitrate(cur, loss, min, cap);
        if next.abs_diff(cur) * 20 > cur {
            set_encoder_bitrate(&encoder, &name, next);
            sh.bitrate_kbps.store(next, Ordering::Relaxed);
            tracing::info!(from = cur, to = next, ?loss, cap, "video bitrate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remb_and_tmmbr_parse() {
        // REMB: 1 SSRC, exp 3, mantissa 125000 → 1 000 000 bit/s.
        let m: u32 = 125_000;
        let mut fci = b"REMB".to_vec();
        fci.push(1);
        fci.push((3 << 2) | ((m >> 16) as u8 & 3));
        fci.push((m >> 8) as u8);
        fci.push(m as u8);
        fci.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(parse_remb(&fci), Some(1_000_000));
        assert_eq!(parse_remb(b"RE"), None);
        assert_eq!(parse_remb(b"XXXX\x01\x00\x00\x00"), None);
        // TMMBR for SSRC 0x01020304: exp 2, mantissa 100000 → 400 000 bit/s, overhead 40.
        let (exp, man, ovh): (u32, u32, u32) = (2, 100_000, 40);
        let word = (exp << 26) | (man << 9) | ovh;
        let mut t = vec![9, 9, 9, 9, 0, 0, 0, 0, 1, 2, 3, 4];
        t.extend_from_slice(&word.to_be_bytes());
        assert_eq!(parse_tmmbr(&t, 0x0102_0304), Some(400_000));
        assert_eq!(parse_tmmbr(&t[..7], 0x0102_0304), None);
        assert_eq!(parse_tmmbr(&t, 5), None);
    }

    #[test]
    fn tmmbn_acknowledges_our_entry_of_a_tmmbr() {
        let (exp, man, ovh): (u32, u32, u32) = (2, 100_000, 40);
        let word = (exp << 26) | (man << 9) | ovh;
        let mut fci = vec![9, 9, 9, 9, 0, 0, 0, 0, 1, 2, 3, 4];
        fci.extend_from_slice(&word.to_be_bytes());
        let p = tmmbn_packet(&fci, 0x0102_0304, 0xaabb_ccdd, "huis@room").unwrap();
        // RR (8) + SDES (header 4 + chunk 4 + 2 + 9 + 1 = 20) + TMMBN (20); lengths in words - 1.
        assert_eq!(p.len(), 8 + 20 + 20);
        assert_eq!(&p[0..4], &[0x80, 201, 0, 1]);
        assert_eq!(&p[8..12], &[0x81, 202, 0, 4]);
        assert_eq!(&p[16..18], &[1, 9]);
        let fb = &p[28..];
        assert_eq!(&fb[0..4], &[0x84, 205, 0, 4]);
        assert_eq!(&fb[4..8], &0x0102_0304u32.to_be_bytes());
        assert_eq!(&fb[12..16], &0xaabb_ccddu32.to_be_bytes(), "the tuple's owner is the requester");
        assert_eq!(&fb[16..20], &word.to_be_bytes());
        assert_eq!(tmmbn_packet(&fci, 7, 1, "x"), None, "no entry for us: no TMMBN");
    }

    #[test]
    fn frozen_picture_is_packets_without_frames() {
        let mut f = FrozenPicture::default();
        assert!(!f.check(100, 0), "not before the first picture");
        assert!(!f.check(200, 30), "decoding");
        assert!(f.check(300, 30), "packets, no new frame");
        assert!(!f.check(302, 30), "no packets either: the far end stopped sending");
        assert!(!f.check(400, 60), "recovered");
    }

    #[test]
    fn jitter_buffer_grows_only_for_late_retransmissions_and_only_so_far() {
        let ms = Duration::from_millis;
        assert_eq!(next_jitter_buffer(ms(50), 0), ms(50), "no late packet, no change");
        assert_eq!(next_jitter_buffer(ms(50), 1), ms(60));
        assert_eq!(next_jitter_buffer(ms(50), 7), ms(60), "one step a second, however many came late");
        assert_eq!(next_jitter_buffer(ms(95), 2), RTX_JITTER_MAX);
        assert_eq!(next_jitter_buffer(RTX_JITTER_MAX, 3), RTX_JITTER_MAX);
        // A buffer configured above the ceiling is left as it is.
        assert_eq!(next_jitter_buffer(ms(200), 3), ms(200));
        let mut cur = ms(50);
        for _ in 0..20 {
            cur = next_jitter_buffer(cur, 1);
        }
        assert_eq!(cur, RTX_JITTER_MAX);
    }

    #[test]
    fn bitrate_follows_loss_and_caps() {
        assert_eq!(next_bitrate(1000, Some(0.2), 150, 2000), 900);
        assert_eq!(next_bitrate(1000, Some(0.0), 150, 2000), 1080);
        assert_eq!(next_bitrate(1000, Some(0.05), 150, 2000), 1000);
        assert_eq!(next_bitrate(1000, None, 150, 600), 600, "a REMB/TMMBR cap applies at once");
        assert_eq!(next_bitrate(160, Some(0.9), 150, 2000), 150, "never below the floor");
        assert_eq!(next_bitrate(1990, Some(0.0), 150, 2000), 2000);
    }
}
