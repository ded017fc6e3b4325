//! H.264 video in SDP (RFC 6184 §8): the second m-line of a call.
//!
//! What we offer: `m=video` with H.264 in packetization mode 1 (PT 96) and mode 0 (PT 97),
//! each with its RFC 4588 retransmission format (`rtx/90000`, PT 98 and 99, `apt=`), constrained
//! baseline at our level, `b=AS`/`b=TIAS` (RFC 3890) with our bitrate, and RTCP feedback
//! (RFC 4585/5104): `nack`, `nack pli`, `ccm fir`, `ccm tmmbr` and `goog-remb`. The profile is
//! RTP/AVP carrying `a=rtcp-fb` (as most SIP video endpoints do); an RTP/AVPF offer is answered
//! with RTP/AVPF.
//!
//! **Generic NACK only with RTX.** A lost packet is repaired by retransmission in its own RTX
//! stream (SSRC-multiplexed, RFC 4588 §8.3), never by resending it in the original stream
//! (which would corrupt the peer's loss and jitter statistics). So `nack` is agreed only when
//! both sides also agreed an `rtx` format for the chosen H.264 one; a peer offering `nack`
//! without RTX is answered without it, and then asks for keyframes instead of waiting for
//! retransmissions that would never come.
//!
//! **Answer.** The first video stream with an H.264 format we can use (packetization mode 0 or
//! 1; mode 1 preferred) is accepted. We always *send* constrained baseline, which every H.264
//! decoder decodes, so the answer keeps the offerer's profile and lowers the level to ours
//! (RFC 6184 §8.2.2 lets the answerer lower the level, not change the profile). Without
//! `profile-level-id` the RFC default is 42000A (baseline, level 1.0). Feedback in the answer is
//! the intersection of what was offered (for the chosen PT or `*`) with what we support.
//!
//! **Picture size.** The level caps the frame size (MaxFS, H.264 Table A-1); the sender picks
//! the largest configured-aspect size that fits, see [`NegotiatedVideo::fit_size`].

use crate::sdp::{Direction, Media, SessionDescription};
use crate::sdp_security::{LocalSecurity, MediaSecurity, RtpProto};

/// The payload types we offer H.264 with.
pub const PT_MODE1: u8 = 96;
/// H.264 packetization mode 0 (single NAL unit) payload type in our offers.
pub const PT_MODE0: u8 = 97;
/// Our retransmission (RFC 4588 `rtx`) payload types for [`PT_MODE1`] and [`PT_MODE0`].
pub const PT_RTX_MODE1: u8 = 98;
/// See [`PT_RTX_MODE1`].
pub const PT_RTX_MODE0: u8 = 99;
/// H.264 High profile (`profile_idc` 100), packetization mode 1: offered first, as a meeting
/// gateway (Visio's, on LiveKit) prefers High, then Main, then constrained Baseline. We send
/// constrained Baseline whichever is chosen (a subset every one of them decodes).
pub const PT_HIGH: u8 = 104;
/// H.264 Main profile (`profile_idc` 77), packetization mode 1.
pub const PT_MAIN: u8 = 105;
/// Retransmission payload types for [`PT_HIGH`] and [`PT_MAIN`].
pub const PT_RTX_HIGH: u8 = 106;
/// See [`PT_RTX_HIGH`].
pub const PT_RTX_MAIN: u8 = 107;
/// What we offer, in order: (payload type, profile_idc and constraint flags, packetization
/// mode, its rtx payload type).
const OFFERED: [(u8, &str, u8, u8); 4] = [
    (PT_HIGH, "6400", 1, PT_RTX_HIGH),
    (PT_MAIN, "4d00", 1, PT_RTX_MAIN),
    (PT_MODE1, "42e0", 1, PT_RTX_MODE1),
    (PT_MODE0, "42e0", 0, PT_RTX_MODE0),
];
/// How long we keep sent packets for retransmission, ms (`rtx-time`).
pub const RTX_TIME_MS: u32 = 1000;

/// What we support of video, for offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVideo {
    /// RTP port for video (RTCP on port + 1).
    pub port: u16,
    /// Our H.264 level (`level_idc`, e.g. 31 = 3.1 for 720p30, 40 for 1080p30).
    pub level_idc: u8,
    /// Our maximum bitrate in kbit/s (`b=AS`).
    pub max_kbps: u32,
    /// Offer and accept RTCP feedback and RTX; without it keyframes go by SIP INFO.
    pub rtcp_feedback: bool,
    /// Offer High and Main profile before constrained Baseline (a meeting gateway's wish).
    /// Off, only constrained Baseline is offered: against baresip 1.0, huisd decoded none of
    /// the video baresip sent after answering High (not understood yet), so other peers keep
    /// the offer that works.
    pub high_profiles: bool,
}

/// RTCP feedback both sides agreed on (RFC 4585, RFC 5104, REMB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feedback {
    /// Generic NACK: retransmission requests.
    pub nack: bool,
    /// Picture loss indication.
    pub pli: bool,
    /// Full intra request.
    pub fir: bool,
    /// Temporary maximum media bitrate request.
    pub tmmbr: bool,
    /// Receiver estimated maximum bitrate (`goog-remb`).
    pub remb: bool,
}

/// The outcome of offer/answer for the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    /// Payload type we send with (the remote's number).
    pub payload_type: u8,
    /// Payload type we receive with (the number in our SDP).
    pub recv_payload_type: u8,
    /// Where to send RTP.
    pub remote_address: std::net::IpAddr,
    /// Remote RTP port.
    pub remote_port: u16,
    /// Our direction.
    pub direction: Direction,
    /// 0 (single NAL unit) or 1 (non-interleaved).
    pub packetization_mode: u8,
    /// The level we send at (`level_idc`), the lower of both.
    pub level_idc: u8,
    /// `profile-level-id` as written in the answer (six hex digits).
    pub profile_level_id: String,
    /// The peer's bandwidth limit for what we send, in kbit/s (`b=TIAS` or `b=AS`).
    pub remote_max_kbps: Option<u32>,
    /// Feedback both sides support.
    pub feedback: Feedback,
    /// The transport profile (`RTP/AVP` or `RTP/AVPF`).
    pub avpf: bool,
    /// Retransmission payload types when both sides agreed RTX (then `feedback.nack` too).
    pub rtx: Option<RtxPayloadTypes>,
    /// Encryption and rtcp-mux of the video stream.
    pub security: MediaSecurity,
}

/// RFC 4588 retransmission formats agreed for the H.264 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxPayloadTypes {
    /// The peer's rtx PT: what we retransmit with.
    pub send: u8,
    /// Ours: what the peer retransmits with.
    pub recv: u8,
}

/// Largest frame in macroblocks (MaxFS) by `level_idc`, H.264 Table A-1.
pub fn max_frame_macroblocks(level_idc: u8) -> u32 {
    match level_idc {
        0..=10 => 99,
        11..=20 => 396,
        21 => 792,
        22 | 30 => 1620,
        31 => 3600,
        32 => 5120,
        40..=42 => 8192,
        50 => 22080,
        _ => 36864,
    }
}

impl NegotiatedVideo {
    /// The largest of `sizes` (in order, smallest first) not above `wanted` that fits the
    /// negotiated level; `None` if not even the smallest fits.
    pub fn fit_size(&self, wanted: (u32, u32), sizes: &[(u32, u32)]) -> Option<(u32, u32)> {
        let max = max_frame_macroblocks(self.level_idc);
        sizes
            .iter()
            .copied()
            .filter(|&(w, h)| w <= wanted.0 && h <= wanted.1 && w.div_ceil(16) * h.div_ceil(16) <= max)
            .max_by_key(|&(w, h)| w * h)
    }
}

/// Parsed `a=fmtp` of an H.264 format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct H264Fmtp {
    packetization_mode: u8,
    profile_idc: u8,
    iop: u8,
    level_idc: u8,
}

fn parse_h264_fmtp(fmtp: Option<&str>) -> Option<H264Fmtp> {
    // RFC 6184 §8.1 defaults: packetization-mode 0, profile-level-id 42000A.
    let mut f = H264Fmtp { packetization_mode: 0, profile_idc: 0x42, iop: 0x00, level_idc: 10 };
    for p in fmtp.unwrap_or("").split(';').take(32) {
        let Some((k, v)) = p.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("packetization-mode") {
            f.packetization_mode = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("profile-level-id") {
            if v.len() != 6 || !v.is_ascii() {
                return None;
            }
            let b = |i: usize| u8::from_str_radix(&v[i..i + 2], 16).ok();
            f.profile_idc = b(0)?;
            f.iop = b(2)?;
            f.level_idc = b(4)?;
            // Level 1b in baseline/main/extended is level_idc 11 with constraint_set3.
        }
    }
    (f.packetization_mode <= 1).then_some(f)
}

fn is_h264(m: &Media, pt: u8) -> bool {
    m.rtpmap(pt).is_some_and(|(n, c, _)| n.eq_ignore_ascii_case("H264") && c == 90000)
}

/// The `rtx/90000` format of `m` whose `apt` is `pt` (RFC 4588 §8.1).
fn rtx_for(m: &Media, pt: u8) -> Option<u8> {
    m.payload_types().find(|&r| {
        m.rtpmap(r).is_some_and(|(n, c, _)| n.eq_ignore_ascii_case("rtx") && c == 90000)
            && m.fmtp(r).is_some_and(|f| {
                f.split(';').any(|kv| {
                    kv.split_once('=')
                        .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("apt") && v.trim().parse() == Ok(pt))
                })
            })
    })
}

fn push_rtx(m: &mut Media, rtx: u8, apt: u8) {
    m.attributes.push(("rtpmap".into(), Some(format!("{rtx} rtx/90000"))));
    m.attributes.push(("fmtp".into(), Some(format!("{rtx} apt={apt};rtx-time={RTX_TIME_MS}"))));
}

/// Feedback offered for `pt` (or `*`).
fn offered_feedback(m: &Media, pt: u8) -> Feedback {
    let mut f = Feedback::default();
    for v in m.attrs("rtcp-fb").take(64) {
        let mut it = v.split_whitespace();
        let Some(which) = it.next() else { continue };
        if which != "*" && which.parse::<u8>().ok() != Some(pt) {
            continue;
        }
        let kind: Vec<&str> = it.collect();
        match kind.as_slice() {
            ["nack"] => f.nack = true,
            ["nack", "pli"] => f.pli = true,
            ["ccm", "fir"] => f.fir = true,
            ["ccm", "tmmbr"] => f.tmmbr = true,
            ["goog-remb"] => f.remb = true,
            _ => {}
        }
    }
    f
}

/// The peer's bandwidth for a media section: `b=TIAS` (bit/s) preferred, else `b=AS` (kbit/s).
fn remote_kbps(m: &Media) -> Option<u32> {
    let get =
        |prefix: &str| m.other.iter().find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse::<u64>().ok()));
    let kbps = get("b=TIAS:").map(|b| b / 1000).or_else(|| get("b=AS:"))?;
    (kbps > 0).then(|| kbps.min(u64::from(u32::MAX)) as u32)
}

fn push_fb(m: &mut Media, pt: u8, f: Feedback) {
    let mut add = |v: &str| m.attributes.push(("rtcp-fb".into(), Some(format!("{pt} {v}"))));
    if f.nack {
        add("nack");
    }
    if f.pli {
        add("nack pli");
    }
    if f.fir {
        add("ccm fir");
    }
    if f.tmmbr {
        add("ccm tmmbr");
    }
    if f.remb {
        add("goog-remb");
    }
}

/// The feedback huis acts on (`nack` only together with RTX, see the module notes).
const SUPPORTED_FEEDBACK: Feedback = Feedback { nack: true, pli: true, fir: true, tmmbr: true, remb: true };

impl Feedback {
    /// What both sides support.
    fn and(self, o: Feedback) -> Feedback {
        Feedback {
            nack: self.nack && o.nack,
            pli: self.pli && o.pli,
            fir: self.fir && o.fir,
            tmmbr: self.tmmbr && o.tmmbr,
            remb: self.remb && o.remb,
        }
    }
}

impl LocalVideo {
    fn supported(&self) -> Feedback {
        if self.rtcp_feedback { SUPPORTED_FEEDBACK } else { Feedback::default() }
    }

    /// The formats we offer, in order.
    fn offered(&self) -> impl Iterator<Item = (u8, &'static str, u8, u8)> {
        OFFERED.into_iter().skip(if self.high_profiles { 0 } else { 2 })
    }

    /// Our `m=video` section for an offer.
    pub fn offer_media(&self, direction: Direction, security: &LocalSecurity) -> Media {
        let mut m = Media {
            kind: "video".into(),
            port: self.port,
            proto: "RTP/AVP".into(),
            formats: self.offered().map(|o| o.0.to_string()).collect(),
            connection: None,
            attributes: Vec::new(),
            other: self.bandwidth_lines(),
        };
        for (pt, profile, mode, _) in self.offered() {
            m.attributes.push(("rtpmap".into(), Some(format!("{pt} H264/90000"))));
            m.attributes.push((
                "fmtp".into(),
                Some(format!("{pt} profile-level-id={profile}{:02x};packetization-mode={mode}", self.level_idc)),
            ));
            push_fb(&mut m, pt, self.supported());
        }
        if self.supported().nack {
            for (apt, _, _, rtx) in self.offered() {
                m.formats.push(rtx.to_string());
                push_rtx(&mut m, rtx, apt);
            }
        }
        m.set_direction(direction);
        security.offer_media(&mut m, 1, false);
        m
    }

    fn bandwidth_lines(&self) -> Vec<String> {
        vec![format!("b=AS:{}", self.max_kbps), format!("b=TIAS:{}", u64::from(self.max_kbps) * 1000)]
    }

    /// Answers the first usable video stream of `offer`: returns its index, our m-line for it
    /// and the outcome. `None` when no video stream can be used (it is then answered with port 0).
    pub fn answer(
        &self,
        offer: &SessionDescription,
        direction: Direction,
        security: &LocalSecurity,
    ) -> Option<(usize, Media, NegotiatedVideo)> {
        self.answer_keyed(offer, direction, security, 1)
    }

    /// [`LocalVideo::answer`] with the SDES key of stream `key_index` (0 audio, 1 video, 2 the
    /// slides), so no two streams share a master key.
    pub fn answer_keyed(
        &self,
        offer: &SessionDescription,
        direction: Direction,
        security: &LocalSecurity,
        key_index: usize,
    ) -> Option<(usize, Media, NegotiatedVideo)> {
        let usable = |m: &Media| m.kind == "video" && m.port != 0 && RtpProto::parse(&m.proto).is_some();
        let (idx, om) = pick_video(offer.media.iter().enumerate(), usable)?;
        let address = offer.media_address(om)?;
        let mut best: Option<(u8, H264Fmtp)> = None;
        for pt in om.payload_types().filter(|pt| is_h264(om, *pt)) {
            let Some(f) = parse_h264_fmtp(om.fmtp(pt)) else { continue };
            if best.is_none_or(|(_, b)| f.packetization_mode > b.packetization_mode) {
                best = Some((pt, f));
            }
        }
        let (pt, f) = best?;
        let level = f.level_idc.min(self.level_idc);
        let plid = format!("{:02x}{:02x}{:02x}", f.profile_idc, f.iop, level);
        let rtx = rtx_for(om, pt);
        let mut fb = offered_feedback(om, pt).and(self.supported());
        fb.nack &= rtx.is_some();
        let rtx = rtx.filter(|_| fb.nack).map(|r| RtxPayloadTypes { send: r, recv: r });
        let avpf = RtpProto::parse(&om.proto).is_some_and(|(_, f)| f);
        let d = offer.media_direction(om).answer_to(direction);
        let mut m = Media {
            kind: "video".into(),
            port: self.port,
            proto: om.proto.clone(),
            formats: vec![pt.to_string()],
            connection: None,
            attributes: vec![
                ("rtpmap".into(), Some(format!("{pt} H264/90000"))),
                (
                    "fmtp".into(),
                    Some(format!("{pt} profile-level-id={plid};packetization-mode={}", f.packetization_mode)),
                ),
            ],
            other: self.bandwidth_lines(),
        };
        push_fb(&mut m, pt, fb);
        if let Some(r) = rtx {
            m.formats.push(r.recv.to_string());
            push_rtx(&mut m, r.recv, pt);
        }
        m.set_direction(d);
        // A video stream whose security we cannot use is refused (port 0); audio goes on.
        let sec = security.answer_media(offer, om, &mut m, key_index).ok()?;
        let n = NegotiatedVideo {
            payload_type: pt,
            recv_payload_type: pt,
            remote_address: address,
            remote_port: om.port,
            direction: d,
            packetization_mode: f.packetization_mode,
            level_idc: level,
            profile_level_id: plid,
            remote_max_kbps: remote_kbps(om),
            feedback: fb,
            avpf,
            rtx,
            security: sec,
        };
        Some((idx, m, n))
    }

    /// Reads the answer to our offer (made with [`LocalVideo::offer_media`]). `None`: the
    /// answerer refused video (port 0, no m-line, or no H.264 format we offered).
    pub fn accept_answer(&self, answer: &SessionDescription, security: &LocalSecurity) -> Option<NegotiatedVideo> {
        self.accept_answer_keyed(answer, security, 1)
    }

    /// [`LocalVideo::accept_answer`] for the stream whose SDES key is number `key_index`.
    pub fn accept_answer_keyed(
        &self,
        answer: &SessionDescription,
        security: &LocalSecurity,
        key_index: usize,
    ) -> Option<NegotiatedVideo> {
        let (_, m) = pick_video(answer.media.iter().enumerate(), |m| m.kind == "video" && m.port != 0)?;
        let address = answer.media_address(m)?;
        let sec = security.accept_answer_media(answer, m, key_index).ok()?;
        for pt in m.payload_types().filter(|pt| is_h264(m, *pt)) {
            let Some(f) = parse_h264_fmtp(m.fmtp(pt)) else { continue };
            // The answer names one of our payload types (RFC 3264 §6.1): we receive there. A
            // peer that renumbered gets ours for the same packetization mode.
            let (ours, our_rtx) = match OFFERED.iter().find(|o| o.0 == pt) {
                Some(o) => (o.0, o.3),
                None if f.packetization_mode == 1 => (PT_MODE1, PT_RTX_MODE1),
                None => (PT_MODE0, PT_RTX_MODE0),
            };
            let mut fb = offered_feedback(m, pt).and(self.supported());
            let rtx = rtx_for(m, pt).filter(|_| fb.nack).map(|send| RtxPayloadTypes { send, recv: our_rtx });
            fb.nack &= rtx.is_some();
            return Some(NegotiatedVideo {
                payload_type: pt,
                recv_payload_type: ours,
                remote_address: address,
                remote_port: m.port,
                direction: answer.media_direction(m).answer_to(Direction::SendRecv),
                packetization_mode: f.packetization_mode,
                level_idc: f.level_idc.min(self.level_idc),
                profile_level_id: format!("{:02x}{:02x}{:02x}", f.profile_idc, f.iop, f.level_idc),
                remote_max_kbps: remote_kbps(m),
                feedback: fb,
                avpf: RtpProto::parse(&m.proto).is_some_and(|(_, f)| f),
                rtx,
                security: sec,
            });
        }
        None
    }
}

/// The first usable video stream that is not a presentation (`a=content:slides`, RFC 4796: room
/// systems may list their slides first), else the first usable one (the presentation's own
/// negotiation hands us a description holding only its stream).
fn pick_video<'a>(
    media: impl Iterator<Item = (usize, &'a Media)> + Clone,
    usable: impl Fn(&Media) -> bool,
) -> Option<(usize, &'a Media)> {
    let slides = |m: &Media| m.attrs("content").any(|c| c.split(',').any(|v| v.trim().eq_ignore_ascii_case("slides")));
    media.clone().find(|(_, m)| usable(m) && !slides(m)).or_else(|| media.into_iter().find(|(_, m)| usable(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Codec, LocalMedia};

    #[test]
    fn a_slides_stream_listed_first_is_not_taken_for_the_camera() {
        let (audio, video) = local();
        let slides = "m=video 5010 RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\n\
a=fmtp:109 packetization-mode=1;profile-level-id=42e01f\r\na=content:slides\r\na=label:3\r\n";
        let offer = OFFER.replace("m=video 5006", &format!("{slides}m=video 5006"));
        let offer = SessionDescription::parse(&offer).unwrap();
        let (ans, _, n) = audio.answer_with_video(&offer, Some(&video)).unwrap();
        let n = n.expect("the camera's stream is answered");
        assert_eq!((n.remote_port, n.payload_type), (5006, 102));
        // The answer keeps the offer's order: the slides line (refused here) before the camera's.
        let kinds: Vec<(&str, u16)> = ans.media.iter().map(|m| (m.kind.as_str(), m.port)).collect();
        assert_eq!(kinds, [("audio", 40000), ("video", 0), ("video", 40002)], "{}", ans.to_text());
        // Reading an answer: the camera's stream, even when a slides stream comes first.
        let plain = SessionDescription::parse(OFFER).unwrap();
        let (ans, _, _) = audio.answer_with_video(&plain, Some(&video)).unwrap();
        let text = ans.to_text().replace("m=video 40002", &format!("{}m=video 40002", slides.replace("5010", "40010")));
        let back = video.accept_answer(&SessionDescription::parse(&text).unwrap(), &Default::default()).unwrap();
        assert_eq!(back.remote_port, 40002, "{text}");
    }

    fn local() -> (LocalMedia, LocalVideo) {
        (
            LocalMedia {
                address: "192.0.2.10".parse().unwrap(),
                audio_port: 40000,
                codecs: vec![Codec::Opus, Codec::Pcmu],
                telephone_event: true,
                session_id: 42,
                direction: Direction::SendRecv,
                security: Default::default(),
            },
            LocalVideo { port: 40002, level_idc: 31, max_kbps: 2000, rtcp_feedback: true, high_profiles: true },
        )
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n\
m=video 5006 RTP/AVP 100 101 102\r\nb=AS:800\r\nb=TIAS:768000\r\n\
a=rtpmap:100 VP8/90000\r\n\
a=rtpmap:101 H264/90000\r\na=fmtp:101 packetization-mode=0;profile-level-id=42801f\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 profile-level-id=64002a;packetization-mode=1\r\n\
a=rtcp-fb:* nack pli\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 ccm fir\r\na=rtcp-fb:101 goog-remb\r\na=sendrecv\r\n";

    #[test]
    fn answer_picks_mode_1_keeps_profile_lowers_level() {
        let (audio, video) = local();
        let offer = SessionDescription::parse(OFFER).unwrap();
        let (ans, _, n) = audio.answer_with_video(&offer, Some(&video)).unwrap();
        let n = n.expect("video answered");
        assert_eq!((n.payload_type, n.packetization_mode, n.level_idc), (102, 1, 31));
        assert_eq!(n.profile_level_id, "64001f");
        assert_eq!(n.remote_max_kbps, Some(768));
        assert_eq!(n.feedback, Feedback { pli: true, fir: true, ..Default::default() });
        let text = ans.to_text();
        assert!(text.contains("m=video 40002 RTP/AVP 102\r\n"), "{text}");
        assert!(text.contains("a=fmtp:102 profile-level-id=64001f;packetization-mode=1"), "{text}");
        assert!(text.contains("a=rtcp-fb:102 nack pli") && text.contains("a=rtcp-fb:102 ccm fir"), "{text}");
        assert!(!text.contains("goog-remb"), "not offered for PT 102: {text}");
        assert!(!text.contains("a=rtcp-fb:102 nack\r\n"), "nack without rtx is not agreed: {text}");
        assert!(!text.contains("rtx"), "{text}");
        assert_eq!(n.rtx, None);
        assert!(text.contains("b=AS:2000"), "{text}");
        // The offerer reads it back.
        let back = video.accept_answer(&SessionDescription::parse(&text).unwrap(), &Default::default()).unwrap();
        assert_eq!((back.payload_type, back.recv_payload_type), (102, PT_MODE1));
        // 720p fits level 3.1, 1080p does not.
        let sizes = [(640, 360), (1280, 720), (1920, 1080)];
        assert_eq!(n.fit_size((1920, 1080), &sizes), Some((1280, 720)));
        let low = NegotiatedVideo { level_idc: 10, ..n };
        assert_eq!(low.fit_size((1280, 720), &sizes), None);
    }

    #[test]
    fn without_video_or_camera_the_stream_is_refused() {
        let (audio, video) = local();
        let offer = SessionDescription::parse(OFFER).unwrap();
        let (ans, _, n) = audio.answer_with_video(&offer, None).unwrap();
        assert!(n.is_none());
        assert_eq!(ans.media[1].port, 0);
        // Only VP8: refused, audio still answered.
        let vp8 = OFFER.replace("H264", "H263");
        let (ans, _, n) = audio.answer_with_video(&SessionDescription::parse(&vp8).unwrap(), Some(&video)).unwrap();
        assert!(n.is_none());
        assert_eq!(ans.media[1].port, 0);
        // Hostile fmtp values never panic and are not chosen.
        for bad in ["packetization-mode=2", "profile-level-id=zz", "profile-level-id=42e0", "profile-level-id=é2e01f"]
        {
            let o = OFFER.replace("packetization-mode=0;profile-level-id=42801f", bad).replace("102 H264", "102 X");
            let s = SessionDescription::parse(&o).unwrap();
            let (_, _, n) = audio.answer_with_video(&s, Some(&video)).unwrap();
            assert!(n.is_none(), "{bad}");
        }
    }

    #[test]
    fn our_offer_has_both_modes_bandwidth_and_feedback() {
        let (audio, video) = local();
        let text = audio.offer_with_video(Some(&video)).to_text();
        let s = SessionDescription::parse(&text).unwrap();
        assert_eq!(s.media.len(), 2);
        let m = &s.media[1];
        // High, Main, constrained Baseline (mode 1, then mode 0), then their rtx.
        assert_eq!(m.formats, vec!["104", "105", "96", "97", "106", "107", "98", "99"]);
        assert_eq!(m.fmtp(104), Some("profile-level-id=64001f;packetization-mode=1"));
        assert_eq!(m.fmtp(105), Some("profile-level-id=4d001f;packetization-mode=1"));
        assert_eq!(m.fmtp(96), Some("profile-level-id=42e01f;packetization-mode=1"));
        assert_eq!(m.fmtp(98), Some("apt=96;rtx-time=1000"));
        assert_eq!((rtx_for(m, 96), rtx_for(m, 97), rtx_for(m, 98)), (Some(98), Some(99), None));
        assert_eq!((rtx_for(m, 104), rtx_for(m, 105)), (Some(106), Some(107)));
        assert_eq!(offered_feedback(m, 97), SUPPORTED_FEEDBACK);
        // An answerer that is us takes the first mode-1 format (High), agrees NACK with RTX,
        // and we read its answer back.
        let (ans, _, n) = audio.answer_with_video(&s, Some(&video)).unwrap();
        let n = n.unwrap();
        assert_eq!(n.packetization_mode, 1);
        assert_eq!(n.profile_level_id, "64001f");
        assert_eq!(n.rtx, Some(RtxPayloadTypes { send: 106, recv: 106 }));
        assert!(n.feedback.nack);
        let text = ans.to_text();
        assert!(text.contains("m=video 40002 RTP/AVP 104 106\r\n"), "{text}");
        let back = video.accept_answer(&ans, &Default::default()).unwrap();
        assert_eq!((back.payload_type, back.recv_payload_type), (104, 104));
        assert_eq!(back.rtx, Some(RtxPayloadTypes { send: 106, recv: 106 }));
        let text = text.replace("104", "96").replace("106", "98");
        assert!(text.contains("a=rtcp-fb:96 nack\r\n") && text.contains("a=fmtp:98 apt=96;rtx-time=1000"), "{text}");
        let back = video.accept_answer(&SessionDescription::parse(&text).unwrap(), &Default::default()).unwrap();
        assert_eq!(back.rtx, Some(RtxPayloadTypes { send: 98, recv: 98 }));
        assert!(back.feedback.nack);
    }

    #[test]
    fn rtx_is_matched_by_apt_and_needs_nack() {
        let (audio, video) = local();
        // The peer numbers its formats its own way: rtx 120 repairs 110 (mode 1), 121 repairs 111.
        let offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n\
m=video 5006 RTP/AVPF 111 110 121 120\r\n\
a=rtpmap:111 H264/90000\r\na=fmtp:111 profile-level-id=42e01f;packetization-mode=0\r\n\
a=rtpmap:110 H264/90000\r\na=fmtp:110 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:121 rtx/90000\r\na=fmtp:121 apt=111\r\n\
a=rtpmap:120 RTX/90000\r\na=fmtp:120 rtx-time=3000; apt=110\r\n\
a=rtcp-fb:* nack\r\na=rtcp-fb:* nack pli\r\n";
        let s = SessionDescription::parse(offer).unwrap();
        let (ans, _, n) = audio.answer_with_video(&s, Some(&video)).unwrap();
        let n = n.unwrap();
        assert_eq!((n.payload_type, n.rtx), (110, Some(RtxPayloadTypes { send: 120, recv: 120 })));
        assert!(ans.to_text().contains("m=video 40002 RTP/AVPF 110 120\r\n"));
        // Without nack the rtx format is declined; nack without rtx is declined.
        let (ans, _, n) = audio
            .answer_with_video(
                &SessionDescription::parse(&offer.replace("a=rtcp-fb:* nack\r\n", "")).unwrap(),
                Some(&video),
            )
            .unwrap();
        assert_eq!(n.unwrap().rtx, None);
        assert!(!ans.to_text().contains("rtx"));
        let no_rtx = offer.replace("apt=110", "apt=7");
        let (ans, _, n) = audio.answer_with_video(&SessionDescription::parse(&no_rtx).unwrap(), Some(&video)).unwrap();
        let n = n.unwrap();
        assert_eq!((n.rtx, n.feedback.nack), (None, false));
        assert!(!ans.to_text().contains("a=rtcp-fb:110 nack\r\n"));
        // An answer to our offer that drops rtx leaves nack off on our side too.
        let ours = SessionDescription::parse(&audio.offer_with_video(Some(&video)).to_text()).unwrap();
        let (ans, _, _) = audio.answer_with_video(&ours, Some(&video)).unwrap();
        let stripped: String =
            ans.to_text().lines().filter(|l| !l.contains("rtx")).map(|l| format!("{l}\r\n")).collect();
        let back = video.accept_answer(&SessionDescription::parse(&stripped).unwrap(), &Default::default()).unwrap();
        assert_eq!((back.rtx, back.feedback.nack), (None, false));
    }

    #[test]
    fn without_rtcp_feedback_nothing_is_offered_or_accepted() {
        let (audio, mut video) = local();
        video.rtcp_feedback = false;
        let text = audio.offer_with_video(Some(&video)).to_text();
        assert!(!text.contains("rtcp-fb") && !text.contains("rtx"), "{text}");
        assert!(text.contains("m=video 40002 RTP/AVP 104 105 96 97\r\n"), "{text}");
        video.high_profiles = false;
        let text = audio.offer_with_video(Some(&video)).to_text();
        assert!(text.contains("m=video 40002 RTP/AVP 96 97\r\n") && !text.contains("104"), "{text}");
        let (ans, _, n) = audio.answer_with_video(&SessionDescription::parse(OFFER).unwrap(), Some(&video)).unwrap();
        let n = n.unwrap();
        assert_eq!((n.feedback, n.rtx), (Feedback::default(), None));
        assert!(!ans.to_text().contains("rtcp-fb"));
    }
}
