//! A SIP call's presentation: the slides stream (a second `m=video` with `a=content:slides`)
//! and its BFCP floor (`m=application … UDP/BFCP`), set up with the call and used whenever
//! someone shares, as room systems do.
//!
//! ```text
//!  content input ─▶ ContentFeed (room) ─▶ intervideosink "huis-content" ─▶ the room's screen
//!                                    └▶ appsink ─(content_tap)─▶ appsrc ─▶ slides VideoSession ─▶ far end
//!  far end's slides ─▶ slides VideoSession (decode) ─▶ intervideosink "huis-content" ─▶ screen
//! ```
//!
//! The slides stream is a [`VideoSession`] of its own (RTCP, keyframe requests, retransmission,
//! SRTP or DTLS-SRTP with a third SDES key), tuned for text, at [`CONTENT_FPS`] and the
//! presentation's share of the video budget. Its sending valve opens only while the floor is
//! ours; what it reads is the room's content feed, which runs while we present (handed over by
//! `media::content_tap`, without an inter channel's clock). The far end's slides are decoded
//! into the screen's content channel, so the screen shows whoever holds the floor, large.
//!
//! The floor is the BFCP shell's ([`super::bfcp`]); every change reaches the backend's loop as a
//! [`FloorChange`], which opens or closes the valve and tells the room.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use huis_bfcp::sdp::Proto;
use huis_sip::sdp::{Direction as SdpDirection, Media, SessionDescription};
use huis_sip::sdp_content::{LocalContent, NegotiatedContent};
use huis_sip::sdp_security::{LocalSecurity, MediaSecurity};
use huis_sip::sdp_video::LocalVideo;
use tokio::sync::mpsc;

use super::VideoSetup;
use super::bfcp::{self, BfcpLink, BfcpParams, BfcpSocket, Floor as BfcpFloor, FloorCommand};
use crate::call::{Floor, Presentation};
use crate::media::screen::CONTENT_CHANNEL;
use crate::media::video::{RtxPayloadTypes, VideoFeedback, VideoSession, VideoSessionParams};
use crate::media::{Direction as MediaDirection, DtlsParams, RtpSockets, SrtpParams};

/// Frames per second of the slides we send: few for text (each is a 1080p encode), enough to
/// keep a page change under 150 ms to the far screen (`bench/content-quality.sh`).
pub const CONTENT_FPS: u32 = 15;
/// The presentation's share of the call's video bitrate, percent.
pub const CONTENT_SHARE_PERCENT: u32 = 60;
/// The sizes the slides are sent at (the largest the far end's H.264 level takes).
const CONTENT_SIZES: &[(u32, u32)] = &[(640, 360), (960, 540), (1280, 720), (1920, 1080)];
/// The H.264 level we offer for the slides: 1080p at up to 30 fps.
const CONTENT_LEVEL: u8 = 40;
/// The intervideo channel nobody reads, for the slides session's self-view tap.
const UNSHOWN_CHANNEL: &str = "huis-content-unshown";

/// A floor change of a call's BFCP link, for the backend's loop.
pub(super) struct FloorChange {
    pub call: huis_sip::CallId,
    pub floor: BfcpFloor,
}

/// Ports, SDP and running parts of one call's presentation.
pub(super) struct CallContent {
    pub local: LocalContent,
    rtp: Option<RtpSockets>,
    udp: Option<std::net::UdpSocket>,
    tcp: Option<std::net::TcpListener>,
    /// Agreed in offer/answer, until started.
    agreed: Option<NegotiatedContent>,
    session: Option<VideoSession>,
    link: Option<BfcpLink>,
    /// The slides' agreed security, kept for re-offers.
    pub security: Option<MediaSecurity>,
    /// What the shell says of the floor, and whether the room wants to present.
    floor: BfcpFloor,
    wanted: bool,
    /// Sent size, once started.
    send_size: (u32, u32),
    /// The far end refused or left out the presentation: later offers carry it at port 0.
    pub refused: bool,
}

/// A UDP socket and a TCP listener on the same port of `ports` (BFCP over either), scanning
/// down from the range's top, where RTP pairs are taken last.
fn bind_bfcp(ip: IpAddr, ports: RangeInclusive<u16>) -> Option<(std::net::UdpSocket, std::net::TcpListener)> {
    for port in ports.rev() {
        let addr = SocketAddr::new(ip, port);
        let Ok(u) = std::net::UdpSocket::bind(addr) else { continue };
        if let Ok(t) = std::net::TcpListener::bind(addr) {
            return Some((u, t));
        }
    }
    None
}

fn random_nonzero<T: TryFrom<u64> + Default>(max: u64) -> T {
    let mut b = [0u8; 8];
    let n = if getrandom::getrandom(&mut b).is_ok() { u64::from_le_bytes(b) } else { 0 };
    T::try_from(n % max + 1).unwrap_or_default()
}

impl CallContent {
    /// Reserves the slides' RTP ports and the BFCP port; `None` (no presentation in this call)
    /// when they cannot be had.
    pub fn bind(ip: IpAddr, ports: RangeInclusive<u16>, video: &VideoSetup) -> Option<CallContent> {
        let rtp = match RtpSockets::bind_in_range(ip, ports.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no ports for the presentation stream, the call carries none: {e}");
                return None;
            }
        };
        let Some((udp, tcp)) = bind_bfcp(ip, ports) else {
            tracing::warn!("no port for BFCP, the call carries no presentation");
            return None;
        };
        let bfcp_port = udp.local_addr().ok()?.port();
        let local = LocalContent {
            video: LocalVideo {
                port: rtp.local_rtp().port(),
                level_idc: CONTENT_LEVEL,
                max_kbps: content_kbps(video.max_kbps),
                rtcp_feedback: video.rtcp_feedback,
                high_profiles: false,
            },
            bfcp_port,
            conf_id: random_nonzero(u64::from(u32::MAX - 1)),
            user_id: random_nonzero(u64::from(u16::MAX - 1)),
        };
        Some(CallContent {
            local,
            rtp: Some(rtp),
            udp: Some(udp),
            tcp: Some(tcp),
            agreed: None,
            session: None,
            link: None,
            security: None,
            floor: BfcpFloor::Free,
            wanted: false,
            send_size: (0, 0),
            refused: false,
        })
    }

    /// True while the slides stream and its floor run.
    pub fn running(&self) -> bool {
        self.session.is_some()
    }

    /// Our two m-lines (slides, BFCP) for an offer: the agreed security kept once running, both
    /// at port 0 after the far end refused them (m-lines are never removed, RFC 3264 §8).
    pub fn offer_media(&self, direction: SdpDirection, security: &LocalSecurity) -> [Media; 2] {
        let mut lines = self.local.offer_media(direction, security);
        if let Some(agreed) = &self.security {
            LocalSecurity::keep_agreed(&mut lines[0], agreed);
        }
        if self.refused {
            for m in &mut lines {
                m.port = 0;
            }
        }
        lines
    }

    /// Answers the offer's presentation into `answer` (whose other m-lines are written); keeps
    /// what was agreed for [`CallContent::start`] when not running yet.
    pub fn answer_into(
        &mut self,
        offer: &SessionDescription,
        answer: &mut SessionDescription,
        direction: SdpDirection,
        security: &LocalSecurity,
    ) {
        let (lines, agreed) = self.local.answer(offer, direction, security);
        for (i, mut m) in lines {
            if i == 0 || i >= answer.media.len() {
                continue;
            }
            if let (Some(a), true) = (&self.security, m.kind == "video" && m.port != 0) {
                LocalSecurity::keep_agreed(&mut m, a);
            }
            answer.media[i] = m;
        }
        match agreed {
            Some(a) => match &self.session {
                // A new offer in the call: the far end's slides may have moved.
                Some(s) => {
                    let _ = s.set_remote(SocketAddr::new(a.video.remote_address, a.video.remote_port), None);
                }
                None => self.agreed = Some(a),
            },
            None => {
                // Refused, or dropped by a new offer: the presentation ends, the call goes on.
                if self.running() {
                    tracing::info!("the far end dropped the presentation channel");
                    self.stop();
                }
                self.refused = true;
            }
        }
    }

    /// Reads the answer to our offer; `false` when it carries no presentation.
    pub fn accept_answer(&mut self, answer: &SessionDescription, security: &LocalSecurity) -> bool {
        if self.running() {
            return true;
        }
        match self.local.accept_answer(answer, security) {
            Some(a) => {
                self.agreed = Some(a);
                true
            }
            None => {
                self.refused = true;
                false
            }
        }
    }

    /// Starts the slides stream and the floor once agreed. `keys`: the media parameters of the
    /// slides' security. The shell's floor changes go to `floors`.
    pub fn start(
        &mut self,
        call: huis_sip::CallId,
        video: &VideoSetup,
        keys: impl Fn(&MediaSecurity) -> (Option<SrtpParams>, Option<DtlsParams>),
        cname: String,
        allowed: impl Fn(&MediaSecurity) -> bool,
        floors: mpsc::Sender<FloorChange>,
    ) -> Result<(), String> {
        let Some(agreed) = self.agreed.take() else { return Ok(()) };
        if !allowed(&agreed.video.security) {
            self.refused = true;
            return Err("the far end's slides stream is not encrypted, which is required here".into());
        }
        let neg = &agreed.video;
        let (srtp, dtls) = keys(&neg.security);
        let (Some(rtp), Some(udp), Some(tcp)) = (self.rtp.take(), self.udp.take(), self.tcp.take()) else {
            return Ok(());
        };
        let size = neg
            .fit_size((1920, 1080), CONTENT_SIZES)
            .ok_or("the far end's H.264 level is below the smallest slides size")?;
        let max_kbps = neg.remote_max_kbps.map_or(self.local.video.max_kbps, |r| r.min(self.local.video.max_kbps));
        let f = neg.feedback;
        let p = VideoSessionParams {
            sockets: rtp,
            remote_rtp: SocketAddr::new(neg.remote_address, neg.remote_port),
            send_pt: neg.payload_type,
            recv_pt: neg.recv_payload_type,
            packetization_mode: neg.packetization_mode,
            source: crate::media::content_tap::TAP_SOURCE.into(),
            width: size.0,
            height: size.1,
            framerate: CONTENT_FPS,
            encoder: video.encoder.clone(),
            start_kbps: max_kbps,
            min_kbps: video.min_kbps.min(max_kbps),
            max_kbps: max_kbps.max(video.min_kbps),
            feedback: VideoFeedback { nack: f.nack, pli: f.pli, fir: f.fir, tmmbr: f.tmmbr, remb: f.remb },
            rtx: neg.rtx.map(|r| RtxPayloadTypes { send: r.send, recv: r.recv }),
            cname,
            // Sending waits for the floor.
            direction: MediaDirection::RecvOnly,
            // As the camera's: retransmission grows it when repairs come late.
            jitter_buffer: Duration::from_millis(50),
            rtcp_interval: Duration::from_secs(1),
            far_channel: CONTENT_CHANNEL.into(),
            self_channel: UNSHOWN_CHANNEL.into(),
            on_capture: None,
            rtcp_mux: neg.security.rtcp_mux,
            srtp,
            dtls,
            text: true,
        };
        let session = VideoSession::start(p).map_err(|e| format!("the slides stream does not start: {e}"))?;
        let b = &agreed.bfcp;
        let remote = SocketAddr::new(b.remote_address, b.remote_port);
        let socket = match b.proto {
            Proto::TcpBfcp => {
                tcp.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(tcp)).map(BfcpSocket::Tcp)
            }
            _ => udp.set_nonblocking(true).and_then(|()| tokio::net::UdpSocket::from_std(udp)).map(BfcpSocket::Udp),
        }
        .map_err(|e| format!("the BFCP socket cannot be used: {e}"))?;
        let link = bfcp::start(
            socket,
            BfcpParams { remote, role: b.role, conf_id: b.conf_id, user_id: b.user_id, floor_id: b.floor_id },
        );
        let mut watch = link.floor.clone();
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let floor = *watch.borrow_and_update();
                if floors.send(FloorChange { call, floor }).await.is_err() {
                    break;
                }
            }
        });
        tracing::info!(
            slides = %format!("{}x{} at {CONTENT_FPS} fps, {max_kbps} kbit/s", size.0, size.1),
            bfcp = %format!("{} {remote} as {:?}, conference {}, user {}, floor {}", b.proto.as_str(), b.role, b.conf_id, b.user_id, b.floor_id),
            "presentation channel ready"
        );
        self.security = Some(neg.security.clone());
        self.send_size = size;
        self.session = Some(session);
        self.link = Some(link);
        if self.wanted {
            self.command(FloorCommand::Request);
        }
        Ok(())
    }

    fn command(&self, c: FloorCommand) {
        if let Some(l) = &self.link
            && let Err(e) = l.commands.try_send(c)
        {
            tracing::warn!("the BFCP link takes no command ({c:?}): {e}");
        }
    }

    /// The room wants to present (`true`) or stops. Stopping closes the valve at once; the
    /// floor is released by the shell.
    pub fn present(&mut self, on: bool) {
        if on == self.wanted {
            return;
        }
        self.wanted = on;
        if on {
            self.command(FloorCommand::Request);
        } else {
            if let Some(s) = &self.session {
                s.set_direction(MediaDirection::RecvOnly);
            }
            self.command(FloorCommand::Release);
        }
    }

    /// The shell's floor changed: send the slides while it is ours (and wanted), never else.
    pub fn on_floor(&mut self, floor: BfcpFloor) {
        let was = self.floor;
        self.floor = floor;
        let send = floor == BfcpFloor::Ours && self.wanted;
        if let Some(s) = &self.session {
            s.set_direction(if send { MediaDirection::SendRecv } else { MediaDirection::RecvOnly });
        }
        if floor == BfcpFloor::Ours && !self.wanted {
            // Granted after the room stopped wanting it: give it back.
            self.command(FloorCommand::Release);
        }
        let lost = matches!(floor, BfcpFloor::Theirs(_))
            || (was == BfcpFloor::Ours && floor != BfcpFloor::Ours)
            || (was == BfcpFloor::Requesting && floor == BfcpFloor::Free);
        if lost {
            // The far end took over, revoked or refused us: the room's wish is over (asking
            // again is the people's call, not a fight over the floor).
            self.wanted = false;
        }
        tracing::info!(from = ?was, to = ?floor, "presentation floor");
    }

    /// The presentation as the room reads it.
    pub fn presentation(&self) -> Presentation {
        let Some(s) = &self.session else { return Presentation::default() };
        match self.floor {
            BfcpFloor::Free => Presentation { floor: Floor::Free, ..Default::default() },
            BfcpFloor::Requesting => Presentation { floor: Floor::Requesting, ..Default::default() },
            BfcpFloor::Ours => Presentation {
                floor: Floor::Ours,
                width: self.send_size.0,
                height: self.send_size.1,
                framerate: CONTENT_FPS,
            },
            BfcpFloor::Theirs(_) => {
                let st = s.stats();
                Presentation { floor: Floor::Theirs, width: st.recv_width, height: st.recv_height, framerate: 0 }
            }
        }
    }

    /// The slides session, for statistics and protection.
    pub fn session(&self) -> Option<&VideoSession> {
        self.session.as_ref()
    }

    /// Stops both (the call ended): Goodbye to the floor, the stream stopped off this task.
    pub fn stop(&mut self) {
        self.link = None;
        if let Some(s) = self.session.take() {
            tokio::task::spawn_blocking(move || s.stop());
        }
    }
}

/// The presentation's bitrate out of the call's video budget.
pub fn content_kbps(video_max_kbps: u32) -> u32 {
    (video_max_kbps * CONTENT_SHARE_PERCENT / 100).max(300)
}
