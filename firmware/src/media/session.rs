//! One call's audio: the GStreamer pipeline and the three small threads around it
//! (pacer, bus/timeout monitor, DTMF sequencer). The codec chains are here; rtpbin, the
//! sockets, RTCP and SRTP are the RTP transport ([`super::rtp`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_audio as gst_audio;
use gstreamer_rtp as gst_rtp;

use gst::prelude::*;

use super::dtmf::{self, DtmfDigit};
use super::elements::{link, link_chain, link_pads, make, random_ssrc, request_pad, static_pad};
use super::ring::{self, AudioRx, AudioTx, TxReader};
use super::rtp::{Activity, RtpTransport, TransportParams};
use super::{AudioCodec, AudioSessionParams, CallStats, CodecParams, DSP_RATE, Direction, MediaError, TelephoneEvent};

/// Something the signalling backend should know about, from [`AudioSession::poll_event`].
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// The remote sent an RFC 4733 DTMF event (reported once, when it starts).
    Dtmf { digit: char },
    /// No RTP (or, while we do not receive, no RTCP either) for this long.
    RtpTimeout { silent_for: Duration },
    /// Packets arrive again after an [`MediaEvent::RtpTimeout`].
    RtpResumed,
    /// The remote sent an RTCP BYE.
    RemoteBye { ssrc: u32 },
    /// The pipeline failed; the call's audio is probably gone.
    Error(MediaError),
}

/// How long [`AudioSession::stop`] waits for the last packets and the RTCP BYE to leave.
const STOP_BUDGET: Duration = Duration::from_millis(1000);
/// How long a DTMF tone is held before its stop is requested: rtpdtmfsrc makes every tone at
/// least 250 ms long anyway (and rounds up to its packet time), then adds a 100 ms gap itself.
const DTMF_TONE: Duration = Duration::from_millis(250);
/// RFC 4733 recommends sending the final packet of an event three times.
const DTMF_END_REPEATS: u32 = 3;
const DTMF_VOLUME_DBM0: i32 = 10;

/// The audio of one call. See the module documentation for the picture.
pub struct AudioSession {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    tx: AudioTx,
    rx: AudioRx,
    codec: CodecParams,
    transport: RtpTransport,
    send_valve: gst::Element,
    dtmf_src: Option<gst::Element>,
    dtmf_cmds: Mutex<Option<std::sync::mpsc::Sender<DtmfDigit>>>,
    events: Mutex<Option<tokio::sync::mpsc::Receiver<MediaEvent>>>,
    /// The pacer first, then the others.
    threads: Mutex<Vec<JoinHandle<()>>>,
    direction: Mutex<Direction>,
    local_rtp: std::net::SocketAddr,
    stopped: AtomicBool,
}

struct Shared {
    muted: AtomicBool,
    stop: AtomicBool,
    receiving: AtomicBool,
    events: tokio::sync::mpsc::Sender<MediaEvent>,
}

/// What the pacer reads of its session: stop, and send silence.
pub(super) trait Paced: Send + Sync {
    fn stopping(&self) -> bool;
    fn muted(&self) -> bool;
}

impl Paced for Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn emit(&self, ev: MediaEvent) {
        if let Err(e) = self.events.try_send(ev) {
            tracing::warn!("media event dropped, the backend is not reading them: {e}");
        }
    }
}

impl AudioSession {
    /// Build and start the pipeline for a negotiated call.
    pub fn start(params: AudioSessionParams) -> Result<AudioSession, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        params.validate()?;
        build(params)
    }

    /// The handle the DSP thread pushes near-end audio into (mono f32, 16 kHz, 10 ms frames).
    pub fn sender(&self) -> AudioTx {
        self.tx.clone()
    }

    /// The handle the DSP thread pulls far-end audio from (mono f32, 16 kHz).
    pub fn receiver(&self) -> AudioRx {
        self.rx.clone()
    }

    /// Where RTP is received (the port in our SDP).
    pub fn local_rtp(&self) -> std::net::SocketAddr {
        self.local_rtp
    }

    /// Send to a new remote address (a re-INVITE moved the far end's media, e.g. a PBX handing
    /// the call to a conference bridge). `rtcp`: `None` means RTP port + 1, or the RTP address
    /// with rtcp-mux. The new destination is added before the old one is removed, so no packet
    /// is lost in between.
    pub fn set_remote(&self, rtp: std::net::SocketAddr, rtcp: Option<std::net::SocketAddr>) -> Result<(), MediaError> {
        self.transport.set_remote(rtp, rtcp)
    }

    /// Mute: the stream keeps flowing, carrying digital silence.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Change direction (hold/resume after a re-INVITE). RTCP continues in every direction.
    pub fn set_direction(&self, direction: Direction) {
        *self.direction.lock().unwrap_or_else(|e| e.into_inner()) = direction;
        self.send_valve.set_property("drop", !direction.sends());
        self.shared.receiving.store(direction.receives(), Ordering::Relaxed);
    }

    pub fn direction(&self) -> Direction {
        *self.direction.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue DTMF digits (`0-9 * # A-D`, `,` = 1 s pause) as RFC 4733 events. Returns at once;
    /// the digits go out one after another (a tone of about 300 ms and a gap of about 100 ms
    /// each; a `,` makes the silence between two tones 1 s).
    pub fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        let parsed = dtmf::parse_dtmf_digits(digits)?;
        if self.dtmf_src.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        let cmds = self.dtmf_cmds.lock().unwrap_or_else(|e| e.into_inner());
        let tx = cmds.as_ref().ok_or(MediaError::Stopped)?;
        for d in parsed {
            tx.send(d).map_err(|_| MediaError::Stopped)?;
        }
        Ok(())
    }

    /// Current RTP/RTCP statistics.
    /// How the call's audio is protected now (SDES, DTLS-SRTP and its handshake, plain).
    pub fn protection(&self) -> super::Protection {
        self.transport.protection()
    }

    pub fn stats(&self) -> CallStats {
        let stats = self.transport.rtp_session().property::<gst::Structure>("stats");
        let mut out = CallStats::from_session_stats(self.codec.codec, &stats, self.codec.codec.clock_rate());
        out.rtcp_received = self.transport.activity().rtcp_received();
        out.tx_underruns = self.tx.underruns();
        out.rx_underruns = self.rx.underruns();
        out
    }

    /// The next event, if any. Never blocks.
    pub fn poll_event(&self) -> Option<MediaEvent> {
        self.events.lock().ok()?.as_mut()?.try_recv().ok()
    }

    /// Take the event channel to await it (e.g. in the backend's `select!`). After this,
    /// [`AudioSession::poll_event`] returns nothing.
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<MediaEvent>> {
        self.events.lock().ok()?.take()
    }

    /// End the call's media: the encoder drains, the last packets and an RTCP BYE leave, the
    /// pipeline stops and every thread is joined. Blocks for up to about a second (from async
    /// code, call it in `spawn_blocking`). Idempotent; dropping the session does it too.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.dtmf_cmds.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // The pacer pushes EOS into appsrc as it leaves; the payloader flushes, and rtpbin answers
        // EOS on its send path with an RTCP BYE.
        if !threads.is_empty() {
            let _ = threads.remove(0).join();
        }
        if let Some(d) = &self.dtmf_src {
            d.send_event(gst::event::Eos::new());
        }
        // One budget for both: on a loaded box the EOS may take most of it, and the BYE then
        // leaves at once (RFC 3550 6.3.7: no delay below 50 members).
        let until = Instant::now() + STOP_BUDGET;
        let left = || until.saturating_duration_since(Instant::now());
        if !self.transport.wait_for_send_eos(left()) {
            tracing::info!("the send path did not drain within {STOP_BUDGET:?}; the last packets may be lost");
        } else if self.direction().sends() && !self.transport.wait_for_bye(left()) {
            tracing::info!("no RTCP BYE left within {STOP_BUDGET:?}; the far end will time the stream out");
        }
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!("media pipeline did not stop cleanly: {e}");
        }
        // Free the ports now, even if the session object lives on (e.g. in an Arc).
        self.transport.close();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Whether our RTCP BYE has left (for tests that find none arrived).
    #[cfg(test)]
    pub(super) fn bye_left(&self) -> bool {
        self.transport.wait_for_bye(Duration::ZERO)
    }

    /// Whether [`AudioSession::stop`] has run.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

impl Drop for AudioSession {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rtp_caps(encoding: &str, clock_rate: u32, pt: u8) -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("clock-rate", clock_rate as i32)
        .field("encoding-name", encoding)
        .field("payload", i32::from(pt))
        .build()
}

pub(super) fn dsp_caps() -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::F32le)
        .rate(DSP_RATE as i32)
        .channels(1)
        .build()
}

/// Encoder side of a codec: raw caps it wants, encoder, payloader.
fn encoder_chain(p: &AudioSessionParams, ssrc: u32) -> Result<(gst::Caps, Vec<gst::Element>), MediaError> {
    let c = &p.codec;
    let ptime_ns = i64::from(p.ptime_ms) * 1_000_000;
    let s16 = |rate: i32| {
        gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate(rate)
            .channels(1)
            .build()
    };
    let (caps, enc, pay) = match c.codec {
        AudioCodec::Opus => {
            let enc = make("opusenc", "Opus encoder")?;
            enc.set_property_from_str("audio-type", "voice");
            enc.set_property_from_str("frame-size", &p.ptime_ms.to_string());
            enc.set_property("bitrate", c.opus.bitrate.clamp(6000, 510_000) as i32);
            enc.set_property("inband-fec", c.opus.inband_fec);
            enc.set_property("packet-loss-percentage", c.opus.packet_loss_percent.min(100) as i32);
            enc.set_property("dtx", false);
            let caps = gst_audio::AudioCapsBuilder::new_interleaved().rate(DSP_RATE as i32).channels(1).build();
            (caps, enc, make("rtpopuspay", "Opus RTP payloader")?)
        }
        AudioCodec::G722 => {
            (s16(16_000), make("avenc_g722", "G.722 encoder")?, make("rtpg722pay", "G.722 RTP payloader")?)
        }
        AudioCodec::Pcmu => {
            (s16(8_000), make("mulawenc", "G.711 µ-law encoder")?, make("rtppcmupay", "PCMU RTP payloader")?)
        }
        AudioCodec::Pcma => {
            (s16(8_000), make("alawenc", "G.711 A-law encoder")?, make("rtppcmapay", "PCMA RTP payloader")?)
        }
    };
    pay.set_property("pt", u32::from(c.payload_type));
    pay.set_property("ssrc", ssrc);
    if c.codec != AudioCodec::Opus {
        pay.set_property("min-ptime", ptime_ns);
        pay.set_property("max-ptime", ptime_ns);
    }
    Ok((caps, vec![enc, pay]))
}

/// Depayloader and decoder of a codec.
fn decoder_chain(codec: AudioCodec) -> Result<Vec<gst::Element>, MediaError> {
    Ok(match codec {
        AudioCodec::Opus => {
            let dec = make("opusdec", "Opus decoder")?;
            dec.set_property("use-inband-fec", true);
            dec.set_property("plc", true);
            vec![make("rtpopusdepay", "Opus RTP depayloader")?, dec]
        }
        AudioCodec::G722 => vec![make("rtpg722depay", "G.722 RTP depayloader")?, make("avdec_g722", "G.722 decoder")?],
        AudioCodec::Pcmu => {
            vec![make("rtppcmudepay", "PCMU RTP depayloader")?, make("mulawdec", "G.711 µ-law decoder")?]
        }
        AudioCodec::Pcma => {
            vec![make("rtppcmadepay", "PCMA RTP depayloader")?, make("alawdec", "G.711 A-law decoder")?]
        }
    })
}

fn build(p: AudioSessionParams) -> Result<AudioSession, MediaError> {
    let ssrc = p.ssrc.unwrap_or_else(random_ssrc);
    let codec = p.codec.clone();
    let local_rtp = p.sockets.local_rtp();

    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(64);
    let shared = Arc::new(Shared {
        muted: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        receiving: AtomicBool::new(p.direction.receives()),
        events: ev_tx,
    });

    let pipeline = gst::Pipeline::with_name(&format!("huis-audio-{}", local_rtp.port()));
    let add = |els: &[&gst::Element]| pipeline.add_many(els.iter().copied()).map_err(MediaError::pipeline);

    // ---- transport: one RTP session with RTCP, SRTP when keyed ----
    let te = p.telephone_event;
    let mut recv_formats = vec![rtp_caps(codec.codec.encoding_name(), codec.codec.clock_rate(), codec.recv_pt())];
    recv_formats.extend(te.map(|t| rtp_caps("TELEPHONE-EVENT", t.clock_rate, t.recv_pt())));
    let transport = RtpTransport::new(
        &pipeline,
        TransportParams {
            sockets: &p.sockets,
            remote_rtp: p.remote_rtp,
            remote_rtcp: p.remote_rtcp,
            rtcp_mux: p.rtcp_mux,
            srtp: p.srtp.as_ref(),
            dtls: p.dtls.as_ref(),
            dscp: p.dscp,
            cname: &p.cname,
            jitter_buffer: p.jitter_buffer,
            rtcp_interval: p.rtcp_interval,
            avpf: false,
            report_lost: true,
            recv_formats,
            recv_other_payloads: false,
            rtx: None,
        },
    )?;

    // ---- send path ----
    let (tx, tx_reader) = ring::tx_ring();
    let appsrc = gst_app::AppSrc::builder()
        .caps(&dsp_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .do_timestamp(false)
        .max_bytes(u64::from(DSP_RATE) * 4 / 5) // 200 ms
        .leaky_type(gst_app::AppLeakyType::Downstream)
        .build();
    let conv = make("audioconvert", "audio format converter")?;
    let resample = make("audioresample", "audio resampler")?;
    let (enc_caps, enc_pay) = encoder_chain(&p, ssrc)?;
    let enc_filter = make("capsfilter", "caps filter")?;
    enc_filter.set_property("caps", &enc_caps);
    let send_valve = make("valve", "send switch (hold)")?;
    send_valve.set_property_from_str("drop-mode", "forward-sticky-events");
    send_valve.set_property("drop", !p.direction.sends());
    let mux = make("rtpdtmfmux", "RTP muxer for telephone-events")?;
    mux.set_property("ssrc", ssrc);
    let appsrc_el: &gst::Element = appsrc.upcast_ref();
    add(&[appsrc_el, &conv, &resample, &enc_filter, &enc_pay[0], &enc_pay[1], &send_valve, &mux])?;
    link_chain(&[appsrc_el, &conv, &resample, &enc_filter, &enc_pay[0], &enc_pay[1], &send_valve])?;
    link_pads(&static_pad(&send_valve, "src")?, &request_pad(&mux, "sink_%u")?)?;

    let dtmf_src = match &te {
        Some(te) => Some(dtmf_source(&pipeline, &mux, te, ssrc)?),
        None => None,
    };
    link_pads(&static_pad(&mux, "src")?, transport.send_pad())?;

    // ---- receive path ----
    // Receiving stays on while held (RTCP and stats keep working); the appsink discards the audio.
    // Decoded audio of every remote SSRC meets in a funnel before the appsink.
    let (rx, mut rx_writer) = ring::rx_ring();
    let sh = shared.clone();
    let funnel = make("funnel", "decoded stream merger")?;
    let appsink = gst_app::AppSink::builder()
        .caps(&dsp_caps())
        .sync(false)
        .max_buffers(16)
        .drop(true)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    if sh.receiving.load(Ordering::Relaxed)
                        && let Some(buf) = sample.buffer()
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
    add(&[&funnel, appsink.upcast_ref()])?;
    link(&funnel, appsink.upcast_ref())?;

    {
        let funnel = funnel.clone();
        let shared = shared.clone();
        let (codec_kind, codec_pt, te_pt) = (codec.codec, codec.recv_pt(), te.map(|t| t.recv_pt()));
        transport.on_receive(move |pipeline, pad, pt| {
            let r = if pt == codec_pt {
                add_decoder(pipeline, pad, codec_kind, &funnel)
            } else {
                add_event_sink(pipeline, pad, (Some(pt) == te_pt).then(|| shared.clone()))
            };
            if let Err(e) = r {
                shared.emit(MediaEvent::Error(e));
            }
        });
    }
    {
        let shared = shared.clone();
        transport.on_remote_bye(move |ssrc| shared.emit(MediaEvent::RemoteBye { ssrc }));
    }

    // ---- go ----
    let bus = pipeline.bus().ok_or_else(|| MediaError::pipeline("the pipeline has no bus"))?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = bus
            .pop_filtered(&[gst::MessageType::Error])
            .map(|m| stream_error(&m))
            .unwrap_or_else(|| MediaError::pipeline("the pipeline refused to start"));
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }

    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f).map_err(MediaError::pipeline)
    };
    {
        let (shared, appsrc, pipeline) = (shared.clone(), appsrc.clone(), pipeline.clone());
        let ptime = Duration::from_millis(u64::from(p.ptime_ms));
        threads.push(spawn(
            &format!("mpace-{}", local_rtp.port()),
            Box::new(move || pace(shared, tx_reader, appsrc, pipeline, ptime)),
        )?);
    }
    {
        let (shared, activity) = (shared.clone(), transport.activity().clone());
        let timeout = p.rtp_timeout;
        threads.push(spawn(
            &format!("mbus-{}", local_rtp.port()),
            Box::new(move || monitor(shared, activity, bus, timeout)),
        )?);
    }
    let (dtmf_tx, dtmf_rx) = std::sync::mpsc::channel();
    if let Some(src) = dtmf_src.clone() {
        let shared = shared.clone();
        threads.push(spawn(
            &format!("mdtmf-{}", local_rtp.port()),
            Box::new(move || dtmf_sequencer(shared, src, dtmf_rx)),
        )?);
    }

    Ok(AudioSession {
        pipeline,
        shared,
        tx,
        rx,
        codec,
        transport,
        send_valve,
        dtmf_src,
        dtmf_cmds: Mutex::new(Some(dtmf_tx)),
        events: Mutex::new(Some(ev_rx)),
        threads: Mutex::new(threads),
        direction: Mutex::new(p.direction),
        local_rtp,
        stopped: AtomicBool::new(false),
    })
}

fn dtmf_source(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    te: &TelephoneEvent,
    ssrc: u32,
) -> Result<gst::Element, MediaError> {
    let src = make("rtpdtmfsrc", "RFC 4733 event source")?;
    src.set_property("pt", u32::from(te.payload_type));
    src.set_property("clock-rate", te.clock_rate);
    src.set_property("ssrc", ssrc);
    src.set_property("packet-redundancy", DTMF_END_REPEATS);
    pipeline.add(&src).map_err(MediaError::pipeline)?;
    link_pads(&static_pad(&src, "src")?, &request_pad(mux, "priority_sink_%u")?)?;
    Ok(src)
}

/// A new remote stream of the codec's payload type: depayload, decode, convert to 16 kHz mono f32.
fn add_decoder(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    codec: AudioCodec,
    funnel: &gst::Element,
) -> Result<(), MediaError> {
    let mut els = decoder_chain(codec)?;
    els.push(make("audioconvert", "audio format converter")?);
    els.push(make("audioresample", "audio resampler")?);
    let refs: Vec<&gst::Element> = els.iter().collect();
    pipeline.add_many(refs.iter().copied()).map_err(MediaError::pipeline)?;
    link_chain(&refs)?;
    link(refs[refs.len() - 1], funnel)?;
    for e in &els {
        e.sync_state_with_parent().map_err(MediaError::pipeline)?;
    }
    link_pads(pad, &static_pad(&els[0], "sink")?)
}

/// Any other payload type: telephone-events are reported, everything else is dropped.
fn add_event_sink(pipeline: &gst::Pipeline, pad: &gst::Pad, dtmf_to: Option<Arc<Shared>>) -> Result<(), MediaError> {
    let sink = make("fakesink", "sink for unused payload types")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline.add(&sink).map_err(MediaError::pipeline)?;
    sink.sync_state_with_parent().map_err(MediaError::pipeline)?;
    if let Some(shared) = dtmf_to {
        // Every packet of one event carries the event's start timestamp: report each timestamp once.
        let last_ts = AtomicU64::new(u64::MAX);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buf) else {
                return gst::PadProbeReturn::Ok;
            };
            let ts = u64::from(rtp.timestamp());
            if let Some(ev) = rtp.payload().ok().and_then(dtmf::parse_event)
                && let Some(digit) = dtmf::char_of_event(ev.event)
                && last_ts.swap(ts, Ordering::Relaxed) != ts
            {
                shared.emit(MediaEvent::Dtmf { digit });
            }
            gst::PadProbeReturn::Ok
        });
    }
    link_pads(pad, &static_pad(&sink, "sink")?)
}

fn stream_error(msg: &gst::Message) -> MediaError {
    match msg.view() {
        gst::MessageView::Error(e) => MediaError::Stream {
            element: msg.src().map(|s| s.path_string().to_string()).unwrap_or_else(|| "pipeline".into()),
            message: e.error().to_string(),
            debug: e.debug().map(|d| d.to_string()),
        },
        _ => MediaError::pipeline("unexpected message"),
    }
}

/// How late the DSP thread may be before the pacer fills in silence.
const TX_GRACE: Duration = Duration::from_millis(50);
/// How often the pacer looks at the send ring.
const TX_POLL: Duration = Duration::from_millis(5);

/// The pacer. A packet leaves as soon as the DSP thread has delivered a ptime of audio, stamped
/// by sample count, so the DSP's own lateness becomes network jitter for the far end's jitter
/// buffer rather than a hole in the audio. When a packet is more than [`TX_GRACE`] overdue on the
/// wall clock (the DSP thread is stalled or absent), it goes out padded with silence: RTP keeps
/// flowing no matter what, every ptime.
pub(super) fn pace<S: Paced + ?Sized>(
    shared: Arc<S>,
    mut reader: TxReader,
    appsrc: gst_app::AppSrc,
    pipeline: gst::Pipeline,
    ptime: Duration,
) {
    let samples = (u64::from(DSP_RATE) * ptime.as_millis() as u64 / 1000) as usize;
    let mut frame = vec![0f32; samples];
    let waited = Instant::now();
    let base = loop {
        if let Some(t) = pipeline.current_running_time() {
            break t;
        }
        if shared.stopping() || waited.elapsed() > Duration::from_secs(2) {
            break gst::ClockTime::ZERO;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let start = Instant::now();
    let mut k: u32 = 0;
    let mut discont = false;
    'run: while !shared.stopping() {
        loop {
            let now = Instant::now();
            let due = start + ptime * (k + 1) + TX_GRACE;
            if now > due + ptime * 10 {
                // The pacer itself stalled (a suspended VM, a starved core): jump to now
                // instead of sending a burst of catch-up packets.
                k = ((now - start).as_nanos() / ptime.as_nanos()) as u32;
                discont = true;
                continue;
            }
            if reader.available() < samples && now <= due {
                break;
            }
            reader.read(&mut frame);
            if shared.muted() {
                frame.fill(0.0);
            }
            let Ok(mut buffer) = gst::Buffer::with_size(samples * 4) else {
                break 'run;
            };
            {
                let b = buffer.get_mut().expect("a new buffer is writable");
                let pts = base + gst::ClockTime::from_nseconds(ptime.as_nanos() as u64 * u64::from(k));
                b.set_pts(pts);
                b.set_duration(gst::ClockTime::from_nseconds(ptime.as_nanos() as u64));
                if discont {
                    b.set_flags(gst::BufferFlags::DISCONT);
                    discont = false;
                }
                let Ok(mut map) = b.map_writable() else {
                    break 'run;
                };
                for (dst, s) in map.chunks_exact_mut(4).zip(&frame) {
                    dst.copy_from_slice(&s.to_le_bytes());
                }
            }
            if appsrc.push_buffer(buffer).is_err() {
                break 'run;
            }
            k += 1;
        }
        std::thread::sleep(TX_POLL);
    }
    reader.close();
    let _ = appsrc.end_of_stream();
}

/// Bus messages become events; RTP silence becomes a timeout event.
fn monitor(shared: Arc<Shared>, activity: Arc<Activity>, bus: gst::Bus, timeout: Option<Duration>) {
    let mut timed_out = false;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Error(_) => {
                    let err = stream_error(&msg);
                    tracing::error!("{err}");
                    shared.emit(MediaEvent::Error(err));
                }
                gst::MessageView::Warning(w) => {
                    tracing::warn!("media pipeline warning: {} ({:?})", w.error(), w.debug());
                }
                _ => {}
            }
        }
        let Some(limit) = timeout else { continue };
        // While we do not receive, the far end may not send RTP either: RTCP keeps the call alive.
        let silent_for = activity.silent_for(!shared.receiving.load(Ordering::Relaxed));
        if !timed_out && silent_for > limit {
            timed_out = true;
            shared.emit(MediaEvent::RtpTimeout { silent_for });
        } else if timed_out && silent_for < limit {
            timed_out = false;
            shared.emit(MediaEvent::RtpResumed);
        }
    }
}

/// Plays queued digits one after another through rtpdtmfsrc, paced by what it actually sends.
///
/// rtpdtmfsrc queues start/stop requests and lengthens every tone to at least 250 ms (plus a
/// 100 ms gap rounded up to its packet time), so a sequencer that paced itself by the clock fell
/// behind what went out (about 180 ms per digit), and the backlog ate the `,` pauses. So each
/// tone's stop is followed by waiting for its end packet to leave; the next tone is requested at
/// once (rtpdtmfsrc puts its own inter-digit gap in), a pause is counted from the end of the
/// tone as the far end hears it (its start plus the duration in its end packet).
fn dtmf_sequencer(shared: Arc<Shared>, src: gst::Element, digits: std::sync::mpsc::Receiver<DtmfDigit>) {
    // Custom upstream events must enter through the source pad: rtpdtmfsrc handles them in its
    // pad's event function, and GstBaseSrc's element-level send_event does not forward them.
    let Some(pad) = src.static_pad("src") else {
        return;
    };
    let ended = watch_event_ends(&pad, src.property::<u32>("clock-rate"));
    let event = |number: Option<u8>| {
        let mut s = gst::Structure::builder("dtmf-event").field("type", 1i32).field("start", number.is_some());
        if let Some(n) = number {
            s = s.field("number", i32::from(n)).field("volume", DTMF_VOLUME_DBM0);
        }
        pad.send_event(gst::event::CustomUpstream::new(s.build()))
    };
    let nap = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())));
        }
    };
    // When the last tone's end packet left (a pause counts from there).
    let mut last_end: Option<Instant> = None;
    while let Ok(d) = digits.recv() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match d {
            DtmfDigit::Pause => {
                let from = last_end.unwrap_or_else(Instant::now);
                nap((from + Duration::from_millis(dtmf::PAUSE_MS)).saturating_duration_since(Instant::now()));
                last_end = Some(from + Duration::from_millis(dtmf::PAUSE_MS));
            }
            DtmfDigit::Tone(n) => {
                while ended.try_recv().is_ok() {}
                if !event(Some(n)) {
                    tracing::warn!("rtpdtmfsrc refused DTMF event {n}");
                    continue;
                }
                nap(DTMF_TONE);
                event(None);
                last_end = loop {
                    match ended.recv_timeout(Duration::from_millis(100)) {
                        Ok(at) => break Some(at),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !shared.stop.load(Ordering::Relaxed) => {}
                        Err(_) => return,
                    }
                };
            }
        }
    }
}

/// Reports, for each event, when its tone ends on the wire: its first end packet (E bit) leaves
/// rtpdtmfsrc stamped one packet time before the end that its duration field tells the far end.
fn watch_event_ends(pad: &gst::Pad, clock_rate: u32) -> std::sync::mpsc::Receiver<Instant> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The running time of the current event's first packet (ns), and the last ended event's timestamp.
    let start_pts = AtomicU64::new(0);
    let last_ts = AtomicU64::new(u64::MAX);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buf) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let pts = buf.pts().map_or(0, |t| t.nseconds());
        if let Ok(rtp) = gst_rtp::RTPBuffer::from_buffer_readable(buf)
            && let Some(ev) = rtp.payload().ok().and_then(dtmf::parse_event)
        {
            if rtp.is_marker() {
                start_pts.store(pts, Ordering::Relaxed);
            }
            let ts = u64::from(rtp.timestamp());
            if ev.end && last_ts.swap(ts, Ordering::Relaxed) != ts {
                let end = start_pts.load(Ordering::Relaxed)
                    + u64::from(ev.duration) * 1_000_000_000 / u64::from(clock_rate.max(1));
                let now = Instant::now();
                let at = if end >= pts {
                    now + Duration::from_nanos(end - pts)
                } else {
                    now.checked_sub(Duration::from_nanos(pts - end)).unwrap_or(now)
                };
                let _ = tx.send(at);
            }
        }
        gst::PadProbeReturn::Ok
    });
    rx
}
