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
mod turn_tls;
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
/// How long our publishing connection may stay down, or every far end silent, before we
/// leave and join again (a fresh session, fresh ICE and DTLS: the ICE restart and WHIP re-POST
/// of the specifications, done the one way every server takes).
const REJOIN_AFTER: Duration = Duration::from_secs(10);
/// The longest silence of the far ends before joining again, when joining again did not bring
/// them back (the far ends themselves may be gone): the wait doubles up to this.
const REJOIN_AFTER_MAX: Duration = Duration::from_secs(160);
/// How long we keep trying to get back in before the call ends.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// The wait before the `tries`-th attempt to get back in: 0.5 s, then doubling up to 8 s.
fn rejoin_pause(tries: u32) -> Duration {
    Duration::from_millis(500 << tries.saturating_sub(1).min(4))
}

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
pub fn start(mut setup: Setup, audio: CallAudioSlot, events: EventSender) -> Backend {
    let heartbeat = Heartbeat::default();
    let (tx, rx) = mpsc::channel(64);
    let ready = http_client(&setup).and_then(|http| {
        setup.media.turn = turn_tls::carry(&setup.media.turn, setup.ca_file.as_deref()).map_err(|e| e.to_string())?;
        Ok(http)
    });
    let commands = match ready {
        Ok(http) => {
            tokio::spawn(run_backend(setup, http, audio, events, rx, heartbeat.clone()));
            Ok(tx)
        }
        Err(reason) => {
            tracing::error!("WebRTC cannot start: {reason}");
            Err(reason)
        }
    };
    let heartbeat = commands.is_ok().then_some(heartbeat);
    Backend { name: "WebRTC", protocol: Protocol::WebRtc, accepts, commands, address: String::new(), heartbeat }
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
                            rates: Rates::default(),
                            silence_limit: REJOIN_AFTER,
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
                    // Conferences carry no presentation channel (screen sharing there is a
                    // second published track, not yet sent): their Presentation stays "none".
                    Command::Reject { .. } | Command::Present { .. } => {}
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
    /// The figures, across every time we had to join again.
    rates: Rates,
    /// How long every far end may be silent before we join again.
    silence_limit: Duration,
}

/// How a conference ended: by us (with the reply to send once we left), otherwise, or not
/// yet (the connection or the session was lost: join again).
enum Ending {
    Hangup(call::Reply),
    Ended(EndReason),
    Lost(String),
}

impl Conference {
    async fn emit(&self, ev: call::Event) {
        let _ = self.events.send(ev).await;
    }

    async fn run<S: Signaller>(mut self, setup: Setup, mut sig: S, mut commands: mpsc::Receiver<ConfCommand>) {
        self.info.signalling_tls = sig.tls();
        let mut media: Option<Arc<ConferenceMedia>> = None;
        // Since when, and how many times, we have been trying to get back in.
        let mut lost: Option<(tokio::time::Instant, u32)> = None;
        let ending = loop {
            let pause = lost.map(|(_, tries)| rejoin_pause(tries));
            let joined = self.join_unless_hung_up(&setup, &mut sig, &mut media, &mut commands, pause).await;
            let ending = match (joined, media.clone()) {
                (Ok(()), Some(m)) => {
                    if lost.take().is_some() {
                        tracing::info!(call = %self.id, "back in the conference");
                    }
                    self.in_conference(&mut sig, &m, &mut commands).await
                }
                (Ok(()), None) => Ending::Ended(EndReason::Failed("joined without media".into())),
                // Getting back in failed the way a network fails: try again (a refusal, such
                // as a room that is gone, ends the call).
                (Err(Ending::Ended(EndReason::Failed(why))), _) if lost.is_some() => Ending::Lost(why),
                (Err(e), _) => e,
            };
            let Ending::Lost(why) = ending else { break ending };
            let (since, tries) = lost.get_or_insert((tokio::time::Instant::now(), 0));
            if since.elapsed() > GIVE_UP_AFTER {
                break Ending::Ended(EndReason::Failed(format!(
                    "cannot get back into the conference for {} s: {why}",
                    GIVE_UP_AFTER.as_secs()
                )));
            }
            *tries += 1;
            self.rates.lost_connection();
            tracing::warn!(call = %self.id, attempt = *tries, "lost the conference ({why}): joining again");
            self.leave_media(&mut sig, &mut media).await;
        };
        self.leave_media(&mut sig, &mut media).await;
        let reason = match ending {
            Ending::Hangup(reply) => {
                let _ = reply.send(Ok(()));
                EndReason::LocalHangup
            }
            Ending::Ended(r) => r,
            Ending::Lost(why) => EndReason::Failed(why),
        };
        tracing::info!(call = %self.id, reason = %reason, "left the conference");
        self.emit(call::Event::Ended { id: self.id, reason }).await;
    }

    /// Joins (after `pause`, when joining again), unless the room hangs up first.
    async fn join_unless_hung_up<S: Signaller>(
        &mut self,
        setup: &Setup,
        sig: &mut S,
        media: &mut Option<Arc<ConferenceMedia>>,
        commands: &mut mpsc::Receiver<ConfCommand>,
        pause: Option<Duration>,
    ) -> Result<(), Ending> {
        let mut late_mute = None;
        let joined = {
            let id = self.id;
            let join = async {
                if let Some(p) = pause {
                    tracing::info!(call = %id, "joining again in {} ms", p.as_millis());
                    tokio::time::sleep(p).await;
                }
                self.join(setup, sig, media).await
            };
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
        if let Some(m) = media {
            m.set_muted(self.muted);
        }
        joined
    }

    /// Leaves the server first (others see us go at once), then stops the media.
    async fn leave_media<S: Signaller>(&mut self, sig: &mut S, media: &mut Option<Arc<ConferenceMedia>>) {
        let _ = tokio::time::timeout(Duration::from_secs(3), sig.close()).await;
        self.audio.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(m) = media.take() {
            let _ = tokio::task::spawn_blocking(move || {
                m.stop();
                crate::media::release_freed_memory();
            })
            .await;
        }
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
        let mut last_conn = Connection::New;
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
                    let (mut stats, interrupted) = self.rates.stats(media, &figures, kbps);
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
                    let conn = media.publisher_connection();
                    if conn != last_conn {
                        tracing::info!(call = %self.id, "the connection to the conference is {}", conn.name());
                        last_conn = conn;
                    }
                    match conn {
                        Connection::Connected | Connection::New | Connection::Connecting => down_since = None,
                        other => {
                            let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() > REJOIN_AFTER {
                                return Ending::Lost(format!(
                                    "the connection is {} since {} s", other.name(), REJOIN_AFTER.as_secs()
                                ));
                            }
                        }
                    }
                    // ICE may keep calling a dead path connected (libnice checks no consent):
                    // silence from every far end says more. When joining again did not bring
                    // them back, the far ends themselves may be gone: wait longer each time.
                    if self.rates.arriving {
                        self.silence_limit = REJOIN_AFTER;
                    } else if Duration::from_secs(self.rates.quiet_ticks.into()) >= self.silence_limit {
                        let secs = self.silence_limit.as_secs();
                        self.silence_limit = (self.silence_limit * 2).min(REJOIN_AFTER_MAX);
                        return Ending::Lost(format!("no media from the conference for {secs} s"));
                    }
                    continue;
                }
                ev = sig.next_event() => ev,
            };
            let handled = match ev {
                Ok(ev) => sig.handle(ev, media).await,
                Err(reason) => Err(reason),
            };
            match handled {
                Ok(()) => {}
                // The session or our connection is gone on the server's side: join again.
                Err(EndReason::Failed(why)) => return Ending::Lost(why),
                Err(reason) => return Ending::Ended(reason),
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
    /// Packets came from the far ends in the last second.
    arriving: bool,
    interrupted: bool,
    interruptions: u32,
    /// How many times we left and joined again because the conference was lost.
    rejoins: u32,
    /// Counters of the media before the last rejoin (each media's start from zero), so that
    /// Call1's counters only grow within a call.
    before: CallStats,
    /// The counters last reported.
    last_counts: CallStats,
}

/// The figures that count since the call began (the others are rates and states).
const COUNTERS: [&str; 6] =
    ["packets_sent", "buffers_received", "packets_received", "packets_lost", "frames_decoded", "frames_sent"];

impl Rates {
    /// We leave to join again: the next media's counters start from zero, and the silence
    /// goes on (the interruption is the one already counted).
    fn lost_connection(&mut self) {
        self.last = None;
        self.arriving = false;
        self.rejoins += 1;
        self.before = std::mem::take(&mut self.last_counts);
    }

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
            self.arriving = f.packets_received > prev.packets_received;
            self.quiet_ticks = if self.arriving || s.far_ends == 0 { 0 } else { self.quiet_ticks + 1 };
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
        for (kind, before) in [(&mut stats.audio, &self.before.audio), (&mut stats.video, &self.before.video)] {
            for key in COUNTERS {
                if let Some(n) = kind.get_mut(key) {
                    *n += before.get(key).copied().unwrap_or(0.0);
                }
            }
        }
        stats.video.insert("rejoins".into(), f64::from(self.rejoins));
        self.last_counts = stats.clone();
        self.last = Some((now, f.clone()));
        (stats, started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_again_backs_off_from_half_a_second_to_eight() {
        let waits: Vec<u128> = (1..=7).map(|t| rejoin_pause(t).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Trying for a minute at most: the back-off never outgrows the time given up after.
        assert!(rejoin_pause(u32::MAX) < GIVE_UP_AFTER);
    }
}
