//! The WebRTC backend: the room joins web conferences as a participant. Today: a Janus
//! VideoRoom (`janus+https://host/janus?room=N&pin=P`), over Janus's REST API.
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::audio::{CallAudio, CallAudioSlot};
use crate::call::{
    self, Backend, CallError, CallId, CallInfo, CallState, CallStats, Command, Destination, Direction, EndReason,
    EventSender, Heartbeat, Protocol,
};
use crate::media::webrtc::{ConferenceMedia, ConferenceParams, ConferenceVideo, Connection};

pub use janus::JanusError;

/// How long joining (each request's answer) may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the publishing connection may stay down before the call ends.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// The destinations this backend takes.
pub fn accepts(d: &Destination) -> bool {
    matches!(d, Destination::Janus { .. })
}

/// What every conference of this room uses.
#[derive(Clone)]
pub struct Setup {
    /// Our name in the conference (the room's name).
    pub display: String,
    pub video: Option<ConferenceVideo>,
    pub layout: (u32, u32),
    pub opus_bitrate: u32,
    pub stun: Option<String>,
    pub turn: Vec<String>,
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
                    Command::Dial { id, to: Destination::Janus { api, room, pin }, reply } => {
                        let (tx, rx) = mpsc::channel(8);
                        conferences.insert(id, tx);
                        let _ = reply.send(Ok(()));
                        let info = CallInfo::new(Protocol::WebRtc, Direction::Outgoing, format!("janus+{api}?room={room}"));
                        let _ = events.send(call::Event::Started { id, info: info.clone(), answer: false }).await;
                        let conf = Conference { id, info, events: events.clone(), audio: audio.clone(), muted };
                        tokio::spawn(conf.run(setup.clone(), http.clone(), api, room, pin, rx));
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

/// One conference in progress.
struct Conference {
    id: CallId,
    info: CallInfo,
    events: EventSender,
    audio: CallAudioSlot,
    muted: bool,
}

/// What a conference holds, for leaving whatever happened while joining.
struct Parts {
    janus: Option<janus::Janus>,
    media: Option<Arc<ConferenceMedia>>,
}

/// How a conference ended: by us (with the reply to send once we left) or by a failure.
enum Ending {
    Hangup(call::Reply),
    Failed(EndReason),
}

impl Conference {
    async fn emit(&self, ev: call::Event) {
        let _ = self.events.send(ev).await;
    }

    async fn run(
        mut self,
        setup: Setup,
        http: reqwest::Client,
        api: String,
        room: u64,
        pin: String,
        mut commands: mpsc::Receiver<ConfCommand>,
    ) {
        self.info.signalling_tls = api.starts_with("https://");
        let mut parts = Parts { janus: None, media: None };
        let mut late_mute = None;
        let early = {
            let join = self.join(&setup, http, &api, room, &pin, &mut parts);
            tokio::pin!(join);
            // A hang-up while joining stops the join.
            loop {
                tokio::select! {
                    r = &mut join => break r,
                    cmd = commands.recv() => match cmd {
                        Some(ConfCommand::Hangup(reply)) => break Err(Ending::Hangup(reply)),
                        Some(ConfCommand::Mute(on)) => late_mute = Some(on),
                        None => break Err(Ending::Failed(EndReason::LocalHangup)),
                    },
                }
            }
        };
        let ending = match (early, parts.janus.as_mut(), parts.media.clone()) {
            (Ok(handles), Some(j), Some(m)) => {
                if let Some(on) = late_mute {
                    m.set_muted(on);
                }
                self.in_conference(j, &m, room, &pin, handles, &mut commands).await
            }
            (Ok(_), ..) => Ending::Failed(EndReason::Failed("joined without a session".into())),
            (Err(e), ..) => e,
        };
        let (mut janus, mut media) = (parts.janus, parts.media);
        // Leave: the SFU first (others see us go at once), then the media.
        if let Some(j) = janus.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(3), j.destroy()).await;
        }
        self.audio.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(m) = media.take() {
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        let reason = match ending {
            Ending::Hangup(reply) => {
                let _ = reply.send(Ok(()));
                EndReason::LocalHangup
            }
            Ending::Failed(r) => r,
        };
        tracing::info!(call = %self.id, reason = %reason, "left the conference");
        self.emit(call::Event::Ended { id: self.id, reason }).await;
    }

    /// Creates the session, starts the media, joins as a publisher and publishes. Returns the
    /// handles of the far ends subscribed to so far.
    #[allow(clippy::too_many_arguments)]
    async fn join(
        &mut self,
        setup: &Setup,
        http: reqwest::Client,
        api: &str,
        room: u64,
        pin: &str,
        parts: &mut Parts,
    ) -> Result<HashMap<u64, u64>, Ending> {
        let failed = |e: JanusError| {
            Ending::Failed(match e {
                JanusError::Refused { .. } | JanusError::Http { .. } => EndReason::Refused(e.to_string()),
                _ => EndReason::Failed(e.to_string()),
            })
        };
        let j = parts.janus.insert(janus::Janus::connect(http, api).await.map_err(failed)?);
        let handle = j.attach().await.map_err(failed)?;
        let params = ConferenceParams {
            video: setup.video.clone(),
            layout: setup.layout,
            opus_bitrate: setup.opus_bitrate,
            stun: setup.stun.clone(),
            turn: setup.turn.clone(),
            far_channel: crate::media::video::FAR_CHANNEL.into(),
            self_channel: crate::media::video::SELF_CHANNEL.into(),
        };
        let media = tokio::task::spawn_blocking(move || ConferenceMedia::start(params))
            .await
            .map_err(|e| Ending::Failed(EndReason::Failed(format!("the conference media crashed: {e}"))))?
            .map_err(|e| Ending::Failed(EndReason::Failed(format!("cannot start the conference media: {e}"))))?;
        media.set_muted(self.muted);
        let media = Arc::new(media);
        parts.media = Some(media.clone());

        let mut body = json!({"request": "join", "ptype": "publisher", "room": room, "display": setup.display});
        if !pin.is_empty() {
            body["pin"] = Value::String(pin.to_owned());
        }
        let tx = j.message(handle, body, None).await.map_err(failed)?;
        let joined = j.wait(&tx, JOIN_TIMEOUT, "the join").await.map_err(failed)?;
        let data = janus::plugin_data(&joined).cloned().unwrap_or(Value::Null);
        if data.get("videoroom").and_then(Value::as_str) != Some("joined") {
            return Err(failed(JanusError::Protocol(format!("the join was answered with {data}"))));
        }
        tracing::info!(call = %self.id, room, id = ?data.get("id"), "joined the Janus room");

        let offer = media.publish_offer().await.map_err(|e| Ending::Failed(EndReason::Failed(e.to_string())))?;
        let body = json!({"request": "configure", "audio": true, "video": setup.video.is_some()});
        let tx = j.message(handle, body, Some(json!({"type": "offer", "sdp": offer}))).await.map_err(failed)?;
        let answer = j.wait(&tx, JOIN_TIMEOUT, "the offer to publish").await.map_err(failed)?;
        let sdp = answer
            .get("jsep")
            .and_then(|js| js.get("sdp"))
            .and_then(Value::as_str)
            .ok_or_else(|| failed(JanusError::Protocol("the offer to publish got no answer SDP".into())))?;
        media.publish_answer(sdp).await.map_err(|e| {
            Ending::Failed(EndReason::Failed(format!("the conference server's answer cannot be used: {e}")))
        })?;

        *self.audio.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(CallAudio { tx: media.sender(), rx: media.receiver() });
        self.info.state = CallState::Active;
        self.info.audio_codec = "opus/48000".into();
        if let Some(v) = &setup.video {
            self.info.video_codec = format!("H264/90000 {}x{}", v.width, v.height);
        }
        self.info.media_encryption = "DTLS-SRTP".into();
        self.info.encrypted = self.info.signalling_tls;
        self.emit(call::Event::Changed { id: self.id, info: self.info.clone() }).await;

        let mut handles = HashMap::new();
        handles.insert(0, handle);
        for p in publishers(&data) {
            self.subscribe(j, &media, room, pin, p, &mut handles).await;
        }
        Ok(handles)
    }

    /// Subscribes to one publisher; a failure costs that far end only.
    async fn subscribe(
        &self,
        j: &mut janus::Janus,
        media: &ConferenceMedia,
        room: u64,
        pin: &str,
        (feed, name): (u64, String),
        handles: &mut HashMap<u64, u64>,
    ) {
        let r: Result<u64, String> = async {
            let handle = j.attach().await.map_err(|e| e.to_string())?;
            let mut body = json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]});
            if !pin.is_empty() {
                body["pin"] = Value::String(pin.to_owned());
            }
            let tx = j.message(handle, body, None).await.map_err(|e| e.to_string())?;
            let ev = j.wait(&tx, JOIN_TIMEOUT, "the subscription").await.map_err(|e| e.to_string())?;
            let offer = ev
                .get("jsep")
                .and_then(|js| js.get("sdp"))
                .and_then(Value::as_str)
                .ok_or("the subscription came without an offer")?;
            let answer = media.subscribe(feed, &name, offer).await.map_err(|e| e.to_string())?;
            let tx = j
                .message(handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer})))
                .await
                .map_err(|e| e.to_string())?;
            j.wait(&tx, JOIN_TIMEOUT, "the start of a subscription").await.map_err(|e| e.to_string())?;
            Ok(handle)
        }
        .await;
        match r {
            Ok(h) => {
                tracing::info!(call = %self.id, feed, far_end = %name, "receiving a far end");
                handles.insert(feed, h);
            }
            Err(e) => tracing::warn!(call = %self.id, feed, far_end = %name, "cannot receive a far end: {e}"),
        }
    }

    /// In the conference: far ends come and go, figures every second, until we hang up or the
    /// connection is lost for good.
    async fn in_conference(
        &mut self,
        j: &mut janus::Janus,
        media: &Arc<ConferenceMedia>,
        room: u64,
        pin: &str,
        mut handles: HashMap<u64, u64>,
        commands: &mut mpsc::Receiver<ConfCommand>,
    ) -> Ending {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut keepalive = tokio::time::interval(Duration::from_secs(25));
        let mut down_since: Option<tokio::time::Instant> = None;
        let mut far_ends = String::new();
        loop {
            let events = tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(ConfCommand::Hangup(reply)) => {
                        let tx = j.message(handles[&0], json!({"request": "leave"}), None).await;
                        if tx.is_err() { tracing::debug!("the leave request failed; destroying the session"); }
                        return Ending::Hangup(reply);
                    }
                    Some(ConfCommand::Mute(on)) => { media.set_muted(on); continue; }
                    None => return Ending::Failed(EndReason::LocalHangup),
                },
                _ = tick.tick() => {
                    let s = media.stats();
                    let mut stats = CallStats::default();
                    stats.audio.insert("buffers_received".into(), s.audio_buffers_received as f64);
                    stats.video.insert("frames_decoded".into(), s.frames_decoded as f64);
                    stats.video.insert("frames_sent".into(), s.frames_sent as f64);
                    stats.video.insert("far_ends".into(), s.far_ends as f64);
                    stats.video.insert("far_ends_connected".into(), s.far_ends_connected as f64);
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
                                return Ending::Failed(EndReason::Failed(format!(
                                    "the connection to the conference is {} since {} s", other.name(), LOST_AFTER.as_secs()
                                )));
                            }
                        }
                    }
                    continue;
                }
                _ = keepalive.tick() => {
                    if let Err(e) = j.keepalive().await {
                        tracing::warn!(call = %self.id, "Janus keepalive failed: {e}");
                    }
                    continue;
                }
                evs = j.events() => evs,
            };
            let events = match events {
                Ok(evs) => evs,
                Err(e @ JanusError::Refused { .. }) => {
                    return Ending::Failed(EndReason::Failed(format!("the conference session ended: {e}")));
                }
                Err(e) => return Ending::Failed(EndReason::Failed(format!("the conference session ended: {e}"))),
            };
            for ev in events {
                let sender = ev.get("sender").and_then(Value::as_u64).unwrap_or(0);
                let kind = ev.get("janus").and_then(Value::as_str).unwrap_or("");
                if kind == "hangup" && sender == handles[&0] {
                    tracing::warn!(call = %self.id, reason = ?ev.get("reason"), "Janus hung up our publishing connection");
                }
                let Some(data) = janus::plugin_data(&ev) else { continue };
                for p in publishers(data) {
                    if !handles.contains_key(&p.0) {
                        self.subscribe(j, media, room, pin, p, &mut handles).await;
                    }
                }
                for key in ["unpublished", "leaving"] {
                    if let Some(feed) = data.get(key).and_then(Value::as_u64)
                        && let Some(h) = handles.remove(&feed)
                    {
                        media.remove_far_end(feed);
                        j.detach(h).await;
                    }
                }
                if data.get("videoroom").and_then(Value::as_str) == Some("destroyed") {
                    return Ending::Failed(EndReason::RemoteHangup);
                }
            }
        }
    }
}

/// The publishers (id, display) an event lists.
fn publishers(data: &Value) -> Vec<(u64, String)> {
    data.get("publishers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let id = p.get("id")?.as_u64()?;
                    let display = p.get("display").and_then(Value::as_str).unwrap_or("").chars().take(64).collect();
                    Some((id, display))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_are_read_from_events_and_names_are_bounded() {
        let ev = json!({"videoroom": "event", "publishers": [
            {"id": 7, "display": "Chromium"}, {"id": 8}, {"display": "no id"}, {"id": 9, "display": "x".repeat(500)}
        ]});
        let p = publishers(&ev);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (7, "Chromium".into()));
        assert_eq!(p[1], (8, String::new()));
        assert_eq!(p[2].1.len(), 64);
        assert!(publishers(&json!({"videoroom": "joined"})).is_empty());
    }
}
