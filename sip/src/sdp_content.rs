//! The presentation in SDP: a second `m=video` marked `a=content:slides` (RFC 4796) with an
//! `a=label` (RFC 4574), and the `m=application … UDP/BFCP *` stream whose floor controls it
//! (RFC 8856, attributes read and written by `huis_bfcp::sdp`).
//!
//! Both are offered in the first INVITE and answered in the answer to one, as room systems do:
//! the presentation channel is set up once and used when someone shares. A peer that refuses
//! them (port 0) or leaves them out has no content in this call; the call itself goes on.
//!
//! **Offer.** The slides stream is our H.264 video m-line (see [`crate::sdp_video`]) with
//! `a=content:slides` and `a=label:` [`CONTENT_LABEL`]; the BFCP stream offers `UDP/BFCP`,
//! `a=floorctrl:c-s` (either role: huis can run the floor itself), `a=confid`, `a=userid` and
//! `a=floorid:` [`FLOOR_ID`] `mstrm:` the slides label, `a=bfcpver:2`.
//!
//! **Answer.** The first offered video stream with `a=content:slides` is answered as video is,
//! keeping the offerer's label for it; the first BFCP stream over `UDP/BFCP` or `TCP/BFCP` is
//! answered with `floorctrl` preferring client (the offerer's server arbitrates), its conference
//! and floor ids, and a user id of ours. The TLS protos are refused (port 0): the shell runs no
//! DTLS or TLS for BFCP yet.
//!
//! Bounds: the session was bounded by [`SessionDescription::parse`]; the BFCP section is re-read
//! by `huis_bfcp::sdp::parse_media` with its own bounds (64 lines of 1 KiB, 16 floors).

use std::net::IpAddr;

use huis_bfcp::sdp::{self as bfcp_sdp, BfcpMedia, FloorCtrl, FloorId, Proto, Role};

use crate::sdp::{Direction, Media, SessionDescription};
use crate::sdp_security::LocalSecurity;
use crate::sdp_video::{LocalVideo, NegotiatedVideo};

/// The `a=label` of our slides stream.
pub const CONTENT_LABEL: &str = "3";
/// The floor we offer for the presentation.
pub const FLOOR_ID: u16 = 1;
/// Index of the slides stream for per-stream key material (audio 0, video 1).
const CONTENT_INDEX: usize = 2;

/// What we support of content, for offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContent {
    /// The slides stream: H.264 as the main video, on its own port and bitrate.
    pub video: LocalVideo,
    /// Our BFCP port (UDP).
    pub bfcp_port: u16,
    /// `a=confid` we offer (any number, stable for the call).
    pub conf_id: u32,
    /// `a=userid` we offer or answer with when we may run the floor: the user id the far end
    /// takes as our floor client (RFC 8856 §5: the server hands the client its ids).
    pub user_id: u16,
}

/// Our own user id as the floor control server: never the one we handed to the far end.
pub fn server_user_id(client: u16) -> u16 {
    if client >= u16::MAX - 1 { 1 } else { client + 1 }
}

/// The BFCP stream both sides agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedBfcp {
    /// `UDP/BFCP` or `TCP/BFCP`.
    pub proto: Proto,
    /// Where the far end's BFCP is.
    pub remote_address: IpAddr,
    /// Its port.
    pub remote_port: u16,
    /// Our role: [`Role::Client`] (the far end runs the floor) or [`Role::Server`].
    pub role: Role,
    /// The conference id of the BFCP messages.
    pub conf_id: u32,
    /// Our user id in BFCP messages: as a client the one the far end's server gave us in its
    /// SDP, as the server our own (see [`server_user_id`]).
    pub user_id: u16,
    /// The far end's user id: as the server, the one we gave it; as a client, unknown.
    pub remote_user_id: Option<u16>,
    /// The floor that controls the slides stream.
    pub floor_id: u16,
}

/// The outcome of offer/answer for the presentation: both streams, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedContent {
    /// The slides stream.
    pub video: NegotiatedVideo,
    /// Its floor control.
    pub bfcp: NegotiatedBfcp,
}

/// The stream is a presentation (`a=content:slides`, RFC 4796; several values may be listed).
pub fn is_content(m: &Media) -> bool {
    m.kind == "video" && m.attrs("content").any(|v| v.split(',').any(|c| c.trim().eq_ignore_ascii_case("slides")))
}

fn is_bfcp(m: &Media) -> bool {
    m.kind == "application" && m.proto.to_ascii_uppercase().ends_with("BFCP")
}

/// The media section as SDP text, for `huis_bfcp::sdp::parse_media`.
fn section_text(m: &Media) -> String {
    let mut s = format!("m={} {} {} {}\r\n", m.kind, m.port, m.proto, m.formats.join(" "));
    for (n, v) in m.attributes.iter().take(bfcp_sdp::MAX_LINES) {
        match v {
            Some(v) => s += &format!("a={n}:{v}\r\n"),
            None => s += &format!("a={n}\r\n"),
        }
    }
    s
}

/// `BfcpMedia` as our SDP model's media section.
fn to_media(b: &BfcpMedia) -> Media {
    let text = bfcp_sdp::build_media(b);
    let mut m = Media {
        kind: "application".into(),
        port: b.port,
        proto: b.proto.as_str().into(),
        formats: vec!["*".into()],
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    };
    for l in text.lines().skip(1) {
        if let Some(a) = l.strip_prefix("a=") {
            m.attributes.push(match a.split_once(':') {
                Some((n, v)) => (n.into(), Some(v.into())),
                None => (a.into(), None),
            });
        }
    }
    m
}

fn slides_attrs(m: &mut Media, label: &str) {
    m.attributes.retain(|(n, _)| n != "content" && n != "label");
    m.attributes.push(("content".into(), Some("slides".into())));
    m.attributes.push(("label".into(), Some(label.into())));
}

fn refused(om: &Media) -> Media {
    Media {
        kind: om.kind.clone(),
        port: 0,
        proto: om.proto.clone(),
        formats: if om.formats.is_empty() { vec!["*".into()] } else { om.formats.clone() },
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    }
}

impl LocalContent {
    /// Our two m-lines for an offer: the slides video, then BFCP.
    pub fn offer_media(&self, direction: Direction, security: &LocalSecurity) -> [Media; 2] {
        let mut v = self.video.offer_media(direction, security);
        // The slides' own key material where there is some (SDES); else the last is reused.
        v.attributes.retain(|(n, _)| n != "crypto");
        security.offer_media(&mut v, CONTENT_INDEX, false);
        dedup_attrs(&mut v);
        slides_attrs(&mut v, CONTENT_LABEL);
        let b = BfcpMedia {
            port: self.bfcp_port,
            proto: Proto::UdpBfcp,
            floorctrl: vec![FloorCtrl::ClientServer],
            confid: Some(self.conf_id),
            userid: Some(self.user_id),
            floors: vec![FloorId { id: FLOOR_ID, labels: vec![CONTENT_LABEL.into()] }],
            bfcpver: vec![2],
            setup: None,
            connection: None,
        };
        [v, to_media(&b)]
    }

    /// Answers the offer's presentation: the m-lines to put at their indexes in our answer
    /// (the rest of the answer refuses them with port 0 already), and what was agreed. Both
    /// streams or none: slides without floor control (or the reverse) are refused.
    pub fn answer(
        &self,
        offer: &SessionDescription,
        direction: Direction,
        security: &LocalSecurity,
    ) -> (Vec<(usize, Media)>, Option<NegotiatedContent>) {
        let mut out = Vec::new();
        let vi = offer.media.iter().position(|m| is_content(m) && m.port != 0);
        let bi = offer.media.iter().position(|m| is_bfcp(m) && m.port != 0);
        let (Some(vi), Some(bi)) = (vi, bi) else {
            return (out, None);
        };
        let refuse_both = |out: &mut Vec<(usize, Media)>| {
            out.push((vi, refused(&offer.media[vi])));
            out.push((bi, refused(&offer.media[bi])));
        };
        // The slides stream is answered as video is: offer it alone to the video answerer.
        let mut only = offer.clone();
        for (i, m) in only.media.iter_mut().enumerate() {
            if i != vi {
                m.port = 0;
            }
        }
        let Some((_, mut vm, nv)) = self.video.answer_keyed(&only, direction, security, CONTENT_INDEX) else {
            refuse_both(&mut out);
            return (out, None);
        };
        let om = &offer.media[vi];
        let label = om.attrs("label").next().filter(|l| !l.is_empty() && l.len() <= 64).unwrap_or(CONTENT_LABEL);
        slides_attrs(&mut vm, label);

        let ob = &offer.media[bi];
        let Ok(theirs) = bfcp_sdp::parse_media(&section_text(ob)) else {
            refuse_both(&mut out);
            return (out, None);
        };
        let Some(remote_address) = offer.media_address(ob) else {
            refuse_both(&mut out);
            return (out, None);
        };
        let proto_ok = matches!(theirs.proto, Proto::UdpBfcp | Proto::TcpBfcp);
        let floorctrl = bfcp_sdp::answer_floorctrl(&theirs.floorctrl, Role::Client);
        // The floor that controls the slides: the one naming their label, else the first.
        let floor = theirs
            .floors
            .iter()
            .find(|f| f.labels.iter().any(|l| l == label))
            .or(theirs.floors.first())
            .map_or(FLOOR_ID, |f| f.id);
        let (true, Some(fc)) = (proto_ok, floorctrl) else {
            refuse_both(&mut out);
            return (out, None);
        };
        let role = if fc == FloorCtrl::ServerOnly { Role::Server } else { Role::Client };
        let conf_id = theirs.confid.unwrap_or(self.conf_id);
        // As a client we are who the far end's server says; as the server we name the far end.
        let (user_id, remote_user_id) = match role {
            Role::Client => (theirs.userid.unwrap_or(self.user_id), None),
            _ => (server_user_id(self.user_id), Some(self.user_id)),
        };
        // Over TCP we answer passive: the offerer connects (RFC 8856 §8, RFC 4145).
        let tcp = theirs.proto == Proto::TcpBfcp;
        let ours = BfcpMedia {
            port: self.bfcp_port,
            proto: theirs.proto,
            floorctrl: vec![fc],
            confid: Some(conf_id),
            userid: Some(if role == Role::Client { user_id } else { self.user_id }),
            floors: vec![FloorId { id: floor, labels: vec![label.to_owned()] }],
            bfcpver: if theirs.bfcpver.is_empty() { vec![] } else { vec![if tcp { 1 } else { 2 }] },
            setup: tcp.then_some(bfcp_sdp::Setup::Passive),
            connection: tcp.then_some(bfcp_sdp::Connection::New),
        };
        out.push((vi, vm));
        out.push((bi, to_media(&ours)));
        let bfcp = NegotiatedBfcp {
            proto: theirs.proto,
            remote_address,
            remote_port: ob.port,
            role,
            conf_id,
            user_id,
            remote_user_id,
            floor_id: floor,
        };
        (out, Some(NegotiatedContent { video: nv, bfcp }))
    }

    /// Reads the answer to our offer (made with [`LocalContent::offer_media`]). `None`: no
    /// content in this call (refused, absent, or answered in a way we cannot use).
    pub fn accept_answer(&self, answer: &SessionDescription, security: &LocalSecurity) -> Option<NegotiatedContent> {
        if !answer.media.iter().any(|m| is_content(m) && m.port != 0) {
            return None;
        }
        let bm = answer.media.iter().find(|m| is_bfcp(m) && m.port != 0)?;
        // The video reader takes the first video stream: hand it the slides one alone.
        let mut only = answer.clone();
        only.media.retain(|m| !(m.kind == "video" && m.port != 0) || is_content(m));
        let video = self.video.accept_answer_keyed(&only, security, CONTENT_INDEX)?;
        let theirs = bfcp_sdp::parse_media(&section_text(bm)).ok()?;
        if !matches!(theirs.proto, Proto::UdpBfcp) {
            return None;
        }
        let roles = bfcp_sdp::negotiate_roles(&[FloorCtrl::ClientServer], &theirs.floorctrl).ok()?;
        // Both: we offered, so we run the floor (one server is enough).
        let role = match roles.offerer {
            Role::Both | Role::Server => Role::Server,
            Role::Client => Role::Client,
        };
        let (user_id, remote_user_id) = match role {
            Role::Client => (theirs.userid.unwrap_or(self.user_id), None),
            _ => (server_user_id(self.user_id), Some(self.user_id)),
        };
        Some(NegotiatedContent {
            video,
            bfcp: NegotiatedBfcp {
                proto: theirs.proto,
                remote_address: answer.media_address(bm)?,
                remote_port: bm.port,
                role,
                conf_id: theirs.confid.unwrap_or(self.conf_id),
                user_id,
                remote_user_id,
                floor_id: theirs.floors.first().map_or(FLOOR_ID, |f| f.id),
            },
        })
    }
}

/// Drops repeated attributes (the same name and value), keeping the first.
fn dedup_attrs(m: &mut Media) {
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    m.attributes.retain(|a| {
        if seen.contains(a) {
            false
        } else {
            seen.push(a.clone());
            true
        }
    });
}

/// Reads a whole SDP text as an answerer would, for the fuzz target: parse, answer the
/// presentation, read it back as an answer. Never panics.
pub fn fuzz_content(text: &str) {
    let Ok(offer) = SessionDescription::parse(text) else { return };
    let local = LocalContent {
        video: LocalVideo { port: 40004, level_idc: 40, max_kbps: 1500, rtcp_feedback: true, high_profiles: false },
        bfcp_port: 40006,
        conf_id: 1,
        user_id: 2,
    };
    let sec = LocalSecurity::default();
    let (lines, _) = local.answer(&offer, Direction::SendRecv, &sec);
    let _ = lines.len();
    let _ = local.accept_answer(&offer, &sec);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Codec, LocalMedia};

    fn local(port_base: u16, user: u16) -> (LocalMedia, LocalVideo, LocalContent) {
        (
            LocalMedia {
                address: "192.0.2.10".parse().unwrap(),
                audio_port: port_base,
                codecs: vec![Codec::Opus, Codec::Pcmu],
                telephone_event: true,
                session_id: 42,
                direction: Direction::SendRecv,
                security: Default::default(),
            },
            LocalVideo {
                port: port_base + 2,
                level_idc: 31,
                max_kbps: 2000,
                rtcp_feedback: true,
                high_profiles: false,
            },
            LocalContent {
                video: LocalVideo {
                    port: port_base + 4,
                    level_idc: 40,
                    max_kbps: 1200,
                    rtcp_feedback: true,
                    high_profiles: false,
                },
                bfcp_port: port_base + 6,
                conf_id: 7,
                user_id: user,
            },
        )
    }

    fn offer_of(m: &LocalMedia, v: &LocalVideo, c: &LocalContent) -> SessionDescription {
        let mut s = m.offer_with_video(Some(v));
        s.media.extend(c.offer_media(Direction::SendRecv, &m.security));
        s
    }

    #[test]
    fn offer_carries_slides_and_bfcp() {
        let (m, v, c) = local(40000, 1);
        let text = offer_of(&m, &v, &c).to_text();
        for want in [
            "m=video 40004 RTP/AVP 96 97 98 99\r\n",
            "a=content:slides\r\n",
            "a=label:3\r\n",
            "m=application 40006 UDP/BFCP *\r\n",
            "a=floorctrl:c-s\r\n",
            "a=confid:7\r\n",
            "a=userid:1\r\n",
            "a=floorid:1 mstrm:3\r\n",
            "a=bfcpver:2\r\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        // Reparses, and the main video stays the first video.
        let s = SessionDescription::parse(&text).unwrap();
        assert_eq!(s.media.len(), 4);
        assert!(!is_content(&s.media[1]) && is_content(&s.media[2]));
    }

    #[test]
    fn two_rooms_agree_offerer_runs_the_floor() {
        let (ma, va, ca) = local(40000, 1);
        let (mb, vb, cb) = local(50000, 2);
        let offer = SessionDescription::parse(&offer_of(&ma, &va, &ca).to_text()).unwrap();
        let (mut answer, _, main) = mb.answer_with_video(&offer, Some(&vb)).unwrap();
        assert_eq!(main.unwrap().remote_port, 40002, "the main video is the camera's, not the slides");
        let (lines, nb) = cb.answer(&offer, Direction::SendRecv, &mb.security);
        for (i, l) in lines {
            answer.media[i] = l;
        }
        let nb = nb.expect("content agreed");
        assert_eq!(nb.bfcp.role, Role::Client);
        assert_eq!((nb.bfcp.remote_port, nb.bfcp.conf_id, nb.bfcp.floor_id), (40006, 7, 1));
        // B is A's client: it takes the user id A's offer gave it.
        assert_eq!((nb.bfcp.user_id, nb.bfcp.remote_user_id), (1, None));
        assert_eq!(nb.video.remote_port, 40004);
        let text = answer.to_text();
        assert!(text.contains("m=application 50006 UDP/BFCP *\r\na=floorctrl:c-only\r\n"), "{text}");
        assert!(text.contains("a=content:slides\r\na=label:3\r\n"), "{text}");

        let answer = SessionDescription::parse(&text).unwrap();
        let na = ca.accept_answer(&answer, &ma.security).expect("content accepted");
        assert_eq!(na.bfcp.role, Role::Server);
        // A runs the floor: B is user 1, A itself another.
        assert_eq!((na.bfcp.remote_port, na.bfcp.remote_user_id), (50006, Some(1)));
        assert_ne!(na.bfcp.user_id, 1);
        assert_eq!(na.video.remote_port, 50004);
        // The main video reader still takes the camera's stream.
        assert_eq!(va.accept_answer(&answer, &ma.security).unwrap().remote_port, 50002);
    }

    const PEER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n\
m=video 5006 RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\na=fmtp:109 profile-level-id=428016;packetization-mode=1\r\n\
m=video 5008 RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\na=fmtp:109 profile-level-id=428016;packetization-mode=1\r\n\
a=content:slides\r\na=label:12\r\n\
m=application 5010 TCP/BFCP *\r\na=floorctrl:c-only s-only\r\na=confid:4321\r\na=userid:9\r\n\
a=floorid:2 mstrm:12\r\na=setup:actpass\r\na=connection:new\r\n";

    #[test]
    fn a_room_system_offer_over_tcp_is_answered_as_server_when_it_is_client() {
        let (_, _, c) = local(40000, 1);
        let offer = SessionDescription::parse(PEER).unwrap();
        let (lines, n) = c.answer(&offer, Direction::SendRecv, &Default::default());
        let n = n.unwrap();
        // It offers c-only and s-only; we prefer client, so it is the server.
        assert_eq!(n.bfcp.role, Role::Client);
        assert_eq!((n.bfcp.proto, n.bfcp.conf_id, n.bfcp.floor_id), (Proto::TcpBfcp, 4321, 2));
        // Its server named us user 9.
        assert_eq!(n.bfcp.user_id, 9);
        assert_eq!(lines.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 3]);
        let b = &lines[1].1;
        assert!(b.attrs("setup").any(|v| v == "passive"));
        assert!(b.attrs("floorid").any(|v| v == "2 mstrm:12"));
        assert!(lines[0].1.attrs("label").any(|v| v == "12"));
    }

    #[test]
    fn a_peer_without_content_means_no_content_never_a_failed_call() {
        let (_, _, c) = local(40000, 1);
        // No content streams at all.
        let plain =
            "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let (lines, n) = c.answer(&SessionDescription::parse(plain).unwrap(), Direction::SendRecv, &Default::default());
        assert!(lines.is_empty() && n.is_none());
        assert!(c.accept_answer(&SessionDescription::parse(plain).unwrap(), &Default::default()).is_none());
        // Slides refused (port 0) in an answer.
        let refused = PEER.replace("m=video 5008", "m=video 0");
        assert!(c.accept_answer(&SessionDescription::parse(&refused).unwrap(), &Default::default()).is_none());
        // BFCP over TLS: both refused, each with port 0.
        let tls = PEER.replace("TCP/BFCP", "TCP/TLS/BFCP");
        let (lines, n) = c.answer(&SessionDescription::parse(&tls).unwrap(), Direction::SendRecv, &Default::default());
        assert!(n.is_none());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|(_, m)| m.port == 0));
        // A bad floorctrl value: refused, not a failure.
        let bad = PEER.replace("a=floorctrl:c-only s-only", "a=floorctrl:boss");
        let (_, n) = c.answer(&SessionDescription::parse(&bad).unwrap(), Direction::SendRecv, &Default::default());
        assert!(n.is_none());
        fuzz_content(&bad);
        fuzz_content(PEER);
    }
}
