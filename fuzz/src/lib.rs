//! Drivers of the fuzz targets that need more than one call: a SIP dialog that is up before
//! the fuzzer's messages arrive, SDP offer/answer on both sides, and the parsers that take a
//! path. Each must never panic, whatever the bytes hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use huis_sip::sdp::{Codec, Direction, LocalMedia, SessionDescription};
use huis_sip::sdp_security::{EncryptionPolicy, Fingerprint, LocalSecurity, MAX_KEY_LEN, SrtpKey};
use huis_sip::sdp_video::LocalVideo;
use huis_sip::{Config, Event, Input, TransportKind, UserAgent};

const LOCAL: &str = "192.0.2.1:5060";
const PEER: &str = "192.0.2.2:5060";
/// Messages of one input are separated by this line (seeds use it too).
pub const SEPARATOR: &[u8] = b"\n--8<--\n";

const INVITE: &str = "INVITE sip:room@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKfuzz0\r\n\
From: <sip:peer@192.0.2.2>;tag=ft\r\n\
To: <sip:room@192.0.2.1>\r\n\
Call-ID: fz@192.0.2.2\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:peer@192.0.2.2:5060>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: ";

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n";

fn local_media() -> LocalMedia {
    LocalMedia {
        address: "192.0.2.1".parse().unwrap(),
        audio_port: 30000,
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        telephone_event: true,
        session_id: 1,
        direction: Direction::SendRecv,
        security: local_security(),
    }
}

/// Everything a peer may ask for is on: SDES (as over TLS), DTLS-SRTP and rtcp-mux.
fn local_security() -> LocalSecurity {
    LocalSecurity {
        policy: EncryptionPolicy::BestEffort,
        signalling_tls: true,
        fingerprint: Some(Fingerprint([7; 32])),
        sdes_keys: vec![SrtpKey::new(vec![1; MAX_KEY_LEN]), SrtpKey::new(vec![2; MAX_KEY_LEN])],
        rtcp_mux: true,
        ..LocalSecurity::default()
    }
}

fn local_video() -> LocalVideo {
    LocalVideo { port: 30002, level_idc: 31, max_kbps: 2000, rtcp_feedback: true, high_profiles: true }
}

/// A call from the peer is answered, then every message of `data` (split at [`SEPARATOR`],
/// with `$TOTAG` replaced by our tag of the dialog) arrives in it, over UDP or, when the first
/// byte is odd, over TCP (TLS with bit 1) in pieces of `first byte >> 2` bytes; time moves between messages, and the room hangs up at the
/// end. This reaches in-dialog requests (re-INVITE, UPDATE, INFO, BYE, CANCEL) and the
/// responses to ours, which parsers alone do not.
pub fn sip_dialog(data: &[u8]) {
    let (mode, data) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    let local: SocketAddr = LOCAL.parse().unwrap();
    let peer: SocketAddr = PEER.parse().unwrap();
    let mut cfg = Config::new("room", "example.org", local);
    cfg.auto_answer = true;
    let mut ua = UserAgent::new(cfg);
    let mut now = Instant::now();
    let invite = format!("{INVITE}{}\r\n\r\n{OFFER}", OFFER.len());
    ua.handle_input(now, Input::Datagram { from: peer, to: local, bytes: invite.as_bytes() });
    let mut call = None;
    while let Some(ev) = ua.poll_event() {
        if let Event::IncomingCall { call: c, .. } = ev {
            call = Some(c);
        }
    }
    let Some(call) = call else { return };
    let answer = local_media().answer(&SessionDescription::parse(OFFER).unwrap()).map(|(a, _)| a.to_text());
    let _ = ua.answer(now, call, &answer.unwrap_or_default());
    let mut to_tag = String::new();
    while let Some(t) = ua.poll_transmit() {
        let text = String::from_utf8_lossy(&t.bytes);
        if let Some(tag) = text.lines().find(|l| l.starts_with("To:")).and_then(|l| l.split(";tag=").nth(1)) {
            to_tag = tag.trim().to_owned();
        }
    }
    let tcp = mode & 1 == 1;
    // A stream is TCP or, with the second bit, TLS (the shell has decrypted it already).
    let transport = if mode & 2 == 2 { TransportKind::Tls } else { TransportKind::Tcp };
    for (i, msg) in split(data).enumerate() {
        let msg = replace(msg, b"$TOTAG", to_tag.as_bytes());
        if tcp {
            // Pieces of 1..=64 bytes, sized by the mode byte.
            let step = usize::from(mode >> 2).max(1);
            for piece in msg.chunks(step) {
                ua.handle_input(now, Input::Stream { from: peer, to: local, transport, bytes: piece });
            }
        } else {
            ua.handle_input(now, Input::Datagram { from: peer, to: local, bytes: &msg });
        }
        drain(&mut ua);
        now += Duration::from_millis(10 + 500 * (i as u64 % 3));
        ua.handle_timeout(now);
        drain(&mut ua);
    }
    let _ = ua.hangup(now, call);
    // Let every timer run out: nothing may loop or grow.
    for _ in 0..200 {
        let Some(t) = ua.poll_timeout() else { break };
        now = now.max(t);
        ua.handle_timeout(now);
        drain(&mut ua);
    }
}

fn drain(ua: &mut UserAgent) {
    while ua.poll_transmit().is_some() {}
    while ua.poll_event().is_some() {}
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                rest = Some(&r[i + SEPARATOR.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// SDP from the network on both sides of offer/answer: as an offer we answer (audio and
/// video), and as the answer to our offer.
pub fn sdp_negotiation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(sdp) = SessionDescription::parse(text) else { return };
    let media = local_media();
    let video = local_video();
    let security = local_security();
    if let Ok((answer, _)) = media.answer(&sdp) {
        let _ = SessionDescription::parse(&answer.to_text());
    }
    let _ = video.answer(&sdp, Direction::SendRecv, &security);
    let _ = video.accept_answer(&sdp, &security);
    // The presentation: slides video and BFCP, answered and read back.
    huis_sip::sdp_content::fuzz_content(text);
    let _ = sdp.to_text();
}

/// A board descriptor, as a file given with `--board`.
pub fn board(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = huis_board::parse("fuzz", "fuzz.toml", text);
    }
}

/// WAV input of the offline DSP tool.
pub fn wav(data: &[u8]) {
    let _ = huis_dsp::wav::parse_wav(std::path::Path::new("fuzz.wav"), data);
}
