//! The room: its state and its policy, in one task.
//!
//! Requests from people (D-Bus methods, buttons) arrive as [`Command`]s; what the backends do
//! with calls arrives as [`call::Event`]s. Both are handled one at a time, so there is no lock to
//! get wrong. The room decides — one call at a time, the call button, auto-answer, mute, the
//! LEDs, what the screen says — and publishes what it is on the status feed ([`Feed`]). It knows
//! no D-Bus and no SIP: backends are reached through [`call::Command`]s, surfaces read the feed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use huis_hal::buttons::{Button, Press, SimButtons};
use huis_hal::content::{ContentSource, Signal, SimContent, VideoMode};
use huis_hal::leds::{LedPattern, Leds};
use tokio::sync::{mpsc, oneshot};

use crate::audio::{Controls, Meters};
use crate::call::{
    self, Backend, CallError, CallId, CallIds, CallInfo, CallState, Destination, Direction, Floor, Rejection,
};
use crate::config::{self, Config};
use crate::media::screen::{ContentFeed, Screen, ScreenStatus};
use crate::status::{CallStatus, Feed, RoomState, StatusEvent, set};

#[cfg(test)]
mod tests;

/// Why the room refused or could not carry out a request. The text is for people.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Call(#[from] CallError),
    /// A refused argument: an unknown button, a bad configuration key or value.
    #[error("{0}")]
    InvalidArgument(String),
    /// The room has no such part (no screen).
    #[error("{0}")]
    NotAvailable(String),
    /// The request does not fit the room's state (present with nothing plugged in).
    #[error("{0}")]
    InvalidState(String),
    /// Carrying the request out failed (the configuration file cannot be written).
    #[error("{0}")]
    Failed(String),
}

pub type Reply<T = String> = oneshot::Sender<Result<T, RoomError>>;

/// What people (through D-Bus or the buttons) ask of the room.
pub enum Command {
    /// Dial a destination or the name of a `[[destination]]`.
    Dial(String, Reply),
    Answer(Reply),
    Hangup(Reply),
    SetMuted(bool, Reply),
    /// Press a button as a person would (`call`, `mute`).
    PressButton(String, Reply),
    ConfigGet(String, Reply),
    ConfigSet(String, String, Reply),
    /// A physical (or simulated) button was pressed.
    Button(Press),
    /// An operation on call `n` (0: the current call).
    Call(u32, CallOp, Reply),
    /// What the screen shows, as PNG bytes.
    Screenshot(Reply<Vec<u8>>),
    /// Share the content input (into the call, or on the room's screen when idle).
    StartPresentation(Reply),
    StopPresentation(Reply),
    /// The simulated board's HDMI input: plug (true) or pull (false) the laptop's cable.
    SimulateContentInput(bool, Reply),
    /// The content input's signal changed (from its backend's thread).
    ContentSignal(Signal),
}

#[derive(Debug, Clone)]
pub enum CallOp {
    Dtmf(String),
    Hold(bool),
    /// Start (true) or stop video in the call.
    Video(bool),
    Hangup,
    Answer,
}

/// Everything the room is built from.
pub struct Parts {
    pub feed: Feed,
    pub config: Config,
    pub config_path: PathBuf,
    pub leds: Box<dyn Leds>,
    /// The simulated board's buttons: `PressButton` goes through them, as a press would.
    pub sim_buttons: Option<SimButtons>,
    pub controls: Arc<Controls>,
    pub meters: Option<Arc<Meters>>,
    /// The HDMI screen; `None` if it cannot run.
    pub screen: Option<Arc<Screen>>,
    /// The signalling backends, in the order they are asked to take a destination.
    pub backends: Vec<Backend>,
    pub ids: CallIds,
    /// The HDMI content input, on boards that have one.
    pub content: Option<Arc<dyn ContentSource>>,
    /// The same input when simulated: `SimulateContentInput` plugs and pulls it.
    pub sim_content: Option<Arc<SimContent>>,
}

/// A call as the room knows it: which backend has it and what it said last.
struct RoomCall {
    backend: usize,
    info: CallInfo,
}

pub struct Room {
    feed: Feed,
    config: Config,
    config_path: PathBuf,
    leds: Box<dyn Leds>,
    sim_buttons: Option<SimButtons>,
    controls: Arc<Controls>,
    meters: Option<Arc<Meters>>,
    screen: Option<Arc<Screen>>,
    backends: Vec<Backend>,
    ids: CallIds,
    calls: BTreeMap<CallId, RoomCall>,
    /// A dial handed to a backend that has not reported the call yet.
    pending: Option<(CallId, usize)>,
    state: RoomState,
    muted: bool,
    last_error: String,
    content: Option<Arc<dyn ContentSource>>,
    sim_content: Option<Arc<SimContent>>,
    /// What is on the content input now.
    content_signal: Signal,
    /// Someone asked to present (or plugged a laptop in) and has not stopped or unplugged.
    share_wanted: bool,
    /// The input on the room's screen (a local presentation, or ours in a call).
    content_feed: Option<ContentFeed>,
    /// What the room last told a call's backend about presenting (`Command::Present`).
    present_sent: Option<(CallId, bool)>,
    /// The far end's presentation is on the screen.
    receiving_content: bool,
}

/// The mode `SimulateContentInput` plugs the simulated laptop in at: 1080p at 15 frames per
/// second, the most a shared slide deck needs.
const SIM_CONTENT_MODE: (u32, u32, u32) = (1920, 1080, 15);

/// How long a backend may go without a heartbeat before the room stops vouching for huisd.
const HEARTBEAT_LIMIT: Duration = Duration::from_secs(10);

impl Room {
    pub fn new(p: Parts) -> Room {
        let last_error = p.feed.room_now().last_error;
        let mut room = Room {
            feed: p.feed,
            config: p.config,
            config_path: p.config_path,
            leds: p.leds,
            sim_buttons: p.sim_buttons,
            controls: p.controls,
            meters: p.meters,
            screen: p.screen,
            backends: p.backends,
            ids: p.ids,
            calls: BTreeMap::new(),
            pending: None,
            state: RoomState::Idle,
            muted: false,
            last_error,
            content: p.content,
            sim_content: p.sim_content,
            content_signal: Signal::NoSignal,
            share_wanted: false,
            content_feed: None,
            present_sent: None,
            receiving_content: false,
        };
        if let Some(c) = &room.content {
            room.content_signal = c.signal().unwrap_or(Signal::NoSignal);
        }
        room.refresh_presentation();
        let uri = room.backends.iter().map(|b| b.address.clone()).find(|a| !a.is_empty()).unwrap_or_default();
        room.feed.room(|r| set(&mut r.sip_uri, uri));
        room.update_leds();
        room.update_screen();
        room
    }

    /// Runs until `shutdown` resolves, then ends every call. Pings the systemd watchdog from this
    /// loop while every backend's heartbeat is fresh, so a stuck room or backend gets huisd
    /// restarted.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<call::Event>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2).unwrap_or(Duration::from_secs(3600));
        let mut ping = tokio::time::interval(watchdog.min(HEARTBEAT_LIMIT / 2));
        let mut meter_tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(cmd) = commands.recv() => self.handle(cmd).await,
                Some(ev) = events.recv() => self.on_call_event(ev),
                _ = meter_tick.tick() => self.publish_meters(),
                _ = ping.tick() => {
                    if self.backends_alive() {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                }
            }
        }
        for b in &self.backends {
            if let Ok(tx) = &b.commands {
                let (done, wait) = oneshot::channel();
                if tx.send(call::Command::Shutdown(done)).await.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
                }
            }
        }
        let _ = self.leds.show(LedPattern::Off);
    }

    /// Every running backend beat recently.
    pub fn backends_alive(&self) -> bool {
        self.backends.iter().filter_map(|b| b.heartbeat.as_ref()).all(|h| h.age() < HEARTBEAT_LIMIT)
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(target, r) => self.dial(&target, Some(r)),
            Command::Answer(r) => self.call_op(0, CallOp::Answer, Some(r)),
            Command::Hangup(r) => self.call_op(0, CallOp::Hangup, Some(r)),
            Command::Call(n, op, r) => self.call_op(n, op, Some(r)),
            Command::SetMuted(m, r) => {
                self.set_muted(m);
                let _ = r.send(Ok(String::new()));
            }
            Command::PressButton(name, r) => {
                let reply = match Button::parse(&name) {
                    None => Err(RoomError::InvalidArgument(format!(
                        "no button '{}' (use call or mute)",
                        crate::text::excerpt(&name)
                    ))),
                    Some(b) => {
                        match &self.sim_buttons {
                            // The simulated board delivers it through its button backend.
                            Some(sim) => sim.press(b),
                            None => self.on_press(Press { button: b, held: Duration::from_millis(120) }),
                        }
                        Ok(String::new())
                    }
                };
                let _ = r.send(reply);
            }
            Command::Button(p) => self.on_press(p),
            Command::StartPresentation(r) => {
                let _ = r.send(self.start_presentation().map(|()| String::new()));
            }
            Command::StopPresentation(r) => {
                let _ = r.send(self.stop_presentation().map(|()| String::new()));
            }
            Command::SimulateContentInput(plugged, r) => {
                let _ = r.send(self.simulate_content_input(plugged).map(|()| String::new()));
            }
            Command::ContentSignal(s) => self.on_content_signal(s),
            Command::ConfigGet(key, r) => {
                let _ = r.send(self.config.get(&key).map_err(|e| RoomError::InvalidArgument(e.to_string())));
            }
            Command::ConfigSet(key, value, r) => {
                let _ = r.send(self.config_set(&key, &value));
            }
            Command::Screenshot(r) => {
                let Some(screen) = self.screen.clone() else {
                    let _ = r.send(Err(RoomError::NotAvailable("this room has no screen running".into())));
                    return;
                };
                // Encoding takes a moment: not on the room task.
                tokio::task::spawn_blocking(move || {
                    let _ = r.send(screen.screenshot_png().map_err(|e| RoomError::Failed(e.to_string())));
                });
            }
        }
    }

    fn on_press(&mut self, p: Press) {
        tracing::info!(button = p.button.name(), held_ms = p.held.as_millis() as u64, "button pressed");
        match p.button {
            Button::Mute => self.set_muted(!self.muted),
            Button::Call => match self.state {
                RoomState::Idle | RoomState::Error => {
                    let dest = self.config.call.default_destination.clone();
                    if dest.is_empty() {
                        self.set_error("the call button has no destination: set call.default_destination");
                    } else {
                        self.dial(&dest, None);
                    }
                }
                RoomState::Ringing => self.call_op(0, CallOp::Answer, None),
                RoomState::Dialing | RoomState::InCall => self.call_op(0, CallOp::Hangup, None),
            },
        }
    }

    /// The destination `target` names: a `[[destination]]` or a URI.
    fn destination(&self, target: &str) -> Result<Destination, CallError> {
        match self.config.destinations.iter().find(|d| d.name == target) {
            Some(d) => Ok(Destination::parse(&d.uri)?.with_dtmf(&d.dtmf).with_token(&d.token).with_pin(&d.pin)),
            None => Destination::parse(target).map_err(|e| match e {
                CallError::InvalidDestination(m) => {
                    CallError::InvalidDestination(format!("{m}, or the name of a [[destination]]"))
                }
                e => e,
            }),
        }
    }

    /// Dials `target`. `reply` (a D-Bus caller) hears the backend's answer; without one (the
    /// call button) a refusal becomes `LastError`.
    fn dial(&mut self, target: &str, reply: Option<Reply>) {
        let r = self.start_dial(target);
        match (r, reply) {
            (Ok((id, backend, to)), reply) => {
                let shown = to.to_string();
                let (tx, rx) = oneshot::channel();
                let Ok(commands) = &self.backends[backend].commands else { unreachable!("checked in start_dial") };
                if commands.try_send(call::Command::Dial { id, to, reply: tx }).is_err() {
                    self.pending = None;
                    let e = CallError::BackendDown {
                        backend: self.backends[backend].name,
                        reason: "it does not take requests".into(),
                    };
                    self.refuse(e, reply);
                    self.refresh_state();
                    return;
                }
                forward(rx, reply, shown);
            }
            (Err(e), reply) => self.refuse(e, reply),
        }
    }

    fn start_dial(&mut self, target: &str) -> Result<(CallId, usize, Destination), CallError> {
        let to = self.destination(target)?;
        if !self.calls.is_empty() || self.pending.is_some() {
            return Err(CallError::Busy);
        }
        let backend = self.backends.iter().position(|b| (b.accepts)(&to)).ok_or_else(|| match &to {
            Destination::Web { .. } => CallError::Unsupported("WebRTC destinations are not supported yet".into()),
            other => CallError::Unsupported(format!("nothing here calls {} destinations", other.scheme())),
        })?;
        let b = &self.backends[backend];
        if let Err(reason) = &b.commands {
            return Err(CallError::BackendDown { backend: b.name, reason: reason.clone() });
        }
        let id = self.ids.next();
        tracing::info!(call = %id, to = %to, backend = b.name, "dialing");
        self.pending = Some((id, backend));
        self.clear_error();
        self.refresh_state();
        Ok((id, backend, to))
    }

    /// Answers a refused request: to the caller, or (for the buttons) as `LastError`.
    fn refuse(&mut self, e: CallError, reply: Option<Reply>) {
        match reply {
            Some(r) => {
                let _ = r.send(Err(e.into()));
            }
            None => self.set_error(&e.to_string()),
        }
    }

    /// The call `n` names (0: the current one, or a dial not yet under way).
    fn call_of(&self, n: u32) -> Result<(CallId, usize), CallError> {
        if n == 0 {
            return self
                .calls
                .iter()
                .next()
                .map(|(id, c)| (*id, c.backend))
                .or(self.pending)
                .ok_or(CallError::NotInCall);
        }
        let id = CallId(n);
        match (self.calls.get(&id), self.pending) {
            (Some(c), _) => Ok((id, c.backend)),
            (None, Some((p, b))) if p == id => Ok((id, b)),
            _ => Err(CallError::NoSuchCall(n)),
        }
    }

    fn call_op(&mut self, n: u32, op: CallOp, reply: Option<Reply>) {
        let r = self.check_call_op(n, &op);
        let (id, backend) = match r {
            Ok(x) => x,
            Err(e) => return self.refuse(e, reply),
        };
        let (tx, rx) = oneshot::channel();
        let cmd = match op {
            CallOp::Answer => call::Command::Answer { id, reply: tx },
            CallOp::Hangup => call::Command::Hangup { id, reply: tx },
            CallOp::Hold(on) => call::Command::Hold { id, on, reply: tx },
            CallOp::Video(on) => call::Command::Video { id, on, reply: tx },
            CallOp::Dtmf(digits) => call::Command::Dtmf { id, digits, reply: tx },
        };
        let sent = match &self.backends[backend].commands {
            Ok(c) => c.try_send(cmd).is_ok(),
            Err(_) => false,
        };
        if !sent {
            let name = self.backends[backend].name;
            return self
                .refuse(CallError::BackendDown { backend: name, reason: "it does not take requests".into() }, reply);
        }
        forward(rx, reply, String::new());
    }

    fn check_call_op(&self, n: u32, op: &CallOp) -> Result<(CallId, usize), CallError> {
        let (id, backend) = self.call_of(n)?;
        let state = self.calls.get(&id).map(|c| (c.info.direction, c.info.state));
        match op {
            CallOp::Answer if !matches!(state, Some((Direction::Incoming, CallState::Incoming))) => {
                Err(CallError::NothingToAnswer)
            }
            CallOp::Dtmf(d) if d.is_empty() || !d.chars().all(|c| c.is_ascii_digit() || "*#ABCD,".contains(c)) => {
                Err(CallError::InvalidDtmf(d.clone()))
            }
            CallOp::Dtmf(_) | CallOp::Hold(_) | CallOp::Video(_) if !state.is_some_and(|(_, s)| s.established()) => {
                Err(CallError::NotEstablished)
            }
            _ => Ok((id, backend)),
        }
    }

    /// Applies what a backend reports.
    pub(crate) fn on_call_event(&mut self, ev: call::Event) {
        match ev {
            call::Event::Started { id, info, answer } => self.started(id, info, answer),
            call::Event::DialFailed { id, error } => {
                if self.pending.is_some_and(|(p, _)| p == id) {
                    self.pending = None;
                }
                tracing::info!(call = %id, "dial failed: {error}");
                self.set_error(&error.to_string());
                self.refresh_state();
            }
            call::Event::Changed { id, info } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    let was = c.info.presentation.floor;
                    let now = info.presentation.floor;
                    if was != now {
                        tracing::info!(call = %id, from = was.name(), to = now.name(), "presentation");
                    }
                    // The far end took the floor over, revoked or refused ours: this share is over
                    // (the backend stopped wanting it too).
                    let lost = (now == Floor::Theirs && was != Floor::Theirs)
                        || (was == Floor::Ours && now != Floor::Ours)
                        || (was == Floor::Requesting && now == Floor::Free);
                    if lost {
                        self.share_wanted = false;
                        self.present_sent = Some((id, false));
                    }
                    c.info = info.clone();
                    self.feed.calls(|calls| match calls.get_mut(&id) {
                        Some(s) => set(&mut s.info, info),
                        None => false,
                    });
                    self.refresh_state();
                    self.update_screen();
                }
            }
            call::Event::Stats { id, stats } => {
                if !self.calls.contains_key(&id) {
                    return;
                }
                if !stats.video.is_empty() {
                    let v = stats.video.clone();
                    self.feed.video(|s| set(&mut s.stats, v));
                }
                self.feed.calls(|calls| match calls.get_mut(&id) {
                    Some(s) => set(&mut s.stats, stats),
                    None => false,
                });
            }
            call::Event::Ended { id, reason } => {
                let Some(c) = self.calls.remove(&id) else {
                    return;
                };
                self.feed.calls(|calls| calls.remove(&id).is_some());
                tracing::info!(call = %id, reason = %reason, "call ended");
                let text = if reason.is_failure() {
                    let way = if c.info.direction == Direction::Incoming { "from" } else { "to" };
                    format!("call {way} {} failed: {reason}", c.info.remote)
                } else {
                    reason.to_string()
                };
                // State first (LastError, idle, the LEDs), so a client reacting to the signal
                // reads the room as it is after the call.
                if reason.is_failure() {
                    self.set_error(&text);
                }
                self.refresh_state();
                self.feed.event(StatusEvent::CallEnded { reason: text });
            }
            call::Event::Registration { backend, text, error } => {
                tracing::info!(backend, registration = %text, "account");
                self.feed.room(|r| set(&mut r.registration, text));
                match error {
                    Some(e) => self.set_error(&e),
                    None if self.last_error.starts_with("registration failed") => self.clear_error(),
                    None => {}
                }
            }
        }
    }

    fn started(&mut self, id: CallId, info: CallInfo, answer_requested: bool) {
        let backend = match self.pending {
            Some((p, b)) if p == id => {
                self.pending = None;
                b
            }
            _ => match self.backends.iter().position(|b| b.protocol == info.protocol) {
                Some(b) => b,
                None => return,
            },
        };
        if info.direction == Direction::Incoming && (!self.calls.is_empty() || self.pending.is_some()) {
            tracing::info!(call = %id, from = %info.remote, "busy: turning an incoming call away");
            if let Ok(tx) = &self.backends[backend].commands {
                let _ = tx.try_send(call::Command::Reject { id, why: Rejection::Busy });
            }
            return;
        }
        let incoming = info.direction == Direction::Incoming;
        let remote = info.remote.clone();
        self.calls.insert(id, RoomCall { backend, info: info.clone() });
        self.feed.calls(|calls| {
            calls.insert(id, CallStatus { info, stats: Default::default() });
            true
        });
        self.refresh_state();
        if incoming {
            tracing::info!(call = %id, from = %remote, "incoming call");
            self.feed.event(StatusEvent::IncomingCall { remote });
            if answer_requested || self.config.call.auto_answer {
                self.call_op(id.0, CallOp::Answer, None);
            }
        }
    }

    /// The room's state follows its current call (or a dial on its way).
    /// `Room1.StartPresentation`: needs an input with a signal; idle, the input is shown on the
    /// room's screen, in a call it is shared.
    fn start_presentation(&mut self) -> Result<(), RoomError> {
        if self.content.is_none() {
            return Err(RoomError::NotAvailable(
                "this board has no content input (no [content] in its descriptor)".into(),
            ));
        }
        match &self.content_signal {
            Signal::Active(_) => {}
            Signal::NoSignal => {
                return Err(RoomError::InvalidState(
                    "nothing is plugged into the content input (no signal): plug a laptop in first".into(),
                ));
            }
            Signal::Unsupported { reason } => {
                return Err(RoomError::InvalidState(format!("the content input's signal cannot be shared: {reason}")));
            }
        }
        if let Some(c) = self.calls.values().next()
            && c.info.presentation.floor == Floor::Unavailable
        {
            return Err(RoomError::NotAvailable(
                "this call has no presentation channel (the far end offered or accepted no BFCP and slides \
                 stream, or the call is not up yet); the laptop shows on the room's screen once the call ends"
                    .into(),
            ));
        }
        self.share_wanted = true;
        tracing::info!("presentation started");
        self.refresh_presentation();
        Ok(())
    }

    fn stop_presentation(&mut self) -> Result<(), RoomError> {
        if self.content.is_none() {
            return Err(RoomError::NotAvailable(
                "this board has no content input (no [content] in its descriptor)".into(),
            ));
        }
        if !self.share_wanted {
            return Err(RoomError::InvalidState("nothing is being presented".into()));
        }
        self.share_wanted = false;
        tracing::info!("presentation stopped");
        self.refresh_presentation();
        Ok(())
    }

    fn simulate_content_input(&mut self, plugged: bool) -> Result<(), RoomError> {
        let Some(sim) = self.sim_content.clone() else {
            return Err(RoomError::NotAvailable(
                "only a simulated content input can be plugged in software (this board's is real, or it has none)"
                    .into(),
            ));
        };
        if plugged {
            sim.plug(VideoMode::progressive(SIM_CONTENT_MODE.0, SIM_CONTENT_MODE.1, SIM_CONTENT_MODE.2))
                .map_err(|e| RoomError::Failed(e.to_string()))?;
        } else {
            sim.unplug();
        }
        // The watcher's message follows; apply the change now so the caller sees it on return.
        let signal = sim.signal().unwrap_or(Signal::NoSignal);
        self.on_content_signal(signal);
        Ok(())
    }

    /// A laptop plugged in is presented (room systems share on plug); pulling it stops.
    pub(crate) fn on_content_signal(&mut self, signal: Signal) {
        if signal == self.content_signal {
            return;
        }
        tracing::info!(?signal, "content input");
        let was_active = matches!(self.content_signal, Signal::Active(_));
        self.content_signal = signal;
        match &self.content_signal {
            Signal::Active(_) if !was_active => self.share_wanted = true,
            Signal::Active(_) => {}
            Signal::NoSignal | Signal::Unsupported { .. } => self.share_wanted = false,
        }
        self.refresh_presentation();
    }

    /// Writes the content input and the presentation to the feed.
    fn refresh_presentation(&mut self) {
        let input = match (&self.content, &self.content_signal) {
            (None, _) => "none".to_owned(),
            (Some(_), Signal::NoSignal) => "no-signal".to_owned(),
            (Some(_), Signal::Active(_)) => "active".to_owned(),
            (Some(_), Signal::Unsupported { reason }) => format!("unsupported: {reason}"),
        };
        let input_mode = match &self.content_signal {
            Signal::Active(m) => {
                let m = *m;
                Some((m.width, m.height, (m.fps_milli() + 500) / 1000))
            }
            _ => None,
        };
        let wanted = self.share_wanted && input_mode.is_some();
        let zeros = (0, 0, 0);
        let call = self.calls.iter().next().map(|(id, c)| (*id, c.backend, c.info.presentation, c.info.remote.clone()));
        // What the room says, what the screen shows: the input (ours), the far end's content.
        let (presentation, holder, (w, h, fps), local, far) = match call {
            None if wanted => ("local", "local".to_owned(), input_mode.unwrap_or(zeros), true, false),
            None => ("none", String::new(), zeros, false, false),
            Some((id, backend, p, remote)) => {
                // A new call starts without a presentation: only a change is sent.
                let sent = matches!(self.present_sent, Some((p, true)) if p == id);
                if sent != wanted {
                    self.present_sent = Some((id, wanted));
                    if let Ok(tx) = &self.backends[backend].commands {
                        let _ = tx.try_send(call::Command::Present { id, on: wanted });
                    }
                }
                match p.floor {
                    Floor::Ours => ("sending", "local".to_owned(), (p.width, p.height, p.framerate), true, false),
                    Floor::Requesting => ("requesting", "local".to_owned(), input_mode.unwrap_or(zeros), true, false),
                    Floor::Theirs => ("receiving", remote, (p.width, p.height, p.framerate), false, true),
                    Floor::Free | Floor::Unavailable => ("none", String::new(), zeros, false, false),
                }
            }
        };
        self.receiving_content = far;
        self.show_content(local);
        self.feed.room(|r| {
            let mut changed = set(&mut r.content_input, input);
            changed |= set(&mut r.presentation, presentation.to_owned());
            changed |= set(&mut r.presentation_holder, holder);
            changed |= set(&mut r.content_width, w);
            changed |= set(&mut r.content_height, h);
            changed |= set(&mut r.content_framerate, fps);
            changed
        });
    }

    /// Feeds the input to the screen (or stops), and tells the screen's layout.
    fn show_content(&mut self, show: bool) {
        if show == self.content_feed.is_some() {
            self.update_screen();
            return;
        }
        self.content_feed = None;
        if show && self.screen.is_some() {
            let feed = self.content.as_ref().map(|c| c.gst_source().map_err(|e| e.to_string())).and_then(|r| {
                r.and_then(|src| ContentFeed::start(src).map_err(|e| e.to_string()))
                    .map_err(|e| tracing::warn!("cannot show the content input: {e}"))
                    .ok()
            });
            self.content_feed = feed;
        }
        self.update_screen();
    }

    fn refresh_state(&mut self) {
        self.refresh_presentation();
        let s = match self.calls.values().next().map(|c| c.info.state) {
            Some(CallState::Dialing | CallState::Alerting) => RoomState::Dialing,
            Some(CallState::Incoming) => RoomState::Ringing,
            Some(CallState::Active | CallState::Held) => RoomState::InCall,
            None if self.pending.is_some() => RoomState::Dialing,
            None => RoomState::Idle,
        };
        if self.state == s {
            return;
        }
        self.state = s;
        tracing::info!(state = s.name(), "room");
        self.feed.room(|r| set(&mut r.state, s));
        self.update_screen();
        self.update_leds();
    }

    fn clear_error(&mut self) {
        if self.last_error.is_empty() {
            return;
        }
        self.last_error.clear();
        self.feed.room(|r| set(&mut r.last_error, String::new()));
        self.update_leds();
    }

    fn set_error(&mut self, message: &str) {
        tracing::warn!("{message}");
        self.last_error = message.to_owned();
        self.feed.room(|r| set(&mut r.last_error, message.to_owned()));
        self.update_leds();
    }

    fn set_muted(&mut self, muted: bool) {
        if self.muted == muted {
            return;
        }
        self.muted = muted;
        self.controls.muted.store(muted, Ordering::Relaxed);
        for b in &self.backends {
            if let Ok(tx) = &b.commands {
                let _ = tx.try_send(call::Command::SetMuted(muted));
            }
        }
        tracing::info!(muted, "microphones");
        self.feed.room(|r| set(&mut r.muted, muted));
        self.update_screen();
        self.update_leds();
    }

    /// Tells the screen what the status bar and the idle screen show.
    fn update_screen(&self) {
        let Some(screen) = &self.screen else { return };
        screen.set_status(ScreenStatus {
            room_name: self.config.room.name.clone(),
            state: self.state.name().to_owned(),
            muted: self.muted,
            encrypted: self.calls.values().next().is_some_and(|c| c.info.encrypted),
            sip_uri: self.feed.room_now().sip_uri,
            self_view: self.config.video.self_view,
            content: self.content_feed.is_some() || self.receiving_content,
        });
    }

    fn led_pattern(&self) -> LedPattern {
        if self.muted {
            LedPattern::Muted
        } else {
            match self.state {
                RoomState::InCall => LedPattern::InCall,
                RoomState::Dialing | RoomState::Ringing => LedPattern::Connecting,
                RoomState::Error => LedPattern::Error,
                RoomState::Idle if !self.last_error.is_empty() => LedPattern::Error,
                RoomState::Idle => LedPattern::Idle,
            }
        }
    }

    fn update_leds(&mut self) {
        let p = self.led_pattern();
        if self.leds.current() == p {
            return;
        }
        if let Err(e) = self.leds.show(p) {
            tracing::warn!(error = %e, "cannot set the LEDs");
        }
        let name = self.leds.current().name().to_owned();
        self.feed.room(|r| set(&mut r.leds, name));
    }

    fn config_set(&mut self, key: &str, value: &str) -> Result<String, RoomError> {
        let current = match std::fs::read_to_string(&self.config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(RoomError::Failed(format!("{}: cannot be read: {e}", self.config_path.display())));
            }
        };
        let (text, new) =
            config::apply_set(&current, key, value).map_err(|e| RoomError::InvalidArgument(e.to_string()))?;
        config::write_atomic(&self.config_path, &text)
            .map_err(|e| RoomError::Failed(format!("{}: cannot be written: {e}", self.config_path.display())))?;
        let old = std::mem::replace(&mut self.config, new);
        let shown = self.config.get(key).unwrap_or_default();
        tracing::info!(key, value = %shown, "configuration changed");
        self.apply_live(&old);
        self.feed.event(StatusEvent::ConfigChanged { key: key.to_owned(), value: shown.clone() });
        Ok(shown)
    }

    /// Brings running parts in line with the configuration after a change.
    fn apply_live(&mut self, old: &Config) {
        let c = self.config.clone();
        if c.room.name != old.room.name {
            self.feed.room(|r| set(&mut r.room_name, c.room.name.clone()));
        }
        if c.audio != old.audio {
            self.controls.apply(&c.audio);
            self.feed.audio(|a| {
                set(&mut a.echo_cancellation, c.audio.echo_cancellation)
                    | set(&mut a.beamforming, c.audio.beamforming)
                    | set(&mut a.noise_suppression, c.audio.noise_suppression)
                    | set(&mut a.gain_control, c.audio.gain_control)
                    | set(&mut a.output_volume, c.audio.output_volume)
            });
        }
        if c.video.self_view != old.video.self_view {
            self.feed.video(|v| set(&mut v.self_view, c.video.self_view));
        }
        if c.video.self_view != old.video.self_view || c.room.name != old.room.name {
            self.update_screen();
        }
    }

    /// Levels and the talker's direction, at 5 Hz; changes of half a dB (or degree) or more, so
    /// watchers see movement without a signal every 200 ms for noise.
    fn publish_meters(&mut self) {
        let Some(m) = &self.meters else { return };
        let (inl, outl, az) = (m.input_dbfs.load() as f64, m.output_dbfs.load() as f64, m.talker_azimuth.load() as f64);
        let round = |v: f64| (v * 10.0).round() / 10.0;
        self.feed.audio(|a| {
            let mut changed = false;
            if (a.input_level - inl).abs() >= 0.5 {
                a.input_level = round(inl);
                changed = true;
            }
            if (a.output_level - outl).abs() >= 0.5 {
                a.output_level = round(outl);
                changed = true;
            }
            let active = az.is_finite();
            changed |= set(&mut a.talker_active, active);
            if active && (a.talker_azimuth - az).abs() >= 0.5 {
                a.talker_azimuth = round(az);
                changed = true;
            }
            changed
        });
    }
}

/// Passes a backend's answer on to whoever asked (if anyone still listens), `ok` on success.
fn forward(rx: oneshot::Receiver<Result<(), CallError>>, reply: Option<Reply>, ok: String) {
    tokio::spawn(async move {
        let r = match rx.await {
            Ok(r) => r.map(|()| ok).map_err(RoomError::from),
            Err(_) => Err(RoomError::Call(CallError::ShuttingDown)),
        };
        match reply {
            Some(reply) => {
                let _ = reply.send(r);
            }
            None => {
                if let Err(e) = r {
                    tracing::warn!("{e}");
                }
            }
        }
    });
}
