//! The status feed: what the room is, published once for every management surface.
//!
//! The room task and the updater write typed state here; D-Bus (`dbus/`) reads it, and the
//! fleet agent will be a second reader. State is a set of [`watch`] channels — a reader sees
//! the latest value and never a queue, so a slow or dead reader holds nothing up — and ordered
//! happenings (a call ended, the configuration changed) go through a bounded [`broadcast`]
//! queue, which a reader that falls behind loses the oldest of instead of blocking a writer.
//!
//! Ordering: a writer updates the state *before* it sends the event that goes with it (LastError
//! before CallEnded), and a reader that takes an event first brings its view of the state up to
//! date; so a client reacting to the signal reads the new state.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::{broadcast, watch};

use crate::call::{CallId, CallInfo, CallStats};

/// The room's call state (`Room1.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoomState {
    #[default]
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

/// `org.huis.Room1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomStatus {
    pub state: RoomState,
    pub room_name: String,
    pub board: String,
    pub version: String,
    pub muted: bool,
    /// The last problem worth telling a person about, or "".
    pub last_error: String,
    /// What the LEDs show: off, idle, connecting, in-call, muted, error.
    pub leds: String,
    /// SIP registration: none, unregistered, registering, registered (N s), failed: why.
    pub registration: String,
    /// How to call this room (`sip:room@192.0.2.10:5060`), "" when SIP is not running.
    pub sip_uri: String,
    /// The HDMI content input: `none` (the board has none), `no-signal`, `active` or
    /// `unsupported: why`.
    pub content_input: String,
    /// The presentation: `none`, `local` (the input on the room's screen, no call), and in a
    /// call with a presentation channel `requesting` (the floor asked for), `sending` (ours,
    /// the input goes to the far end) or `receiving` (the far end's on our screen).
    pub presentation: String,
    /// Who holds the floor: `""`, `local` or the far end's URI.
    pub presentation_holder: String,
    /// The content's size and frame rate (ours while local or sending, the far end's while
    /// receiving); zeros when there is none.
    pub content_width: u32,
    pub content_height: u32,
    pub content_framerate: u32,
}

/// `org.huis.Audio1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioStatus {
    pub talker_azimuth: f64,
    pub talker_active: bool,
    pub input_level: f64,
    pub output_level: f64,
    pub echo_cancellation: bool,
    pub beamforming: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
    pub output_volume: u32,
}

/// One H.264 encoder as probed: element, hardware, usable, why not.
pub type EncoderProbe = (String, bool, bool, String);

/// `org.huis.Video1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoStatus {
    pub camera: String,
    pub encoder: String,
    pub encoder_hardware: bool,
    pub encoders: Vec<EncoderProbe>,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub self_view: bool,
    /// Figures of the current (or last) call's video.
    pub stats: HashMap<String, f64>,
}

/// One slot as `Update1.Slots` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slot {
    /// GRUB's name for it: A or B.
    pub bootname: String,
    /// booted or inactive.
    pub state: String,
    /// good or bad (RAUC's boot status).
    pub boot_status: String,
    /// The image version in the slot; "" when unknown (never installed by RAUC).
    pub version: String,
}

/// `org.huis.Update1`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateStatus {
    /// idle, downloading, installing (RAUC's operation, plus huisd's download).
    pub operation: String,
    pub progress: (i32, String),
    pub last_error: String,
    pub boot_slot: String,
    pub compatible: String,
    pub slots: Vec<Slot>,
    /// The boot health check's verdict on the booted slot: "" (not run here: no RAUC, or not
    /// done yet), `passed`, or `failed: why`.
    pub health: String,
    /// Installs ended (`Completed`) since huisd started, counted with `last_error` set: whoever
    /// waits for an install it started waits for this to move, not for `operation` to read
    /// `idle` (which it also does before RAUC has taken the bundle).
    pub completed: u64,
}

impl Default for UpdateStatus {
    fn default() -> Self {
        Self {
            operation: "idle".into(),
            progress: (0, String::new()),
            last_error: String::new(),
            boot_slot: String::new(),
            compatible: String::new(),
            slots: Vec::new(),
            health: String::new(),
            completed: 0,
        }
    }
}

/// One call in progress (`org.huis.Call1`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallStatus {
    pub info: CallInfo,
    pub stats: CallStats,
}

/// The calls in progress, by id.
pub type Calls = BTreeMap<CallId, CallStatus>;

/// Things that happen, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusEvent {
    IncomingCall {
        remote: String,
    },
    /// A call ended; `reason` is for people.
    CallEnded {
        reason: String,
    },
    /// A configuration key changed to `value` (as TOML).
    ConfigChanged {
        key: String,
        value: String,
    },
    /// An update install ended: 0 = written, reboot to finish; else `message` says why not.
    UpdateCompleted {
        result: i32,
        message: String,
    },
}

/// How many events a reader may fall behind before it loses the oldest.
const EVENT_BACKLOG: usize = 256;

/// The writing side. Cloning gives another handle to the same feed.
#[derive(Clone)]
pub struct Feed {
    room: watch::Sender<RoomStatus>,
    audio: watch::Sender<AudioStatus>,
    video: watch::Sender<VideoStatus>,
    calls: watch::Sender<Calls>,
    update: watch::Sender<UpdateStatus>,
    events: broadcast::Sender<StatusEvent>,
}

/// The reading side: the latest state of each part, and the events since subscribing.
pub struct Subscriber {
    pub room: watch::Receiver<RoomStatus>,
    pub audio: watch::Receiver<AudioStatus>,
    pub video: watch::Receiver<VideoStatus>,
    pub calls: watch::Receiver<Calls>,
    pub update: watch::Receiver<UpdateStatus>,
    pub events: broadcast::Receiver<StatusEvent>,
}

/// Changes `slot` to `v`; says whether it changed (for `send_if_modified`).
pub fn set<T: PartialEq>(slot: &mut T, v: T) -> bool {
    if *slot == v {
        return false;
    }
    *slot = v;
    true
}

impl Feed {
    pub fn new(room: RoomStatus, audio: AudioStatus, video: VideoStatus) -> Feed {
        Feed {
            room: watch::Sender::new(room),
            audio: watch::Sender::new(audio),
            video: watch::Sender::new(video),
            calls: watch::Sender::new(Calls::new()),
            update: watch::Sender::new(UpdateStatus::default()),
            events: broadcast::Sender::new(EVENT_BACKLOG),
        }
    }

    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            room: self.room.subscribe(),
            audio: self.audio.subscribe(),
            video: self.video.subscribe(),
            calls: self.calls.subscribe(),
            update: self.update.subscribe(),
            events: self.events.subscribe(),
        }
    }

    /// Changes the room's status; readers wake only if `f` says it changed something.
    pub fn room(&self, f: impl FnOnce(&mut RoomStatus) -> bool) -> bool {
        self.room.send_if_modified(f)
    }
    pub fn audio(&self, f: impl FnOnce(&mut AudioStatus) -> bool) -> bool {
        self.audio.send_if_modified(f)
    }
    pub fn video(&self, f: impl FnOnce(&mut VideoStatus) -> bool) -> bool {
        self.video.send_if_modified(f)
    }
    pub fn calls(&self, f: impl FnOnce(&mut Calls) -> bool) -> bool {
        self.calls.send_if_modified(f)
    }
    pub fn update(&self, f: impl FnOnce(&mut UpdateStatus) -> bool) -> bool {
        self.update.send_if_modified(f)
    }

    /// A reader of the update's state alone.
    pub fn watch_update(&self) -> watch::Receiver<UpdateStatus> {
        self.update.subscribe()
    }

    pub fn room_now(&self) -> RoomStatus {
        self.room.borrow().clone()
    }
    pub fn update_now(&self) -> UpdateStatus {
        self.update.borrow().clone()
    }

    /// Publishes an event; with no reader it is dropped.
    pub fn event(&self, e: StatusEvent) {
        let _ = self.events.send(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_sees_the_latest_state_and_the_events_in_order() {
        let feed = Feed::new(RoomStatus::default(), AudioStatus::default(), VideoStatus::default());
        let mut sub = feed.subscribe();
        assert!(!feed.room(|r| set(&mut r.muted, false)), "no change, no wake-up");
        for i in 0..10 {
            feed.room(|r| set(&mut r.last_error, format!("problem {i}")));
        }
        feed.event(StatusEvent::CallEnded { reason: "busy".into() });
        feed.event(StatusEvent::ConfigChanged { key: "room.name".into(), value: "\"A\"".into() });
        assert!(sub.room.has_changed().unwrap());
        assert_eq!(sub.room.borrow_and_update().last_error, "problem 9", "only the latest state is kept");
        assert_eq!(sub.events.recv().await.unwrap(), StatusEvent::CallEnded { reason: "busy".into() });
        assert!(matches!(sub.events.recv().await.unwrap(), StatusEvent::ConfigChanged { .. }));
    }

    #[test]
    fn a_reader_that_never_reads_holds_nothing_up() {
        let feed = Feed::new(RoomStatus::default(), AudioStatus::default(), VideoStatus::default());
        let mut sub = feed.subscribe();
        for i in 0..(EVENT_BACKLOG * 4) {
            feed.event(StatusEvent::CallEnded { reason: i.to_string() });
            feed.audio(|a| set(&mut a.input_level, i as f64));
        }
        // The writer never waited; the reader lost the oldest events and is told how many.
        match sub.events.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n as usize, EVENT_BACKLOG * 3),
            other => panic!("expected a lag report, got {other:?}"),
        }
        assert_eq!(sub.audio.borrow().input_level, (EVENT_BACKLOG * 4 - 1) as f64);
    }
}
