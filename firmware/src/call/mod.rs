//! Calls, whatever carries them: the contract between the room and its signalling backends.
//!
//! The room (see `room/`) decides *whether* to call, answer or hang up; a backend (`proto/sip/`
//! today, WebRTC next) knows *how*. They talk through the types here and nothing else:
//!
//! ```text
//!            room task                                    a backend task (proto/<name>/)
//!   Destination::parse(text) ── pick the backend whose
//!                               accepts() is true ──▶  Command { Dial, Answer, Reject, Hangup,
//!                                                                Hold, Dtmf, SetMuted, Shutdown }
//!                                                       (replies go straight to the caller)
//!   state, LEDs, status feed ◀── Event { Started, DialFailed, Changed, Stats, Ended,
//!                                        Registration } ── tagged with the room-wide CallId
//! ```
//!
//! Call ids are allocated from one [`CallIds`] shared by the room and every backend, so an id
//! names one call across protocols for the daemon's life (it is the `<n>` of
//! `/org/huis/Room1/Calls/<n>`). A backend owns its calls' media; the room owns policy (one call
//! at a time, auto-answer, the call button) and what people see.

mod destination;
mod error;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use destination::{Destination, MAX_PIN_DIGITS, check_pin};
pub use error::CallError;

/// One call, room-wide: the `<n>` of `/org/huis/Room1/Calls/<n>`. Never 0 (0 means "the current
/// call" in D-Bus methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hands out call ids; shared by the room (outgoing calls) and the backends (incoming ones).
#[derive(Debug, Clone)]
pub struct CallIds(Arc<AtomicU32>);

impl Default for CallIds {
    fn default() -> Self {
        CallIds(Arc::new(AtomicU32::new(1)))
    }
}

impl CallIds {
    pub fn next(&self) -> CallId {
        CallId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// Which protocol carries a call (`Call1.Protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Sip,
    WebRtc,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Sip => "sip",
            Protocol::WebRtc => "webrtc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// Where one call stands (`Call1.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Outgoing, no answer yet.
    Dialing,
    /// Outgoing, the far end rings.
    Alerting,
    /// Incoming, ringing here.
    Incoming,
    Active,
    /// On hold, by us or by the far end.
    Held,
}

impl CallState {
    pub fn name(self) -> &'static str {
        match self {
            CallState::Dialing => "dialing",
            CallState::Alerting => "alerting",
            CallState::Incoming => "incoming",
            CallState::Active => "active",
            CallState::Held => "held",
        }
    }

    /// The call has been answered (media flows or is held).
    pub fn established(self) -> bool {
        matches!(self, CallState::Active | CallState::Held)
    }
}

/// What a backend tells about one call; the room shows it as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    pub protocol: Protocol,
    pub direction: Direction,
    pub state: CallState,
    /// The far end: a SIP URI (display name included), a conference URL.
    pub remote: String,
    /// The call is encrypted end to end of its hop: the signalling runs over TLS *and* every
    /// media stream is encrypted (SRTP with SDES keys, or DTLS-SRTP with the peer's certificate
    /// checked). The screen's lock shows exactly this.
    pub encrypted: bool,
    /// How the media is protected, for people: `DTLS-SRTP AES_CM_128_HMAC_SHA1_80`,
    /// `SDES AES_CM_128_HMAC_SHA1_80`, `DTLS-SRTP (handshake)`, `none` (audio and video
    /// agree; otherwise both are listed, `audio ...; video ...`).
    pub media_encryption: String,
    /// The call's signalling runs over TLS on the hop we talk to (SIP over TLS). SDES keys
    /// may only be offered when it is true, and a call counts as encrypted only with it.
    pub signalling_tls: bool,
    /// `opus/48000`, "" before media is negotiated.
    pub audio_codec: String,
    /// `H264/90000 1280x720`, "" without video.
    pub video_codec: String,
    /// The presentation channel of the call (BFCP and the slides stream) and who holds it.
    pub presentation: Presentation,
}

/// Who holds a call's presentation floor (BFCP, RFC 8855), as `Call1.Presentation` says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Floor {
    /// The call carries no presentation: the far end offered none, or refused ours.
    #[default]
    Unavailable,
    /// Nobody presents.
    Free,
    /// We asked for the floor and wait for the answer.
    Requesting,
    /// We hold it: the content input goes to the far end.
    Ours,
    /// The far end holds it: its content is on our screen.
    Theirs,
}

impl Floor {
    /// `none`, `free`, `requesting`, `sending`, `receiving`.
    pub fn name(self) -> &'static str {
        match self {
            Floor::Unavailable => "none",
            Floor::Free => "free",
            Floor::Requesting => "requesting",
            Floor::Ours => "sending",
            Floor::Theirs => "receiving",
        }
    }
}

/// A call's presentation: the floor, and the content's size and frame rate (what we send while
/// ours, what arrives while theirs; zeros otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presentation {
    pub floor: Floor,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

impl CallInfo {
    pub fn new(protocol: Protocol, direction: Direction, remote: impl Into<String>) -> CallInfo {
        let state = if direction == Direction::Incoming { CallState::Incoming } else { CallState::Dialing };
        CallInfo {
            protocol,
            direction,
            state,
            remote: remote.into(),
            encrypted: false,
            media_encryption: "none".into(),
            signalling_tls: false,
            audio_codec: String::new(),
            video_codec: String::new(),
            presentation: Presentation::default(),
        }
    }
}

/// The figures of a call, every second: packets, loss, jitter, RTT, bitrate, and the video's
/// (frames, keyframes, repairs). Names are those of `Call1.Stats` and `Video1.Stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    pub audio: HashMap<String, f64>,
    /// Empty without video.
    pub video: HashMap<String, f64>,
    /// The presentation stream's (the video's names); empty without one.
    pub content: HashMap<String, f64>,
}

/// Why a call ended, in words for people (`Room1.CallEnded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up.
    LocalHangup,
    /// The far end hung up.
    RemoteHangup,
    /// The caller gave up before we answered.
    Cancelled,
    /// The far end is busy.
    Busy,
    Declined,
    NotFound,
    /// The far end never answered.
    Timeout,
    NoCommonCodec,
    AuthFailed,
    SessionExpired,
    /// A meeting gateway (Visio) hung up on us right after our PIN: it refused it.
    PinRefused,
    /// Encrypted media is required here and the far end offered or answered none.
    NotEncrypted,
    /// Nothing (no RTP, no RTCP) came from the far end for this many seconds
    /// (`call.media_timeout`): the link or the far end is gone.
    MediaTimeout {
        secs: u64,
    },
    /// Any other refusal, with the protocol's words (`480 Temporarily Unavailable`).
    Refused(String),
    /// Something on our side failed (no ports, the media would not start).
    Failed(String),
}

impl EndReason {
    /// A person hung up or gave up: not a problem to show as `LastError`.
    pub fn is_failure(&self) -> bool {
        !matches!(self, EndReason::LocalHangup | EndReason::RemoteHangup | EndReason::Cancelled)
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::LocalHangup => write!(f, "hung up"),
            EndReason::RemoteHangup => write!(f, "remote hung up"),
            EndReason::Cancelled => write!(f, "caller cancelled"),
            EndReason::Busy => write!(f, "busy"),
            EndReason::Declined => write!(f, "declined"),
            EndReason::NotFound => write!(f, "not found"),
            EndReason::Timeout => write!(f, "no answer (timeout)"),
            EndReason::NoCommonCodec => write!(f, "no common audio codec"),
            EndReason::AuthFailed => write!(f, "authentication failed: check user name and password"),
            EndReason::SessionExpired => write!(f, "session timer expired"),
            EndReason::PinRefused => write!(f, "the meeting PIN was refused"),
            EndReason::NotEncrypted => write!(f, "the far end does not support encryption"),
            EndReason::MediaTimeout { secs } => write!(f, "no media from the far end for {secs} s (RTP timeout)"),
            EndReason::Refused(why) | EndReason::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// Why we turn an incoming call away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Another call is in progress.
    Busy,
    /// Someone pressed hang-up while it rang.
    Declined,
}

/// The answer to a command, sent straight to whoever asked (a D-Bus caller, the room).
pub type Reply = oneshot::Sender<Result<(), CallError>>;

/// What the room asks of a backend.
#[derive(Debug)]
pub enum Command {
    /// Call `to` as call `id`. The backend answers `reply` once the call is under way (or
    /// could not start), then reports `Started` (or `DialFailed`).
    Dial {
        id: CallId,
        to: Destination,
        reply: Reply,
    },
    Answer {
        id: CallId,
        reply: Reply,
    },
    Reject {
        id: CallId,
        why: Rejection,
    },
    /// Ends the call: cancels it before it is answered, hangs up after.
    Hangup {
        id: CallId,
        reply: Reply,
    },
    Hold {
        id: CallId,
        on: bool,
        reply: Reply,
    },
    /// DTMF digits (`0-9 * # A-D`, `,` = 1 s pause), in-band events where the call has them.
    Dtmf {
        id: CallId,
        digits: String,
        reply: Reply,
    },
    /// Starts (`on`) or stops sending and receiving video in an established call, by a new
    /// offer to the far end.
    Video {
        id: CallId,
        on: bool,
        reply: Reply,
    },
    /// The room wants to present into call `id` (`on`: ask for the floor and send the content
    /// input once granted) or stops (release it). Calls without a presentation ignore it.
    Present {
        id: CallId,
        on: bool,
    },
    /// The room's microphones: every call of the backend sends silence while muted.
    SetMuted(bool),
    /// End every call and stop; answered when done.
    Shutdown(oneshot::Sender<()>),
}

/// What a backend reports to the room.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A call exists: an outgoing one under way, or an incoming one ringing here (`answer`:
    /// the caller asked to be answered at once, e.g. an intercom `Call-Info`).
    Started {
        id: CallId,
        info: CallInfo,
        answer: bool,
    },
    /// A dial that never became a call.
    DialFailed {
        id: CallId,
        error: CallError,
    },
    /// The call's state, codecs or encryption changed.
    Changed {
        id: CallId,
        info: CallInfo,
    },
    Stats {
        id: CallId,
        stats: CallStats,
    },
    Ended {
        id: CallId,
        reason: EndReason,
    },
    /// The backend's account registration: `text` for `Room1.Registration`, `error` when it
    /// failed (shown as `LastError`).
    Registration {
        backend: &'static str,
        text: String,
        error: Option<String>,
    },
}

/// Where backends send their events; one for all of them.
pub type EventSender = mpsc::Sender<Event>;

/// A started backend, as the room sees it.
pub struct Backend {
    /// Short name for people and logs ("SIP").
    pub name: &'static str,
    /// What its calls are (incoming ones are matched to it by this).
    pub protocol: Protocol,
    /// The destinations it takes.
    pub accepts: fn(&Destination) -> bool,
    /// `Err(reason)`: it could not start; dials it would take fail with that reason.
    pub commands: Result<mpsc::Sender<Command>, String>,
    /// How to reach the room through it (`sip:room@192.0.2.10:5060`), "" if none.
    pub address: String,
    pub heartbeat: Option<Heartbeat>,
}

/// A backend's sign of life: it beats from its own loop at least every [`Heartbeat::PERIOD`];
/// the room pings the systemd watchdog only while every backend's beat is fresh, so a stuck
/// backend gets huisd restarted like a stuck room would.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds from `origin` to the last beat.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { origin: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }
}

impl Heartbeat {
    /// How often a backend beats.
    pub const PERIOD: Duration = Duration::from_secs(1);

    pub fn beat(&self) {
        self.last.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A heartbeat whose last beat was `age` ago.
    #[cfg(test)]
    pub fn stale_for_tests(age: Duration) -> Heartbeat {
        let origin = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        Heartbeat { origin, last: Arc::new(AtomicU64::new(0)) }
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.origin.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests;
