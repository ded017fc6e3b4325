//! The SIP backend: the tokio shell around the sans-IO SIP core (`huis_sip`), and the RTP media
//! of its calls.
//!
//! It runs as a task of its own. Socket reader tasks ([`net`]) hand it received bytes; it feeds
//! them to [`huis_sip::UserAgent`] with the current time, sends what the UA asks, wakes it at its
//! deadline, binds RTP ports before writing SDP, starts the GStreamer sessions once SDP is
//! negotiated, and turns the UA's events into [`call::Event`]s for the room. The room's requests
//! arrive as [`call::Command`]s. It beats a [`Heartbeat`] from its loop, so the systemd
//! watchdog covers it.

pub mod bfcp;
mod conns;
mod content;
mod locate;
mod net;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use huis_sip::sdp::{Codec, Direction as SdpDirection, LocalMedia, Negotiated, SdpError, SessionDescription};
use huis_sip::sdp_security::{
    CryptoSuite, EncryptionPolicy, Fingerprint, Keying, LocalSecurity, MAX_KEY_LEN, MediaSecurity, RtpProto,
    SecurityError, SrtpKey,
};
use huis_sip::sdp_video::{LocalVideo, NegotiatedVideo};
use huis_sip::{Account, EndReason as SipEnd, Event as UaEvent, Input, RegistrationFailure, RegistrationState};
use huis_sip::{InviteOptions, TransportKind, UserAgent};
use tokio::sync::mpsc;

use crate::audio::{CallAudio, CallAudioSlot};
use crate::call::{
    self, Backend, CallError, CallId, CallIds, CallInfo, CallState, CallStats, Destination, Direction, EndReason,
    EventSender, Heartbeat, Protocol, Rejection,
};
use crate::config::Config;
use crate::media::{
    AudioCodec, AudioSession, AudioSessionParams, CodecParams, Direction as MediaDirection, DtlsCertificate,
    DtlsParams, MediaEvent, Protection, RtpSockets, RtxPayloadTypes, SrtpParams, SrtpProfile, TelephoneEvent,
    VideoFeedback, VideoSession, VideoSessionParams,
};
use content::{CallContent, FloorChange};
use locate::{Allowed, Target};
use net::{NetInput, SipSockets, TlsOptions, TransportError};

pub use stats::{stats_map, video_stats_map};

mod stats;

/// Why SIP could not start or a SIP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP on {what}: {why}")]
    Listen { what: String, why: String },
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("{key}: {why}")]
    Config { key: &'static str, why: String },
    #[error(
        "call.sip_tls is \"required\": {what} would be signalled over {transport}, not TLS (use sips: or ;transport=tls)"
    )]
    NotTls { what: String, transport: &'static str },
}

/// What a call needs to send and receive video: the camera, the encoder and the limits.
#[derive(Clone)]
pub struct VideoSetup {
    /// gst-launch description of the camera's live source (from hal).
    pub source: String,
    /// The H.264 encoder element hal picked.
    pub encoder: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub max_kbps: u32,
    pub min_kbps: u32,
    /// `video.rtcp_feedback`.
    pub rtcp_feedback: bool,
}

impl VideoSetup {
    /// The H.264 level our configured size and rate need (H.264 Table A-1: MaxFS, MaxMBPS).
    pub fn level_idc(&self) -> u8 {
        let mbs = self.width.div_ceil(16) * self.height.div_ceil(16);
        let mbps = mbs * self.framerate;
        [(30u8, 1620u32, 40_500u32), (31, 3600, 108_000), (32, 5120, 216_000), (40, 8192, 245_760), (42, 8704, 522_240)]
            .into_iter()
            .find(|&(_, fs, rate)| mbs <= fs && mbps <= rate)
            .map(|(l, _, _)| l)
            .unwrap_or(51)
    }
}

/// The destinations SIP takes.
pub fn accepts(d: &Destination) -> bool {
    matches!(d, Destination::Sip { .. } | Destination::Tel { .. } | Destination::Visio { .. })
}

/// A Visio call: how it gives the meeting's PIN to the gateway, and when it did.
///
/// What the gateway does, from LiveKit's SIP service (github.com/livekit/sip, `pkg/sip/inbound.go`,
/// `pinPrompt`, read at commit be5d3f5), which Visio's gateway forks: a meeting that needs a PIN
/// is answered at once (200 OK, so the "enter PIN" prompt can be played), then DTMF digits are
/// gathered up to `#` (at most 16); a wrong PIN plays a "wrong PIN" prompt and the call is closed
/// with a plain BYE (`closeWithTerm(… "wrong-pin")` → `CloseWithStatus`, which sends BYE with no
/// Reason: "TODO: add cause"). After the room is joined, digits are forwarded into the room as
/// data (`handleDTMF`, `forwardDTMF`), never read as a PIN again. `X-PIN` is the fork's; nothing
/// in its answer says whether it took the header, so `auto` sends the DTMF PIN too, after the
/// wait (a gateway that took the header passes the digits to the room; that Visio's web clients
/// ignore them is assumed, not checked).
#[derive(Debug, Clone)]
struct VisioCall {
    pin: String,
    /// Send the PIN by DTMF (`visio.pin_dtmf` is not `never`).
    dtmf: bool,
    opts: InviteOptions,
    /// When the PIN was last given (the DTMF's end, or the answer when only `X-PIN` gave it):
    /// a BYE from the gateway within [`PIN_REFUSED_WINDOW`] of it is a refusal.
    given_at: Option<Instant>,
}

/// How soon after our PIN a gateway's BYE means the PIN was refused. LiveKit's gateway plays
/// its short "wrong PIN" prompt, then hangs up; a meeting that was joined lasts much longer.
const PIN_REFUSED_WINDOW: Duration = Duration::from_secs(15);

impl VisioCall {
    /// The dial string and options the UA is given: the PIN as `;dtmf=…%23` (sent by the UA
    /// after the wait) only here, never in anything logged.
    fn invite_args(&self, target: &str) -> (String, InviteOptions) {
        let t = if self.dtmf { format!("{target};dtmf={}%23", self.pin) } else { target.to_owned() };
        (t, self.opts.clone())
    }
}

/// The UA's dial string and options for a call (plain SIP: the target as it is).
fn invite_args(visio: Option<&VisioCall>, target: &str) -> (String, InviteOptions) {
    visio.map(|v| v.invite_args(target)).unwrap_or_else(|| (target.to_owned(), InviteOptions::default()))
}

/// Binds the SIP sockets and starts the backend's task. A SIP that cannot start is returned as a
/// backend that is down, with the reason (the room shows it, and dials say it).
pub async fn start(
    cfg: &Config,
    audio: CallAudioSlot,
    video: Option<VideoSetup>,
    ids: CallIds,
    events: EventSender,
) -> Backend {
    let heartbeat = Heartbeat::default();
    match SipBackend::new(cfg, audio, video, ids, events, heartbeat.clone()).await {
        Ok((backend, inputs)) => {
            let address = backend.sip_uri();
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(backend.run(rx, inputs));
            Backend {
                name: "SIP",
                protocol: Protocol::Sip,
                accepts,
                commands: Ok(tx),
                address,
                heartbeat: Some(heartbeat),
            }
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!("SIP cannot start: {reason}");
            Backend {
                name: "SIP",
                protocol: Protocol::Sip,
                accepts,
                commands: Err(reason),
                address: String::new(),
                heartbeat: None,
            }
        }
    }
}

/// One call and what belongs to it.
struct Call {
    /// The room-wide id (`/org/huis/Room1/Calls/<n>`).
    id: CallId,
    /// What the room is told; `remote` is where the call went (as dialled, without `;dtmf=`) or
    /// who called.
    info: CallInfo,
    /// Our side of the SDP.
    local: LocalMedia,
    sockets: Option<RtpSockets>,
    media: Option<AudioSession>,
    negotiated: Option<Negotiated>,
    /// Video: what we offer/accept (None: audio only), its ports until started, the session.
    local_video: Option<LocalVideo>,
    video_sockets: Option<RtpSockets>,
    video: Option<VideoSession>,
    /// The peer takes no RTCP PLI/FIR: our keyframe requests go by SIP INFO (RFC 5168). The
    /// video session's count of requests already passed on.
    keyframes_by_info: bool,
    keyframe_requests_seen: u64,
    /// Pending remote offer of an incoming call, until answered.
    remote_offer: Option<String>,
    established: bool,
    held_by_us: bool,
    held_by_peer: bool,
    /// `o=` version of our last SDP.
    sdp_version: u64,
    /// Where an outgoing call went, for the one best-effort retry with plain RTP after the far
    /// end refused our encrypted offer; `None` once retried (or for incoming calls).
    redial: Option<(String, huis_sip::Destination)>,
    /// Why the call ends when we end it ourselves for a reason of our own (policy, DTLS).
    end_reason: Option<EndReason>,
    /// The video's agreed security, kept for re-offers (the audio's is in `negotiated`).
    video_security: Option<MediaSecurity>,
    /// Our offer that starts (true) or stops (false) video, until its answer.
    video_change: Option<bool>,
    /// The session has had a video m-line (our later offers keep it, at port 0 if need be).
    had_video: bool,
    /// Where our requests for the call go first (a failed connection there ends it).
    next_hop: Option<SocketAddr>,
    /// Outgoing: the dial string, our offer, and the servers not tried yet (RFC 3263 order):
    /// a call no server answered moves on to the next.
    retry: Option<(String, String, Vec<Target>)>,
    /// A Visio meeting's PIN and how it is given.
    visio: Option<VisioCall>,
    /// The presentation channel (slides and BFCP), when both sides have one.
    content: Option<CallContent>,
}

/// A dial whose destination is being looked up.
struct Resolved {
    id: CallId,
    visio: Option<VisioCall>,
    target: String,
    remote: String,
    reply: call::Reply,
    /// The next hops to try, in order (RFC 3263), with the name their certificate must carry.
    hop: Result<Vec<Target>, SipError>,
}

struct SipBackend {
    ua: UserAgent,
    sockets: SipSockets,
    advertised: IpAddr,
    codecs: Vec<Codec>,
    rtp_ports: std::ops::RangeInclusive<u16>,
    calls: HashMap<huis_sip::CallId, Call>,
    /// Dials whose destination is being looked up; removed by a hang-up before it is done.
    resolving: HashSet<CallId>,
    resolved_tx: mpsc::Sender<Resolved>,
    resolved_rx: Option<mpsc::Receiver<Resolved>>,
    audio: CallAudioSlot,
    ids: CallIds,
    events: EventSender,
    heartbeat: Heartbeat,
    muted: bool,
    video: Option<VideoSetup>,
    /// For `tel:` destinations: the account's domain, when there is an account.
    account_domain: Option<String>,
    /// `call.media_encryption`.
    policy: EncryptionPolicy,
    /// This run's DTLS certificate; `None`: no DTLS-SRTP (none could be made).
    dtls: Option<DtlsCertificate>,
    /// `call.sip_tls = "required"`.
    tls_required: bool,
    /// `call.media_timeout`; `None`: never.
    media_timeout: Option<Duration>,
    /// When a closed registrar flow last made us register again.
    flow_reregistered: Option<Instant>,
    /// The registrar's servers (RFC 3263), in order, and the one in use.
    registrar_targets: Vec<Target>,
    registrar_index: usize,
    /// The last transport failure per next hop: what a registration or call failure says.
    transport_errors: HashMap<SocketAddr, TransportError>,
    resolver: Option<std::sync::Arc<hickory_resolver::TokioResolver>>,
    /// `[visio]`.
    visio: crate::config::Visio,
    /// Floor changes of the calls' BFCP links (see [`content`]).
    floors_tx: mpsc::Sender<FloorChange>,
    floors_rx: Option<mpsc::Receiver<FloorChange>>,
}

/// At most one immediate registration per this period after the registrar closed our flow.
const FLOW_REREGISTER: Duration = Duration::from_secs(30);

fn codec_of(name: &str) -> Option<Codec> {
    match name {
        "opus" => Some(Codec::Opus),
        "g722" => Some(Codec::G722),
        "pcmu" => Some(Codec::Pcmu),
        "pcma" => Some(Codec::Pcma),
        _ => None,
    }
}

fn media_codec(c: Codec) -> AudioCodec {
    match c {
        Codec::Opus => AudioCodec::Opus,
        Codec::G722 => AudioCodec::G722,
        Codec::Pcmu => AudioCodec::Pcmu,
        Codec::Pcma => AudioCodec::Pcma,
    }
}

fn srtp_profile(s: CryptoSuite) -> SrtpProfile {
    match s {
        CryptoSuite::AesCm128HmacSha1_80 => SrtpProfile::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => SrtpProfile::AesCm128HmacSha1_32,
        CryptoSuite::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        CryptoSuite::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
    }
}

/// `Call1.MediaEncryption` for the call's streams (audio first; video when it runs).
/// Our new offer in an established call: its m-lines in the order the session has them, video
/// at port 0 when the session had video but has none now (m-lines are never removed, RFC 3264
/// §8), the DTLS roles, SDES suites and rtcp-mux the call agreed, and the next `o=` version.
fn session_offer(call: &mut Call, direction: SdpDirection) -> SessionDescription {
    let mut local = call.local.clone();
    local.direction = direction;
    call.sdp_version += 1;
    let mut sdp = local.offer_with_video(call.local_video.as_ref());
    sdp.origin.session_version = call.sdp_version;
    let agreed = [call.negotiated.as_ref().map(|n| &n.security), call.video_security.as_ref()];
    for (m, agreed) in sdp.media.iter_mut().zip(agreed) {
        if let Some(a) = agreed {
            LocalSecurity::keep_agreed(m, a);
        }
    }
    if call.local_video.is_none() && call.had_video && sdp.media.len() == 1 {
        let proto = sdp.media[0].proto.clone();
        sdp.media.push(huis_sip::sdp::Media {
            kind: "video".into(),
            port: 0,
            proto,
            formats: vec!["96".into()],
            connection: None,
            attributes: vec![],
            other: vec![],
        });
    }
    if let Some(c) = &call.content {
        sdp.media.extend(c.offer_media(direction, &call.local.security));
    }
    sdp
}

/// A call's first offer: audio, video when there is some, and the presentation channel.
fn first_offer(local: &LocalMedia, video: Option<&LocalVideo>, content: Option<&CallContent>) -> String {
    let mut sdp = local.offer_with_video(video);
    if let Some(c) = content {
        sdp.media.extend(c.offer_media(local.direction, &local.security));
    }
    sdp.to_text()
}

/// Stops the call's video and forgets its ports and keys; the call goes on audio only.
fn stop_video(call: &mut Call) {
    if let Some(session) = call.video.take() {
        session.stop();
    }
    (call.local_video, call.video_sockets, call.video_security) = (None, None, None);
    call.info.video_codec.clear();
}

fn encryption_label(audio: &Protection, video: Option<&Protection>) -> String {
    match video {
        Some(v) if v.label() != audio.label() => format!("audio {}; video {}", audio.label(), v.label()),
        _ => audio.label(),
    }
}

fn codec_label(c: Codec) -> String {
    format!("{}/{}", c.encoding(), c.clock_rate())
}

fn media_direction(d: SdpDirection) -> MediaDirection {
    match d {
        SdpDirection::SendRecv => MediaDirection::SendRecv,
        SdpDirection::SendOnly => MediaDirection::SendOnly,
        SdpDirection::RecvOnly => MediaDirection::RecvOnly,
        SdpDirection::Inactive => MediaDirection::Inactive,
    }
}

fn end_reason(r: SipEnd) -> EndReason {
    match r {
        SipEnd::Busy => EndReason::Busy,
        SipEnd::Declined => EndReason::Declined,
        SipEnd::NotFound => EndReason::NotFound,
        SipEnd::AuthFailed => EndReason::AuthFailed,
        SipEnd::Timeout => EndReason::Timeout,
        SipEnd::NoCommonCodec => EndReason::NoCommonCodec,
        SipEnd::RemoteHangup => EndReason::RemoteHangup,
        SipEnd::LocalHangup => EndReason::LocalHangup,
        SipEnd::Cancelled => EndReason::Cancelled,
        SipEnd::SessionExpired => EndReason::SessionExpired,
        SipEnd::Transport => EndReason::Failed("the next hop could not be reached".into()),
        other @ SipEnd::Other(..) => EndReason::Refused(other.to_string()),
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_le_bytes(b)
}

/// `%`-escapes what a `;dtmf=` URI parameter cannot hold literally.
fn escape_dtmf(digits: &str) -> String {
    digits.replace('#', "%23")
}

impl SipBackend {
    /// Binds the SIP sockets and builds the user agent from the configuration.
    async fn new(
        cfg: &Config,
        audio: CallAudioSlot,
        video: Option<VideoSetup>,
        ids: CallIds,
        events: EventSender,
        heartbeat: Heartbeat,
    ) -> Result<(SipBackend, mpsc::Receiver<NetInput>), SipError> {
        let listen: SocketAddr = cfg
            .sip
            .listen
            .parse()
            .map_err(|e| SipError::Config { key: "sip.listen", why: format!("'{}': {e}", cfg.sip.listen) })?;
        let advertised = if !cfg.sip.public_address.is_empty() {
            cfg.sip.public_address.parse().map_err(|e| SipError::Config {
                key: "sip.public_address",
                why: format!("'{}': {e}", cfg.sip.public_address),
            })?
        } else if !listen.ip().is_unspecified() {
            listen.ip()
        } else {
            net::first_interface_address().unwrap_or(IpAddr::from([127, 0, 0, 1]))
        };
        let (input_tx, input_rx) = mpsc::channel(256);
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let tls = TlsOptions {
            ca_file: nonempty(&cfg.sip.tls_ca_file),
            certificate: nonempty(&cfg.sip.tls_certificate).zip(nonempty(&cfg.sip.tls_key)),
            listen: cfg.sip.tls_listen.parse().ok(),
        };
        let keepalive =
            (cfg.sip.keepalive_interval > 0).then(|| Duration::from_secs(cfg.sip.keepalive_interval.into()));
        let mut sockets = SipSockets::bind(listen, &tls, keepalive, conns::ConnLimits::default(), input_tx).await?;
        let tls_required = cfg.call.sip_tls == "required";
        let resolver = match locate::system_resolver() {
            Ok(r) => Some(std::sync::Arc::new(r)),
            Err(e) => {
                tracing::warn!("no DNS resolver, only IP addresses can be reached: {e}");
                None
            }
        };
        let local_addr = SocketAddr::new(advertised, sockets.port());
        let mut ucfg = huis_sip::Config::new(&cfg.sip.user, &advertised.to_string(), local_addr);
        // A peer's re-offer may move its media or add or drop video: we answer it here.
        ucfg.shell_answers_reoffers = true;
        ucfg.tls_port = sockets.tls_port();
        ucfg.display_name = Some(cfg.room.name.clone());
        // Whether to answer is the room's decision (call.auto_answer, changeable live).
        ucfg.auto_answer = false;
        ucfg.codecs = cfg.call.audio_codecs.iter().filter_map(|c| codec_of(c)).collect();
        ucfg.rng_seed = random_u64();
        ucfg.register_retry.base = Duration::from_secs(cfg.sip.register_retry_base.into());
        let mut account_domain = None;
        let mut registrar_targets = Vec::new();
        if !cfg.account.registrar.is_empty() {
            let registrar = cfg.account.registrar.as_str();
            let default = match cfg.account.transport.as_str() {
                "tcp" => TransportKind::Tcp,
                "tls" => TransportKind::Tls,
                _ => TransportKind::Udp,
            };
            let allowed = if tls_required { Allowed::TlsOnly } else { Allowed::Any };
            let (domain, _, uri_transport) = net::uri_host(registrar).ok_or_else(|| SipError::Config {
                key: "account.registrar",
                why: format!("'{registrar}' is not a sip: URI"),
            })?;
            // An account's transport counts as if the URI said it (`;transport=`).
            let asked = uri_transport.unwrap_or(default);
            registrar_targets = if !cfg.account.proxy.is_empty() {
                let addr: SocketAddr = cfg.account.proxy.parse().map_err(|e| SipError::Config {
                    key: "account.proxy",
                    why: format!("'{}': {e}", cfg.account.proxy),
                })?;
                if tls_required && asked != TransportKind::Tls {
                    return Err(SipError::NotTls { what: cfg.account.proxy.clone(), transport: asked.param() });
                }
                vec![Target { addr, transport: asked, host: domain.clone() }]
            } else {
                // A transport set in the account is as if the URI said it: SRV for it only.
                let uri = if uri_transport.is_none() && cfg.account.transport != "udp" {
                    format!("{registrar};transport={}", asked.param())
                } else {
                    registrar.to_owned()
                };
                match &resolver {
                    Some(r) => locate::locate(r, &uri, default, allowed).await?,
                    None => locate::locate(&locate::system_resolver()?, &uri, default, allowed).await?,
                }
            };
            let first = registrar_targets
                .first()
                .cloned()
                .ok_or_else(|| SipError::Resolve { host: domain.clone(), why: "it has no address".into() })?;
            for t in &registrar_targets {
                sockets.set_name(t.addr, &t.host);
            }
            tracing::info!(
                registrar,
                targets = ?registrar_targets.iter().map(|t| format!("{}/{}", t.addr, t.transport.param())).collect::<Vec<_>>(),
                "registrar located"
            );
            for t in &registrar_targets {
                sockets.trust(t.addr.ip());
            }
            let host = registrar.split_once(':').map(|(_, r)| r).unwrap_or(registrar);
            let hostport = host.split(';').next().unwrap_or(host);
            ucfg.accounts.push(Account {
                aor: format!("sip:{}@{}", cfg.account.user, hostport.split(':').next().unwrap_or(hostport)),
                registrar: cfg.account.registrar.clone(),
                proxy: huis_sip::Destination { addr: first.addr, transport: first.transport },
                username: cfg.account.user.clone(),
                password: cfg.account.password.clone(),
                expires: cfg.account.expires,
            });
            ucfg.user = cfg.account.user.clone();
            ucfg.domain = domain.clone();
            account_domain = Some(domain);
        }
        let codecs = ucfg.codecs.clone();
        let policy = EncryptionPolicy::from_name(&cfg.call.media_encryption).unwrap_or_default();
        let dtls = if policy == EncryptionPolicy::Off {
            None
        } else {
            match tokio::task::spawn_blocking(DtlsCertificate::generate).await {
                Ok(Ok(c)) => Some(c),
                Ok(Err(e)) => {
                    tracing::warn!("no DTLS-SRTP for SIP calls: {e}");
                    None
                }
                Err(e) => {
                    tracing::warn!("no DTLS-SRTP for SIP calls: {e}");
                    None
                }
            }
        };
        let (resolved_tx, resolved_rx) = mpsc::channel(8);
        let (floors_tx, floors_rx) = mpsc::channel(16);
        let b = SipBackend {
            floors_tx,
            floors_rx: Some(floors_rx),
            ua: UserAgent::new(ucfg),
            sockets,
            advertised,
            codecs,
            rtp_ports: cfg.sip.rtp_port_min..=cfg.sip.rtp_port_max,
            calls: HashMap::new(),
            resolving: HashSet::new(),
            resolved_tx,
            resolved_rx: Some(resolved_rx),
            audio,
            ids,
            events,
            heartbeat,
            muted: false,
            video,
            account_domain,
            visio: cfg.visio.clone(),
            policy,
            dtls,
            tls_required,
            flow_reregistered: None,
            media_timeout: (cfg.call.media_timeout > 0).then(|| Duration::from_secs(cfg.call.media_timeout.into())),
            registrar_targets,
            registrar_index: 0,
            transport_errors: HashMap::new(),
            resolver,
        };
        tracing::info!(listen = %listen, contact = %local_addr, tls_required, "SIP ready (UDP, TCP, TLS)");
        Ok((b, input_rx))
    }

    /// How to call this room.
    fn sip_uri(&self) -> String {
        let c = self.ua.config();
        let host = match c.local_addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("sip:{}@{}:{}", c.user, host, c.local_addr.port())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<call::Command>, mut inputs: mpsc::Receiver<NetInput>) {
        let Some(mut resolved) = self.resolved_rx.take() else { return };
        let Some(mut floors) = self.floors_rx.take() else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut beat = tokio::time::interval(Heartbeat::PERIOD);
        let mut ticks = 0u64;
        if !self.ua.config().accounts.is_empty() {
            if let Err(e) = self.ua.register(Instant::now(), 0) {
                tracing::warn!(error = %e, "cannot register");
            }
            self.drain().await;
        }
        loop {
            let deadline = self.ua.poll_timeout();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(call::Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.command(cmd).await,
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some(input) = inputs.recv() => self.input(input).await,
                Some(r) = resolved.recv() => self.dial_resolved(r).await,
                Some(f) = floors.recv() => self.on_floor(f).await,
                _ = timer => {
                    self.ua.handle_timeout(Instant::now());
                    self.drain().await;
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.tick(ticks % 5 == 0).await;
                }
                _ = beat.tick() => self.heartbeat.beat(),
            }
        }
    }

    async fn input(&mut self, input: NetInput) {
        match input {
            NetInput::Datagram { from, to, bytes } => {
                self.ua.handle_input(Instant::now(), Input::Datagram { from, to, bytes: &bytes })
            }
            NetInput::Stream { from, to, transport, bytes } => {
                self.ua.handle_input(Instant::now(), Input::Stream { from, to, transport, bytes: &bytes })
            }
            NetInput::StreamOpened { peer, transport, tx } => {
                self.sockets.stream_opened(peer, transport, tx);
                return;
            }
            NetInput::StreamUp { peer, transport } => {
                tracing::debug!(%peer, transport = transport.param(), "SIP connection up");
                self.transport_errors.remove(&peer);
                return;
            }
            NetInput::StreamFailed { peer, transport, error } => {
                self.stream_failed(peer, transport, error);
            }
            NetInput::StreamClosed { from } => {
                let now = Instant::now();
                let registered_here = self.registered_over(from);
                let transport = self.sockets.transport_of(from);
                self.sockets.stream_closed(from);
                self.ua.handle_input(now, Input::StreamClosed { from });
                // A REGISTER sent over it gets no answer now (the registrar was shutting down):
                // fail it rather than wait 32 s, so the back-off starts.
                let registering_here = self.ua.config().accounts.first().is_some_and(|a| a.proxy.addr == from)
                    && matches!(self.ua.registration_state(0), Some(RegistrationState::Registering));
                if let Some(transport) = transport.filter(|_| registering_here) {
                    self.ua.transport_failed(now, huis_sip::Destination { addr: from, transport });
                }
                // The registrar closed our flow (it restarted, or dropped us): requests for us
                // have no way in until we register again (RFC 5626 §4.4). At most once per
                // FLOW_REREGISTER, so a registrar that closes every flow is no storm: the
                // failures that follow back off in the core.
                if registered_here && self.flow_reregistered.is_none_or(|t| now.duration_since(t) >= FLOW_REREGISTER) {
                    self.flow_reregistered = Some(now);
                    tracing::info!(registrar = %from, "the registrar closed the registration's flow: registering again");
                    if let Err(e) = self.ua.register(now, 0) {
                        tracing::warn!(error = %e, "cannot register");
                    }
                }
            }
        }
        self.drain().await;
    }

    /// A connection could not be opened, its certificate was refused, or it stopped answering
    /// keep-alives: what waited on it fails now (with the reason), and a registration that
    /// was in force over it is renewed over a new connection.
    fn stream_failed(&mut self, peer: SocketAddr, transport: TransportKind, error: TransportError) {
        tracing::warn!(%peer, transport = transport.param(), "SIP connection failed: {error}");
        self.sockets.stream_closed(peer);
        let now = Instant::now();
        let registered_here = self.registered_over(peer);
        self.transport_errors.insert(peer, error);
        self.ua.handle_input(now, Input::StreamClosed { from: peer });
        self.ua.transport_failed(now, huis_sip::Destination { addr: peer, transport });
        if registered_here {
            tracing::info!("the registration's flow is gone: registering again");
            if let Err(e) = self.ua.register(now, 0) {
                tracing::warn!(error = %e, "cannot register");
            }
        }
    }

    /// True when the registration is in force over a connection to `peer` (TCP or TLS).
    fn registered_over(&self, peer: SocketAddr) -> bool {
        self.ua
            .config()
            .accounts
            .first()
            .is_some_and(|a| a.proxy.addr == peer && a.proxy.transport != TransportKind::Udp)
            && matches!(self.ua.registration_state(0), Some(RegistrationState::Registered { .. }))
    }

    /// After the registrar's server failed (no answer, connection refused, certificate
    /// refused): moves the account to the next server RFC 3263 gave and registers again at
    /// once. False when there is none left (the core retries the first one later).
    fn registrar_failover(&mut self) -> bool {
        if self.registrar_index + 1 >= self.registrar_targets.len() {
            if self.registrar_index != 0 {
                // Start again from the preferred server at the core's next retry.
                self.registrar_index = 0;
                let t = &self.registrar_targets[0];
                let _ = self.ua.set_proxy(0, huis_sip::Destination { addr: t.addr, transport: t.transport });
            }
            return false;
        }
        self.registrar_index += 1;
        let t = self.registrar_targets[self.registrar_index].clone();
        tracing::warn!(next = %t.addr, transport = t.transport.param(), "registrar failover to the next server");
        // The count of failures in a row goes on across servers, so the back-off grows.
        self.ua.fail_over(Instant::now(), 0, huis_sip::Destination { addr: t.addr, transport: t.transport }).is_ok()
    }

    async fn command(&mut self, cmd: call::Command) {
        match cmd {
            call::Command::Dial { id, to, reply } => self.dial(id, to, reply),
            call::Command::Answer { id, reply } => {
                let r = self.answer(id).await;
                let _ = reply.send(r);
            }
            call::Command::Reject { id, why } => {
                if let Some(ua_id) = self.ua_id(id) {
                    let code = match why {
                        Rejection::Busy => 486,
                        Rejection::Declined => 603,
                    };
                    let _ = self.ua.reject(Instant::now(), ua_id, code);
                    self.drain().await;
                }
            }
            call::Command::Hangup { id, reply } => {
                let r = self.hangup(id).await;
                let _ = reply.send(r);
            }
            call::Command::Hold { id, on, reply } => {
                let r = self.hold(id, on).await;
                let _ = reply.send(r);
            }
            call::Command::Video { id, on, reply } => {
                let r = self.set_video(id, on).await;
                let _ = reply.send(r);
            }
            call::Command::Dtmf { id, digits, reply } => {
                let r = self.send_dtmf(id, &digits).await;
                let _ = reply.send(r);
            }
            call::Command::Present { id, on } => {
                let Some(ua_id) = self.ua_id(id) else { return };
                if let Some(c) = self.calls.get_mut(&ua_id).and_then(|c| c.content.as_mut()) {
                    c.present(on);
                }
                self.update_presentation(ua_id).await;
            }
            call::Command::SetMuted(m) => {
                self.muted = m;
                for c in self.calls.values() {
                    if let Some(media) = &c.media {
                        media.set_muted(m);
                    }
                }
            }
            call::Command::Shutdown(_) => {}
        }
    }

    fn ua_id(&self, id: CallId) -> Option<huis_sip::CallId> {
        self.calls.iter().find(|(_, c)| c.id == id).map(|(k, _)| *k)
    }

    async fn emit(&self, ev: call::Event) {
        if self.events.send(ev).await.is_err() {
            tracing::debug!("the room is gone; a call event was dropped");
        }
    }

    fn bind_rtp(&self) -> Result<RtpSockets, CallError> {
        let bind_ip = if self.advertised.is_loopback() { self.advertised } else { IpAddr::from([0, 0, 0, 0]) };
        RtpSockets::bind_in_range(bind_ip, self.rtp_ports.clone()).map_err(|e| CallError::Local(e.to_string()))
    }

    /// Video ports and our video SDP, when video is set up (camera and encoder present).
    fn bind_video(&self) -> (Option<RtpSockets>, Option<LocalVideo>) {
        let Some(v) = &self.video else { return (None, None) };
        match self.bind_rtp() {
            Ok(s) => {
                let lv = LocalVideo {
                    port: s.local_rtp().port(),
                    level_idc: v.level_idc(),
                    max_kbps: v.max_kbps,
                    rtcp_feedback: v.rtcp_feedback,
                    high_profiles: false,
                };
                (Some(s), Some(lv))
            }
            Err(e) => {
                tracing::warn!("no ports for video, the call is audio only: {e}");
                (None, None)
            }
        }
    }

    /// The presentation channel's ports and SDP, for a call with video.
    fn bind_content(&self) -> Option<CallContent> {
        let v = self.video.as_ref()?;
        let bind_ip = if self.advertised.is_loopback() { self.advertised } else { IpAddr::from([0, 0, 0, 0]) };
        CallContent::bind(bind_ip, self.rtp_ports.clone(), v)
    }

    /// Our side of a call's SDP. `signalling_tls`: the call's SIP runs over TLS (only then
    /// are SDES keys written or accepted).
    fn local_media(&self, port: u16, signalling_tls: bool) -> LocalMedia {
        LocalMedia {
            address: self.advertised,
            audio_port: port,
            codecs: self.codecs.clone(),
            telephone_event: true,
            session_id: random_u64() % 1_000_000_000,
            direction: SdpDirection::SendRecv,
            security: self.local_security(signalling_tls),
        }
    }

    /// What a call offers and accepts of media encryption: the policy, our certificate's
    /// fingerprint, and fresh SDES keys (audio, video) when the signalling is TLS.
    fn local_security(&self, signalling_tls: bool) -> LocalSecurity {
        let mut sdes_keys = Vec::new();
        if signalling_tls && self.policy != EncryptionPolicy::Off {
            // Audio, video, slides: no two streams share a master key.
            for _ in 0..3 {
                let mut k = vec![0u8; MAX_KEY_LEN];
                match getrandom::getrandom(&mut k) {
                    Ok(()) => sdes_keys.push(SrtpKey::new(k)),
                    Err(e) => {
                        tracing::error!("no random bytes for SRTP keys ({e}); SDES is not offered");
                        sdes_keys.clear();
                        break;
                    }
                }
            }
        }
        LocalSecurity {
            policy: self.policy,
            signalling_tls,
            fingerprint: self.dtls.as_ref().map(|c| Fingerprint(c.fingerprint)),
            sdes_keys,
            rtcp_mux: true,
            plain_retry: false,
            sdes_refused: false,
            permissive: false,
        }
    }

    /// The media parameters of one negotiated stream's security.
    fn media_keys(&self, s: &MediaSecurity) -> (Option<SrtpParams>, Option<DtlsParams>) {
        media_keys(self.dtls.as_ref(), s)
    }

    /// Starts the call's presentation channel once SDP agreed it. A failure leaves the call
    /// without one; the call goes on.
    fn start_content(&mut self, ua_id: huis_sip::CallId) {
        let Some(setup) = self.video.clone() else { return };
        let cname = format!("huis@{}", self.advertised);
        let floors = self.floors_tx.clone();
        let dtls = self.dtls.clone();
        let Some(call) = self.calls.get_mut(&ua_id) else { return };
        let Call { content: Some(content), local, id, .. } = call else { return };
        let policy = &local.security;
        let r = content.start(
            ua_id,
            &setup,
            |s| media_keys(dtls.as_ref(), s),
            cname,
            |s| policy.check_policy([&s.keying]).is_ok(),
            floors,
        );
        if let Err(e) = r {
            tracing::warn!(call = %id, "no presentation in this call: {e}");
        }
    }

    /// The dial string the UA takes for `to`: a `sip:` URI, with the destination's digits as
    /// `;dtmf=` (the core sends them once the call is up).
    fn target_of(&self, to: &Destination) -> Result<String, CallError> {
        let (uri, dtmf) = match to {
            Destination::Sip { uri, dtmf, .. } => (uri.clone(), dtmf),
            Destination::Tel { number, dtmf } => {
                let domain = self.account_domain.as_ref().ok_or_else(|| {
                    CallError::Unsupported(format!(
                        "tel:{number} can only be called through a SIP account: set account.registrar"
                    ))
                })?;
                let n: String =
                    number.split(';').next().unwrap_or("").chars().filter(|c| !"-.()".contains(*c)).collect();
                (format!("sip:{n}@{domain};user=phone"), dtmf)
            }
            Destination::Visio { gateway, .. } => {
                let g = if gateway.is_empty() { &self.visio.gateway } else { gateway };
                if g.is_empty() {
                    return Err(CallError::Unsupported(
                        "visio: needs the Visio gateway: set visio.gateway (its sip: URI)".into(),
                    ));
                }
                return Ok(g.clone());
            }
            Destination::Web { .. } | Destination::Janus { .. } | Destination::Whip { .. } => {
                return Err(CallError::Unsupported(format!("SIP does not call {to}")));
            }
        };
        if dtmf.is_empty() || uri.contains(";dtmf=") {
            Ok(uri)
        } else {
            Ok(format!("{uri};dtmf={}", escape_dtmf(dtmf)))
        }
    }

    /// Places a call: the route first (a host name is looked up off this task), then the INVITE.
    fn dial(&mut self, id: CallId, to: Destination, reply: call::Reply) {
        let target = match self.target_of(&to) {
            Ok(t) => t,
            Err(e) => return self.dial_failed(id, reply, e),
        };
        let remote = target.split(";dtmf=").next().unwrap_or(&target).to_owned();
        let visio = match &to {
            Destination::Visio { pin, .. } => Some(VisioCall {
                pin: pin.clone(),
                dtmf: self.visio.pin_dtmf != "never",
                opts: InviteOptions {
                    headers: vec![("X-PIN".into(), pin.clone())],
                    session_expires: (self.visio.session_expires > 0).then_some(self.visio.session_expires),
                    dtmf_delay: Duration::from_millis(self.visio.pin_delay_ms.into()),
                },
                given_at: None,
            }),
            _ => None,
        };
        let allowed = if self.tls_required { Allowed::TlsOnly } else { Allowed::Any };
        self.resolving.insert(id);
        let tx = self.resolved_tx.clone();
        match self.ua.route_for(&target) {
            Some(hop) => {
                // The common case (an IP, the account's proxy) needs no lookup: go on at once.
                let host = if self.ua.config().accounts.is_empty() {
                    net::uri_host(&target).map(|h| h.0).unwrap_or_else(|| hop.addr.ip().to_string())
                } else {
                    self.registrar_targets.get(self.registrar_index).map(|t| t.host.clone()).unwrap_or_default()
                };
                let hop = if allowed == Allowed::TlsOnly && hop.transport != TransportKind::Tls {
                    Err(SipError::NotTls { what: remote.clone(), transport: hop.transport.param() })
                } else {
                    // Through the account: its other servers are the ones to fail over to.
                    let rest = if self.ua.config().accounts.is_empty() {
                        Vec::new()
                    } else {
                        self.registrar_targets.iter().skip(self.registrar_index + 1).cloned().collect()
                    };
                    Ok(std::iter::once(Target { addr: hop.addr, transport: hop.transport, host }).chain(rest).collect())
                };
                tokio::spawn(async move {
                    let _ = tx.send(Resolved { id, visio, target, remote, reply, hop }).await;
                });
            }
            None => {
                let resolver = self.resolver.clone();
                tokio::spawn(async move {
                    let hop = match resolver {
                        Some(r) => locate::locate(&r, &target, TransportKind::Udp, allowed).await,
                        None => Err(SipError::Resolve { host: target.clone(), why: "no DNS resolver".into() }),
                    };
                    let _ = tx.send(Resolved { id, visio, target, remote, reply, hop }).await;
                });
            }
        }
    }

    fn dial_failed(&self, id: CallId, reply: call::Reply, error: CallError) {
        let _ = reply.send(Err(error.clone()));
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = events.send(call::Event::DialFailed { id, error }).await;
        });
    }

    async fn dial_resolved(&mut self, r: Resolved) {
        if !self.resolving.remove(&r.id) {
            // Hung up while it was being looked up.
            return self.dial_failed(r.id, r.reply, CallError::Cancelled);
        }
        let mut targets = match r.hop {
            Ok(v) => v.into_iter(),
            Err(e @ SipError::NotTls { .. }) => {
                return self.dial_failed(r.id, r.reply, CallError::Unsupported(e.to_string()));
            }
            Err(e) => return self.dial_failed(r.id, r.reply, CallError::Unreachable(e.to_string())),
        };
        let Some(first) = targets.next() else {
            let e = CallError::Unreachable(format!("{}: no server found", r.remote));
            return self.dial_failed(r.id, r.reply, e);
        };
        self.sockets.set_name(first.addr, &first.host);
        let hop = huis_sip::Destination { addr: first.addr, transport: first.transport };
        let sockets = match self.bind_rtp() {
            Ok(s) => s,
            Err(e) => return self.dial_failed(r.id, r.reply, e),
        };
        // SDES keys are written only into an INVITE that goes over TLS.
        let tls = hop.transport == TransportKind::Tls;
        let local = self.local_media(sockets.local_rtp().port(), tls);
        let (vsock, mut lv) = self.bind_video();
        if let Some(v) = lv.as_mut() {
            // Visio's gateway takes H.264 High first (see `LocalVideo::high_profiles`).
            v.high_profiles = r.visio.is_some();
        }
        let content = lv.as_ref().and_then(|_| self.bind_content());
        let offer = first_offer(&local, lv.as_ref(), content.as_ref());
        let (ua_target, opts) = invite_args(r.visio.as_ref(), &r.target);
        let ua_id = match self.ua.invite_with(Instant::now(), &ua_target, hop, &offer, opts) {
            Ok(i) => i,
            Err(e) => return self.dial_failed(r.id, r.reply, CallError::Protocol(e.to_string())),
        };
        let mut info = CallInfo::new(Protocol::Sip, Direction::Outgoing, r.remote);
        info.signalling_tls = tls;
        let mut call = Call::new(r.id, info.clone(), local, Some(sockets), None, lv, vsock);
        let sec = &call.local.security;
        let kind = sec.offer_kind();
        // A refused SDES offer is tried again with DTLS-SRTP; a refused encrypted one, under
        // best-effort, with plain RTP.
        if (kind == RtpProto::Sdes && sec.fingerprint.is_some())
            || (self.policy == EncryptionPolicy::BestEffort && kind.is_encrypted())
        {
            call.redial = Some((r.target.clone(), hop));
        }
        call.next_hop = Some(hop.addr);
        // An offer that holds SDES keys may only move on to another TLS server.
        let rest: Vec<Target> = targets.filter(|t| !tls || t.transport == TransportKind::Tls).collect();
        call.retry = Some((r.target, offer, rest));
        call.visio = r.visio;
        call.content = content;
        self.calls.insert(ua_id, call);
        let _ = r.reply.send(Ok(()));
        self.emit(call::Event::Started { id: r.id, info, answer: false }).await;
        self.drain().await;
    }

    /// An outgoing call that no server answered yet (connection refused, TLS refused, no
    /// response at all) is sent to the next server RFC 3263 gave, as the same call for the room.
    fn next_server(&mut self, ua_id: huis_sip::CallId) -> bool {
        let Some(c) = self.calls.get_mut(&ua_id) else { return false };
        if c.established || c.info.state != CallState::Dialing {
            return false;
        }
        let Some((target, offer, rest)) = c.retry.as_mut() else { return false };
        if rest.is_empty() {
            return false;
        }
        let next = rest.remove(0);
        let (target, offer) = (target.clone(), offer.clone());
        self.sockets.set_name(next.addr, &next.host);
        let hop = huis_sip::Destination { addr: next.addr, transport: next.transport };
        let (ua_target, opts) = invite_args(c.visio.as_ref(), &target);
        let Ok(new_id) = self.ua.invite_with(Instant::now(), &ua_target, hop, &offer, opts) else { return false };
        let Some(mut c) = self.calls.remove(&ua_id) else { return false };
        tracing::warn!(call = %c.id, next = %next.addr, transport = next.transport.param(), "no answer from the server: trying the next one");
        c.next_hop = Some(hop.addr);
        // Keys are never sent in clear: the retry list holds only TLS servers after a TLS start.
        c.info.signalling_tls = hop.transport == TransportKind::Tls;
        if let Some((_, h)) = c.redial.as_mut() {
            *h = hop;
        }
        self.calls.insert(new_id, c);
        true
    }

    async fn answer(&mut self, id: CallId) -> Result<(), CallError> {
        let ua_id = self.ua_id(id).ok_or(CallError::NoSuchCall(id.0))?;
        match self.answer_offer(ua_id) {
            Ok((answer, neg, vneg)) => {
                self.ua.answer(Instant::now(), ua_id, &answer).map_err(|e| CallError::Protocol(e.to_string()))?;
                if let Err(e) = self.start_media(ua_id, neg, false) {
                    tracing::error!("{e}");
                }
                if let Some(v) = vneg {
                    self.start_video(ua_id, v);
                }
                self.start_content(ua_id);
                self.drain().await;
                Ok(())
            }
            Err(e @ CallError::Unusable(_)) => {
                // An offer we cannot use never becomes answerable: turn the call away.
                tracing::warn!(call = %id, "cannot answer: {e}");
                let _ = self.ua.reject(Instant::now(), ua_id, 488);
                self.drain().await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Our SDP answer to the caller's offer, and what it agrees on.
    fn answer_offer(
        &mut self,
        ua_id: huis_sip::CallId,
    ) -> Result<(String, Negotiated, Option<NegotiatedVideo>), CallError> {
        let call = self.calls.get_mut(&ua_id).ok_or(CallError::NothingToAnswer)?;
        if call.info.direction != Direction::Incoming || call.established {
            return Err(CallError::NothingToAnswer);
        }
        let offer_text = call
            .remote_offer
            .clone()
            .ok_or_else(|| CallError::Unusable("the caller sent no SDP offer; such calls are not supported".into()))?;
        let offer = SessionDescription::parse(&offer_text).map_err(|e| CallError::Unusable(e.to_string()))?;
        let (mut answer, neg, vneg) = call
            .local
            .answer_with_video(&offer, call.local_video.as_ref())
            .map_err(|e| CallError::Unusable(e.to_string()))?;
        if let Some(c) = call.content.as_mut() {
            c.answer_into(&offer, &mut answer, call.local.direction, &call.local.security);
        }
        if vneg.is_none() {
            // Audio only: the video m-line (if any) went back with port 0; free the ports.
            call.local_video = None;
            call.video_sockets = None;
        }
        Ok((answer.to_text(), neg, vneg))
    }

    /// Hangs up: CANCEL before answer, BYE after, 603 for an incoming call not answered.
    async fn hangup(&mut self, id: CallId) -> Result<(), CallError> {
        if self.resolving.remove(&id) {
            return Ok(());
        }
        let ua_id = self.ua_id(id).ok_or(CallError::NoSuchCall(id.0))?;
        let incoming_unanswered = self
            .calls
            .get(&ua_id)
            .is_some_and(|c| c.info.direction == Direction::Incoming && !c.established && c.media.is_none());
        let r = if incoming_unanswered {
            self.ua.reject(Instant::now(), ua_id, 603)
        } else {
            self.ua.hangup(Instant::now(), ua_id)
        };
        r.map_err(|e| CallError::Protocol(e.to_string()))?;
        self.drain().await;
        Ok(())
    }

    async fn hold(&mut self, id: CallId, hold: bool) -> Result<(), CallError> {
        let ua_id = self.ua_id(id).ok_or(CallError::NoSuchCall(id.0))?;
        let call = self.calls.get_mut(&ua_id).ok_or(CallError::NoSuchCall(id.0))?;
        if !call.established {
            return Err(CallError::NotEstablished);
        }
        // On hold the room is neither heard nor hears: a=inactive, nothing sent but RTCP.
        let direction = if hold { SdpDirection::Inactive } else { SdpDirection::SendRecv };
        let text = session_offer(call, direction).to_text();
        let r = if hold {
            self.ua.hold(Instant::now(), ua_id, &text)
        } else {
            self.ua.resume(Instant::now(), ua_id, &text)
        };
        r.map_err(|e| CallError::Protocol(e.to_string()))?;
        call.held_by_us = hold;
        let dir = if hold { MediaDirection::Inactive } else { MediaDirection::SendRecv };
        if let Some(m) = &call.media {
            m.set_direction(dir);
        }
        if let Some(v) = &call.video {
            v.set_direction(dir);
        }
        self.update_call_state(ua_id).await;
        self.drain().await;
        Ok(())
    }

    /// Starts or stops the call's video by a new offer: with video on our new ports, or with the
    /// video m-line at port 0 (our video stops at once; the answer confirms it).
    async fn set_video(&mut self, id: CallId, on: bool) -> Result<(), CallError> {
        let ua_id = self.ua_id(id).ok_or(CallError::NoSuchCall(id.0))?;
        let has = self.calls.get(&ua_id).ok_or(CallError::NoSuchCall(id.0))?.video.is_some();
        if !self.calls[&ua_id].established {
            return Err(CallError::NotEstablished);
        }
        if has == on {
            return Ok(());
        }
        if on {
            if self.video.is_none() {
                return Err(CallError::Unsupported("this room has no camera or no H.264 encoder".into()));
            }
            let (sockets, lv) = self.bind_video();
            if lv.is_none() {
                return Err(CallError::Local("no ports free for video".into()));
            }
            let call = self.calls.get_mut(&ua_id).ok_or(CallError::NoSuchCall(id.0))?;
            (call.video_sockets, call.local_video) = (sockets, lv);
        }
        let call = self.calls.get_mut(&ua_id).ok_or(CallError::NoSuchCall(id.0))?;
        let direction = if call.held_by_us { SdpDirection::Inactive } else { SdpDirection::SendRecv };
        let mut sdp = session_offer(call, direction);
        if !on {
            for m in sdp.media.iter_mut().filter(|m| m.kind == "video") {
                m.port = 0;
            }
        }
        if let Err(e) = self.ua.reinvite(Instant::now(), ua_id, &sdp.to_text()) {
            if on {
                (call.local_video, call.video_sockets) = (None, None);
            }
            return Err(CallError::Protocol(e.to_string()));
        }
        call.video_change = Some(on);
        if !on {
            stop_video(call);
            tracing::info!(call = %call.id, "video stopped by the room");
        }
        self.update_call_state(ua_id).await;
        self.drain().await;
        Ok(())
    }

    /// The answer to our offer that starts video: start it, or go on audio only.
    fn video_answered(&mut self, ua_id: huis_sip::CallId, answer: &str) {
        let Some(call) = self.calls.get_mut(&ua_id) else { return };
        if call.video_change.take() != Some(true) {
            return;
        }
        let vneg = SessionDescription::parse(answer)
            .ok()
            .and_then(|a| call.local_video.as_ref().and_then(|lv| lv.accept_answer(&a, &call.local.security)))
            .filter(|v| call.local.security.check_policy([&v.security.keying]).is_ok());
        match vneg {
            Some(v) => {
                tracing::info!(call = %call.id, "video started by the room");
                self.start_video(ua_id, v);
            }
            None => {
                tracing::warn!(call = %call.id, "the far end did not take our video; the call stays audio only");
                (call.local_video, call.video_sockets) = (None, None);
            }
        }
    }

    /// Sends DTMF: RFC 4733 events when negotiated, SIP INFO otherwise.
    async fn send_dtmf(&mut self, id: CallId, digits: &str) -> Result<(), CallError> {
        let ua_id = self.ua_id(id).ok_or(CallError::NoSuchCall(id.0))?;
        let call = self.calls.get(&ua_id).ok_or(CallError::NoSuchCall(id.0))?;
        if !call.established {
            return Err(CallError::NotEstablished);
        }
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || "*#ABCD,".contains(c)) {
            return Err(CallError::InvalidDtmf(digits.to_owned()));
        }
        let rfc4733 = call.negotiated.as_ref().is_some_and(|n| n.telephone_event_pt.is_some());
        match (&call.media, rfc4733) {
            (Some(m), true) => m.send_dtmf(digits).map_err(|e| CallError::Local(e.to_string()))?,
            _ => {
                self.ua.send_info_dtmf(Instant::now(), ua_id, digits).map_err(|e| CallError::Protocol(e.to_string()))?
            }
        }
        tracing::info!(call = %id, digits, rfc4733, "sending DTMF");
        self.drain().await;
        Ok(())
    }

    fn start_media(&mut self, ua_id: huis_sip::CallId, neg: Negotiated, we_offered: bool) -> Result<(), CallError> {
        let advertised = self.advertised;
        let muted = self.muted;
        let (srtp, dtls) = self.media_keys(&neg.security);
        let call = self.calls.get_mut(&ua_id).ok_or(CallError::NotInCall)?;
        let Some(sockets) = call.sockets.take() else { return Ok(()) };
        let mut codec = CodecParams::new(media_codec(neg.codec), neg.payload_type);
        if we_offered {
            codec.recv_payload_type = Some(neg.codec.offer_pt());
        }
        if let Some(f) = &neg.remote_fmtp {
            codec.opus = codec.opus.clone().with_remote_fmtp(f);
        }
        let remote = SocketAddr::new(neg.remote_address, neg.remote_port);
        let mut p = AudioSessionParams::new(sockets, remote, codec);
        p.cname = format!("huis@{advertised}");
        if let Some(pt) = neg.telephone_event_pt {
            let mut te = TelephoneEvent::new(pt, neg.codec.clock_rate());
            if we_offered {
                te.recv_payload_type = Some(if neg.codec == Codec::Opus { 101 } else { 100 });
            }
            p.telephone_event = Some(te);
        }
        p.direction = media_direction(neg.direction);
        p.rtp_timeout = self.media_timeout;
        p.rtcp_mux = neg.security.rtcp_mux;
        p.srtp = srtp;
        p.dtls = dtls;
        let session =
            AudioSession::start(p).map_err(|e| CallError::Local(format!("cannot start the call's audio: {e}")))?;
        session.set_muted(muted);
        *self.audio.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(CallAudio { tx: session.sender(), rx: session.receiver() });
        call.info.audio_codec = codec_label(neg.codec);
        let protection = session.protection();
        call.info.media_encryption = protection.label();
        call.info.encrypted = call.info.signalling_tls && protection.is_encrypted();
        tracing::info!(
            call = %call.id,
            codec = %codec_label(neg.codec),
            remote = %remote,
            rtcp_mux = neg.security.rtcp_mux,
            encryption = %protection.label(),
            "call audio started"
        );
        call.media = Some(session);
        call.negotiated = Some(neg);
        Ok(())
    }

    /// Starts the call's video once SDP negotiated it. A failure leaves the call audio only.
    fn start_video(&mut self, ua_id: huis_sip::CallId, neg: NegotiatedVideo) {
        let Some(setup) = self.video.clone() else { return };
        let advertised = self.advertised;
        let (srtp, dtls) = self.media_keys(&neg.security);
        let security = neg.security.clone();
        let Some(call) = self.calls.get_mut(&ua_id) else { return };
        let Some(sockets) = call.video_sockets.take() else { return };
        let sizes = crate::config::VIDEO_SIZES;
        let Some((width, height)) = neg.fit_size((setup.width, setup.height), sizes) else {
            tracing::warn!(level = neg.level_idc, "the peer's H.264 level is below our smallest size; no video sent");
            return;
        };
        let max_kbps = neg.remote_max_kbps.map_or(setup.max_kbps, |r| r.min(setup.max_kbps)).max(setup.min_kbps);
        let f = neg.feedback;
        let p = VideoSessionParams {
            sockets,
            remote_rtp: SocketAddr::new(neg.remote_address, neg.remote_port),
            send_pt: neg.payload_type,
            recv_pt: neg.recv_payload_type,
            packetization_mode: neg.packetization_mode,
            source: setup.source.clone(),
            width,
            height,
            framerate: setup.framerate,
            encoder: setup.encoder.clone(),
            start_kbps: max_kbps * 3 / 4,
            min_kbps: setup.min_kbps,
            max_kbps,
            feedback: VideoFeedback { nack: f.nack, pli: f.pli, fir: f.fir, tmmbr: f.tmmbr, remb: f.remb },
            rtx: neg.rtx.map(|r| RtxPayloadTypes { send: r.send, recv: r.recv }),
            cname: format!("huis@{advertised}"),
            direction: media_direction(neg.direction),
            jitter_buffer: Duration::from_millis(50),
            rtcp_interval: Duration::from_secs(1),
            far_channel: crate::media::video::FAR_CHANNEL.into(),
            self_channel: crate::media::video::SELF_CHANNEL.into(),
            on_capture: None,
            rtcp_mux: neg.security.rtcp_mux,
            srtp,
            dtls,
            text: false,
        };
        match VideoSession::start(p) {
            Ok(v) => {
                call.info.video_codec = format!("H264/90000 {width}x{height}");
                call.keyframes_by_info = !(f.pli || f.fir);
                call.keyframe_requests_seen = 0;
                tracing::info!(call = %call.id, size = %format!("{width}x{height}"), mode = neg.packetization_mode, "call video started");
                call.video = Some(v);
                call.video_security = Some(security);
                call.had_video = true;
            }
            Err(e) => tracing::error!(call = %call.id, "cannot start the call's video, audio only: {e}"),
        }
    }

    /// A call's BFCP floor changed: the slides valve follows, and the room is told.
    async fn on_floor(&mut self, f: FloorChange) {
        if let Some(c) = self.calls.get_mut(&f.call).and_then(|c| c.content.as_mut()) {
            c.on_floor(f.floor);
        }
        self.update_presentation(f.call).await;
    }

    /// Tells the room the call's presentation when it changed.
    async fn update_presentation(&mut self, ua_id: huis_sip::CallId) {
        let Some(c) = self.calls.get_mut(&ua_id) else { return };
        let p = c.content.as_ref().map(|c| c.presentation()).unwrap_or_default();
        if p != c.info.presentation {
            c.info.presentation = p;
            let ev = call::Event::Changed { id: c.id, info: c.info.clone() };
            self.emit(ev).await;
        }
    }

    /// Works out the call's state from what happened, and tells the room if it moved.
    async fn update_call_state(&mut self, ua_id: huis_sip::CallId) {
        let Some(c) = self.calls.get_mut(&ua_id) else { return };
        let s = if c.held_by_us || c.held_by_peer {
            CallState::Held
        } else if c.established {
            CallState::Active
        } else {
            c.info.state
        };
        c.info.state = s;
        let ev = call::Event::Changed { id: c.id, info: c.info.clone() };
        self.emit(ev).await;
    }

    /// Sends what the UA wants sent and acts on its events.
    async fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.ua.poll_transmit() {
                progressed = true;
                self.sockets.send(t).await;
            }
            while let Some(ev) = self.ua.poll_event() {
                progressed = true;
                self.on_event(ev).await;
            }
            if !progressed {
                break;
            }
        }
    }

    async fn on_event(&mut self, ev: UaEvent) {
        match &ev {
            // The digits may be a meeting PIN: only how many.
            UaEvent::AutoDtmf { call, digits, rfc4733 } => {
                tracing::debug!(?call, digits = digits.len(), rfc4733, "SIP event: AutoDtmf")
            }
            ev => tracing::debug!(?ev, "SIP event"),
        }
        match ev {
            UaEvent::Registration { state, .. } => {
                let proxy = self.ua.config().accounts.first().map(|a| a.proxy.addr);
                let detail = proxy.and_then(|p| self.transport_errors.get(&p)).map(|e| e.to_string());
                let (text, error) = registration_text(&state, detail);
                if let RegistrationState::Registered { .. } = state {
                    if let Some(t) = self.registrar_targets.get(self.registrar_index) {
                        tracing::info!(registrar = %t.addr, transport = t.transport.param(), "registered");
                    }
                }
                if let RegistrationState::Failed { reason, retry_at: Some(at), failures } = &state {
                    // The back-off, counted, so an outage's retries can be read off the log.
                    let wait = at.saturating_duration_since(Instant::now());
                    tracing::warn!(
                        "registration failed ({reason:?}, {failures} in a row): next attempt in {} ms",
                        wait.as_millis()
                    );
                }
                self.emit(call::Event::Registration { backend: "SIP", text, error }).await;
                if let RegistrationState::Failed {
                    reason: RegistrationFailure::Transport | RegistrationFailure::Timeout,
                    ..
                } = state
                {
                    self.registrar_failover();
                }
            }
            UaEvent::IncomingCall { call: ua_id, from, remote_sdp, auto_answer, transport } => {
                if self.tls_required && transport != TransportKind::Tls {
                    tracing::warn!(%from, transport = transport.param(), "call.sip_tls is required: incoming call refused");
                    let _ = self.ua.reject(Instant::now(), ua_id, 403);
                    return;
                }
                let sockets = match self.bind_rtp() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot take a call: {e}");
                        let _ = self.ua.reject(Instant::now(), ua_id, 500);
                        return;
                    }
                };
                let tls = transport == TransportKind::Tls;
                let local = self.local_media(sockets.local_rtp().port(), tls);
                let offers_video = remote_sdp.as_deref().is_some_and(|s| s.contains("m=video"));
                let (vsock, lv) = if offers_video { self.bind_video() } else { (None, None) };
                // Media security is decided before the room rings: an offer our policy refuses
                // never rings (488), and "required" tells people why.
                let refusal =
                    remote_sdp.as_deref().and_then(|t| SessionDescription::parse(t).ok()).and_then(|offer| match local
                        .answer_with_video(&offer, lv.as_ref())
                    {
                        Err(SdpError::Security(e)) => Some(e),
                        _ => None,
                    });
                let id = self.ids.next();
                let mut info = CallInfo::new(Protocol::Sip, Direction::Incoming, from);
                info.signalling_tls = tls;
                if let Some(e) = refusal {
                    tracing::warn!(call = %id, "refusing an incoming call (488): {e}");
                    let _ = self.ua.reject(Instant::now(), ua_id, 488);
                    if e == SecurityError::NotEncrypted {
                        self.emit(call::Event::Started { id, info, answer: false }).await;
                        self.emit(call::Event::Ended { id, reason: EndReason::NotEncrypted }).await;
                    }
                    return;
                }
                let offers_content = remote_sdp.as_deref().is_some_and(|s| s.contains("a=content:"));
                let content = if offers_content && lv.is_some() { self.bind_content() } else { None };
                let mut call = Call::new(id, info.clone(), local, Some(sockets), remote_sdp, lv, vsock);
                call.had_video = offers_video;
                call.content = content;
                self.calls.insert(ua_id, call);
                self.emit(call::Event::Started { id, info, answer: auto_answer }).await;
            }
            UaEvent::CallRinging { call: ua_id, .. } => {
                if let Some(c) = self.calls.get_mut(&ua_id) {
                    c.info.state = CallState::Alerting;
                    let ev = call::Event::Changed { id: c.id, info: c.info.clone() };
                    self.emit(ev).await;
                }
            }
            UaEvent::CallEstablished { call: ua_id, remote_sdp } => {
                let Some(c) = self.calls.get_mut(&ua_id) else { return };
                c.established = true;
                if let Some(v) = c.visio.as_mut().filter(|v| !v.dtmf) {
                    // The PIN went in the INVITE's X-PIN only.
                    v.given_at = Some(Instant::now());
                }
                if c.info.direction == Direction::Outgoing {
                    let sdp = remote_sdp
                        .as_deref()
                        .ok_or_else(|| "the answer has no SDP".to_string())
                        .and_then(|t| SessionDescription::parse(t).map_err(|e| e.to_string()));
                    // A peer that keys media only by DTLS may answer our SDES offer with no
                    // usable key instead of refusing it: end that dialog, call again with DTLS.
                    let sec = &c.local.security;
                    let sdes_unanswered = c.redial.is_some()
                        && sec.offer_kind() == RtpProto::Sdes
                        && sec.fingerprint.is_some()
                        && sdp.as_ref().is_ok_and(|a| matches!(c.local.accept_answer(a), Err(SdpError::Security(_))));
                    if sdes_unanswered {
                        tracing::warn!(call = %c.id, "the far end answered our SDES offer without usable keys");
                        c.established = false;
                        let _ = self.ua.hangup(Instant::now(), ua_id);
                        if !self.retry_refused_offer(ua_id) {
                            if let Some(c) = self.calls.get_mut(&ua_id) {
                                c.end_reason = Some(EndReason::Failed("unusable answer: no SDES keys".into()));
                            }
                        }
                        return;
                    }
                    let mut vneg = match (&sdp, &c.local_video) {
                        (Ok(s), Some(lv)) => lv.accept_answer(s, &c.local.security),
                        _ => None,
                    };
                    // "required": a plain video answer leaves the call audio only.
                    if vneg.as_ref().is_some_and(|v| c.local.security.check_policy([&v.security.keying]).is_err()) {
                        tracing::warn!(call = %c.id, "the far end answered video without encryption; audio only");
                        vneg = None;
                    }
                    if vneg.is_none() {
                        c.video_sockets = None;
                    }
                    let has_content = match (&sdp, c.content.as_mut()) {
                        (Ok(s), Some(content)) => content.accept_answer(s, &c.local.security),
                        _ => false,
                    };
                    let neg = sdp.and_then(|sdp| c.local.accept_answer(&sdp).map_err(|e| e.to_string())).and_then(
                        |n| match c.local.security.check_policy([&n.security.keying]) {
                            Ok(()) => Ok(n),
                            Err(SecurityError::NotEncrypted) => Err(String::new()),
                            Err(e) => Err(e.to_string()),
                        },
                    );
                    match neg {
                        Ok(n) => {
                            if let Err(e) = self.start_media(ua_id, n, true) {
                                tracing::error!("{e}");
                            }
                            if let Some(v) = vneg {
                                self.start_video(ua_id, v);
                            }
                            if has_content {
                                self.start_content(ua_id);
                            }
                        }
                        Err(e) => {
                            let reason = if e.is_empty() {
                                tracing::warn!(call = %c.id, "the far end answered without encryption, which is required here; hanging up");
                                EndReason::NotEncrypted
                            } else {
                                tracing::warn!(call = %c.id, "unusable answer: {e}");
                                EndReason::Failed(format!("unusable answer: {e}"))
                            };
                            c.end_reason = Some(reason);
                            // drain() (our caller) sends the BYE.
                            let _ = self.ua.hangup(Instant::now(), ua_id);
                            return;
                        }
                    }
                }
                if let Some(c) = self.calls.get(&ua_id) {
                    tracing::info!(call = %c.id, "call established");
                }
                self.update_call_state(ua_id).await;
            }
            UaEvent::CallUpdated { call, remote_sdp } => {
                tracing::debug!(?call, sdp = %remote_sdp, "remote SDP changed");
                if self.calls.get(&call).is_some_and(|c| c.video_change.is_some()) {
                    self.video_answered(call, &remote_sdp);
                    self.update_call_state(call).await;
                }
            }
            UaEvent::Reoffer { call, remote_sdp } => self.on_reoffer(call, &remote_sdp).await,
            UaEvent::CallHeld { call } => self.peer_hold(call, true).await,
            UaEvent::CallResumed { call } => self.peer_hold(call, false).await,
            UaEvent::CallUpdateFailed { call, code } => {
                tracing::warn!(?call, code, "the peer refused our new offer");
                if let Some(c) = self.calls.get_mut(&call)
                    && c.video_change.take() == Some(true)
                {
                    (c.local_video, c.video_sockets) = (None, None);
                }
            }
            UaEvent::PictureFastUpdate { call } => {
                if let Some(v) = self.calls.get(&call).and_then(|c| c.video.as_ref()) {
                    tracing::info!("keyframe requested by SIP INFO (picture_fast_update)");
                    v.force_keyframe();
                }
            }
            UaEvent::DtmfInfo { call, digit, .. } => {
                tracing::info!(?call, %digit, "DTMF received (SIP INFO)");
            }
            UaEvent::AutoDtmf { call, digits, rfc4733 } => self.auto_dtmf(call, digits, rfc4733),
            UaEvent::CallEnded { call, reason } => {
                if matches!(reason, SipEnd::Transport | SipEnd::Timeout) && self.next_server(call) {
                    return;
                }
                self.ended(call, reason).await
            }
            UaEvent::CloseStream { peer, error } => {
                tracing::warn!(%peer, %error, "closing a TCP connection that sent unframeable bytes");
                self.sockets.stream_closed(peer);
            }
        }
    }

    /// The peer's new offer in an established call: follow media that moved, start or stop
    /// video as the offer adds or drops it, and answer (488, the call unchanged, when the offer
    /// cannot be used).
    async fn on_reoffer(&mut self, ua_id: huis_sip::CallId, text: &str) {
        let r = match self.reoffer_answer(ua_id, text) {
            Ok(sdp) => self.ua.answer_reoffer(Instant::now(), ua_id, Ok(&sdp)),
            Err(e) => {
                tracing::warn!(call = ?ua_id, "refusing the peer's new offer (488): {e}");
                self.ua.answer_reoffer(Instant::now(), ua_id, Err(488))
            }
        };
        if let Err(e) = r {
            tracing::warn!(call = ?ua_id, "answering the peer's new offer: {e}");
        }
        self.update_call_state(ua_id).await;
    }

    fn reoffer_answer(&mut self, ua_id: huis_sip::CallId, text: &str) -> Result<String, String> {
        let offer = SessionDescription::parse(text).map_err(|e| e.to_string())?;
        let call = self.calls.get(&ua_id).ok_or("the call has ended")?;
        let wants_video = offer.media.iter().any(|m| m.kind == "video" && m.port != 0);
        if wants_video && call.video.is_none() && call.local_video.is_none() {
            // Video added: ports and our m-line, as for a new call.
            let (sockets, lv) = self.bind_video();
            let call = self.calls.get_mut(&ua_id).ok_or("the call has ended")?;
            (call.video_sockets, call.local_video) = (sockets, lv);
        }
        let call = self.calls.get_mut(&ua_id).ok_or("the call has ended")?;
        call.had_video |= offer.media.iter().any(|m| m.kind == "video");
        let cur = call.negotiated.clone().ok_or("the call's audio has not started")?;
        let (mut answer, neg, mut vneg) =
            call.local.answer_with_video(&offer, call.local_video.as_ref()).map_err(|e| e.to_string())?;
        if neg.codec != cur.codec || neg.payload_type != cur.payload_type {
            return Err(format!(
                "the audio codec would change from {} to {}",
                codec_label(cur.codec),
                codec_label(neg.codec)
            ));
        }
        if neg.security.keying != cur.security.keying {
            // New keys would need the streams restarted; the agreed ones stay in force.
            tracing::warn!(call = %call.id, "the peer's new offer changes the media keys; the agreed keys are kept");
        }
        if let Some(m) = answer.media.iter_mut().find(|m| m.kind == "audio" && m.port != 0) {
            LocalSecurity::keep_agreed(m, &cur.security);
        }
        if vneg.as_ref().is_some_and(|v| call.local.security.check_policy([&v.security.keying]).is_err()) {
            tracing::warn!(call = %call.id, "the peer offers video without encryption, which is required here; video refused");
            vneg = None;
            if let Some(m) = answer.media.iter_mut().find(|m| m.kind == "video") {
                m.port = 0;
            }
        }
        // Audio that moved.
        let to = SocketAddr::new(neg.remote_address, neg.remote_port);
        if to != SocketAddr::new(cur.remote_address, cur.remote_port) {
            if let Some(m) = &call.media {
                m.set_remote(to, None).map_err(|e| e.to_string())?;
            }
            tracing::info!(call = %call.id, remote = %to, "the peer moved the call's audio");
            if let Some(n) = call.negotiated.as_mut() {
                (n.remote_address, n.remote_port) = (neg.remote_address, neg.remote_port);
            }
        }
        let mut start = None;
        match (call.video.is_some(), vneg) {
            (true, Some(v)) => {
                if let Some(agreed) = &call.video_security
                    && let Some(m) = answer.media.iter_mut().find(|m| m.kind == "video" && m.port != 0)
                {
                    LocalSecurity::keep_agreed(m, agreed);
                }
                if let Some(session) = &call.video {
                    session
                        .set_remote(SocketAddr::new(v.remote_address, v.remote_port), None)
                        .map_err(|e| e.to_string())?;
                }
            }
            (true, None) => {
                stop_video(call);
                tracing::info!(call = %call.id, "the peer dropped video; the call goes on audio only");
            }
            (false, Some(v)) => start = Some(v),
            (false, None) => (call.local_video, call.video_sockets) = (None, None),
        }
        if let Some(c) = call.content.as_mut() {
            c.answer_into(&offer, &mut answer, call.local.direction, &call.local.security);
        }
        call.sdp_version += 1;
        answer.origin.session_version = call.sdp_version;
        if let Some(v) = start {
            tracing::info!(call = %call.id, "the peer added video");
            self.start_video(ua_id, v);
        }
        self.start_content(ua_id);
        Ok(answer.to_text())
    }

    async fn peer_hold(&mut self, ua_id: huis_sip::CallId, held: bool) {
        if let Some(c) = self.calls.get_mut(&ua_id) {
            c.held_by_peer = held;
            let dir = if held { MediaDirection::RecvOnly } else { MediaDirection::SendRecv };
            if let Some(m) = &c.media {
                m.set_direction(dir);
            }
            if let Some(v) = &c.video {
                v.set_direction(dir);
            }
            tracing::info!(call = %c.id, held, "the peer changed hold");
        }
        self.update_call_state(ua_id).await;
    }

    fn auto_dtmf(&mut self, ua_id: huis_sip::CallId, digits: Vec<huis_sip::dtmf::DtmfItem>, rfc4733: bool) {
        let s: String = digits
            .iter()
            .map(|d| match d {
                huis_sip::dtmf::DtmfItem::Digit(c) => *c,
                huis_sip::dtmf::DtmfItem::Pause => ',',
            })
            .collect();
        let visio = self.calls.get_mut(&ua_id).and_then(|c| c.visio.as_mut());
        if let Some(v) = visio {
            // About 0.25 s a digit (tone and gap); the refusal window counts from the last.
            v.given_at = Some(Instant::now() + Duration::from_millis(250 * digits.len() as u64));
            tracing::info!(call = ?ua_id, digits = digits.len(), rfc4733, "sending the meeting PIN by DTMF");
        } else {
            tracing::info!(call = ?ua_id, digits = %s, rfc4733, "sending the destination's DTMF");
        }
        if rfc4733 && let Some(m) = self.calls.get(&ua_id).and_then(|c| c.media.as_ref()) {
            if let Err(e) = m.send_dtmf(&s) {
                tracing::warn!("DTMF: {e}");
            }
        }
    }

    async fn ended(&mut self, ua_id: huis_sip::CallId, reason: SipEnd) {
        if reason == SipEnd::NoCommonCodec && self.retry_refused_offer(ua_id) {
            return;
        }
        let Some(mut c) = self.calls.remove(&ua_id) else { return };
        if c.media.is_some() {
            *self.audio.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if let Some(content) = c.content.as_mut() {
            content.stop();
        }
        // Stopping flushes the last packets and an RTCP BYE (up to a second): not on this task.
        // Audio and video stop side by side; once both are gone, what their threads freed goes
        // back to the system (see `release_freed_memory`).
        let stopping: Vec<_> = [
            c.media.take().map(|m| tokio::task::spawn_blocking(move || m.stop())),
            c.video.take().map(|v| tokio::task::spawn_blocking(move || v.stop())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !stopping.is_empty() {
            tokio::spawn(async move {
                for t in stopping {
                    let _ = t.await;
                }
                let _ = tokio::task::spawn_blocking(crate::media::release_freed_memory).await;
            });
        }
        let no_common_codec = reason == SipEnd::NoCommonCodec;
        let reason = match reason {
            SipEnd::Transport => EndReason::Failed(
                c.next_hop
                    .and_then(|a| self.transport_errors.get(&a))
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "the next hop could not be reached".into()),
            ),
            other => end_reason(other),
        };
        // A refusal (488/606) of an encrypted offer under "required": the far end cannot (or will
        // not) encrypt, and that is what people need to read.
        let refused_encryption = no_common_codec
            && !c.established
            && c.info.direction == Direction::Outgoing
            && self.policy == EncryptionPolicy::Required
            && c.local.security.offer_kind().is_encrypted();
        // A gateway that hangs up soon after our PIN refused it (see `VisioCall`).
        let pin_refused = reason == EndReason::RemoteHangup
            && c.visio.as_ref().and_then(|v| v.given_at).is_some_and(|t| Instant::now() < t + PIN_REFUSED_WINDOW);
        let reason = match c.end_reason.take() {
            Some(r) => r,
            None if refused_encryption => EndReason::NotEncrypted,
            None if pin_refused => EndReason::PinRefused,
            None => reason,
        };
        tracing::info!(call = %c.id, reason = %reason, "call ended");
        self.emit(call::Event::Ended { id: c.id, reason }).await;
    }

    /// The far end refused (488/606) our offer before answering: after SDES, offer DTLS-SRTP;
    /// after that (best-effort only), plain RTP, once. The room sees one call. Whether it
    /// called again.
    fn retry_refused_offer(&mut self, ua_id: huis_sip::CallId) -> bool {
        let Some(c) = self.calls.get_mut(&ua_id) else { return false };
        if c.established {
            return false;
        }
        let Some((target, hop)) = c.redial.clone() else { return false };
        let sec = &mut c.local.security;
        let next = if sec.offer_kind() == RtpProto::Sdes && sec.fingerprint.is_some() {
            sec.sdes_refused = true;
            "DTLS-SRTP"
        } else if self.policy == EncryptionPolicy::BestEffort {
            sec.plain_retry = true;
            c.redial = None;
            "plain RTP (best-effort)"
        } else {
            return false;
        };
        let offer = first_offer(&c.local, c.local_video.as_ref(), c.content.as_ref());
        let (ua_target, opts) = invite_args(c.visio.as_ref(), &target);
        match self.ua.invite_with(Instant::now(), &ua_target, hop, &offer, opts) {
            Ok(new_id) => {
                let Some(c) = self.calls.remove(&ua_id) else { return false };
                tracing::info!(call = %c.id, "the far end refused our media offer; calling again with {next}");
                self.calls.insert(new_id, c);
                true
            }
            Err(e) => {
                tracing::warn!("cannot call again with {next}: {e}");
                false
            }
        }
    }

    /// Reads how each call's media is protected now: `Encrypted` and `MediaEncryption` follow it,
    /// and a DTLS-SRTP failure (a certificate that does not match its fingerprint, no handshake)
    /// ends the call, since no media passes.
    async fn check_protection(&mut self) {
        let mut changed = Vec::new();
        let mut failed = Vec::new();
        for (ua_id, c) in self.calls.iter_mut() {
            let Some(m) = &c.media else { continue };
            let audio = m.protection();
            let video = c.video.as_ref().map(|v| v.protection());
            let slides = c.content.as_ref().and_then(|c| c.session()).map(|v| v.protection());
            for p in std::iter::once(&audio).chain(video.as_ref()).chain(slides.as_ref()) {
                if let Protection::DtlsFailed(why) = p {
                    failed.push((*ua_id, c.id, why.clone()));
                }
            }
            let label = encryption_label(&audio, video.as_ref());
            let encrypted = c.info.signalling_tls
                && audio.is_encrypted()
                && video.as_ref().is_none_or(|v| v.is_encrypted())
                && slides.as_ref().is_none_or(|v| v.is_encrypted());
            if label != c.info.media_encryption || encrypted != c.info.encrypted {
                c.info.media_encryption = label;
                c.info.encrypted = encrypted;
                changed.push(call::Event::Changed { id: c.id, info: c.info.clone() });
            }
        }
        for ev in changed {
            self.emit(ev).await;
        }
        for (ua_id, id, why) in failed {
            if let Some(c) = self.calls.get_mut(&ua_id)
                && c.end_reason.is_none()
            {
                tracing::error!(call = %id, "hanging up: DTLS-SRTP failed: {why}");
                c.end_reason = Some(EndReason::Failed(format!("media encryption failed: {why}")));
                let _ = self.ua.hangup(Instant::now(), ua_id);
                self.drain().await;
            }
        }
    }

    /// Polls the media sessions: events, and (every second) statistics for the room.
    async fn tick(&mut self, publish_stats: bool) {
        self.keyframe_requests_by_info().await;
        self.check_protection().await;
        let mut hang = Vec::new();
        let mut stats = Vec::new();
        for (ua_id, c) in &self.calls {
            let Some(m) = &c.media else { continue };
            while let Some(ev) = m.poll_event() {
                match ev {
                    MediaEvent::Dtmf { digit } => tracing::info!(call = %c.id, %digit, "DTMF received (RFC 4733)"),
                    MediaEvent::RtpTimeout { silent_for } => {
                        tracing::warn!(call = %c.id, secs = silent_for.as_secs(), "no media from the peer; hanging up");
                        hang.push((*ua_id, silent_for.as_secs()));
                    }
                    MediaEvent::Error(e) => tracing::error!(call = %c.id, error = %e, "call audio failed"),
                    other => tracing::debug!(call = %c.id, ?other, "media"),
                }
            }
            if publish_stats {
                let video = c.video.as_ref().map(|v| video_stats_map(&v.stats())).unwrap_or_default();
                let content = c
                    .content
                    .as_ref()
                    .and_then(|c| c.session())
                    .map(|v| video_stats_map(&v.stats()))
                    .unwrap_or_default();
                stats.push(call::Event::Stats {
                    id: c.id,
                    stats: CallStats { audio: stats_map(&m.stats()), video, content },
                });
            }
        }
        for ev in stats {
            self.emit(ev).await;
        }
        if publish_stats {
            // The received content's size is known only once frames arrive.
            let ids: Vec<huis_sip::CallId> = self.calls.keys().copied().collect();
            for ua_id in ids {
                self.update_presentation(ua_id).await;
            }
        }
        for (ua_id, secs) in hang {
            if let Some(c) = self.calls.get_mut(&ua_id)
                && c.end_reason.is_none()
            {
                c.end_reason = Some(EndReason::MediaTimeout { secs });
            }
            let _ = self.ua.hangup(Instant::now(), ua_id);
            self.drain().await;
        }
    }

    /// Our decoding broke and the peer takes no RTCP keyframe requests: ask by SIP INFO.
    async fn keyframe_requests_by_info(&mut self) {
        let mut wanted = Vec::new();
        for (ua_id, c) in self.calls.iter_mut() {
            if let Some(v) = c.video.as_ref().filter(|_| c.keyframes_by_info) {
                let n = v.keyframe_requests_sent();
                if n > c.keyframe_requests_seen {
                    c.keyframe_requests_seen = n;
                    wanted.push((*ua_id, c.id));
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        for (ua_id, id) in wanted {
            match self.ua.send_info_picture_fast_update(Instant::now(), ua_id) {
                Ok(true) => {
                    tracing::info!(call = %id, "asked the far end for a keyframe by SIP INFO (picture_fast_update)")
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(call = %id, "no keyframe request by INFO: {e}"),
            }
        }
        self.drain().await;
    }

    /// Ends every call (shutdown).
    async fn shutdown(&mut self) {
        let ids: Vec<huis_sip::CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let _ = self.ua.hangup(Instant::now(), id);
        }
        self.drain().await;
        for (_, mut c) in self.calls.drain() {
            c.media.take();
            c.video.take();
            if let Some(content) = c.content.as_mut() {
                content.stop();
            }
        }
        *self.audio.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The media parameters of one negotiated stream's security.
fn media_keys(dtls: Option<&DtlsCertificate>, s: &MediaSecurity) -> (Option<SrtpParams>, Option<DtlsParams>) {
    match &s.keying {
        Keying::Plain => (None, None),
        Keying::Sdes { suite, local, remote } => (
            Some(SrtpParams {
                profile: srtp_profile(*suite),
                send_key: local.bytes().to_vec(),
                recv_key: remote.bytes().to_vec(),
            }),
            None,
        ),
        Keying::Dtls { client, remote } => (
            None,
            Some(DtlsParams { pem: dtls.and_then(|c| c.pem.clone()), client: *client, remote_fingerprint: remote.0 }),
        ),
    }
}

impl Call {
    fn new(
        id: CallId,
        info: CallInfo,
        local: LocalMedia,
        sockets: Option<RtpSockets>,
        remote_offer: Option<String>,
        local_video: Option<LocalVideo>,
        video_sockets: Option<RtpSockets>,
    ) -> Call {
        Call {
            id,
            info,
            local,
            sockets,
            media: None,
            negotiated: None,
            local_video,
            video_sockets,
            video: None,
            keyframes_by_info: false,
            keyframe_requests_seen: 0,
            remote_offer,
            established: false,
            held_by_us: false,
            held_by_peer: false,
            sdp_version: 1,
            redial: None,
            end_reason: None,
            video_security: None,
            video_change: None,
            had_video: false,
            next_hop: None,
            retry: None,
            visio: None,
            content: None,
        }
    }
}

/// `Room1.Registration`'s text for a registration state, and the `LastError` of a failure.
fn registration_text(state: &RegistrationState, transport_error: Option<String>) -> (String, Option<String>) {
    match state {
        RegistrationState::Unregistered => ("unregistered".to_string(), None),
        RegistrationState::Registering => ("registering".to_string(), None),
        RegistrationState::Registered { expires } => (format!("registered ({expires} s)"), None),
        RegistrationState::Failed { reason, .. } => {
            let why = match reason {
                RegistrationFailure::AuthFailed => {
                    "authentication failed: check account.user and account.password".to_string()
                }
                RegistrationFailure::Timeout => "no answer from the registrar".to_string(),
                RegistrationFailure::Rejected(c, r) => format!("refused by the registrar: {c} {r}"),
                RegistrationFailure::BadChallenge(m) => format!("cannot answer the registrar's challenge: {m}"),
                RegistrationFailure::Transport => {
                    transport_error.unwrap_or_else(|| "cannot reach the registrar".to_string())
                }
            };
            (format!("failed: {why}"), Some(format!("registration failed: {why}")))
        }
    }
}
