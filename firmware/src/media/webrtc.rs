//! A conference's media on GStreamer's `webrtcbin`: the room publishes one connection (its
//! processed microphone in Opus, its camera in H.264) and receives one connection per far end
//! it subscribes to. Far ends' audio is mixed into the one stream the loudspeaker plays (so the
//! echo canceller's reference stays exact); their video is laid out on the screen.
//!
//! ```text
//!  audio thread ─AudioTx─▶ pacer ─▶ appsrc ─▶ opusenc ─▶ rtpopuspay ──┐
//!  camera ─▶ tee ─▶ encoder ─▶ rtph264pay ────────────────────────────┴▶ webrtcbin "publish"
//!           └▶ intervideosink "huis-self"
//!  per far end: webrtcbin ─▶ depay ─▶ decoder ─▶ audiomixer ─▶ appsink ─AudioRx─▶ audio thread
//!                                   └▶ decoder ─▶ name ─▶ compositor (grid) ─▶ intervideosink "huis-far"
//! ```
//!
//! Signalling is not here: the backend (`proto/webrtc/`) asks for offers and answers as SDP text
//! and hands over the far end's. ICE uses host candidates only unless STUN or TURN servers are
//! configured; the SDP we give out is complete (gathering finished), so signallers that do not
//! trickle candidates (Janus over HTTP, WHIP) need nothing else.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_video as gst_video;
use gstreamer_webrtc as gst_webrtc;

use gst::prelude::*;

use super::elements::{link_chain, link_pads, make, request_pad, static_pad};
use super::ring::{self, AudioRx, AudioTx};
use super::session::{Paced, dsp_caps, pace};
use super::video::{CaptureHook, configure_encoder, make_named, next_bitrate, pick_decoder, set_encoder_bitrate};
use super::{DSP_RATE, MediaError};

/// Payload types we offer when publishing (what browsers use too).
const OPUS_PT: u32 = 111;
const H264_PT: u32 = 96;
/// How long ICE gathering may take before the SDP goes out with what was found.
const GATHERING: Duration = Duration::from_secs(5);
/// How long a webrtcbin promise (offer, answer, description) may take.
const PROMISE: Duration = Duration::from_secs(5);
/// Jitter buffer of the far ends' streams.
const LATENCY_MS: u32 = 100;

/// The camera side of a conference (`None` in [`ConferenceParams`]: audio only).
#[derive(Clone)]
pub struct ConferenceVideo {
    /// gst-launch description of the camera's live source (from hal).
    pub source: String,
    /// The H.264 encoder element hal picked.
    pub encoder: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub kbps: u32,
    /// Called on every captured frame before it is encoded (and shown as the self-view), as
    /// [`super::video::VideoSessionParams::on_capture`]: benchmarks stamp the capture time into
    /// the picture; conferences leave it `None`.
    pub on_capture: Option<CaptureHook>,
}

impl std::fmt::Debug for ConferenceVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceVideo")
            .field("source", &self.source)
            .field("encoder", &self.encoder)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("framerate", &self.framerate)
            .field("kbps", &self.kbps)
            .field("on_capture", &self.on_capture.is_some())
            .finish()
    }
}

/// What a conference's media needs.
#[derive(Debug, Clone)]
pub struct ConferenceParams {
    pub video: Option<ConferenceVideo>,
    /// Size of the far ends' layout on the screen.
    pub layout: (u32, u32),
    pub opus_bitrate: u32,
    /// `stun://host:port`; none by default (host candidates only).
    pub stun: Option<String>,
    /// `turn(s)://user:password@host:port` servers.
    pub turn: Vec<String>,
    /// Media only through the TURN servers.
    pub relay_only: bool,
    pub far_channel: String,
    pub self_channel: String,
}

/// ICE, DTLS and media state of one connection, for Call1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    New,
    Connecting,
    Connected,
    /// ICE lost the far end (a network cut); it may come back.
    Disconnected,
    Failed,
    Closed,
}

impl Connection {
    pub fn name(self) -> &'static str {
        match self {
            Connection::New => "new",
            Connection::Connecting => "connecting",
            Connection::Connected => "connected",
            Connection::Disconnected => "disconnected",
            Connection::Failed => "failed",
            Connection::Closed => "closed",
        }
    }
}

fn connection_of(el: &gst::Element) -> Connection {
    use gst_webrtc::WebRTCPeerConnectionState as S;
    match el.property::<S>("connection-state") {
        S::New => Connection::New,
        S::Connecting => Connection::Connecting,
        S::Connected => Connection::Connected,
        S::Disconnected => Connection::Disconnected,
        S::Failed => Connection::Failed,
        _ => Connection::Closed,
    }
}

struct Shared {
    /// When the first far-end frame was decoded.
    first_frame: std::sync::OnceLock<Instant>,
    stop: AtomicBool,
    muted: AtomicBool,
    frames_decoded: AtomicU64,
    frames_sent: AtomicU64,
    audio_buffers_received: AtomicU64,
}

impl Paced for Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }
}

/// One far end: its connection, and the mixer and compositor inputs its streams feed.
struct FarEnd {
    bin: gst::Bin,
    webrtc: gst::Element,
    display: String,
    sinks: Arc<Mutex<Vec<gst::Pad>>>,
}

/// The figures of a conference, for Call1.Stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConferenceStats {
    pub far_ends: usize,
    pub frames_decoded: u64,
    pub frames_sent: u64,
    pub audio_buffers_received: u64,
    /// The publishing connection.
    pub publisher: Option<Connection>,
    /// Far ends whose connection is up.
    pub far_ends_connected: usize,
}

/// What webrtcbin's statistics say, summed over the connections. GStreamer 1.22 labels the
/// kind of streams wrongly under max-bundle, so the kind is read from the RTP clock rate
/// (48 kHz audio, 90 kHz video) where it can be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub audio_bytes_sent: u64,
    pub video_bytes_sent: u64,
    pub audio_packets_sent: u64,
    pub video_packets_sent: u64,
    /// Round trip and loss the far side reports about our streams.
    pub audio_rtt_ms: Option<f64>,
    pub video_rtt_ms: Option<f64>,
    pub audio_fraction_lost: Option<f64>,
    pub video_fraction_lost: Option<f64>,
    /// What far ends send us, all streams.
    pub bytes_received: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
}

impl Figures {
    fn add(&mut self, conn: &gst::StructureRef, ours: bool) {
        use gst_webrtc::WebRTCStatsType as T;
        let mut kinds = std::collections::HashMap::new();
        let items: Vec<gst::Structure> = conn.iter().filter_map(|(_, v)| v.get::<gst::Structure>().ok()).collect();
        // Our streams' kinds by SSRC, from their clock rates.
        for s in &items {
            if s.get::<T>("type").ok() == Some(T::OutboundRtp)
                && let (Ok(ssrc), Ok(src)) = (s.get::<u32>("ssrc"), s.get::<gst::Structure>("gst-rtpsource-stats"))
            {
                kinds.insert(ssrc, src.get::<i32>("clock-rate").unwrap_or(0) == 90_000);
            }
        }
        for s in &items {
            let u64_of = |f: &str| s.get::<u64>(f).unwrap_or(0);
            match s.get::<T>("type") {
                Ok(T::OutboundRtp) if ours => {
                    let video = s.get::<u32>("ssrc").ok().and_then(|x| kinds.get(&x).copied()).unwrap_or(false);
                    if video {
                        self.video_bytes_sent += u64_of("bytes-sent");
                        self.video_packets_sent += u64_of("packets-sent");
                    } else {
                        self.audio_bytes_sent += u64_of("bytes-sent");
                        self.audio_packets_sent += u64_of("packets-sent");
                    }
                }
                Ok(T::RemoteInboundRtp) if ours => {
                    let Some(video) = s.get::<u32>("ssrc").ok().and_then(|x| kinds.get(&x).copied()) else { continue };
                    let rtt = s.get::<f64>("round-trip-time").ok().filter(|r| *r > 0.0).map(|r| r * 1000.0);
                    let lost = s.get::<f64>("fraction-lost").ok();
                    if video {
                        self.video_rtt_ms = rtt.or(self.video_rtt_ms);
                        self.video_fraction_lost = lost.or(self.video_fraction_lost);
                    } else {
                        self.audio_rtt_ms = rtt.or(self.audio_rtt_ms);
                        self.audio_fraction_lost = lost.or(self.audio_fraction_lost);
                    }
                }
                Ok(T::InboundRtp) if !ours => {
                    self.bytes_received += u64_of("bytes-received");
                    self.packets_received += u64_of("packets-received");
                    if let Ok(src) = s.get::<gst::Structure>("gst-rtpsource-stats") {
                        self.packets_lost += i64::from(src.get::<i32>("packets-lost").unwrap_or(0).max(0));
                    }
                    self.jitter_ms = self.jitter_ms.max(s.get::<f64>("jitter").unwrap_or(0.0).max(0.0) * 1000.0);
                }
                _ => {}
            }
        }
    }
}

/// A conference's media. See the module documentation.
pub struct ConferenceMedia {
    pipeline: gst::Pipeline,
    publisher: gst::Element,
    mixer: gst::Element,
    compositor: gst::Element,
    shared: Arc<Shared>,
    tx: AudioTx,
    rx: AudioRx,
    params: ConferenceParams,
    /// The camera's encoder and its bitrate now (kbit/s), for congestion control.
    encoder: Option<gst::Element>,
    bitrate_kbps: std::sync::atomic::AtomicU32,
    far_ends: Mutex<BTreeMap<u64, FarEnd>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

impl ConferenceMedia {
    /// Builds and starts the pipeline: the publishing connection (not offered yet), the mixer
    /// and the layout.
    pub fn start(params: ConferenceParams) -> Result<ConferenceMedia, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        build(params)
    }

    pub fn sender(&self) -> AudioTx {
        self.tx.clone()
    }

    pub fn receiver(&self) -> AudioRx {
        self.rx.clone()
    }

    /// The room publishes its camera.
    pub fn sends_video(&self) -> bool {
        self.params.video.is_some()
    }

    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Our offer to publish (complete SDP text, candidates included).
    pub async fn publish_offer(&self) -> Result<String, MediaError> {
        // The offer names each stream's SSRC from its caps (an SFU such as Janus drops packets
        // of SSRCs it was not told of): wait until every stream has them, up to a second.
        let since = Instant::now();
        while self.publisher.sink_pads().iter().any(|p| p.current_caps().is_none())
            && since.elapsed() < Duration::from_secs(1)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let offer = promise(&self.publisher, "create-offer", None).await?;
        let desc = offer
            .get::<gst_webrtc::WebRTCSessionDescription>("offer")
            .map_err(|_| MediaError::pipeline("webrtcbin made no offer"))?;
        set_description(&self.publisher, "set-local-description", &desc).await?;
        local_sdp(&self.publisher).await
    }

    /// The far end's answer to [`Self::publish_offer`].
    pub async fn publish_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let desc = parse_sdp(gst_webrtc::WebRTCSDPType::Answer, sdp)?;
        set_description(&self.publisher, "set-remote-description", &desc).await
    }

    /// Adds far end `id` from its offer (what it sends us), returns our answer.
    pub async fn subscribe(&self, id: u64, display: &str, offer: &str) -> Result<String, MediaError> {
        let desc = parse_sdp(gst_webrtc::WebRTCSDPType::Offer, offer)?;
        let webrtc = self.add_far_end(id, display)?;
        let answer = async {
            set_description(&webrtc, "set-remote-description", &desc).await?;
            let answer = promise(&webrtc, "create-answer", None).await?;
            let desc = answer
                .get::<gst_webrtc::WebRTCSessionDescription>("answer")
                .map_err(|_| MediaError::pipeline("webrtcbin made no answer"))?;
            set_description(&webrtc, "set-local-description", &desc).await?;
            local_sdp(&webrtc).await
        }
        .await;
        if answer.is_err() {
            self.remove_far_end(id);
        }
        answer
    }

    /// Adds far end `id` that we offer to receive from (WHEP): our recvonly offer for Opus audio
    /// and H.264, VP8 or VP9 video. The far end's answer goes to [`Self::receive_answer`].
    pub async fn receive_offer(&self, id: u64, display: &str, video: bool) -> Result<String, MediaError> {
        let webrtc = self.add_far_end(id, display)?;
        let recv = gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly;
        let mut kinds = vec![opus_caps()];
        if video {
            kinds.push(receive_video_caps());
        }
        for caps in kinds {
            let _ = webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>("add-transceiver", &[&recv, &caps]);
        }
        let offer = async {
            let offer = promise(&webrtc, "create-offer", None).await?;
            let desc = offer
                .get::<gst_webrtc::WebRTCSessionDescription>("offer")
                .map_err(|_| MediaError::pipeline("webrtcbin made no offer"))?;
            set_description(&webrtc, "set-local-description", &desc).await?;
            local_sdp(&webrtc).await
        }
        .await;
        if offer.is_err() {
            self.remove_far_end(id);
        }
        offer
    }

    /// The far end's answer to [`Self::receive_offer`].
    pub async fn receive_answer(&self, id: u64, sdp: &str) -> Result<(), MediaError> {
        let desc = parse_sdp(gst_webrtc::WebRTCSDPType::Answer, sdp)?;
        let webrtc = self
            .far_ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|f| f.webrtc.clone())
            .ok_or_else(|| MediaError::Pipeline(format!("no far end {id}")))?;
        set_description(&webrtc, "set-remote-description", &desc).await
    }

    /// Far end `id` left: its streams leave the mix and the layout.
    pub fn remove_far_end(&self, id: u64) -> bool {
        let Some(far) = self.far_ends.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) else {
            return false;
        };
        for sink in far.sinks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            if let Some(parent) = sink.parent_element() {
                if let Some(peer) = sink.peer() {
                    let _ = peer.unlink(&sink);
                }
                parent.release_request_pad(&sink);
            }
        }
        let _ = far.bin.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&far.bin);
        tracing::info!(far_end = id, display = %far.display, "far end removed");
        relayout(&self.compositor, self.params.layout);
        true
    }

    /// Who is in the conference besides us: (id, display name).
    pub fn far_ends(&self) -> Vec<(u64, String)> {
        self.far_ends.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, f)| (*k, f.display.clone())).collect()
    }

    /// webrtcbin's statistics of the publishing connection and of every far end's.
    pub async fn raw_stats(&self) -> Vec<(String, gst::Structure)> {
        let mut els = vec![("publish".to_owned(), self.publisher.clone())];
        els.extend(
            self.far_ends
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|f| (f.display.clone(), f.webrtc.clone())),
        );
        let mut out = Vec::new();
        for (who, el) in els {
            if let Ok(s) =
                promise_with("get-stats", |p| el.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, p])).await
            {
                out.push((who, s));
            }
        }
        out
    }

    /// The figures of every connection, summed up per kind (see [`Figures`]).
    pub async fn figures(&self) -> Figures {
        let mut f = Figures::default();
        for (who, s) in self.raw_stats().await {
            f.add(&s, who == "publish");
        }
        f
    }

    /// Congestion control, once a second: the loss the far side reports about our video
    /// (`None`: no new report) moves the encoder's bitrate between 150 kbit/s and the ceiling
    /// (the rule of SIP calls' video: down by half the loss above 10 %, up 8 % below 2 %).
    pub fn adapt_bitrate(&self, loss: Option<f64>) -> u32 {
        let (Some(enc), Some(v)) = (&self.encoder, &self.params.video) else { return 0 };
        let now = self.bitrate_kbps.load(Ordering::Relaxed);
        let next = next_bitrate(now, loss, 150, v.kbps);
        if next != now {
            set_encoder_bitrate(enc, &v.encoder, next);
            self.bitrate_kbps.store(next, Ordering::Relaxed);
        }
        next
    }

    /// When the first far-end frame was decoded.
    pub fn first_frame(&self) -> Option<Instant> {
        self.shared.first_frame.get().copied()
    }

    pub fn publisher_connection(&self) -> Connection {
        connection_of(&self.publisher)
    }

    pub fn stats(&self) -> ConferenceStats {
        let far = self.far_ends.lock().unwrap_or_else(|e| e.into_inner());
        ConferenceStats {
            far_ends: far.len(),
            far_ends_connected: far.values().filter(|f| connection_of(&f.webrtc) == Connection::Connected).count(),
            frames_decoded: self.shared.frames_decoded.load(Ordering::Relaxed),
            frames_sent: self.shared.frames_sent.load(Ordering::Relaxed),
            audio_buffers_received: self.shared.audio_buffers_received.load(Ordering::Relaxed),
            publisher: Some(connection_of(&self.publisher)),
        }
    }

    /// Stops everything; blocks up to a second.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
        for t in self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = t.join();
        }
    }

    fn add_far_end(&self, id: u64, display: &str) -> Result<gst::Element, MediaError> {
        self.remove_far_end(id);
        let bin = gst::Bin::with_name(&format!("far-end-{id}"));
        let webrtc = new_webrtcbin(&self.params, &format!("far-{id}"))?;
        bin.add(&webrtc).map_err(MediaError::pipeline)?;
        let sinks = Arc::new(Mutex::new(Vec::new()));
        {
            let bin = bin.downgrade();
            let (mixer, compositor) = (self.mixer.downgrade(), self.compositor.downgrade());
            let (sinks, shared, layout) = (sinks.clone(), self.shared.clone(), self.params.layout);
            let display = display.to_owned();
            webrtc.connect_pad_added(move |_, pad| {
                if pad.direction() != gst::PadDirection::Src {
                    return;
                }
                let (Some(bin), Some(mixer), Some(compositor)) = (bin.upgrade(), mixer.upgrade(), compositor.upgrade())
                else {
                    return;
                };
                let r = add_far_stream(&bin, pad, &mixer, &compositor, &display, &shared);
                match r {
                    Ok(sink) => {
                        sinks.lock().unwrap_or_else(|e| e.into_inner()).push(sink);
                        relayout(&compositor, layout);
                    }
                    Err(e) => tracing::error!(far_end = id, "cannot play a far end's stream: {e}"),
                }
            });
        }
        self.pipeline.add(&bin).map_err(MediaError::pipeline)?;
        bin.sync_state_with_parent().map_err(MediaError::pipeline)?;
        self.far_ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, FarEnd { bin, webrtc: webrtc.clone(), display: display.to_owned(), sinks });
        Ok(webrtc)
    }
}

impl Drop for ConferenceMedia {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lays the far ends' pictures out as a grid (one: full screen).
fn relayout(compositor: &gst::Element, (w, h): (u32, u32)) {
    let pads: Vec<gst::Pad> = compositor.sink_pads();
    for (i, pad) in pads.iter().enumerate() {
        let (x, y, cw, ch) = grid_cell(i, pads.len(), w, h);
        pad.set_property("xpos", x as i32);
        pad.set_property("ypos", y as i32);
        pad.set_property("width", cw as i32);
        pad.set_property("height", ch as i32);
    }
}

/// Cell `i` of `n` in a grid filling `w`×`h`: as square as the count allows.
pub(crate) fn grid_cell(i: usize, n: usize, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let n = n.max(1) as u32;
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(1);
    let rows = n.div_ceil(cols);
    let (cw, ch) = (w / cols, h / rows);
    let i = i as u32;
    (i % cols * cw, i / cols * ch, cw, ch)
}

fn new_webrtcbin(p: &ConferenceParams, name: &str) -> Result<gst::Element, MediaError> {
    let webrtc = gst::ElementFactory::make("webrtcbin").name(name).build().map_err(|_| MediaError::MissingElement {
        element: "webrtcbin",
        purpose: "WebRTC connection",
        package: "gstreamer1.0-plugins-bad and gstreamer1.0-nice",
    })?;
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    // No UPnP port mapping (libnice's default): nothing leaves the room's network unasked.
    let ice = webrtc.property::<gst::glib::Object>("ice-agent");
    if ice.find_property("agent").is_some() {
        let agent = ice.property::<gst::glib::Object>("agent");
        if agent.find_property("upnp").is_some() {
            agent.set_property("upnp", false);
        }
    }
    webrtc.set_property("latency", LATENCY_MS);
    if let Some(stun) = &p.stun {
        webrtc.set_property("stun-server", stun);
    }
    if p.relay_only {
        webrtc.set_property_from_str("ice-transport-policy", "relay");
    }
    for turn in &p.turn {
        let ok = webrtc.emit_by_name::<bool>("add-turn-server", &[turn]);
        if !ok {
            tracing::warn!("webrtcbin refused the TURN server (check its URI)");
        }
    }
    Ok(webrtc)
}

/// Emits a webrtcbin action signal that answers through a promise, and waits for its reply.
async fn promise(
    el: &gst::Element,
    signal: &str,
    arg: Option<&gst_webrtc::WebRTCSessionDescription>,
) -> Result<gst::Structure, MediaError> {
    promise_with(signal, |p| match arg {
        Some(desc) => el.emit_by_name::<()>(signal, &[desc, p]),
        None => el.emit_by_name::<()>(signal, &[&None::<gst::Structure>, p]),
    })
    .await
}

/// Runs `emit` with a new promise and waits for its reply.
async fn promise_with(signal: &str, emit: impl FnOnce(&gst::Promise)) -> Result<gst::Structure, MediaError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = gst::Promise::with_change_func(move |reply| {
        let r = match reply {
            Ok(Some(s)) => match s.get::<gst::glib::Error>("error") {
                Ok(e) => Err(e.to_string()),
                Err(_) => Ok(s.to_owned()),
            },
            Ok(None) => Ok(gst::Structure::new_empty("empty")),
            Err(e) => Err(format!("{e:?}")),
        };
        let _ = tx.send(r);
    });
    emit(&p);
    match tokio::time::timeout(PROMISE, rx).await {
        Ok(Ok(Ok(s))) => Ok(s),
        Ok(Ok(Err(e))) => Err(MediaError::Pipeline(format!("webrtcbin {signal}: {e}"))),
        Ok(Err(_)) => Err(MediaError::Pipeline(format!("webrtcbin {signal}: no reply"))),
        Err(_) => Err(MediaError::Pipeline(format!("webrtcbin {signal}: no reply within {PROMISE:?}"))),
    }
}

async fn set_description(
    el: &gst::Element,
    signal: &str,
    desc: &gst_webrtc::WebRTCSessionDescription,
) -> Result<(), MediaError> {
    promise(el, signal, Some(desc)).await.map(|_| ())
}

fn parse_sdp(kind: gst_webrtc::WebRTCSDPType, sdp: &str) -> Result<gst_webrtc::WebRTCSessionDescription, MediaError> {
    if sdp.len() > 64 * 1024 {
        return Err(MediaError::Pipeline(format!("an SDP of {} bytes is too long", sdp.len())));
    }
    if !sdp.starts_with("v=0") || !sdp.contains("\nm=") {
        return Err(MediaError::Pipeline("the far end's SDP has no v=0 line or no m= line".into()));
    }
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| MediaError::Pipeline(format!("the far end's SDP does not parse: {e}")))?;
    if msg.medias_len() == 0 {
        return Err(MediaError::Pipeline("the far end's SDP has no media".into()));
    }
    Ok(gst_webrtc::WebRTCSessionDescription::new(kind, msg))
}

/// Waits for ICE gathering to finish, then returns the local description as text.
async fn local_sdp(el: &gst::Element) -> Result<String, MediaError> {
    let since = Instant::now();
    while el.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
        != gst_webrtc::WebRTCICEGatheringState::Complete
        && since.elapsed() < GATHERING
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let desc = el
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| MediaError::pipeline("webrtcbin has no local description"))?;
    let text = desc.sdp().as_text().map_err(MediaError::pipeline)?;
    if !text.contains("a=candidate") {
        let relay_only = el.property_value("ice-transport-policy").get::<gst_webrtc::WebRTCICETransportPolicy>()
            == Ok(gst_webrtc::WebRTCICETransportPolicy::Relay);
        let why = if relay_only {
            "no TURN server gave us a relay (unreachable, refused our credentials or, over TLS, its certificate)"
        } else {
            "no usable network interface?"
        };
        return Err(MediaError::Pipeline(format!("no ICE candidate was found in {GATHERING:?} ({why})")));
    }
    Ok(text)
}

/// Sets a sendonly transceiver with `caps` as its only codec on a new sink pad of `webrtc`.
fn send_pad(webrtc: &gst::Element, caps: &gst::Caps) -> Result<gst::Pad, MediaError> {
    let pad = request_pad(webrtc, "sink_%u")?;
    let t = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
    t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
    t.set_property("codec-preferences", caps);
    Ok(pad)
}

/// Opus as browsers and SFUs offer it (stereo signalled, mono sent).
fn opus_caps() -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("encoding-name", "OPUS")
        .field("clock-rate", 48_000i32)
        .field("payload", OPUS_PT as i32)
        .field("encoding-params", "2")
        .field("useinbandfec", "1")
        .build()
}

/// The video we can decode, in order of preference: H.264 (hardware decoders), VP8, VP9.
fn receive_video_caps() -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    let caps_mut = caps.get_mut().expect("new caps are writable");
    for (name, pt) in [("H264", H264_PT as i32), ("VP8", 97), ("VP9", 98)] {
        let mut s = gst::Structure::builder("application/x-rtp")
            .field("media", "video")
            .field("encoding-name", name)
            .field("clock-rate", 90_000i32)
            .field("payload", pt)
            .field("rtcp-fb-nack-pli", true)
            .field("rtcp-fb-nack", true)
            .field("rtcp-fb-ccm-fir", true)
            .build();
        if name == "H264" {
            s.set("packetization-mode", "1");
            s.set("profile-level-id", "42e01f");
        }
        caps_mut.append_structure(s);
    }
    caps
}

fn build(p: ConferenceParams) -> Result<ConferenceMedia, MediaError> {
    let shared = Arc::new(Shared {
        first_frame: std::sync::OnceLock::new(),
        stop: AtomicBool::new(false),
        muted: AtomicBool::new(false),
        frames_decoded: AtomicU64::new(0),
        frames_sent: AtomicU64::new(0),
        audio_buffers_received: AtomicU64::new(0),
    });
    let pipeline = gst::Pipeline::with_name("huis-conference");
    let add = |els: &[&gst::Element]| pipeline.add_many(els.iter().copied()).map_err(MediaError::pipeline);
    let publisher = new_webrtcbin(&p, "publish")?;
    add(&[&publisher])?;

    // ---- our microphone: the pacer's frames, Opus ----
    let (tx, tx_reader) = ring::tx_ring();
    let appsrc = gst_app::AppSrc::builder()
        .caps(&dsp_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .do_timestamp(false)
        .max_bytes(u64::from(DSP_RATE) * 4 / 5)
        .leaky_type(gst_app::AppLeakyType::Downstream)
        .build();
    let conv = make("audioconvert", "audio format converter")?;
    let resample = make("audioresample", "audio resampler")?;
    let enc = make("opusenc", "Opus encoder")?;
    enc.set_property_from_str("audio-type", "voice");
    enc.set_property("bitrate", p.opus_bitrate.clamp(6000, 510_000) as i32);
    enc.set_property("inband-fec", true);
    let pay = make("rtpopuspay", "Opus RTP payloader")?;
    pay.set_property("pt", OPUS_PT);
    let appsrc_el: &gst::Element = appsrc.upcast_ref();
    add(&[appsrc_el, &conv, &resample, &enc, &pay])?;
    link_chain(&[appsrc_el, &conv, &resample, &enc, &pay])?;
    link_pads(&static_pad(&pay, "src")?, &send_pad(&publisher, &opus_caps())?)?;

    // ---- our camera: H.264 constrained baseline, and the self-view ----
    let mut camera_encoder = None;
    if let Some(v) = &p.video {
        let caps = format!(
            "video/x-raw,format=I420,width={},height={},framerate={}/1,pixel-aspect-ratio=1/1",
            v.width, v.height, v.framerate
        );
        let camera: gst::Element = gst::parse::bin_from_description(
            &format!(
                "{} ! videoconvert ! videoscale ! videorate drop-only=true ! capsfilter caps=\"{caps}\"",
                v.source
            ),
            true,
        )
        .map_err(|e| MediaError::Pipeline(format!("camera source '{}': {e}", v.source)))?
        .upcast();
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
        let encoder = make_named(&v.encoder)?;
        // Start below the ceiling and climb while the far side reports little loss.
        configure_encoder(&encoder, &v.encoder, v.kbps * 3 / 4, v.framerate, false);
        camera_encoder = Some(encoder.clone());
        let enc_caps = make("capsfilter", "caps filter")?;
        enc_caps
            .set_property("caps", gst::Caps::builder("video/x-h264").field("profile", "constrained-baseline").build());
        let parse = make("h264parse", "H.264 parser")?;
        let pay = make("rtph264pay", "H.264 RTP payloader")?;
        pay.set_property("pt", H264_PT);
        pay.set_property("config-interval", -1i32);
        pay.set_property_from_str("aggregate-mode", "zero-latency");
        add(&[&camera, &tee, &q_self, &self_sink, &q_enc, &encoder, &enc_caps, &parse, &pay])?;
        link_chain(&[&camera, &tee, &q_self, &self_sink])?;
        link_chain(&[&tee, &q_enc, &encoder, &enc_caps, &parse, &pay])?;
        if let Some(hook) = v.on_capture.clone() {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, v.width, v.height)
                .fps(gst::Fraction::new(v.framerate as i32, 1))
                .build()
                .map_err(MediaError::pipeline)?;
            static_pad(&tee, "sink")?.add_probe(gst::PadProbeType::BUFFER, move |_, probe| {
                if let Some(gst::PadProbeData::Buffer(b)) = &mut probe.data {
                    hook(b.make_mut(), &info);
                }
                gst::PadProbeReturn::Ok
            });
        }
        let counter = shared.clone();
        static_pad(&parse, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.frames_sent.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        let h264 = gst::Caps::builder("application/x-rtp")
            .field("media", "video")
            .field("encoding-name", "H264")
            .field("clock-rate", 90_000i32)
            .field("payload", H264_PT as i32)
            .field("packetization-mode", "1")
            .field("rtcp-fb-nack-pli", true)
            .field("rtcp-fb-ccm-fir", true)
            .field("rtcp-fb-nack", true)
            .build();
        link_pads(&static_pad(&pay, "src")?, &send_pad(&publisher, &h264)?)?;
    }

    // ---- far ends' audio: one mix, to the audio thread ----
    let (rx, mut rx_writer) = ring::rx_ring();
    let silence = make("audiotestsrc", "silence under the mix")?;
    silence.set_property_from_str("wave", "silence");
    silence.set_property("is-live", true);
    let mixer = make("audiomixer", "far ends' audio mixer")?;
    mixer.set_property("latency", 20_000_000u64);
    let mix_conv = make("audioconvert", "audio format converter")?;
    let mix_resample = make("audioresample", "audio resampler")?;
    let mix_caps = make("capsfilter", "caps filter")?;
    mix_caps.set_property("caps", dsp_caps());
    let appsink = gst_app::AppSink::builder()
        .caps(&dsp_caps())
        .sync(false)
        .max_buffers(10)
        .drop(true)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    if let Some(buf) = sample.buffer()
                        && let Ok(map) = buf.map_readable()
                    {
                        rx_writer.write_le_bytes(&map);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        )
        .build();
    appsink.set_property("async", false);
    let silence_caps = make("capsfilter", "caps filter")?;
    silence_caps.set_property("caps", dsp_caps());
    add(&[&silence, &silence_caps, &mixer, &mix_conv, &mix_resample, &mix_caps, appsink.upcast_ref()])?;
    link_chain(&[&silence, &silence_caps, &mixer, &mix_conv, &mix_resample, &mix_caps, appsink.upcast_ref()])?;

    // ---- far ends' video: a grid, to the screen ----
    // No live background source: with one, every far end's frame waited for the background's
    // next 30 fps tick before the compositor let it through (up to a frame of latency, a
    // second clock phase after the screen's own). With only the far ends as inputs, the
    // compositor outputs as soon as every far end has a frame; its `background` fills the gaps.
    let (w, h) = p.layout;
    let compositor = make("compositor", "far ends' layout")?;
    compositor.set_property_from_str("background", "black");
    let layout_caps = make("capsfilter", "caps filter")?;
    layout_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", w as i32)
            .field("height", h as i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .build(),
    );
    let far_sink = make("intervideosink", "far ends to the screen")?;
    far_sink.set_property("channel", &p.far_channel);
    far_sink.set_property("sync", false);
    far_sink.set_property("async", false);
    add(&[&compositor, &layout_caps, &far_sink])?;
    link_chain(&[&compositor, &layout_caps, &far_sink])?;

    // ---- go ----
    let bus = pipeline.bus().ok_or_else(|| MediaError::pipeline("the pipeline has no bus"))?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = bus
            .pop_filtered(&[gst::MessageType::Error])
            .map(|m| MediaError::Pipeline(format!("{m:?}")))
            .unwrap_or_else(|| MediaError::pipeline("the conference pipeline refused to start"));
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }
    let mut threads = Vec::new();
    {
        let (shared, pipeline) = (shared.clone(), pipeline.clone());
        threads.push(
            std::thread::Builder::new()
                .name("mpace-conf".into())
                .spawn(move || pace(shared, tx_reader, appsrc, pipeline, Duration::from_millis(20)))
                .map_err(MediaError::pipeline)?,
        );
    }
    {
        let shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mbus-conf".into())
                .spawn(move || watch_bus(&shared, &bus))
                .map_err(MediaError::pipeline)?,
        );
    }
    Ok(ConferenceMedia {
        pipeline,
        publisher,
        mixer,
        compositor,
        shared,
        tx,
        rx,
        bitrate_kbps: std::sync::atomic::AtomicU32::new(p.video.as_ref().map_or(0, |v| v.kbps * 3 / 4)),
        params: p,
        encoder: camera_encoder,
        far_ends: Mutex::new(BTreeMap::new()),
        threads: Mutex::new(threads),
        stopped: AtomicBool::new(false),
    })
}

/// Logs the pipeline's errors and warnings (a far end's stream failing is not the conference
/// failing: the connections' states say that).
fn watch_bus(shared: &Shared, bus: &gst::Bus) {
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match msg.view() {
            gst::MessageView::Error(e) => tracing::error!(
                element = %msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                "conference media error: {} ({:?})",
                e.error(),
                e.debug()
            ),
            gst::MessageView::Warning(w) => tracing::warn!("conference media warning: {} ({:?})", w.error(), w.debug()),
            _ => {}
        }
    }
}

/// A far end's stream appeared on its webrtcbin: depayload, decode, and feed the mixer (audio)
/// or the layout (video). Returns the mixer's or compositor's pad it feeds.
fn add_far_stream(
    bin: &gst::Bin,
    pad: &gst::Pad,
    mixer: &gst::Element,
    compositor: &gst::Element,
    who: &str,
    shared: &Arc<Shared>,
) -> Result<gst::Pad, MediaError> {
    let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None))).unwrap_or_else(gst::Caps::new_any);
    let s = caps.structure(0).ok_or_else(|| MediaError::pipeline("a far end's stream has no caps"))?;
    let media = s.get::<&str>("media").unwrap_or("");
    let encoding = s.get::<&str>("encoding-name").unwrap_or("").to_ascii_uppercase();
    let queue = make("queue", "queue")?;
    let chain: Vec<gst::Element> = match (media, encoding.as_str()) {
        ("audio", "OPUS") => {
            let dec = make("opusdec", "Opus decoder")?;
            dec.set_property("plc", true);
            vec![
                make("rtpopusdepay", "Opus RTP depayloader")?,
                dec,
                make("audioconvert", "audio format converter")?,
                make("audioresample", "audio resampler")?,
            ]
        }
        ("video", "H264") => {
            let depay = make("rtph264depay", "H.264 RTP depayloader")?;
            depay.set_property("request-keyframe", true);
            vec![depay, make("h264parse", "H.264 parser")?, pick_decoder()?]
        }
        ("video", "VP8") => vec![make("rtpvp8depay", "VP8 RTP depayloader")?, make("vp8dec", "VP8 decoder")?],
        ("video", "VP9") => vec![make("rtpvp9depay", "VP9 RTP depayloader")?, make("vp9dec", "VP9 decoder")?],
        _ => {
            let sink = make("fakesink", "discard")?;
            bin.add(&sink).map_err(MediaError::pipeline)?;
            sink.sync_state_with_parent().map_err(MediaError::pipeline)?;
            link_pads(pad, &static_pad(&sink, "sink")?)?;
            return Err(MediaError::Pipeline(format!("a {media} stream in {encoding}: not played")));
        }
    };
    let mut els = vec![queue];
    els.extend(chain);
    let target = if media == "audio" {
        let counter = shared.clone();
        static_pad(els.last().expect("a chain"), "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.audio_buffers_received.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        mixer
    } else {
        let dec = els.last().expect("a chain").clone();
        let counter = shared.clone();
        static_pad(&dec, "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.first_frame.get_or_init(Instant::now);
            counter.frames_decoded.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        let convert = make("videoconvert", "video converter")?;
        let name = make("textoverlay", "far end's name")?;
        name.set_property("text", who);
        name.set_property_from_str("valignment", "bottom");
        name.set_property_from_str("halignment", "left");
        name.set_property("font-desc", "Sans 18");
        name.set_property("shaded-background", true);
        els.push(convert);
        els.push(name);
        els.push(make("videoconvert", "video converter")?);
        compositor
    };
    let refs: Vec<&gst::Element> = els.iter().collect();
    bin.add_many(refs.iter().copied()).map_err(MediaError::pipeline)?;
    link_chain(&refs)?;
    let last = els.last().expect("a chain");
    let ghost = gst::GhostPad::builder_with_target(&static_pad(last, "src")?)
        .map_err(MediaError::pipeline)?
        .name(format!("out-{}", pad.name()))
        .build();
    ghost.set_active(true).map_err(MediaError::pipeline)?;
    bin.add_pad(&ghost).map_err(MediaError::pipeline)?;
    let sink = request_pad(target, "sink_%u")?;
    if media == "video" {
        sink.set_property_from_str("sizing-policy", "keep-aspect-ratio");
    }
    link_pads(ghost.upcast_ref(), &sink)?;
    for el in &els {
        el.sync_state_with_parent().map_err(MediaError::pipeline)?;
    }
    link_pads(pad, &static_pad(&els[0], "sink")?)?;
    tracing::info!(far_end = %who, media = %media, encoding = %encoding, "far end's stream plays");
    Ok(sink)
}
