//! The call manager: the tokio shell around the sans-IO SIP core, the RTP
//! media of each call, and the `org.huis.Call1` objects.
//!
//! It lives inside the room task (see `room.rs`): socket reader tasks turn
//! packets into room commands, the room task feeds them to [`huis_sip::UserAgent`]
//! with the current time, and this module carries out what the UA asks —
//! sending bytes, starting and stopping GStreamer sessions, publishing state.

pub mod dbus;
mod net;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use huis_sip::sdp::{Codec, Direction as SdpDirection, LocalMedia, Negotiated, SessionDescription};
use huis_sip::sdp_video::{LocalVideo, NegotiatedVideo};
use huis_sip::{
    Account, CallId, Destination, EndReason, Event, Input, RegistrationFailure, RegistrationState, TransportKind,
    UserAgent,
};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::media::{
    AudioCodec, AudioRx, AudioSession, AudioSessionParams, AudioTx, CodecParams, Direction as MediaDirection,
    MediaEvent, RtpSockets, RtxPayloadTypes, TelephoneEvent, VideoFeedback, VideoSession, VideoSessionParams,
};
use crate::room::Command;
pub use net::SipSockets;

/// The audio of the call in progress, as the audio engine sees it.
pub struct CallAudio {
    pub tx: AudioTx,
    pub rx: AudioRx,
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
    /// Where the current call's video figures go (Video1.Stats).
    pub props: Arc<crate::dbus::iface::Props>,
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

/// Shared between the call manager and the audio engine thread.
pub type CallAudioSlot = Arc<Mutex<Option<CallAudio>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    Outgoing,
    Incoming,
}

/// One call and what belongs to it.
struct Call {
    /// Number in the D-Bus path `/org/huis/Room1/Calls/<n>`.
    n: u32,
    direction: CallDirection,
    remote_uri: String,
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
    props: Arc<Mutex<dbus::CallProps>>,
}

/// What the room needs to know after the call manager did its work.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The room's call state changed (Dialing, Ringing, InCall, Idle).
    State(crate::room::RoomState),
    IncomingCall(String),
    CallEnded {
        reason: String,
        failure: bool,
    },
    Registration(String, Option<String>),
}

pub struct CallManager {
    ua: UserAgent,
    sockets: SipSockets,
    advertised: IpAddr,
    codecs: Vec<Codec>,
    rtp_ports: std::ops::RangeInclusive<u16>,
    calls: HashMap<CallId, Call>,
    next_n: u32,
    audio: CallAudioSlot,
    conn: zbus::Connection,
    auto_answer: bool,
    muted: bool,
    room_tx: mpsc::Sender<Command>,
    video: Option<VideoSetup>,
}

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

pub fn codec_label(c: Codec) -> String {
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

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_le_bytes(b)
}

impl CallManager {
    /// Binds the SIP sockets and builds the user agent from the configuration.
    pub async fn start(
        cfg: &Config,
        conn: zbus::Connection,
        audio: CallAudioSlot,
        room_tx: mpsc::Sender<Command>,
        video: Option<VideoSetup>,
    ) -> anyhow::Result<CallManager> {
        let listen: SocketAddr = cfg.sip.listen.parse()?;
        let advertised = if !cfg.sip.public_address.is_empty() {
            cfg.sip.public_address.parse()?
        } else if !listen.ip().is_unspecified() {
            listen.ip()
        } else {
            net::first_interface_address().unwrap_or(IpAddr::from([127, 0, 0, 1]))
        };
        let sockets = SipSockets::bind(listen, room_tx.clone()).await?;
        let local_addr = SocketAddr::new(advertised, sockets.port());
        let mut ucfg = huis_sip::Config::new(&cfg.sip.user, &advertised.to_string(), local_addr);
        ucfg.display_name = Some(cfg.room.name.clone());
        ucfg.auto_answer = cfg.call.auto_answer;
        ucfg.codecs = cfg.call.audio_codecs.iter().filter_map(|c| codec_of(c)).collect();
        ucfg.rng_seed = random_u64();
        if !cfg.account.registrar.is_empty() {
            let host = cfg.account.registrar.trim_start_matches("sip:");
            let proxy: SocketAddr = if !cfg.account.proxy.is_empty() {
                cfg.account.proxy.parse()?
            } else {
                net::resolve(host, 5060).await?
            };
            let transport = if cfg.account.transport == "tcp" { TransportKind::Tcp } else { TransportKind::Udp };
            let domain = host.split(':').next().unwrap_or(host);
            ucfg.accounts.push(Account {
                aor: format!("sip:{}@{}", cfg.account.user, domain),
                registrar: cfg.account.registrar.clone(),
                proxy: Destination { addr: proxy, transport },
                username: cfg.account.user.clone(),
                password: cfg.account.password.clone(),
                expires: cfg.account.expires,
            });
            ucfg.user = cfg.account.user.clone();
            ucfg.domain = domain.to_owned();
        }
        let codecs = ucfg.codecs.clone();
        let m = CallManager {
            ua: UserAgent::new(ucfg),
            sockets,
            advertised,
            codecs,
            rtp_ports: cfg.sip.rtp_port_min..=cfg.sip.rtp_port_max,
            calls: HashMap::new(),
            next_n: 1,
            audio,
            conn,
            auto_answer: cfg.call.auto_answer,
            muted: false,
            room_tx,
            video,
        };
        tracing::info!(listen = %listen, contact = %local_addr, "SIP ready (UDP and TCP)");
        Ok(m)
    }

    /// Registers the configured account (if any) and sends the REGISTER now.
    pub async fn start_registration(&mut self) -> Vec<Notice> {
        if self.ua.config().accounts.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.ua.register(Instant::now(), 0) {
            tracing::warn!(error = %e, "cannot register");
        }
        self.drain().await
    }

    /// How to call this room.
    pub fn sip_uri(&self) -> String {
        let c = self.ua.config();
        let host = match c.local_addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("sip:{}@{}:{}", c.user, host, c.local_addr.port())
    }

    /// When the UA next needs `on_timeout`.
    pub fn deadline(&self) -> Option<Instant> {
        self.ua.poll_timeout()
    }

    pub fn in_call(&self) -> bool {
        !self.calls.is_empty()
    }

    pub async fn on_input(&mut self, input: Input<'_>) -> Vec<Notice> {
        self.ua.handle_input(Instant::now(), input);
        self.drain().await
    }

    pub async fn on_timeout(&mut self) -> Vec<Notice> {
        self.ua.handle_timeout(Instant::now());
        self.drain().await
    }

    pub fn stream_opened(&mut self, peer: SocketAddr, tx: mpsc::UnboundedSender<Vec<u8>>) {
        self.sockets.stream_opened(peer, tx);
    }

    pub fn stream_closed(&mut self, peer: SocketAddr) {
        self.sockets.stream_closed(peer);
    }

    fn bind_rtp(&self) -> Result<RtpSockets, String> {
        let bind_ip = if self.advertised.is_loopback() { self.advertised } else { IpAddr::from([0, 0, 0, 0]) };
        RtpSockets::bind_in_range(bind_ip, self.rtp_ports.clone()).map_err(|e| e.to_string())
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
                };
                (Some(s), Some(lv))
            }
            Err(e) => {
                tracing::warn!("no ports for video, the call is audio only: {e}");
                (None, None)
            }
        }
    }

    fn local_media(&self, port: u16) -> LocalMedia {
        LocalMedia {
            address: self.advertised,
            audio_port: port,
            codecs: self.codecs.clone(),
            telephone_event: true,
            session_id: random_u64() % 1_000_000_000,
            direction: SdpDirection::SendRecv,
        }
    }

    /// Places a call to `target` (a `sip:` URI, possibly with `;dtmf=`).
    pub async fn dial(&mut self, target: &str) -> Result<Vec<Notice>, String> {
        if self.in_call() {
            return Err("the room is already in a call; hang up first".into());
        }
        let hop = match self.ua.route_for(target) {
            Some(h) => h,
            None => net::resolve_target(target).await?,
        };
        let sockets = self.bind_rtp()?;
        let port = sockets.local_rtp().port();
        let local = self.local_media(port);
        let (vsock, lv) = self.bind_video();
        let offer = local.offer_with_video(lv.as_ref()).to_text();
        let id = self.ua.invite(Instant::now(), target, hop, &offer).map_err(|e| e.to_string())?;
        let uri = target.split(";dtmf=").next().unwrap_or(target).to_owned();
        self.add_call(id, CallDirection::Outgoing, uri, local, Some(sockets), None).await;
        if let Some(c) = self.calls.get_mut(&id) {
            c.local_video = lv;
            c.video_sockets = vsock;
        }
        let mut notices = vec![Notice::State(crate::room::RoomState::Dialing)];
        notices.extend(self.drain().await);
        Ok(notices)
    }

    async fn add_call(
        &mut self,
        id: CallId,
        dir: CallDirection,
        uri: String,
        local: LocalMedia,
        sockets: Option<RtpSockets>,
        offer: Option<String>,
    ) {
        let n = self.next_n;
        self.next_n += 1;
        let props = Arc::new(Mutex::new(dbus::CallProps {
            remote_uri: uri.clone(),
            direction: if dir == CallDirection::Outgoing { "outgoing" } else { "incoming" }.into(),
            state: if dir == CallDirection::Outgoing { "dialing" } else { "incoming" }.into(),
            ..Default::default()
        }));
        dbus::serve(&self.conn, n, props.clone(), self.room_tx.clone()).await;
        self.calls.insert(
            id,
            Call {
                n,
                direction: dir,
                remote_uri: uri,
                local,
                sockets,
                media: None,
                negotiated: None,
                local_video: None,
                video_sockets: None,
                video: None,
                keyframes_by_info: false,
                keyframe_requests_seen: 0,
                remote_offer: offer,
                established: false,
                held_by_us: false,
                held_by_peer: false,
                sdp_version: 1,
                props,
            },
        );
    }

    fn current(&self) -> Option<CallId> {
        self.calls.keys().min().copied()
    }

    /// The call with D-Bus number `n`, or the current call for 0.
    fn by_n(&self, n: u32) -> Option<CallId> {
        if n == 0 {
            return self.current();
        }
        self.calls.iter().find(|(_, c)| c.n == n).map(|(id, _)| *id)
    }

    pub async fn answer(&mut self, n: u32) -> Result<Vec<Notice>, String> {
        let id = self.by_n(n).ok_or("there is no incoming call to answer")?;
        let call = self.calls.get_mut(&id).ok_or("no such call")?;
        if call.direction != CallDirection::Incoming || call.established {
            return Err("there is no incoming call to answer".into());
        }
        let offer_text =
            call.remote_offer.clone().ok_or("the caller sent no SDP offer; such calls are not supported")?;
        let offer = SessionDescription::parse(&offer_text).map_err(|e| e.to_string())?;
        let (answer, neg, vneg) =
            call.local.answer_with_video(&offer, call.local_video.as_ref()).map_err(|e| e.to_string())?;
        if vneg.is_none() {
            // Audio only: the video m-line (if any) went back with port 0; free the ports.
            call.local_video = None;
            call.video_sockets = None;
        }
        self.ua.answer(Instant::now(), id, &answer.to_text()).map_err(|e| e.to_string())?;
        self.start_media(id, neg, false)?;
        if let Some(v) = vneg {
            self.start_video(id, v);
        }
        self.drain_ok().await
    }

    async fn drain_ok(&mut self) -> Result<Vec<Notice>, String> {
        Ok(self.drain().await)
    }

    /// Hangs up call `n` (0: the current call): CANCEL before answer, BYE after.
    pub async fn hangup(&mut self, n: u32) -> Result<Vec<Notice>, String> {
        let id = self.by_n(n).ok_or("the room is not in a call")?;
        let incoming_unanswered = self
            .calls
            .get(&id)
            .is_some_and(|c| c.direction == CallDirection::Incoming && !c.established && c.media.is_none());
        if incoming_unanswered {
            self.ua.reject(Instant::now(), id, 603).map_err(|e| e.to_string())?;
        } else {
            self.ua.hangup(Instant::now(), id).map_err(|e| e.to_string())?;
        }
        self.drain_ok().await
    }

    pub async fn hold(&mut self, n: u32, hold: bool) -> Result<Vec<Notice>, String> {
        let id = self.by_n(n).ok_or("the room is not in a call")?;
        let call = self.calls.get_mut(&id).ok_or("no such call")?;
        if !call.established {
            return Err("the call is not established yet".into());
        }
        let mut local = call.local.clone();
        // On hold the room is neither heard nor hears: a=inactive, nothing sent but RTCP.
        local.direction = if hold { SdpDirection::Inactive } else { SdpDirection::SendRecv };
        call.sdp_version += 1;
        let mut sdp = local.offer_with_video(call.local_video.as_ref());
        sdp.origin.session_version = call.sdp_version;
        let text = sdp.to_text();
        if hold {
            self.ua.hold(Instant::now(), id, &text).map_err(|e| e.to_string())?;
        } else {
            self.ua.resume(Instant::now(), id, &text).map_err(|e| e.to_string())?;
        }
        call.held_by_us = hold;
        if let Some(m) = &call.media {
            m.set_direction(if hold { MediaDirection::Inactive } else { MediaDirection::SendRecv });
        }
        if let Some(v) = &call.video {
            v.set_direction(if hold { MediaDirection::Inactive } else { MediaDirection::SendRecv });
        }
        self.update_call_state(id);
        self.drain_ok().await
    }

    /// Sends DTMF on call `n`: RFC 4733 events when negotiated, SIP INFO otherwise.
    pub async fn send_dtmf(&mut self, n: u32, digits: &str) -> Result<Vec<Notice>, String> {
        let id = self.by_n(n).ok_or("the room is not in a call")?;
        let call = self.calls.get(&id).ok_or("no such call")?;
        if !call.established {
            return Err("the call is not established yet".into());
        }
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || "*#ABCD,".contains(c)) {
            return Err(format!("'{digits}' is not a DTMF string (0-9 * # A-D, and , for a pause)"));
        }
        let rfc4733 = call.negotiated.as_ref().is_some_and(|n| n.telephone_event_pt.is_some());
        match (&call.media, rfc4733) {
            (Some(m), true) => m.send_dtmf(digits).map_err(|e| e.to_string())?,
            _ => self.ua.send_info_dtmf(Instant::now(), id, digits).map_err(|e| e.to_string())?,
        }
        tracing::info!(call = call.n, digits, rfc4733, "sending DTMF");
        self.drain_ok().await
    }

    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        for c in self.calls.values() {
            if let Some(m) = &c.media {
                m.set_muted(muted);
            }
        }
    }

    fn start_media(&mut self, id: CallId, neg: Negotiated, we_offered: bool) -> Result<(), String> {
        let call = self.calls.get_mut(&id).ok_or("no such call")?;
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
        p.cname = format!("huis@{}", self.advertised);
        if let Some(pt) = neg.telephone_event_pt {
            let mut te = TelephoneEvent::new(pt, neg.codec.clock_rate());
            if we_offered {
                te.recv_payload_type = Some(if neg.codec == Codec::Opus { 101 } else { 100 });
            }
            p.telephone_event = Some(te);
        }
        p.direction = media_direction(neg.direction);
        let session = AudioSession::start(p).map_err(|e| format!("cannot start the call's audio: {e}"))?;
        session.set_muted(self.muted);
        *self.audio.lock().unwrap() = Some(CallAudio { tx: session.sender(), rx: session.receiver() });
        {
            let mut pr = call.props.lock().unwrap();
            pr.audio_codec = codec_label(neg.codec);
        }
        tracing::info!(call = call.n, codec = %codec_label(neg.codec), remote = %remote, "call audio started");
        call.media = Some(session);
        call.negotiated = Some(neg);
        Ok(())
    }

    /// Starts the call's video once SDP negotiated it. A failure leaves the call audio only.
    fn start_video(&mut self, id: CallId, neg: NegotiatedVideo) {
        let Some(setup) = self.video.clone() else { return };
        let Some(call) = self.calls.get_mut(&id) else { return };
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
            cname: format!("huis@{}", self.advertised),
            direction: media_direction(neg.direction),
            jitter_buffer: std::time::Duration::from_millis(50),
            rtcp_interval: std::time::Duration::from_secs(1),
            far_channel: crate::media::video::FAR_CHANNEL.into(),
            self_channel: crate::media::video::SELF_CHANNEL.into(),
            on_capture: None,
            rtcp_mux: false,
            srtp: None,
        };
        match VideoSession::start(p) {
            Ok(v) => {
                call.props.lock().unwrap().video_codec = format!("H264/90000 {width}x{height}");
                call.keyframes_by_info = !(f.pli || f.fir);
                call.keyframe_requests_seen = 0;
                tracing::info!(call = call.n, size = %format!("{width}x{height}"), mode = neg.packetization_mode, "call video started");
                call.video = Some(v);
            }
            Err(e) => tracing::error!(call = call.n, "cannot start the call's video, audio only: {e}"),
        }
    }

    fn update_call_state(&self, id: CallId) {
        if let Some(c) = self.calls.get(&id) {
            let s = if c.held_by_us || c.held_by_peer {
                "held"
            } else if c.established {
                "active"
            } else if c.direction == CallDirection::Incoming {
                "incoming"
            } else {
                "dialing"
            };
            let changed = {
                let mut p = c.props.lock().unwrap();
                let ch = p.state != s;
                p.state = s.into();
                ch
            };
            if changed {
                let (conn, n, s) = (self.conn.clone(), c.n, s.to_owned());
                tokio::spawn(async move { dbus::emit_state(&conn, n, &s).await });
            }
        }
    }

    /// Sends what the UA wants sent and turns its events into room notices.
    async fn drain(&mut self) -> Vec<Notice> {
        let mut notices = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(t) = self.ua.poll_transmit() {
                progressed = true;
                self.sockets.send(t).await;
            }
            while let Some(ev) = self.ua.poll_event() {
                progressed = true;
                self.on_event(ev, &mut notices).await;
            }
            if !progressed {
                break;
            }
        }
        notices
    }

    async fn on_event(&mut self, ev: Event, notices: &mut Vec<Notice>) {
        use crate::room::RoomState;
        tracing::debug!(?ev, "SIP event");
        match ev {
            Event::Registration { state, .. } => {
                let (text, err) = match &state {
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
                            RegistrationFailure::BadChallenge(m) => {
                                format!("cannot answer the registrar's challenge: {m}")
                            }
                        };
                        (format!("failed: {why}"), Some(format!("registration failed: {why}")))
                    }
                };
                tracing::info!(registration = %text, "SIP account");
                notices.push(Notice::Registration(text, err));
            }
            Event::IncomingCall { call, from, remote_sdp, auto_answer } => {
                if self.calls.len() > 0 {
                    let _ = self.ua.reject(Instant::now(), call, 486);
                    return;
                }
                let sockets = match self.bind_rtp() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot take a call: {e}");
                        let _ = self.ua.reject(Instant::now(), call, 500);
                        return;
                    }
                };
                let local = self.local_media(sockets.local_rtp().port());
                let offers_video = remote_sdp.as_deref().is_some_and(|s| s.contains("m=video"));
                let (vsock, lv) = if offers_video { self.bind_video() } else { (None, None) };
                let uri = from.clone();
                self.add_call(call, CallDirection::Incoming, uri.clone(), local, Some(sockets), remote_sdp).await;
                if let Some(c) = self.calls.get_mut(&call) {
                    c.local_video = lv;
                    c.video_sockets = vsock;
                }
                tracing::info!(from = %from, "incoming call");
                notices.push(Notice::State(RoomState::Ringing));
                notices.push(Notice::IncomingCall(from));
                if auto_answer || self.auto_answer {
                    let n = self.calls[&call].n;
                    if let Err(e) = Box::pin(self.answer(n)).await {
                        tracing::warn!("auto-answer failed: {e}");
                        let _ = self.ua.reject(Instant::now(), call, 488);
                    }
                }
            }
            Event::CallRinging { call, .. } => {
                if let Some(c) = self.calls.get(&call) {
                    c.props.lock().unwrap().state = "alerting".into();
                    let (conn, n) = (self.conn.clone(), c.n);
                    tokio::spawn(async move { dbus::emit_state(&conn, n, "alerting").await });
                }
            }
            Event::CallEstablished { call, remote_sdp } => {
                let Some(c) = self.calls.get_mut(&call) else { return };
                c.established = true;
                if c.direction == CallDirection::Outgoing {
                    let sdp = remote_sdp
                        .as_deref()
                        .ok_or_else(|| "the answer has no SDP".to_string())
                        .and_then(|t| SessionDescription::parse(t).map_err(|e| e.to_string()));
                    let vneg = match (&sdp, &c.local_video) {
                        (Ok(s), Some(lv)) => lv.accept_answer(s),
                        _ => None,
                    };
                    if vneg.is_none() {
                        c.video_sockets = None;
                    }
                    match sdp.and_then(|sdp| c.local.accept_answer(&sdp).map_err(|e| e.to_string())) {
                        Ok(n) => {
                            if let Err(e) = self.start_media(call, n, true) {
                                tracing::error!("{e}");
                            }
                            if let Some(v) = vneg {
                                self.start_video(call, v);
                            }
                        }
                        Err(e) => tracing::warn!("unusable answer: {e}"),
                    }
                }
                tracing::info!(call = self.calls[&call].n, "call established");
                self.update_call_state(call);
                notices.push(Notice::State(RoomState::InCall));
            }
            Event::CallUpdated { call, remote_sdp } => {
                tracing::debug!(?call, sdp = %remote_sdp, "remote SDP changed");
            }
            Event::CallHeld { call } => self.peer_hold(call, true),
            Event::CallResumed { call } => self.peer_hold(call, false),
            Event::CallUpdateFailed { call, code } => {
                tracing::warn!(?call, code, "the peer refused our hold/resume");
            }
            Event::PictureFastUpdate { call } => {
                if let Some(v) = self.calls.get(&call).and_then(|c| c.video.as_ref()) {
                    tracing::info!("keyframe requested by SIP INFO (picture_fast_update)");
                    v.force_keyframe();
                }
            }
            Event::DtmfInfo { call, digit, .. } => {
                tracing::info!(?call, %digit, "DTMF received (SIP INFO)");
            }
            Event::AutoDtmf { call, digits, rfc4733 } => self.auto_dtmf(call, digits, rfc4733),
            Event::CallEnded { call, reason } => self.ended(call, reason, notices).await,
            Event::CloseStream { peer, error } => {
                tracing::warn!(%peer, %error, "closing a TCP connection that sent unframeable bytes");
                self.sockets.stream_closed(peer);
            }
        }
    }

    fn peer_hold(&mut self, call: CallId, held: bool) {
        {
            if let Some(c) = self.calls.get_mut(&call) {
                c.held_by_peer = held;
                if let Some(m) = &c.media {
                    m.set_direction(if held { MediaDirection::RecvOnly } else { MediaDirection::SendRecv });
                }
                if let Some(v) = &c.video {
                    v.set_direction(if held { MediaDirection::RecvOnly } else { MediaDirection::SendRecv });
                }
                tracing::info!(call = c.n, held, "the peer changed hold");
            }
        }
        self.update_call_state(call);
    }

    fn auto_dtmf(&mut self, call: CallId, digits: Vec<huis_sip::dtmf::DtmfItem>, rfc4733: bool) {
        let s: String = digits
            .iter()
            .map(|d| match d {
                huis_sip::dtmf::DtmfItem::Digit(c) => *c,
                huis_sip::dtmf::DtmfItem::Pause => ',',
            })
            .collect();
        tracing::info!(?call, digits = %s, rfc4733, "sending the destination's DTMF");
        if rfc4733 {
            if let Some(m) = self.calls.get(&call).and_then(|c| c.media.as_ref()) {
                if let Err(e) = m.send_dtmf(&s) {
                    tracing::warn!("DTMF: {e}");
                }
            }
        }
    }

    async fn ended(&mut self, call: CallId, reason: EndReason, notices: &mut Vec<Notice>) {
        let Some(mut c) = self.calls.remove(&call) else { return };
        *self.audio.lock().unwrap() = None;
        if let Some(m) = c.media.take() {
            // Stopping flushes the last packets and an RTCP BYE (up to a second): not on this task.
            tokio::task::spawn_blocking(move || m.stop());
        }
        if let Some(v) = c.video.take() {
            tokio::task::spawn_blocking(move || v.stop());
        }
        dbus::remove(&self.conn, c.n).await;
        let failure = !matches!(reason, EndReason::LocalHangup | EndReason::RemoteHangup | EndReason::Cancelled);
        let text = if failure { format!("call to {} failed: {reason}", c.remote_uri) } else { reason.to_string() };
        tracing::info!(call = c.n, reason = %reason, "call ended");
        notices.push(Notice::CallEnded { reason: text, failure });
        if self.calls.is_empty() {
            notices.push(Notice::State(crate::room::RoomState::Idle));
        }
    }

    /// Polls the media sessions: events, and statistics for Call1.Stats.
    pub async fn tick(&mut self, publish_stats: bool) -> Vec<Notice> {
        let mut out = self.keyframe_requests_by_info().await;
        let mut hang = Vec::new();
        for (id, c) in &self.calls {
            if let Some(m) = &c.media {
                while let Some(ev) = m.poll_event() {
                    match ev {
                        MediaEvent::Dtmf { digit } => tracing::info!(call = c.n, %digit, "DTMF received (RFC 4733)"),
                        MediaEvent::RtpTimeout { silent_for } => {
                            tracing::warn!(
                                call = c.n,
                                secs = silent_for.as_secs(),
                                "no media from the peer; hanging up"
                            );
                            hang.push(*id);
                        }
                        MediaEvent::Error(e) => tracing::error!(call = c.n, error = %e, "call audio failed"),
                        other => tracing::debug!(call = c.n, ?other, "media"),
                    }
                }
                if publish_stats {
                    let s = m.stats();
                    let mut stats = dbus::stats_map(&s);
                    if let Some(v) = &c.video {
                        let vs = dbus::video_stats_map(&v.stats());
                        if let Some(setup) = &self.video {
                            setup.props.video.lock().unwrap().stats = vs.clone();
                        }
                        stats.extend(vs.into_iter().map(|(k, v)| (format!("video_{k}"), v)));
                    }
                    c.props.lock().unwrap().stats = stats.clone();
                    let (conn, n) = (self.conn.clone(), c.n);
                    tokio::spawn(async move { dbus::emit_stats(&conn, n).await });
                }
            }
        }
        for id in hang {
            let _ = self.ua.hangup(Instant::now(), id);
            out.extend(self.drain().await);
        }
        out
    }

    /// Our decoding broke and the peer takes no RTCP keyframe requests: ask by SIP INFO.
    async fn keyframe_requests_by_info(&mut self) -> Vec<Notice> {
        let mut wanted = Vec::new();
        for (id, c) in self.calls.iter_mut() {
            if let Some(v) = c.video.as_ref().filter(|_| c.keyframes_by_info) {
                let n = v.keyframe_requests_sent();
                if n > c.keyframe_requests_seen {
                    c.keyframe_requests_seen = n;
                    wanted.push((*id, c.n));
                }
            }
        }
        if wanted.is_empty() {
            return Vec::new();
        }
        for (id, n) in wanted {
            match self.ua.send_info_picture_fast_update(Instant::now(), id) {
                Ok(true) => {
                    tracing::info!(call = n, "asked the far end for a keyframe by SIP INFO (picture_fast_update)")
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(call = n, "no keyframe request by INFO: {e}"),
            }
        }
        self.drain().await
    }

    /// Ends every call (shutdown).
    pub async fn shutdown(&mut self) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let _ = self.ua.hangup(Instant::now(), id);
        }
        self.drain().await;
        for (_, mut c) in self.calls.drain() {
            c.media.take();
            c.video.take();
        }
        *self.audio.lock().unwrap() = None;
    }
}
