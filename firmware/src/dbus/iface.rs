//! Server side of the org.huis.* interfaces.
//!
//! Methods become [`Command`]s for the room task (or calls into the updater); properties read
//! the status feed's latest state. Change signals are emitted by [`super::publish`], from the
//! same feed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use zbus::interface;
use zbus::object_server::SignalEmitter;

use super::HuisError;
use crate::room::{Command, Reply, RoomError};
use crate::status::{AudioStatus, RoomStatus, UpdateStatus, VideoStatus};

/// The interfaces' way to the room task.
#[derive(Clone)]
pub struct RoomLink {
    pub commands: mpsc::Sender<Command>,
    /// Asks [`super::publish`] to emit what changed, and says when it has.
    pub flush: mpsc::Sender<oneshot::Sender<()>>,
}

impl RoomLink {
    /// Sends a command to the room task and waits for its answer, and for the changes it made
    /// to be signalled: a client that caches properties reads the new values once the method
    /// returns, as if the room had emitted them itself.
    pub(super) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, HuisError> {
        let gone = || HuisError::Failed("huisd is shutting down".into());
        let (rtx, rrx) = oneshot::channel::<Result<T, RoomError>>();
        self.commands.send(make(rtx)).await.map_err(|_| gone())?;
        let r = rrx.await.map_err(|_| gone())?;
        let (done, wait) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), wait).await;
        }
        Ok(r?)
    }
}

/// `org.huis.Room1` at `/org/huis/Room1`.
pub struct Room1 {
    pub room: RoomLink,
    pub status: watch::Receiver<RoomStatus>,
}

impl Room1 {
    fn p(&self) -> watch::Ref<'_, RoomStatus> {
        self.status.borrow()
    }
}

#[interface(name = "org.huis.Room1")]
impl Room1 {
    /// idle, dialing, ringing, in-call or error.
    #[zbus(property)]
    fn state(&self) -> String {
        self.p().state.name().to_owned()
    }
    #[zbus(property)]
    fn room_name(&self) -> String {
        self.p().room_name.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn board(&self) -> String {
        self.p().board.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        self.p().version.clone()
    }
    #[zbus(property)]
    fn muted(&self) -> bool {
        self.p().muted
    }
    /// The last problem worth telling a person about, or "".
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.p().last_error.clone()
    }
    /// SIP registration: "none" without an account, else unregistered,
    /// registering, "registered (600 s)" or "failed: <why>".
    #[zbus(property)]
    fn registration(&self) -> String {
        self.p().registration.clone()
    }
    /// The address people dial to reach this room.
    #[zbus(property)]
    fn sip_uri(&self) -> String {
        self.p().sip_uri.clone()
    }
    /// What the status LEDs show: off, idle, connecting, in-call, muted, error.
    #[zbus(property)]
    fn leds(&self) -> String {
        self.p().leds.clone()
    }

    /// Dials a destination (`sip:…`, `sips:…`, `tel:…`) or the name of a `[[destination]]`.
    async fn dial(&self, uri: String, _options: HashMap<String, zbus::OwnedVariant>) -> Result<(), HuisError> {
        self.room.ask(|r| Command::Dial(uri, r)).await.map(drop)
    }
    async fn answer(&self) -> Result<(), HuisError> {
        self.room.ask(Command::Answer).await.map(drop)
    }
    async fn hangup(&self) -> Result<(), HuisError> {
        self.room.ask(Command::Hangup).await.map(drop)
    }
    async fn set_muted(&self, muted: bool) -> Result<(), HuisError> {
        self.room.ask(|r| Command::SetMuted(muted, r)).await.map(drop)
    }
    /// Presses a room button as a person would: "call" or "mute".
    async fn press_button(&self, button: String) -> Result<(), HuisError> {
        self.room.ask(|r| Command::PressButton(button, r)).await.map(drop)
    }

    /// Shares the content input: into the call (asking for the floor), or on the room's screen
    /// when idle. Fails when nothing is plugged in.
    async fn start_presentation(&self) -> Result<(), HuisError> {
        self.room.ask(Command::StartPresentation).await.map(drop)
    }

    async fn stop_presentation(&self) -> Result<(), HuisError> {
        self.room.ask(Command::StopPresentation).await.map(drop)
    }

    /// The simulated board's HDMI input: plug the laptop in (true) or pull its cable (false).
    async fn simulate_content_input(&self, plugged: bool) -> Result<(), HuisError> {
        self.room.ask(|r| Command::SimulateContentInput(plugged, r)).await.map(drop)
    }

    /// `none` (no input on this board), `no-signal`, `active` or `unsupported: why`.
    #[zbus(property)]
    fn content_input(&self) -> String {
        self.p().content_input.clone()
    }

    /// `none` or `local` (idle, the input on the room's screen).
    #[zbus(property)]
    fn presentation(&self) -> String {
        self.p().presentation.clone()
    }

    /// Who holds the floor: "", `local` or the far end's URI.
    #[zbus(property)]
    fn presentation_holder(&self) -> String {
        self.p().presentation_holder.clone()
    }

    /// The presented content's width, height and frame rate (zeros when none).
    #[zbus(property)]
    fn content_mode(&self) -> (u32, u32, u32) {
        let p = self.p();
        (p.content_width, p.content_height, p.content_framerate)
    }

    #[zbus(signal)]
    pub async fn incoming_call(emitter: &SignalEmitter<'_>, remote_uri: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    pub async fn call_ended(emitter: &SignalEmitter<'_>, reason: &str) -> zbus::Result<()>;
}

/// `org.huis.Audio1` at `/org/huis/Room1/Audio`.
pub struct Audio1 {
    pub room: RoomLink,
    pub status: watch::Receiver<AudioStatus>,
}

impl Audio1 {
    fn p(&self) -> watch::Ref<'_, AudioStatus> {
        self.status.borrow()
    }

    async fn set(&self, key: &str, value: String) -> zbus::fdo::Result<()> {
        self.room
            .ask(|r| Command::ConfigSet(key.to_owned(), value, r))
            .await
            .map(drop)
            .map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_string()))
    }
}

#[interface(name = "org.huis.Audio1")]
impl Audio1 {
    /// Direction of the current talker, degrees (0 = the array's +x axis,
    /// counter-clockwise); meaningful while TalkerActive.
    #[zbus(property)]
    fn talker_azimuth(&self) -> f64 {
        self.p().talker_azimuth
    }
    #[zbus(property)]
    fn talker_active(&self) -> bool {
        self.p().talker_active
    }
    /// Microphone level, dBFS (RMS over the last 200 ms).
    #[zbus(property)]
    fn input_level(&self) -> f64 {
        self.p().input_level
    }
    /// Loudspeaker level, dBFS.
    #[zbus(property)]
    fn output_level(&self) -> f64 {
        self.p().output_level
    }
    #[zbus(property)]
    fn echo_cancellation(&self) -> bool {
        self.p().echo_cancellation
    }
    #[zbus(property)]
    async fn set_echo_cancellation(&mut self, on: bool) -> zbus::fdo::Result<()> {
        self.set("audio.echo_cancellation", on.to_string()).await
    }
    #[zbus(property)]
    fn beamforming(&self) -> bool {
        self.p().beamforming
    }
    #[zbus(property)]
    async fn set_beamforming(&mut self, on: bool) -> zbus::fdo::Result<()> {
        self.set("audio.beamforming", on.to_string()).await
    }
    #[zbus(property)]
    fn noise_suppression(&self) -> bool {
        self.p().noise_suppression
    }
    #[zbus(property)]
    async fn set_noise_suppression(&mut self, on: bool) -> zbus::fdo::Result<()> {
        self.set("audio.noise_suppression", on.to_string()).await
    }
    #[zbus(property)]
    fn gain_control(&self) -> bool {
        self.p().gain_control
    }
    #[zbus(property)]
    async fn set_gain_control(&mut self, on: bool) -> zbus::fdo::Result<()> {
        self.set("audio.gain_control", on.to_string()).await
    }
    /// Loudspeaker volume, percent.
    #[zbus(property)]
    fn output_volume(&self) -> u32 {
        self.p().output_volume
    }
    #[zbus(property)]
    async fn set_output_volume(&mut self, v: u32) -> zbus::fdo::Result<()> {
        self.set("audio.output_volume", v.to_string()).await
    }
}

/// `org.huis.Video1` at `/org/huis/Room1/Video`.
pub struct Video1 {
    pub room: RoomLink,
    pub status: watch::Receiver<VideoStatus>,
}

impl Video1 {
    fn p(&self) -> watch::Ref<'_, VideoStatus> {
        self.status.borrow()
    }
}

#[interface(name = "org.huis.Video1")]
impl Video1 {
    /// The camera in use (driver's name and device).
    #[zbus(property)]
    fn camera(&self) -> String {
        self.p().camera.clone()
    }
    /// The H.264 encoder element in use, or "" when none is usable.
    #[zbus(property)]
    fn encoder(&self) -> String {
        self.p().encoder.clone()
    }
    #[zbus(property)]
    fn encoder_hardware(&self) -> bool {
        self.p().encoder_hardware
    }
    /// Every encoder probed: (element, hardware, usable, why not).
    #[zbus(property)]
    fn encoders(&self) -> Vec<(String, bool, bool, String)> {
        self.p().encoders.clone()
    }
    #[zbus(property)]
    fn width(&self) -> u32 {
        self.p().width
    }
    #[zbus(property)]
    fn height(&self) -> u32 {
        self.p().height
    }
    #[zbus(property)]
    fn framerate(&self) -> u32 {
        self.p().framerate
    }
    #[zbus(property)]
    fn self_view(&self) -> bool {
        self.p().self_view
    }
    #[zbus(property)]
    async fn set_self_view(&mut self, on: bool) -> zbus::fdo::Result<()> {
        self.room
            .ask(|r| Command::ConfigSet("video.self_view".into(), on.to_string(), r))
            .await
            .map(drop)
            .map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_string()))
    }
    /// The current (or last) call's video: frames_sent, frames_decoded, recv_width/height,
    /// keyframe_requests_received/answered, keyframe_answer_max_ms, keyframe_requests_sent,
    /// bitrate_kbps, remote_loss_percent, … Read it when needed (no change signal).
    #[zbus(property(emits_changed_signal = "false"))]
    fn stats(&self) -> HashMap<String, f64> {
        self.p().stats.clone()
    }
    /// What the screen shows now, as PNG bytes (the caller writes the file: huisd may run as
    /// another user).
    async fn screenshot(&self) -> Result<Vec<u8>, HuisError> {
        self.room.ask(Command::Screenshot).await
    }
}

/// `org.huis.Config1` at `/org/huis/Room1/Config`.
pub struct Config1 {
    pub room: RoomLink,
    pub path: String,
}

#[interface(name = "org.huis.Config1")]
impl Config1 {
    /// The configuration file huisd reads and writes.
    #[zbus(property(emits_changed_signal = "const"))]
    fn path(&self) -> &str {
        &self.path
    }
    /// Every settable key, as `section.key`.
    fn keys(&self) -> Vec<String> {
        crate::config::known_keys()
    }
    /// One key's value as TOML text; "" returns the whole effective configuration.
    async fn get(&self, key: String) -> Result<String, HuisError> {
        self.room.ask(|r| Command::ConfigGet(key, r)).await
    }
    /// Validates and stores one key. A refused value changes nothing, on disk or in memory.
    async fn set(&self, key: String, value: String) -> Result<(), HuisError> {
        self.room.ask(|r| Command::ConfigSet(key, value, r)).await.map(drop)
    }
    #[zbus(signal)]
    pub async fn changed(emitter: &SignalEmitter<'_>, key: &str, value: &str) -> zbus::Result<()>;
}

/// `org.huis.Update1` at `/org/huis/Room1`: installing signed update bundles
/// through RAUC and the state of the two slots. See [`crate::update`].
pub struct Update1 {
    pub updater: Arc<crate::update::Updater>,
    pub status: watch::Receiver<UpdateStatus>,
}

impl Update1 {
    fn p(&self) -> watch::Ref<'_, UpdateStatus> {
        self.status.borrow()
    }
}

#[interface(name = "org.huis.Update1")]
impl Update1 {
    /// Installs a bundle into the slot that is not running: `source` is an
    /// absolute path or an http(s) URL (downloaded to the data partition
    /// first). Returns once the install has started; its end is `Completed`.
    async fn install(&self, source: String) -> Result<(), HuisError> {
        Ok(self.updater.install(source).await?)
    }
    /// idle, downloading or installing.
    #[zbus(property)]
    fn operation(&self) -> String {
        self.p().operation.clone()
    }
    /// Percent done and what is happening, from RAUC.
    #[zbus(property)]
    fn progress(&self) -> (i32, String) {
        self.p().progress.clone()
    }
    /// Why the last install (or the boot health check) failed, or "".
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.p().last_error.clone()
    }
    /// The slot running now (A or B), "" without RAUC.
    #[zbus(property)]
    fn boot_slot(&self) -> String {
        self.p().boot_slot.clone()
    }
    /// The RAUC compatible string bundles must carry (e.g. huis-amd64).
    #[zbus(property)]
    fn compatible(&self) -> String {
        self.p().compatible.clone()
    }
    /// Every slot: (bootname, state booted/inactive, boot status good/bad, version or "").
    #[zbus(property)]
    fn slots(&self) -> Vec<(String, String, String, String)> {
        super::publish::slots_tuple(&self.p().slots)
    }
    /// The end of an install: result 0 = written, reboot to finish; else the
    /// message says why and nothing was changed.
    #[zbus(signal)]
    pub async fn completed(emitter: &SignalEmitter<'_>, result: i32, message: &str) -> zbus::Result<()>;
}
