//! The room task: the one owner of the room's state.
//!
//! D-Bus methods, button presses and timers arrive here as [`Command`]s and
//! are handled one at a time, so there is no lock to get wrong and every
//! change is published (property + `PropertiesChanged`) from one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use huis_hal::buttons::{Button, Press};
use huis_hal::leds::{LedPattern, Leds};
use tokio::sync::{mpsc, oneshot};
use zbus::Connection;

use crate::audio::Controls;
use crate::config::{self, Config};
use crate::dbus::iface::{Config1, Props};
use crate::dbus::{AUDIO_PATH, CONFIG_PATH, HuisError, ROOM_PATH, VIDEO_PATH};
use zbus::Variant;

pub type Reply = Result<String, HuisError>;

pub enum Command {
    Dial(String, oneshot::Sender<Reply>),
    Answer(oneshot::Sender<Reply>),
    Hangup(oneshot::Sender<Reply>),
    SetMuted(bool, oneshot::Sender<Reply>),
    PressButton(String, oneshot::Sender<Reply>),
    ConfigGet(String, oneshot::Sender<Reply>),
    ConfigSet(String, String, oneshot::Sender<Reply>),
    /// A physical (or simulated) button was pressed.
    Button(Press),
    /// An operation on the call `/org/huis/Room1/Calls/<n>` (0: the current call).
    Call(u32, CallOp, oneshot::Sender<Reply>),
    /// SIP bytes from the network.
    SipDatagram {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    SipStream {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    SipStreamOpened {
        peer: SocketAddr,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    },
    SipStreamClosed {
        from: SocketAddr,
    },
    /// What the screen shows, as PNG bytes.
    Screenshot(oneshot::Sender<Result<Vec<u8>, HuisError>>),
}

#[derive(Debug, Clone)]
pub enum CallOp {
    Dtmf(String),
    Hold(bool),
    Hangup,
    Answer,
}

/// The room's call state as shown on D-Bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    Idle,
    Dialing,
    Ringing,
    InCall,
    Error,
}

impl RoomState {
    pub fn name(self) -> &'static str {
        match self {
            RoomState::Idle => "idle",
            RoomState::Dialing => "dialing",
            RoomState::Ringing => "ringing",
            RoomState::InCall => "in-call",
            RoomState::Error => "error",
        }
    }
}

pub struct Room {
    pub conn: Connection,
    pub props: Arc<Props>,
    pub config: Config,
    pub config_path: PathBuf,
    pub leds: Box<dyn Leds>,
    pub sim_buttons: Option<huis_hal::buttons::SimButtons>,
    pub controls: Arc<Controls>,
    pub meters: Option<Arc<crate::audio::Meters>>,
    pub state: RoomState,
    pub muted: bool,
    pub last_error: String,
    /// SIP and calls; `None` when SIP could not start (see LastError).
    pub calls: Option<crate::call::CallManager>,
    /// The ringing call is an incoming one (the call button answers it).
    pub incoming: bool,
    /// The HDMI screen (idle screen, far end, self-view, status bar); `None` if it cannot run.
    pub screen: Option<Arc<crate::media::screen::Screen>>,
}

impl Room {
    /// Runs until `shutdown` resolves. Pings the systemd watchdog from this
    /// loop, so a stuck room task gets huisd restarted.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2).unwrap_or(Duration::from_secs(3600));
        let mut ping = tokio::time::interval(watchdog);
        let mut meter_tick = tokio::time::interval(Duration::from_millis(200));
        let mut ticks = 0u64;
        self.update_leds().await;
        if let Some(c) = self.calls.as_mut() {
            let n = c.start_registration().await;
            self.notices(n).await;
        }
        loop {
            let sip_deadline = self.calls.as_ref().and_then(|c| c.deadline());
            let sip_timer = async {
                match sip_deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(cmd) = rx.recv() => self.handle(cmd).await,
                _ = sip_timer => {
                    if let Some(c) = self.calls.as_mut() {
                        let n = c.on_timeout().await;
                        self.notices(n).await;
                    }
                }
                _ = meter_tick.tick() => {
                    ticks += 1;
                    self.publish_meters().await;
                    if let Some(c) = self.calls.as_mut() {
                        let n = c.tick(ticks % 5 == 0).await;
                        self.notices(n).await;
                    }
                }
                _ = ping.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
            }
        }
        if let Some(c) = self.calls.as_mut() {
            c.shutdown().await;
        }
        let _ = self.leds.show(LedPattern::Off);
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(uri, r) => {
                let _ = r.send(self.dial(&uri).await);
            }
            Command::Answer(r) => {
                let _ = r.send(self.call_op(0, CallOp::Answer).await);
            }
            Command::Hangup(r) => {
                let _ = r.send(self.call_op(0, CallOp::Hangup).await);
            }
            Command::Call(n, op, r) => {
                let _ = r.send(self.call_op(n, op).await);
            }
            Command::SipDatagram { from, to, bytes } => {
                if let Some(c) = self.calls.as_mut() {
                    let n = c.on_input(huis_sip::Input::Datagram { from, to, bytes: &bytes }).await;
                    self.notices(n).await;
                }
            }
            Command::SipStream { from, to, bytes } => {
                if let Some(c) = self.calls.as_mut() {
                    let n = c.on_input(huis_sip::Input::Stream { from, to, bytes: &bytes }).await;
                    self.notices(n).await;
                }
            }
            Command::SipStreamOpened { peer, tx } => {
                if let Some(c) = self.calls.as_mut() {
                    c.stream_opened(peer, tx);
                }
            }
            Command::SipStreamClosed { from } => {
                if let Some(c) = self.calls.as_mut() {
                    c.stream_closed(from);
                    let n = c.on_input(huis_sip::Input::StreamClosed { from }).await;
                    self.notices(n).await;
                }
            }
            Command::SetMuted(m, r) => {
                self.set_muted(m).await;
                let _ = r.send(Ok(String::new()));
            }
            Command::PressButton(name, r) => {
                let reply = match Button::parse(&name) {
                    None => Err(HuisError::InvalidArgument(format!("no button '{name}' (use call or mute)"))),
                    Some(b) => {
                        match &self.sim_buttons {
                            // The simulated board delivers it through its button backend.
                            Some(sim) => sim.press(b),
                            None => {
                                Box::pin(self.on_press(Press { button: b, held: Duration::from_millis(120) })).await
                            }
                        }
                        Ok(String::new())
                    }
                };
                let _ = r.send(reply);
            }
            Command::Button(p) => self.on_press(p).await,
            Command::ConfigGet(key, r) => {
                let _ = r.send(self.config.get(&key).map_err(|e| HuisError::InvalidArgument(e.to_string())));
            }
            Command::ConfigSet(key, value, r) => {
                let _ = r.send(self.config_set(&key, &value).await);
            }
            Command::Screenshot(r) => {
                let Some(screen) = self.screen.clone() else {
                    let _ = r.send(Err(HuisError::NotAvailable("this room has no screen running".into())));
                    return;
                };
                // Encoding takes a moment: not on the room task.
                tokio::task::spawn_blocking(move || {
                    let _ = r.send(screen.screenshot_png().map_err(|e| HuisError::Failed(e.to_string())));
                });
            }
        }
    }

    async fn on_press(&mut self, p: Press) {
        tracing::info!(button = p.button.name(), held_ms = p.held.as_millis() as u64, "button pressed");
        match p.button {
            Button::Mute => self.set_muted(!self.muted).await,
            Button::Call => match self.state {
                RoomState::Idle | RoomState::Error => {
                    let dest = self.config.call.default_destination.clone();
                    if dest.is_empty() {
                        self.set_error("the call button has no destination: set call.default_destination").await;
                    } else if let Err(e) = self.dial(&dest).await {
                        self.set_error(&e.to_string()).await;
                    }
                }
                RoomState::Ringing if self.incoming => {
                    if let Err(e) = self.call_op(0, CallOp::Answer).await {
                        self.set_error(&e.to_string()).await;
                    }
                }
                RoomState::Dialing | RoomState::Ringing | RoomState::InCall => {
                    if let Err(e) = self.call_op(0, CallOp::Hangup).await {
                        self.set_error(&e.to_string()).await;
                    }
                }
            },
        }
    }

    /// Dials a URI or the name of a configured destination.
    async fn dial(&mut self, target: &str) -> Reply {
        let uri = match self.config.destinations.iter().find(|d| d.name == target) {
            Some(d) if !d.dtmf.is_empty() && !d.uri.contains(";dtmf=") => {
                format!("{};dtmf={}", d.uri, d.dtmf.replace('#', "%23"))
            }
            Some(d) => d.uri.clone(),
            None => target.to_owned(),
        };
        if !config::is_destination(&uri) {
            return Err(HuisError::InvalidArgument(format!(
                "'{target}' is not a destination (expected sip:user@host, sips:user@host, an https:// URL, or the name of a [[destination]])"
            )));
        }
        if uri.starts_with("https://") {
            return Err(HuisError::NotAvailable("WebRTC destinations are not supported yet".into()));
        }
        let Some(calls) = self.calls.as_mut() else {
            return Err(HuisError::NotAvailable(format!("SIP is not running: {}", self.last_error)));
        };
        let notices = calls.dial(&uri).await.map_err(HuisError::InvalidState)?;
        self.clear_error().await;
        self.notices(notices).await;
        Ok(uri)
    }

    async fn call_op(&mut self, n: u32, op: CallOp) -> Reply {
        let Some(calls) = self.calls.as_mut() else {
            return Err(HuisError::InvalidState("the room is not in a call".into()));
        };
        let r = match op {
            CallOp::Answer => calls.answer(n).await,
            CallOp::Hangup => calls.hangup(n).await,
            CallOp::Hold(h) => calls.hold(n, h).await,
            CallOp::Dtmf(d) => calls.send_dtmf(n, &d).await,
        };
        let notices = r.map_err(HuisError::InvalidState)?;
        self.notices(notices).await;
        Ok(String::new())
    }

    /// Applies what the call manager reports.
    async fn notices(&mut self, notices: Vec<crate::call::Notice>) {
        use crate::call::Notice;
        for n in notices {
            match n {
                Notice::State(s) => self.set_state(s).await,
                Notice::IncomingCall(from) => {
                    self.incoming = true;
                    if let Ok(em) = zbus::object_server::SignalEmitter::new(&self.conn, ROOM_PATH) {
                        let _ = crate::dbus::iface::Room1::incoming_call(&em, &from).await;
                    }
                }
                Notice::CallEnded { reason, failure } => {
                    self.incoming = false;
                    // LastError first, so a client reacting to the signal reads the reason.
                    if failure {
                        self.set_error(&reason).await;
                    }
                    if let Ok(em) = zbus::object_server::SignalEmitter::new(&self.conn, ROOM_PATH) {
                        let _ = crate::dbus::iface::Room1::call_ended(&em, &reason).await;
                    }
                }
                Notice::Registration(text, err) => {
                    self.props.room.lock().unwrap().registration = text.clone();
                    emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("Registration", text.into())]).await;
                    match err {
                        Some(e) => self.set_error(&e).await,
                        None => {
                            if self.last_error.starts_with("registration failed") {
                                self.clear_error().await;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn set_state(&mut self, s: RoomState) {
        if self.state == s {
            return;
        }
        self.state = s;
        if s == RoomState::Idle {
            self.incoming = false;
        }
        tracing::info!(state = s.name(), "room");
        self.props.room.lock().unwrap().state = s.name().to_owned();
        self.update_screen();
        emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("State", s.name().to_owned().into())]).await;
        self.update_leds().await;
    }

    async fn clear_error(&mut self) {
        if self.last_error.is_empty() {
            return;
        }
        self.last_error.clear();
        self.props.room.lock().unwrap().last_error.clear();
        emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("LastError", String::new().into())]).await;
        self.update_leds().await;
    }

    async fn set_muted(&mut self, muted: bool) {
        if self.muted == muted {
            return;
        }
        self.muted = muted;
        self.controls.muted.store(muted, Ordering::Relaxed);
        if let Some(c) = self.calls.as_mut() {
            c.set_muted(muted);
        }
        tracing::info!(muted, "microphones");
        self.props.room.lock().unwrap().muted = muted;
        self.update_screen();
        emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("Muted", muted.into())]).await;
        self.update_leds().await;
    }

    /// Tells the screen what the status bar and the idle screen show.
    pub fn update_screen(&self) {
        let Some(screen) = &self.screen else { return };
        screen.set_status(crate::media::screen::ScreenStatus {
            room_name: self.config.room.name.clone(),
            state: self.state.name().to_owned(),
            muted: self.muted,
            encrypted: false,
            sip_uri: self.props.room.lock().unwrap().sip_uri.clone(),
            self_view: self.config.video.self_view,
        });
    }

    async fn set_error(&mut self, message: &str) {
        tracing::warn!("{message}");
        self.last_error = message.to_owned();
        self.props.room.lock().unwrap().last_error = message.to_owned();
        emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("LastError", message.to_owned().into())]).await;
        self.update_leds().await;
    }

    fn led_pattern(&self) -> LedPattern {
        if self.muted {
            LedPattern::Muted
        } else if self.state != RoomState::Idle && self.state != RoomState::Error {
            match self.state {
                RoomState::InCall => LedPattern::InCall,
                _ => LedPattern::Connecting,
            }
        } else if !self.last_error.is_empty() || self.state == RoomState::Error {
            LedPattern::Error
        } else {
            match self.state {
                RoomState::Idle => LedPattern::Idle,
                RoomState::Dialing | RoomState::Ringing => LedPattern::Connecting,
                RoomState::InCall => LedPattern::InCall,
                RoomState::Error => LedPattern::Error,
            }
        }
    }

    async fn update_leds(&mut self) {
        let p = self.led_pattern();
        if self.leds.current() == p {
            return;
        }
        if let Err(e) = self.leds.show(p) {
            tracing::warn!(error = %e, "cannot set the LEDs");
        }
        let name = self.leds.current().name().to_owned();
        self.props.room.lock().unwrap().leds = name.clone();
        emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("Leds", name.into())]).await;
    }

    async fn config_set(&mut self, key: &str, value: &str) -> Reply {
        let current = match std::fs::read_to_string(&self.config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(HuisError::Failed(format!("{}: cannot be read: {e}", self.config_path.display())));
            }
        };
        let (text, new) =
            config::apply_set(&current, key, value).map_err(|e| HuisError::InvalidArgument(e.to_string()))?;
        config::write_atomic(&self.config_path, &text)
            .map_err(|e| HuisError::Failed(format!("{}: cannot be written: {e}", self.config_path.display())))?;
        let old = std::mem::replace(&mut self.config, new);
        let shown = self.config.get(key).unwrap_or_default();
        tracing::info!(key, value = %shown, "configuration changed");
        self.apply_live(&old).await;
        if let Ok(em) = zbus::object_server::SignalEmitter::new(&self.conn, CONFIG_PATH) {
            let _ = Config1::changed(&em, key, &shown).await;
        }
        Ok(shown)
    }

    /// Brings running parts in line with the configuration after a change.
    async fn apply_live(&mut self, old: &Config) {
        let c = self.config.clone();
        if c.room.name != old.room.name {
            self.props.room.lock().unwrap().room_name = c.room.name.clone();
            emit(&self.conn, ROOM_PATH, "org.huis.Room1", vec![("RoomName", c.room.name.clone().into())]).await;
        }
        if c.audio != old.audio {
            self.controls.apply(&c.audio);
            let mut changes: Vec<(&'static str, Variant<'static>)> = Vec::new();
            {
                let mut a = self.props.audio.lock().unwrap();
                let mut flag = |name: &'static str, slot: &mut bool, v: bool| {
                    if *slot != v {
                        *slot = v;
                        changes.push((name, v.into()));
                    }
                };
                flag("EchoCancellation", &mut a.echo_cancellation, c.audio.echo_cancellation);
                flag("Beamforming", &mut a.beamforming, c.audio.beamforming);
                flag("NoiseSuppression", &mut a.noise_suppression, c.audio.noise_suppression);
                flag("GainControl", &mut a.gain_control, c.audio.gain_control);
                if a.output_volume != c.audio.output_volume {
                    a.output_volume = c.audio.output_volume;
                    changes.push(("OutputVolume", c.audio.output_volume.into()));
                }
            }
            emit(&self.conn, AUDIO_PATH, "org.huis.Audio1", changes).await;
        }
        if c.video.self_view != old.video.self_view || c.room.name != old.room.name {
            self.update_screen();
        }
        if c.video.self_view != old.video.self_view {
            self.props.video.lock().unwrap().self_view = c.video.self_view;
            emit(&self.conn, VIDEO_PATH, "org.huis.Video1", vec![("SelfView", c.video.self_view.into())]).await;
        }
    }

    async fn publish_meters(&mut self) {
        let Some(m) = &self.meters else { return };
        let (inl, outl, az) = (m.input_dbfs.load() as f64, m.output_dbfs.load() as f64, m.talker_azimuth.load() as f64);
        let mut changes: Vec<(&'static str, Variant<'static>)> = Vec::new();
        {
            let mut a = self.props.audio.lock().unwrap();
            // Publish level changes of half a dB or more, so watchers see
            // movement without a signal every 200 ms for noise.
            if (a.input_level - inl).abs() >= 0.5 {
                a.input_level = (inl * 10.0).round() / 10.0;
                changes.push(("InputLevel", a.input_level.into()));
            }
            if (a.output_level - outl).abs() >= 0.5 {
                a.output_level = (outl * 10.0).round() / 10.0;
                changes.push(("OutputLevel", a.output_level.into()));
            }
            let active = az.is_finite();
            if active != a.talker_active {
                a.talker_active = active;
                changes.push(("TalkerActive", active.into()));
            }
            if active && (a.talker_azimuth - az).abs() >= 0.5 {
                a.talker_azimuth = (az * 10.0).round() / 10.0;
                changes.push(("TalkerAzimuth", a.talker_azimuth.into()));
            }
        }
        emit(&self.conn, AUDIO_PATH, "org.huis.Audio1", changes).await;
    }
}

/// Emits `PropertiesChanged` for properties already updated in `Props`.
pub(crate) async fn emit(
    conn: &Connection,
    path: &str,
    iface: &'static str,
    changes: Vec<(&'static str, Variant<'static>)>,
) {
    if changes.is_empty() {
        return;
    }
    {
        let Ok(em) = zbus::object_server::SignalEmitter::new(conn, path) else {
            return;
        };
        let map: std::collections::HashMap<&str, Variant<'_>> = changes.into_iter().collect();
        let name = zbus::names::InterfaceName::from_static_str_unchecked(iface);
        if let Err(e) = zbus::fdo::Properties::properties_changed(&em, name, map, std::borrow::Cow::Borrowed(&[])).await
        {
            tracing::debug!(error = %e, "could not emit a property change");
        }
    }
}
