//! The WebRTC backend: the room joins web conferences as a participant. Today: a Janus
//! VideoRoom (`janus+https://host/janus?room=N&pin=P`), over Janus's REST API, and WHIP/WHEP
//! endpoints (`whip+https://host/path#whep=<URL>`, see [`whip`]).
//!
//! Each conference is a task of its own (`run`), which owns the Janus session and the media
//! ([`crate::media::webrtc::ConferenceMedia`]): it publishes the room's camera and microphone,
//! subscribes to every other publisher as they come and go, and reports the call's state and
//! figures to the room. The backend's loop only routes commands to it.
//!
//! Why `webrtcbin` directly, and not gst-plugins-rs's `janusvrwebrtcsink`/`src`: those elements
//! encode and decode by themselves (their own encoder choice, their own pipelines), take one
//! remote feed per source element and tell nothing of publishers arriving and leaving, while a
//! room must publish through the board's encoder, mix every far end into the one stream the
//! echo canceller hears, and lay out far ends as they come. Janus's API is a few JSON requests.

mod janus;
mod janus_room;
pub mod whip;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audio::{CallAudio, CallAudioSlot};
use crate::call::{
    self, Backend, CallError, CallId, CallInfo, CallState, CallStats, Command, Destination, Direction, EndReason,
    EventSender, Heartbeat, Protocol,
};
use crate::media::webrtc::{ConferenceMedia, ConferenceParams, Connection, Figures};

pub use janus::JanusError;

/// How long joining (each request's answer) may take.
pub(super) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the publishing connection may stay down before the call ends.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// For `cargo fuzz` (`huis_firmware::fuzzing::webrtc_signalling`): what conference servers
/// send us, on arbitrary bytes. The first byte picks the parser: a Janus event (JSON) as the
/// Janus room reads it, or a WHIP/WHEP SDP answer's form check.
pub fn fuzz_signalling(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
            janus::fuzz_event(&v);
            janus_room::fuzz_event(&v);
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        whip::fuzz_answer(text);
    }
}

/// The innermost cause of an HTTP client error (`Connection refused`, a certificate problem),
/// which is what a person can act on.
pub(super) fn http_reason(e: &reqwest::Error) -> String {
    let mut src: &dyn std::error::Error = e;
    while let Some(s) = src.source() {
        src = s;
    }
    src.to_string()
}

/// The destinations this backend takes.
pub fn accepts(d: &Destination) -> bool {
    matches!(d, Destination::Janus { .. } | Destination::Whip { .. })
}

/// What every conference of this room uses.
#[derive(Clone)]
pub struct Setup {
    /// Our name in the conference (the room's name).
    pub display: String,
    /// Every conference's media starts from these (camera, layout, ICE servers, channels).
    pub media: ConferenceParams,
    /// Extra CA certificates (PEM) for `https` signalling, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Starts the backend's task. It cannot fail to start: conferences fail one by one.
pub fn start(setup: Setup, audio: CallAudioSlot, events: EventSender) -> Backend {
    let heartbeat = Heartbeat::default();
    let (tx, rx) = mpsc::channel(64);
    let http = match http_client(&setup) {
        Ok(h) => h,
        Err(reason) => {
            tracing::error!("WebRTC cannot start: {reason}");
            return Backend {
                name: "WebRTC",
                protocol: Protocol::WebRtc,
                accepts,
                commands: Err(reason),
                address: String::new(),
                heartbeat: None,
            };
        }
    };
    tokio::spawn(run_backend(setup, http, audio, events, rx, heartbeat.clone()));
    Backend {
        name: "WebRTC",
        protocol: Protocol::WebRtc,
        accepts,
        commands: Ok(tx),
        address: String::new(),
        heartbeat: Some(heartbeat),
    }
}

fn http_client(setup: &Setup) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(false)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .no_proxy()
        .user_agent(concat!("huis/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &setup.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("the CA file {} holds no PEM certificate: {e}", path.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| format!("cannot set up HTTPS: {e}"))
}

/// What the backend's loop sends a conference task.
enum ConfCommand {
    Hangup(call::Reply),
    Mute(bool),
}

async fn run_backend(
    setup: Setup,
    http: reqwest::Client,
    audio: CallAudioSlot,
    events: EventSender,
    mut commands: mpsc::Receiver<Command>,
    heartbeat: Heartbeat,
) {
    let mut conferences: HashMap<CallId, mpsc::Sender<ConfCommand>> = HashMap::new();
    let mut tick = tokio::time::interval(Heartbeat::PERIOD);
    let mut muted = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                heartbeat.beat();
                conferences.retain(|_, c| !c.is_closed());
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    Command::Dial { id, to: to @ (Destination::Janus { .. } | Destination::Whip { .. }), reply } => {
                        let (tx, rx) = mpsc::channel(8);
                        conferences.insert(id, tx);
                        let _ = reply.send(Ok(()));
                        // The destination's text never holds a WHIP token.
                        let info = CallInfo::new(Protocol::WebRtc, Direction::Outgoing, to.to_string());
                        let _ = events.send(call::Event::Started { id, info: info.clone(), answer: false }).await;
                        let conf = Conference {
                            id,
                            dialled: std::time::Instant::now(),
                            info,
                            events: events.clone(),
                            audio: audio.clone(),
                            muted,
                        };
                        match &to {
                            Destination::Janus { api, room, pin } => {
                                let room = janus_room::JanusRoom::new(http.clone(), api, *room, pin, &setup.display);
                                tokio::spawn(conf.run(setup.clone(), room, rx));
                            }
                            Destination::Whip { whip, whep, token } => {
                                let sig = whip::Whip::new(http.clone(), whip, whep.as_deref(), token);
                                tokio::spawn(conf.run(setup.clone(), sig, rx));
                            }
                            _ => unreachable!("matched above"),
                        }
                    }
                    Command::Dial { reply, to, .. } => {
                        let _ = reply.send(Err(CallError::Unsupported(format!("WebRTC does not call {to}"))));
                    }
                    Command::Hangup { id, reply } => match conferences.remove(&id) {
                        Some(c) => {
                            if let Err(mpsc::error::SendError(ConfCommand::Hangup(reply))) = c.send(ConfCommand::Hangup(reply)).await {
                                let _ = reply.send(Err(CallError::NoSuchCall(id.0)));
                            }
                        }
                        None => { let _ = reply.send(Err(CallError::NoSuchCall(id.0))); }
                    },
                    Command::SetMuted(on) => {
                        muted = on;
                        for c in conferences.values() {
                            let _ = c.try_send(ConfCommand::Mute(on));
                        }
                    }
                    Command::Answer { reply, .. } => { let _ = reply.send(Err(CallError::NothingToAnswer)); }
                    Command::Reject { .. } => {}
                    Command::Hold { reply, .. } | Command::Dtmf { reply, .. } | Command::Video { reply, .. } => {
                        let _ = reply.send(Err(CallError::Unsupported("not in a web conference".into())));
                    }
                    Command::Shutdown(done) => {
                        for (_, c) in conferences.drain() {
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            if c.send(ConfCommand::Hangup(tx)).await.is_ok() {
                                let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
                            }
                        }
                        let _ = done.send(());
                        break;
                    }
                }
            }
        }
    }
}

/// What differs between ways into a conference (Janus VideoRoom, WHIP/WHEP, later LiveKit);
/// [`Conference::run`] does the rest (media, the room's events, figures, leaving).
pub(super) trait Signaller: Send {
    /// What the far side says while we are in the conference.
    type Event: Send;
    /// Signalling runs over TLS (then, with DTLS-SRTP, the call counts as encrypted).
    fn tls(&self) -> bool;
    /// Sets up the session, publishes `media`, and receives what is there already.
    fn join(&mut self, media: &Arc<ConferenceMedia>) -> impl Future<Output = Result<(), EndReason>> + Send;
    /// The next event from the far side. Cancel-safe: the runner races it with commands and
    /// its ticks. An error ends the conference.
    fn next_event(&mut self) -> impl Future<Output = Result<Self::Event, EndReason>> + Send;
    /// Acts on an event (far ends arriving or leaving); runs to completion.
    fn handle(
        &mut self,
        ev: Self::Event,
        media: &Arc<ConferenceMedia>,
    ) -> impl Future<Output = Result<(), EndReason>> + Send;
    /// Leaves politely (we hung up); the server side of the session is freed by `close`.
    fn leave(&mut self) -> impl Future<Output = ()> + Send;
    /// Frees the server-side session; called last, whatever happened.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// One conference in progress.
struct Conference {
    id: CallId,
    /// When the room asked for it (the button, `Dial`).
    dialled: std::time::Instant,
    info: CallInfo,
    events: EventSender,
    audio: CallAudioSlot,
    muted: bool,
}

/// How a conference ended: by us (with the reply to send once we left) or otherwise.
enum Ending {
    Hangup(call::Reply),
    Ended(EndReason),
}

impl Conference {
    async fn emit(&self, ev: call::Event) {
        let _ = self.events.send(ev).await;
    }

    async fn run<S: Signaller>(mut self, setup: Setup, mut sig: S, mut commands: mpsc::Receiver<ConfCommand>) {
        self.info.signalling_tls = sig.tls();
        let mut media: Option<Arc<ConferenceMedia>> = None;
        let mut late_mute = None;
        let joined = {
            let join = self.join(&setup, &mut sig, &mut media);
            tokio::pin!(join);
            // A hang-up while joining stops the join.
            loop {
                tokio::select! {
                    r = &mut join => break r,
                    cmd = commands.recv() => match cmd {
                        Some(ConfCommand::Hangup(reply)) => break Err(Ending::Hangup(reply)),
                        Some(ConfCommand::Mute(on)) => late_mute = Some(on),
                        None => break Err(Ending::Ended(EndReason::LocalHangup)),
                    },
                }
            }
        };
        if let Some(on) = late_mute {
            self.muted = on;
        }
        let ending = match (joined, media.clone()) {
            (Ok(()), Some(m)) => {
                m.set_muted(self.muted);
                self.in_conference(&mut sig, &m, &mut commands).await
            }
            (Ok(()), None) => Ending::Ended(EndReason::Failed("joined without media".into())),
            (Err(e), _) => e,
        };
        // Leave: the server first (others see us go at once), then the media.
        let _ = tokio::time::timeout(Duration::from_secs(3), sig.close()).await;
        self.audio.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(m) = media.take() {
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        let reason = match ending {
            Ending::Hangup(reply) => {
                let _ = reply.send(Ok(()));
                EndReason::LocalHangup
            }
            Ending::Ended(r) => r,
        };
        tracing::info!(call = %self.id, reason = %reason, "left the conference");
        self.emit(call::Event::Ended { id: self.id, reason }).await;
    }

    /// Starts the media and lets the signaller join with it.
    async fn join<S: Signaller>(
        &mut self,
        setup: &Setup,
        sig: &mut S,
        media_out: &mut Option<Arc<ConferenceMedia>>,
    ) -> Result<(), Ending> {
        let params = setup.media.clone();
        let media = tokio::task::spawn_blocking(move || ConferenceMedia::start(params))
            .await
            .map_err(|e| Ending::Ended(EndReason::Failed(format!("the conference media crashed: {e}"))))?
            .map_err(|e| Ending::Ended(EndReason::Failed(format!("cannot start the conference media: {e}"))))?;
        media.set_muted(self.muted);
        let media = Arc::new(media);
        *media_out = Some(media.clone());
        sig.join(&media).await.map_err(Ending::Ended)?;

        *self.audio.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(CallAudio { tx: media.sender(), rx: media.receiver() });
        self.info.state = CallState::Active;
        self.info.audio_codec = "opus/48000".into();
        if let Some(v) = &setup.media.video {
            self.info.video_codec = format!("H264/90000 {}x{}", v.width, v.height);
        }
        self.info.media_encryption = "DTLS-SRTP".into();
        self.info.encrypted = self.info.signalling_tls;
        self.emit(call::Event::Changed { id: self.id, info: self.info.clone() }).await;
        Ok(())
    }

    /// In the conference: the signaller's events, figures every second, until we hang up or
    /// the connection is lost for good.
    async fn in_conference<S: Signaller>(
        &mut self,
        sig: &mut S,
        media: &Arc<ConferenceMedia>,
        commands: &mut mpsc::Receiver<ConfCommand>,
    ) -> Ending {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut down_since: Option<tokio::time::Instant> = None;
        let mut far_ends = String::new();
        let mut rates = Rates::default();
        loop {
            let ev = tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(ConfCommand::Hangup(reply)) => {
                        sig.leave().await;
                        return Ending::Hangup(reply);
                    }
                    Some(ConfCommand::Mute(on)) => { media.set_muted(on); continue; }
                    None => return Ending::Ended(EndReason::LocalHangup),
                },
                _ = tick.tick() => {
                    let figures = media.figures().await;
                    let kbps = media.adapt_bitrate(figures.video_fraction_lost);
                    let (mut stats, interrupted) = rates.stats(media, &figures, kbps);
                    if let Some(t) = media.first_frame() {
                        let ms = t.saturating_duration_since(self.dialled).as_secs_f64() * 1000.0;
                        stats.video.insert("first_frame_ms".into(), ms);
                    }
                    if interrupted {
                        tracing::warn!(call = %self.id, "no media from the conference for 2 s");
                    }
                    self.emit(call::Event::Stats { id: self.id, stats }).await;
                    let names: Vec<String> = media.far_ends().into_iter().map(|(_, d)| d).collect();
                    let now = names.join(", ");
                    if now != far_ends {
                        far_ends = now;
                        tracing::info!(call = %self.id, far_ends = %far_ends, "in the conference");
                    }
                    match media.publisher_connection() {
                        Connection::Connected | Connection::New | Connection::Connecting => down_since = None,
                        other => {
                            let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() > LOST_AFTER {
                                return Ending::Ended(EndReason::Failed(format!(
                                    "the connection to the conference is {} since {} s", other.name(), LOST_AFTER.as_secs()
                                )));
                            }
                        }
                    }
                    continue;
                }
                ev = sig.next_event() => ev,
            };
            let handled = match ev {
                Ok(ev) => sig.handle(ev, media).await,
                Err(reason) => Err(reason),
            };
            if let Err(reason) = handled {
                return Ending::Ended(reason);
            }
        }
    }
}

/// A conference's figures for Call1.Stats and Video1.Stats, from one second to the next, and
/// the interruptions seen (no media from any far end for 2 s while some are there).
#[derive(Default)]
struct Rates {
    last: Option<(tokio::time::Instant, Figures)>,
    quiet_ticks: u32,
    interrupted: bool,
    interruptions: u32,
}

impl Rates {
    /// The figures, and whether an interruption has just started.
    fn stats(&mut self, media: &ConferenceMedia, f: &Figures, kbps: u32) -> (CallStats, bool) {
        let s = media.stats();
        let now = tokio::time::Instant::now();
        let mut stats = CallStats::default();
        let (a, v) = (&mut stats.audio, &mut stats.video);
        if let Some((then, prev)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64().max(0.1);
            let kbit = |now: u64, before: u64| now.saturating_sub(before) as f64 * 8.0 / 1000.0 / secs;
            a.insert("bitrate_sent_kbps".into(), kbit(f.audio_bytes_sent, prev.audio_bytes_sent));
            v.insert("bitrate_sent_kbps".into(), kbit(f.video_bytes_sent, prev.video_bytes_sent));
            v.insert("bitrate_received_kbps".into(), kbit(f.bytes_received, prev.bytes_received));
            // Packets, not decoded audio: the decoder conceals losses with audio of its own.
            let arriving = f.packets_received > prev.packets_received;
            self.quiet_ticks = if arriving || s.far_ends == 0 { 0 } else { self.quiet_ticks + 1 };
        }
        let quiet = self.quiet_ticks >= 2;
        let started = quiet && !self.interrupted;
        self.interruptions += u32::from(started);
        self.interrupted = quiet;
        a.insert("packets_sent".into(), f.audio_packets_sent as f64);
        a.insert("buffers_received".into(), s.audio_buffers_received as f64);
        a.insert("packets_received".into(), f.packets_received as f64);
        a.insert("packets_lost".into(), f.packets_lost as f64);
        a.insert("jitter_ms".into(), f.jitter_ms);
        if let Some(r) = f.audio_rtt_ms {
            a.insert("rtt_ms".into(), r);
        }
        if let Some(l) = f.audio_fraction_lost {
            a.insert("remote_loss_percent".into(), l * 100.0);
        }
        if let Some(r) = f.video_rtt_ms {
            v.insert("rtt_ms".into(), r);
        }
        if let Some(l) = f.video_fraction_lost {
            v.insert("remote_loss_percent".into(), l * 100.0);
        }
        v.insert("packets_sent".into(), f.video_packets_sent as f64);
        v.insert("bitrate_kbps".into(), f64::from(kbps));
        v.insert("frames_decoded".into(), s.frames_decoded as f64);
        v.insert("frames_sent".into(), s.frames_sent as f64);
        v.insert("far_ends".into(), s.far_ends as f64);
        v.insert("far_ends_connected".into(), s.far_ends_connected as f64);
        v.insert("interruptions".into(), f64::from(self.interruptions));
        v.insert("media_interrupted".into(), if quiet { 1.0 } else { 0.0 });
        self.last = Some((now, f.clone()));
        (stats, started)
    }
}
