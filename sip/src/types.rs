//! Inputs, outputs, configuration and events of the [`crate::UserAgent`].

use crate::dtmf::{DtmfError, DtmfItem};
use crate::framing::{FrameError, Limits};
use crate::sdp::{Codec, SdpError};
use crate::transaction::Timers;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;
use thiserror::Error;

/// SIP transport of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP: unreliable, the transactions retransmit.
    Udp,
    /// TCP: reliable, stream framed by `Content-Length`.
    Tcp,
    /// TLS over TCP (`sips:`, `;transport=tls`): framed like TCP; the shell does the TLS.
    Tls,
}

impl TransportKind {
    /// True for stream transports that do not lose messages.
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp | TransportKind::Tls)
    }

    /// The token used in Via (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter value (`udp`, `tcp`, `tls`).
    pub fn param(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }

    /// The transport a `transport=` value names (case-insensitive); `None` for others (SCTP, WS).
    pub fn from_param(v: &str) -> Option<TransportKind> {
        [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
            .into_iter()
            .find(|t| v.eq_ignore_ascii_case(t.param()))
    }

    /// The port a URI without one means: 5061 for TLS (RFC 3261 §19.1.2), else 5060.
    pub fn default_port(self) -> u16 {
        if self == TransportKind::Tls { 5061 } else { 5060 }
    }
}

/// What an outgoing call asks for beyond its target and SDP ([`crate::UserAgent::invite_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteOptions {
    /// Extra headers on the INVITE (a gateway's `X-PIN`). Names must be tokens and values one
    /// line of printable text; the UA refuses the call otherwise.
    pub headers: Vec<(String, String)>,
    /// Ask for a session timer (RFC 4028) of this many seconds with us as refresher
    /// (`Session-Expires: N;refresher=uac`). `None`: only `Supported: timer`, the peer decides.
    pub session_expires: Option<u32>,
    /// How long after the call is up the dial string's DTMF digits start (a gateway's prompt
    /// is played first).
    pub dtmf_delay: std::time::Duration,
}

/// A resolved next hop: where to send and how. Name resolution (RFC 3263 NAPTR/SRV/A) is the
/// shell's job; the core only handles IP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// IP address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: TransportKind,
}

/// Bytes received from the network.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// One UDP datagram.
    Datagram {
        /// Sender.
        from: SocketAddr,
        /// Local address it arrived on.
        to: SocketAddr,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// Bytes read from a TCP or TLS connection with peer `from` (any split of the stream; for
    /// TLS, the decrypted bytes).
    Stream {
        /// Remote end of the connection.
        from: SocketAddr,
        /// Local end.
        to: SocketAddr,
        /// [`TransportKind::Tcp`] or [`TransportKind::Tls`]: what replies and requests on this
        /// connection say in Via and Contact.
        transport: TransportKind,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The TCP connection with `from` was closed; its partial data is dropped.
    StreamClosed {
        /// Remote end of the connection.
        from: SocketAddr,
    },
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to (for TCP: the connection to this peer, opened if none exists).
    pub dest: SocketAddr,
    /// How.
    pub transport: TransportKind,
    /// One whole SIP message.
    pub bytes: Vec<u8>,
}

/// Our handle for a call (not the SIP Call-ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// Index of an account in [`Config::accounts`].
pub type AccountId = usize;

/// A SIP account: address of record, registrar and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Address of record, e.g. `sip:room1@example.org`.
    pub aor: String,
    /// Registrar request URI, e.g. `sip:example.org`.
    pub registrar: String,
    /// Resolved address of the registrar or outbound proxy; calls placed through this account
    /// use it too unless the dial gives another next hop.
    pub proxy: Destination,
    /// Digest user name.
    pub username: String,
    /// Digest password.
    pub password: String,
    /// Requested registration lifetime in seconds.
    pub expires: u32,
}

/// Configuration of the user agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// User part of our Contact and (without account) From.
    pub user: String,
    /// Domain for From when no account is used, and for Call-IDs.
    pub domain: String,
    /// Display name in From.
    pub display_name: Option<String>,
    /// Address and port we listen on (Via sent-by and Contact); the same port for UDP and TCP.
    pub local_addr: SocketAddr,
    /// The port of the shell's TLS listener, written in Via and Contact for TLS; `None`: the
    /// port of `local_addr` (no listener: requests reach us over the flows we opened).
    pub tls_port: Option<u16>,
    /// Accounts; the first one is used for outgoing calls.
    pub accounts: Vec<Account>,
    /// Answer incoming calls at once (the event says so; the call manager answers).
    pub auto_answer: bool,
    /// Audio codecs in order of preference.
    pub codecs: Vec<Codec>,
    /// Offer and accept RFC 4733 telephone-event.
    pub telephone_event: bool,
    /// `User-Agent` / `Server` header value.
    pub user_agent: String,
    /// Bounds on received messages.
    pub limits: Limits,
    /// T1, T2, T4.
    pub timers: Timers,
    /// Session-Expires we grant when the peer asks without a value, seconds (RFC 4028).
    pub session_expires: u32,
    /// Smallest session interval we accept (Min-SE), seconds; at least 90.
    pub min_se: u32,
    /// Seed for tags, branches, Call-IDs and cnonces. The shell passes random bits.
    pub rng_seed: u64,
    /// An incoming call not answered or rejected within this time gets 480 and ends with
    /// [`EndReason::Timeout`], so a forgotten call never lingers.
    pub ring_timeout: std::time::Duration,
    /// Most calls at once (ringing, up or being set up); further INVITEs get 486.
    pub max_calls: usize,
    /// Most server transactions at once; requests beyond are dropped (flood guard).
    pub max_server_transactions: usize,
    /// A peer's new offer in an established call (re-INVITE or UPDATE with SDP) is handed to
    /// the shell as [`Event::Reoffer`], which answers it with
    /// [`crate::UserAgent::answer_reoffer`] (it may add or drop video, follow moved media). When
    /// false the UA answers by itself with our last SDP, only the direction changed (hold).
    pub shell_answers_reoffers: bool,
    /// When a failed registration is tried again (RFC 5626 §4.5 style back-off with jitter).
    pub register_retry: RetryBackoff,
}

/// Back-off after failed registrations: after the `n`th failure in a row, wait a random time
/// between half and all of `min(max, base × 2^(n-1))` (RFC 5626 §4.5, whose base is 30 s when
/// every flow failed and whose maximum is 1800 s). Jitter spreads the rooms of a building that
/// lost their registrar together, so its restart is not met by all of them at the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// Upper bound of the first wait.
    pub base: std::time::Duration,
    /// Upper bound of any wait.
    pub max: std::time::Duration,
}

impl Default for RetryBackoff {
    /// 30 s as RFC 5626 for "all flows failed"; at most 15 min rather than 30: a room that
    /// cannot take calls is noticed by people, and a meeting is shorter than half an hour.
    fn default() -> Self {
        RetryBackoff { base: std::time::Duration::from_secs(30), max: std::time::Duration::from_secs(900) }
    }
}

impl RetryBackoff {
    /// The longest wait after the `failures`th failure in a row (1 for the first).
    pub fn ceiling(&self, failures: u32) -> std::time::Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The wait after the `failures`th failure in a row, `random` picking where between half
    /// the ceiling and the ceiling.
    pub fn wait(&self, failures: u32, random: u64) -> std::time::Duration {
        let ceiling = self.ceiling(failures);
        let half = ceiling / 2;
        let span = (ceiling - half).as_millis() as u64;
        half + std::time::Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) })
    }
}

impl Config {
    /// A configuration with defaults for everything but identity and address.
    pub fn new(user: &str, domain: &str, local_addr: SocketAddr) -> Config {
        Config {
            user: user.into(),
            domain: domain.into(),
            display_name: None,
            local_addr,
            tls_port: None,
            accounts: Vec::new(),
            auto_answer: false,
            codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            user_agent: concat!("huis/", env!("CARGO_PKG_VERSION")).into(),
            limits: Limits::default(),
            timers: Timers::default(),
            session_expires: 1800,
            min_se: 90,
            rng_seed: 0x5eed,
            ring_timeout: std::time::Duration::from_secs(120),
            max_calls: 4,
            max_server_transactions: 512,
            shell_answers_reoffers: false,
            register_retry: RetryBackoff::default(),
        }
    }
}

/// Why a registration is not in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationFailure {
    /// Credentials were refused (a second challenge, or 403, after we answered one). No retry
    /// happens until [`crate::UserAgent::register`] is called again (e.g. after the account
    /// changed).
    AuthFailed,
    /// No answer from the registrar.
    Timeout,
    /// The registrar answered with this final status.
    Rejected(u16, String),
    /// The shell could not reach the registrar (connection refused, TLS handshake or
    /// certificate refused: [`crate::UserAgent::transport_failed`]). The shell knows the details.
    Transport,
    /// The challenge could not be answered (unsupported algorithm or malformed).
    BadChallenge(String),
}

/// Registration state of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not registered (never, or after unregistering).
    Unregistered,
    /// A REGISTER is under way.
    Registering,
    /// Registered for `expires` seconds; a refresh is scheduled.
    Registered {
        /// Granted lifetime in seconds.
        expires: u32,
    },
    /// Failed; `retry_at` is when the UA tries again by itself (never for `AuthFailed`).
    Failed {
        /// Why.
        reason: RegistrationFailure,
        /// Next automatic attempt.
        retry_at: Option<Instant>,
        /// Failures in a row, this one included (the back-off's exponent; 0 for a failure
        /// that is not retried).
        failures: u32,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// 486 Busy Here / 600 Busy Everywhere.
    Busy,
    /// 603 Decline.
    Declined,
    /// 404 Not Found / 604 Does Not Exist Anywhere.
    NotFound,
    /// Our credentials were refused.
    AuthFailed,
    /// No answer: transaction timeout, 408, or no ACK to our 2xx.
    Timeout,
    /// No common codec (488/606 from the peer, or its answer had none of ours).
    NoCommonCodec,
    /// The peer hung up (BYE).
    RemoteHangup,
    /// We hung up (BYE, or CANCEL of our outgoing call).
    LocalHangup,
    /// The caller cancelled an incoming call before it was answered.
    Cancelled,
    /// Session timer (RFC 4028) expired without refresh.
    SessionExpired,
    /// The next hop could not be reached ([`crate::UserAgent::transport_failed`]).
    Transport,
    /// Any other final status.
    Other(u16, String),
}

impl EndReason {
    /// Maps a final failure status of an INVITE to a reason.
    pub fn from_status(code: u16, reason: &str) -> EndReason {
        match code {
            486 | 600 => EndReason::Busy,
            603 => EndReason::Declined,
            404 | 604 => EndReason::NotFound,
            408 => EndReason::Timeout,
            488 | 606 => EndReason::NoCommonCodec,
            401 | 407 => EndReason::AuthFailed,
            _ => EndReason::Other(code, reason.to_string()),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Busy => write!(f, "busy"),
            EndReason::Declined => write!(f, "declined"),
            EndReason::NotFound => write!(f, "not found"),
            EndReason::AuthFailed => {
                write!(f, "authentication failed: check user name and password")
            }
            EndReason::Timeout => write!(f, "no answer (timeout)"),
            EndReason::NoCommonCodec => write!(f, "no common audio codec"),
            EndReason::RemoteHangup => write!(f, "remote hung up"),
            EndReason::LocalHangup => write!(f, "hung up"),
            EndReason::Cancelled => write!(f, "caller cancelled"),
            EndReason::SessionExpired => write!(f, "session timer expired"),
            EndReason::Transport => write!(f, "the next hop could not be reached"),
            EndReason::Other(c, r) => write!(f, "{c} {r}"),
        }
    }
}

/// What the UA reports to the call manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An account's registration changed.
    Registration {
        /// Which account.
        account: AccountId,
        /// New state.
        state: RegistrationState,
    },
    /// A new incoming call is ringing (180 was sent). Answer with
    /// [`crate::UserAgent::answer`] or refuse with [`crate::UserAgent::reject`].
    IncomingCall {
        /// Handle.
        call: CallId,
        /// The caller's From value (display name and URI).
        from: String,
        /// The SDP offer, if the INVITE had one (already checked to contain a common codec).
        remote_sdp: Option<String>,
        /// The configuration asks to answer at once.
        auto_answer: bool,
        /// The transport the INVITE arrived on (TLS: the hop to the caller is encrypted).
        transport: TransportKind,
    },
    /// Our outgoing call got 180 or 183, possibly with early media SDP.
    CallRinging {
        /// Handle.
        call: CallId,
        /// 180, 183, ...
        code: u16,
        /// Early media SDP (answer) if any.
        early_sdp: Option<String>,
    },
    /// The call is up (2xx/ACK exchanged).
    CallEstablished {
        /// Handle.
        call: CallId,
        /// The peer's SDP (answer for outgoing, offer for incoming).
        remote_sdp: Option<String>,
    },
    /// The peer's SDP changed (re-INVITE or UPDATE, or the answer to ours).
    CallUpdated {
        /// Handle.
        call: CallId,
        /// The new remote SDP.
        remote_sdp: String,
    },
    /// The peer sent a new offer in an established call (with
    /// [`Config::shell_answers_reoffers`]): answer it with
    /// [`crate::UserAgent::answer_reoffer`] before the next input; until then further offers
    /// get 500 with Retry-After. Hold and resume events follow the answer.
    Reoffer {
        /// Handle.
        call: CallId,
        /// The peer's offer.
        remote_sdp: String,
    },
    /// The peer put us on hold (`sendonly`/`inactive`).
    CallHeld {
        /// Handle.
        call: CallId,
    },
    /// The peer took us off hold.
    CallResumed {
        /// Handle.
        call: CallId,
    },
    /// Our re-INVITE (hold/resume) was refused; the session is unchanged.
    CallUpdateFailed {
        /// Handle.
        call: CallId,
        /// Final status.
        code: u16,
    },
    /// A DTMF digit arrived in SIP INFO.
    DtmfInfo {
        /// Handle.
        call: CallId,
        /// `0-9*#A-D`.
        digit: char,
        /// Duration in milliseconds.
        duration_ms: u32,
    },
    /// The peer asked for a video keyframe by SIP INFO (`application/media_control+xml`,
    /// `picture_fast_update`, RFC 5168).
    PictureFastUpdate {
        /// Handle.
        call: CallId,
    },
    /// The dial string carried digits to send now that the call is up. If `rfc4733` is true the
    /// media pipeline sends them as telephone-events; otherwise the UA is sending them by INFO.
    AutoDtmf {
        /// Handle.
        call: CallId,
        /// Digits and pauses.
        digits: Vec<DtmfItem>,
        /// True when telephone-event was negotiated.
        rfc4733: bool,
    },
    /// The call is over; the handle is no longer valid.
    CallEnded {
        /// Handle.
        call: CallId,
        /// Why.
        reason: EndReason,
    },
    /// A TCP stream sent bytes we cannot frame: close that connection.
    CloseStream {
        /// Remote end of the connection.
        peer: SocketAddr,
        /// Why.
        error: FrameError,
    },
}

/// Errors of commands given to the UA.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UaError {
    /// No such call (ended or never existed).
    #[error("no such call {0}")]
    UnknownCall(CallId),
    /// No such account.
    #[error("no account number {0}")]
    UnknownAccount(AccountId),
    /// The destination URI cannot be used.
    #[error("invalid destination {0:?}: {1}")]
    InvalidTarget(String, String),
    /// The DTMF string is invalid.
    #[error(transparent)]
    Dtmf(#[from] DtmfError),
    /// Local SDP is invalid.
    #[error("invalid local SDP: {0}")]
    Sdp(#[from] SdpError),
    /// The command does not fit the call's state.
    #[error("{0}")]
    InvalidState(&'static str),
}
