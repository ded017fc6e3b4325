//! A small bounded SDP (RFC 8866) parser and writer, and audio offer/answer (RFC 3264).
//!
//! Only what a SIP room system needs is modelled: origin, session name, connection at session
//! or media level, media lines with their formats and attributes (rtpmap, fmtp, direction).
//! Every other line is kept as text so nothing is lost. Any number of m-lines is accepted: audio
//! is negotiated here, other kinds (video comes next) are answered with port 0 for now.
//!
//! **Codec choice.** The answer picks the first codec of *our* preference list that the offer
//! contains (not the offerer's order): the room system's configuration decides quality and
//! bandwidth. The answer then lists that one codec (plus `telephone-event` at the same clock rate
//! when offered and enabled), so both sides know exactly which codec flows.

use std::fmt::Write as _;
use std::net::IpAddr;
use thiserror::Error;

use crate::sdp_security::{Keying, LocalSecurity, MediaSecurity, RtpProto};

/// Largest SDP body accepted, in bytes.
pub const MAX_SDP_LEN: usize = 16 * 1024;
const MAX_LINES: usize = 512;
const MAX_MEDIA: usize = 16;
const MAX_FORMATS: usize = 64;

/// Why an SDP body is unusable. The UA answers an offer failing with any of these with 488.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// Longer than [`MAX_SDP_LEN`], or too many lines, media or formats.
    #[error("SDP too large")]
    TooLarge,
    /// A line is not valid SDP; `line` counts from 1.
    #[error("malformed SDP at line {line}: {reason}")]
    Malformed {
        /// Line number from 1 (0 when not tied to a line).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// No audio stream in the offer that we can use (or none at all).
    #[error("no usable audio stream")]
    NoAudio,
    /// Audio offered, but none of our codecs.
    #[error("no common audio codec")]
    NoCommonCodec,
    /// The audio stream's media security is unusable or refused by policy.
    #[error("{0}")]
    Security(#[from] crate::sdp_security::SecurityError),
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answerer uses for an offered direction (RFC 3264 §6.1), given what the
    /// answerer itself wants.
    pub fn answer_to(self, wanted: Direction) -> Direction {
        let (offer_send, offer_recv) = self.flags();
        let (want_send, want_recv) = wanted.flags();
        Direction::from_flags(want_send && offer_recv, want_recv && offer_send)
    }

    /// True if the peer using this direction puts the call on hold (it will not receive).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }

    fn flags(self) -> (bool, bool) {
        match self {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        }
    }

    fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when none).
    pub username: String,
    /// Session id.
    pub session_id: String,
    /// Session version; incremented for each new offer or answer that changes the session.
    pub session_version: u64,
    /// Unicast address of the originator.
    pub address: String,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: String,
    /// Formats (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// Media-level connection address.
    pub connection: Option<IpAddr>,
    /// `a=` attributes in order: name and optional value.
    pub attributes: Vec<(String, Option<String>)>,
    /// Other lines (`b=`, `i=`, ...) kept as text, without the line end.
    pub other: Vec<String>,
}

impl Media {
    /// Values of attribute `name`.
    pub fn attrs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// `a=rtpmap` of payload type `pt`: encoding name, clock rate, channels.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32, u8)> {
        self.attrs("rtpmap").find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            if p.trim().parse::<u8>().ok()? != pt {
                return None;
            }
            let mut it = rest.trim().split('/');
            let name = it.next()?.to_string();
            let clock = it.next()?.parse().ok()?;
            let ch = it.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            Some((name, clock, ch))
        })
    }

    /// `a=fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attrs("fmtp").find_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            (p.trim().parse::<u8>().ok()? == pt).then_some(rest.trim())
        })
    }

    /// The media-level direction attribute, if any.
    pub fn direction_attr(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|(n, _)| Direction::parse(n))
    }

    /// Replaces any direction attribute by `d`.
    pub fn set_direction(&mut self, d: Direction) {
        self.attributes.retain(|(n, _)| Direction::parse(n).is_none());
        self.attributes.push((d.as_str().to_string(), None));
    }

    /// Payload type numbers of the formats that are valid RTP payload types.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|p| *p < 128)
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` line.
    pub origin: Origin,
    /// `s=` line.
    pub session_name: String,
    /// Session-level connection address.
    pub connection: Option<IpAddr>,
    /// Session-level attributes.
    pub attributes: Vec<(String, Option<String>)>,
    /// Other session-level lines (`t=`, `b=`, ...) kept as text.
    pub other: Vec<String>,
    /// Media sections in order.
    pub media: Vec<Media>,
}

fn parse_connection(v: &str, line: usize) -> Result<IpAddr, SdpError> {
    let mut it = v.split_whitespace();
    let (net, kind, addr) = (it.next(), it.next(), it.next());
    if net != Some("IN") || !matches!(kind, Some("IP4") | Some("IP6")) {
        return Err(SdpError::Malformed { line, reason: "c= must be IN IP4|IP6 address" });
    }
    // Multicast TTL suffixes ("/127") are not for us.
    let addr = addr.ok_or(SdpError::Malformed { line, reason: "c= without address" })?;
    addr.parse().map_err(|_| SdpError::Malformed { line, reason: "c= address is not an IP address" })
}

fn parse_attr(v: &str) -> (String, Option<String>) {
    match v.split_once(':') {
        Some((n, val)) => (n.to_string(), Some(val.to_string())),
        None => (v.to_string(), None),
    }
}

impl SessionDescription {
    /// Parses SDP text (CRLF or LF line ends), bounded by [`MAX_SDP_LEN`].
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        if text.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge);
        }
        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut attributes = Vec::new();
        let mut other = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        let mut seen_v = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            if i >= MAX_LINES {
                return Err(SdpError::TooLarge);
            }
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.is_empty() {
                continue;
            }
            let bytes = l.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(SdpError::Malformed { line, reason: "expected <type>=<value>" });
            }
            let (t, v) = (bytes[0], &l[2..]);
            if !seen_v {
                if t != b'v' || v != "0" {
                    return Err(SdpError::Malformed { line, reason: "first line must be v=0" });
                }
                seen_v = true;
                continue;
            }
            match (t, media.last_mut()) {
                (b'o', None) => {
                    let f: Vec<&str> = v.split_whitespace().collect();
                    if f.len() != 6 {
                        return Err(SdpError::Malformed { line, reason: "o= needs 6 fields" });
                    }
                    let session_version =
                        f[2].parse().map_err(|_| SdpError::Malformed { line, reason: "o= version is not a number" })?;
                    origin = Some(Origin {
                        username: f[0].to_string(),
                        session_id: f[1].to_string(),
                        session_version,
                        address: f[5].to_string(),
                    });
                }
                (b's', None) => session_name = v.to_string(),
                (b'c', None) => connection = Some(parse_connection(v, line)?),
                (b'a', None) => attributes.push(parse_attr(v)),
                (b'm', _) => {
                    if media.len() >= MAX_MEDIA {
                        return Err(SdpError::TooLarge);
                    }
                    let f: Vec<&str> = v.split_whitespace().collect();
                    if f.len() < 4 {
                        return Err(SdpError::Malformed { line, reason: "m= needs media, port, proto and formats" });
                    }
                    if f.len() - 3 > MAX_FORMATS {
                        return Err(SdpError::TooLarge);
                    }
                    let port_str = f[1].split('/').next().unwrap_or("");
                    let port = port_str
                        .parse::<u16>()
                        .map_err(|_| SdpError::Malformed { line, reason: "m= port is not a number" })?;
                    media.push(Media {
                        kind: f[0].to_string(),
                        port,
                        proto: f[2].to_string(),
                        formats: f[3..].iter().map(|s| s.to_string()).collect(),
                        connection: None,
                        attributes: Vec::new(),
                        other: Vec::new(),
                    });
                }
                (b'c', Some(m)) => m.connection = Some(parse_connection(v, line)?),
                (b'a', Some(m)) => m.attributes.push(parse_attr(v)),
                (_, Some(m)) => m.other.push(l.to_string()),
                (_, None) => other.push(l.to_string()),
            }
        }
        if !seen_v {
            return Err(SdpError::Malformed { line: 1, reason: "empty SDP" });
        }
        let origin = origin.ok_or(SdpError::Malformed { line: 2, reason: "missing o= line" })?;
        Ok(SessionDescription { origin, session_name, connection, attributes, other, media })
    }

    /// The connection address that applies to media `m` (media level, else session level).
    pub fn media_address(&self, m: &Media) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }

    /// The effective direction of media `m` (media attribute, else session attribute, else
    /// sendrecv).
    pub fn media_direction(&self, m: &Media) -> Direction {
        m.direction_attr()
            .or_else(|| self.attributes.iter().find_map(|(n, _)| Direction::parse(n)))
            .unwrap_or(Direction::SendRecv)
    }

    /// The first audio stream that is not disabled (port ≠ 0).
    pub fn audio(&self) -> Option<&Media> {
        self.media.iter().find(|m| m.kind == "audio" && m.port != 0)
    }

    /// Sets direction `d` on every media section (and drops a session-level direction).
    pub fn set_direction(&mut self, d: Direction) {
        self.attributes.retain(|(n, _)| Direction::parse(n).is_none());
        for m in &mut self.media {
            if m.port != 0 {
                m.set_direction(d);
            }
        }
    }

    /// Increments the origin's session version (needed for each changed offer or answer).
    pub fn bump_version(&mut self) {
        self.origin.session_version = self.origin.session_version.wrapping_add(1);
    }

    /// The SDP text, CRLF line ends.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let ip = |a: &IpAddr| if a.is_ipv4() { "IP4" } else { "IP6" };
        let _ = write!(s, "v=0\r\n");
        let o = &self.origin;
        let oip = if o.address.contains(':') { "IP6" } else { "IP4" };
        let _ = write!(s, "o={} {} {} IN {} {}\r\n", o.username, o.session_id, o.session_version, oip, o.address);
        let name = if self.session_name.is_empty() { "-" } else { &self.session_name };
        let _ = write!(s, "s={name}\r\n");
        if let Some(c) = &self.connection {
            let _ = write!(s, "c=IN {} {}\r\n", ip(c), c);
        }
        let mut has_t = false;
        for l in &self.other {
            has_t |= l.starts_with("t=");
            let _ = write!(s, "{l}\r\n");
        }
        if !has_t {
            s.push_str("t=0 0\r\n");
        }
        for (n, v) in &self.attributes {
            write_attr(&mut s, n, v);
        }
        for m in &self.media {
            let _ = write!(s, "m={} {} {} {}\r\n", m.kind, m.port, m.proto, m.formats.join(" "));
            if let Some(c) = &m.connection {
                let _ = write!(s, "c=IN {} {}\r\n", ip(c), c);
            }
            for l in &m.other {
                let _ = write!(s, "{l}\r\n");
            }
            for (n, v) in &m.attributes {
                write_attr(&mut s, n, v);
            }
        }
        s
    }
}

fn write_attr(s: &mut String, n: &str, v: &Option<String>) {
    match v {
        Some(v) => {
            let _ = write!(s, "a={n}:{v}\r\n");
        }
        None => {
            let _ = write!(s, "a={n}\r\n");
        }
    }
}

/// Audio codecs huis can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus, `opus/48000/2` (RFC 7587), dynamic payload type.
    Opus,
    /// G.722, `G722/8000` (RTP clock 8000 by RFC 3551 even though sampled at 16 kHz), PT 9.
    G722,
    /// G.711 µ-law, PT 0.
    Pcmu,
    /// G.711 A-law, PT 8.
    Pcma,
}

impl Codec {
    /// Encoding name as in `a=rtpmap`.
    pub fn encoding(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        if self == Codec::Opus { 48000 } else { 8000 }
    }

    /// Channel count as written in `a=rtpmap`.
    pub fn channels(self) -> u8 {
        if self == Codec::Opus { 2 } else { 1 }
    }

    /// The static payload type, if the codec has one.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::G722 => Some(9),
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    /// The payload type we use when we offer.
    pub fn offer_pt(self) -> u8 {
        self.static_pt().unwrap_or(111)
    }

    /// Parses a codec name from configuration (`opus`, `g722`, `pcmu`, `pcma`, any case).
    pub fn from_name(s: &str) -> Option<Codec> {
        match s.to_ascii_lowercase().as_str() {
            "opus" => Some(Codec::Opus),
            "g722" => Some(Codec::G722),
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            _ => None,
        }
    }

    fn matches(self, m: &Media, pt: u8) -> bool {
        match m.rtpmap(pt) {
            Some((name, clock, ch)) => {
                name.eq_ignore_ascii_case(self.encoding())
                    && clock == self.clock_rate()
                    && (self != Codec::Opus || ch == 2)
            }
            None => self.static_pt() == Some(pt),
        }
    }
}

/// The `a=fmtp` we send for Opus.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// What we put into offers and answers: where we receive audio and which codecs we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address we receive RTP on.
    pub address: IpAddr,
    /// RTP port for audio.
    pub audio_port: u16,
    /// Codecs in order of preference (first is best).
    pub codecs: Vec<Codec>,
    /// Whether to offer/accept `telephone-event` (RFC 4733).
    pub telephone_event: bool,
    /// Session id for `o=` (any number, stable for the call).
    pub session_id: u64,
    /// Direction we want (sendrecv normally; sendonly to hold).
    pub direction: Direction,
    /// Media encryption and rtcp-mux: what we offer and accept (see [`crate::sdp_security`]).
    pub security: LocalSecurity,
}

impl LocalMedia {
    /// Builds an offer listing all our codecs in preference order, `telephone-event` at 48000
    /// (PT 101, if Opus is offered) and 8000 (PT 100, if an 8 kHz codec is offered).
    pub fn offer(&self) -> SessionDescription {
        let mut m = Media {
            kind: "audio".into(),
            port: self.audio_port,
            proto: "RTP/AVP".into(),
            formats: Vec::new(),
            connection: None,
            attributes: Vec::new(),
            other: Vec::new(),
        };
        for c in &self.codecs {
            push_codec(&mut m, *c, c.offer_pt());
        }
        if self.telephone_event {
            if self.codecs.contains(&Codec::Opus) {
                push_te(&mut m, 101, 48000);
            }
            if self.codecs.iter().any(|c| c.clock_rate() == 8000) {
                push_te(&mut m, 100, 8000);
            }
        }
        m.attributes.push(("ptime".into(), Some("20".into())));
        m.set_direction(self.direction);
        self.security.offer_media(&mut m, 0, false);
        self.session(vec![m])
    }

    fn session(&self, media: Vec<Media>) -> SessionDescription {
        SessionDescription {
            origin: Origin {
                username: "huis".into(),
                session_id: self.session_id.to_string(),
                session_version: 1,
                address: self.address.to_string(),
            },
            session_name: "huis".into(),
            connection: Some(self.address),
            attributes: Vec::new(),
            other: vec!["t=0 0".into()],
            media,
        }
    }

    /// Answers `offer` (RFC 3264 §6): the first offered audio stream with a common codec is
    /// accepted, all other streams get port 0. Fails with [`SdpError::NoCommonCodec`] or
    /// [`SdpError::NoAudio`] when no audio can flow (the UA turns that into 488).
    pub fn answer(&self, offer: &SessionDescription) -> Result<(SessionDescription, Negotiated), SdpError> {
        let mut chosen: Option<Negotiated> = None;
        let mut saw_audio = false;
        let mut security_error = None;
        let mut media = Vec::new();
        for om in &offer.media {
            let mut am = Media {
                kind: om.kind.clone(),
                port: 0,
                proto: om.proto.clone(),
                formats: om.formats.clone(),
                connection: None,
                attributes: Vec::new(),
                other: Vec::new(),
            };
            let usable = chosen.is_none() && om.kind == "audio" && om.port != 0 && RtpProto::parse(&om.proto).is_some();
            if usable {
                saw_audio = true;
                if let Some(n) = self.pick(offer, om) {
                    let security = match self.security.answer_media(offer, om, &mut am, 0) {
                        Ok(s) => s,
                        Err(e) => {
                            security_error.get_or_insert(e);
                            am.attributes.clear();
                            media.push(am);
                            continue;
                        }
                    };
                    am.port = self.audio_port;
                    am.formats = vec![n.payload_type.to_string()];
                    push_codec_with_pt(&mut am, n.codec, n.payload_type);
                    if let Some(te) = n.telephone_event_pt {
                        am.formats.push(te.to_string());
                        push_te(&mut am, te, n.codec.clock_rate());
                    }
                    am.attributes.push(("ptime".into(), Some("20".into())));
                    let d = offer.media_direction(om).answer_to(self.direction);
                    am.set_direction(d);
                    chosen = Some(Negotiated { direction: d, security, ..n });
                }
            }
            if am.port == 0 && am.formats.is_empty() {
                am.formats.push("0".into());
            }
            media.push(am);
        }
        match (chosen, security_error) {
            (Some(n), _) => Ok((self.session(media), n)),
            (None, Some(e)) => Err(SdpError::Security(e)),
            (None, None) if saw_audio => Err(SdpError::NoCommonCodec),
            (None, None) => Err(SdpError::NoAudio),
        }
    }

    /// [`LocalMedia::offer`] plus an H.264 video stream when `video` is given.
    pub fn offer_with_video(&self, video: Option<&crate::sdp_video::LocalVideo>) -> SessionDescription {
        let mut s = self.offer();
        if let Some(v) = video {
            s.media.push(v.offer_media(self.direction, &self.security));
        }
        s
    }

    /// [`LocalMedia::answer`], and the first usable H.264 video stream answered too when `video`
    /// is given (we have a camera and an encoder); otherwise video stays refused (port 0).
    pub fn answer_with_video(
        &self,
        offer: &SessionDescription,
        video: Option<&crate::sdp_video::LocalVideo>,
    ) -> Result<(SessionDescription, Negotiated, Option<crate::sdp_video::NegotiatedVideo>), SdpError> {
        let (mut answer, n) = self.answer(offer)?;
        let mut nv = None;
        if let Some((idx, m, neg)) = video.and_then(|v| v.answer(offer, self.direction, &self.security)) {
            answer.media[idx] = m;
            nv = Some(neg);
        }
        Ok((answer, n, nv))
    }

    fn pick(&self, sdp: &SessionDescription, m: &Media) -> Option<Negotiated> {
        let address = sdp.media_address(m)?;
        for c in &self.codecs {
            if let Some(pt) = m.payload_types().find(|pt| c.matches(m, *pt)) {
                let te = if self.telephone_event { telephone_event_pt(m, c.clock_rate()) } else { None };
                return Some(Negotiated {
                    codec: *c,
                    payload_type: pt,
                    telephone_event_pt: te,
                    remote_address: address,
                    remote_port: m.port,
                    direction: sdp.media_direction(m),
                    remote_fmtp: m.fmtp(pt).map(str::to_string),
                    security: MediaSecurity { keying: Keying::Plain, rtcp_mux: false },
                });
            }
        }
        None
    }

    /// Reads the answer to our offer (made by [`LocalMedia::offer`] or an equivalent): the codec
    /// the answerer chose is the first of its formats that we offered.
    pub fn accept_answer(&self, answer: &SessionDescription) -> Result<Negotiated, SdpError> {
        let m = answer.audio().ok_or(SdpError::NoAudio)?;
        let address = answer.media_address(m).ok_or(SdpError::Malformed { line: 0, reason: "no c= for audio" })?;
        let security = self.security.accept_answer_media(answer, m, 0)?;
        for pt in m.payload_types() {
            if let Some(c) = self.codecs.iter().find(|c| c.matches(m, pt)) {
                let te = if self.telephone_event { telephone_event_pt(m, c.clock_rate()) } else { None };
                return Ok(Negotiated {
                    codec: *c,
                    payload_type: pt,
                    telephone_event_pt: te,
                    remote_address: address,
                    remote_port: m.port,
                    direction: answer.media_direction(m).answer_to(Direction::SendRecv),
                    remote_fmtp: m.fmtp(pt).map(str::to_string),
                    security,
                });
            }
        }
        Err(SdpError::NoCommonCodec)
    }
}

fn telephone_event_pt(m: &Media, clock: u32) -> Option<u8> {
    m.payload_types()
        .find(|pt| m.rtpmap(*pt).is_some_and(|(n, c, _)| n.eq_ignore_ascii_case("telephone-event") && c == clock))
}

fn push_codec(m: &mut Media, c: Codec, pt: u8) {
    m.formats.push(pt.to_string());
    push_codec_with_pt(m, c, pt);
}

fn push_codec_with_pt(m: &mut Media, c: Codec, pt: u8) {
    let map = if c == Codec::Opus {
        format!("{pt} opus/48000/2")
    } else {
        format!("{pt} {}/{}", c.encoding(), c.clock_rate())
    };
    m.attributes.push(("rtpmap".into(), Some(map)));
    if c == Codec::Opus {
        m.attributes.push(("fmtp".into(), Some(format!("{pt} {OPUS_FMTP}"))));
    }
}

fn push_te(m: &mut Media, pt: u8, clock: u32) {
    if !m.formats.contains(&pt.to_string()) {
        m.formats.push(pt.to_string());
    }
    m.attributes.push(("rtpmap".into(), Some(format!("{pt} telephone-event/{clock}"))));
    m.attributes.push(("fmtp".into(), Some(format!("{pt} 0-16"))));
}

/// The outcome of offer/answer for the audio stream: what the media pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Chosen codec.
    pub codec: Codec,
    /// Its payload type on the wire (the offerer's number).
    pub payload_type: u8,
    /// Payload type of `telephone-event` at the codec's clock rate, if both sides have it.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP.
    pub remote_address: IpAddr,
    /// Remote RTP port.
    pub remote_port: u16,
    /// Our direction (what we may do: send, receive, both, none).
    pub direction: Direction,
    /// The peer's fmtp for the codec, if any.
    pub remote_fmtp: Option<String>,
    /// Encryption and rtcp-mux of the audio stream.
    pub security: MediaSecurity,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(codecs: &[Codec]) -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10".parse().unwrap(),
            audio_port: 40000,
            codecs: codecs.to_vec(),
            telephone_event: true,
            session_id: 42,
            direction: Direction::SendRecv,
            security: LocalSecurity::default(),
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0 8 9 96 101 102\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\na=sendrecv\r\n\
m=video 5006 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";

    #[test]
    fn parse_and_write_roundtrip() {
        let s = SessionDescription::parse(OFFER).unwrap();
        assert_eq!(s.media.len(), 2);
        assert_eq!(s.media[0].rtpmap(96), Some(("opus".into(), 48000, 2)));
        assert_eq!(s.media[0].rtpmap(0), None);
        assert_eq!(s.media[0].fmtp(96), Some("useinbandfec=1"));
        let again = SessionDescription::parse(&s.to_text()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn answer_follows_our_preferences() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        let cases: &[(&[Codec], Codec, u8, Option<u8>)] = &[
            (&[Codec::Opus, Codec::G722], Codec::Opus, 96, Some(102)),
            (&[Codec::G722, Codec::Opus], Codec::G722, 9, Some(101)),
            (&[Codec::Pcma, Codec::Pcmu], Codec::Pcma, 8, Some(101)),
            (&[Codec::Pcmu], Codec::Pcmu, 0, Some(101)),
        ];
        for (prefs, codec, pt, te) in cases {
            let (ans, n) = local(prefs).answer(&offer).unwrap();
            assert_eq!((n.codec, n.payload_type, n.telephone_event_pt), (*codec, *pt, *te));
            assert_eq!(n.remote_port, 5004);
            let text = ans.to_text();
            let parsed = SessionDescription::parse(&text).unwrap();
            assert_eq!(parsed.media.len(), 2, "video stays as a rejected m-line");
            assert_eq!(parsed.media[1].port, 0);
            assert_eq!(parsed.media[0].port, 40000);
            // The offerer reads our answer back to the same codec.
            let back = local(&[Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma]).accept_answer(&parsed).unwrap();
            assert_eq!(back.codec, *codec);
        }
        // Without telephone-event enabled it is left out.
        let mut l = local(&[Codec::Pcmu]);
        l.telephone_event = false;
        assert_eq!(l.answer(&offer).unwrap().1.telephone_event_pt, None);
    }

    #[test]
    fn no_common_codec_and_no_audio() {
        let offer = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18\r\n",
        )
        .unwrap();
        assert_eq!(local(&[Codec::Opus]).answer(&offer).unwrap_err(), SdpError::NoCommonCodec);
        let video = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n",
        )
        .unwrap();
        assert_eq!(local(&[Codec::Opus]).answer(&video).unwrap_err(), SdpError::NoAudio);
        // Media-level connection only, and the static PCMU without rtpmap.
        let media_c = SessionDescription::parse(
            "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\nc=IN IP4 203.0.113.5\na=sendonly\n",
        )
        .unwrap();
        let (_, n) = local(&[Codec::Opus, Codec::Pcmu]).answer(&media_c).unwrap();
        assert_eq!(n.remote_address.to_string(), "203.0.113.5");
        assert_eq!(n.direction, Direction::RecvOnly, "a held offer is answered recvonly");
    }

    #[test]
    fn malformed_sdp() {
        for bad in [
            "",
            "x",
            "v=1\r\n",
            "v=0\r\ns=-\r\n",
            "v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 nothost\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nbad line\r\n",
        ] {
            assert!(SessionDescription::parse(bad).is_err(), "{bad:?}");
        }
        let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(5000));
        assert_eq!(SessionDescription::parse(&huge), Err(SdpError::TooLarge));
    }

    #[test]
    fn hold_directions() {
        let mut offer = local(&[Codec::Pcmu]).offer();
        offer.set_direction(Direction::SendOnly);
        offer.bump_version();
        let parsed = SessionDescription::parse(&offer.to_text()).unwrap();
        assert_eq!(parsed.media_direction(&parsed.media[0]), Direction::SendOnly);
        assert_eq!(parsed.origin.session_version, 2);
        assert_eq!(Direction::Inactive.answer_to(Direction::SendRecv), Direction::Inactive);
        assert_eq!(Direction::RecvOnly.answer_to(Direction::SendRecv), Direction::SendOnly);
    }
}
