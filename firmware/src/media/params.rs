use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::MediaError;
use super::sockets::RtpSockets;

/// The audio codecs a call can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// `opus/48000/2` in SDP; we send mono, decode whatever arrives.
    Opus,
    /// `G722/8000` in SDP (the RTP clock is 8000 for historical reasons), 16 kHz audio.
    G722,
    /// `PCMU/8000`, G.711 µ-law.
    Pcmu,
    /// `PCMA/8000`, G.711 A-law.
    Pcma,
}

impl AudioCodec {
    /// RTP clock rate as written in SDP.
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::G722 | AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
        }
    }

    /// The encoding name in SDP and in GStreamer's RTP caps.
    pub fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::Opus => "OPUS",
            AudioCodec::G722 => "G722",
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// The static payload type, where the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            AudioCodec::Opus => None,
            AudioCodec::G722 => Some(9),
            AudioCodec::Pcmu => Some(0),
            AudioCodec::Pcma => Some(8),
        }
    }

    /// The codec of an SDP `a=rtpmap` entry (`opus/48000/2`, `G722/8000`, `PCMU/8000`, ...):
    /// encoding names are case-insensitive; the clock rate must be the registered one.
    pub fn from_rtpmap(encoding: &str, clock_rate: u32) -> Option<AudioCodec> {
        let codec = [AudioCodec::Opus, AudioCodec::G722, AudioCodec::Pcmu, AudioCodec::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(encoding))?;
        (codec.clock_rate() == clock_rate).then_some(codec)
    }

    /// Sample rate of the audio the codec carries.
    pub fn audio_rate(self) -> u32 {
        match self {
            AudioCodec::Opus => 48_000,
            AudioCodec::G722 => 16_000,
            AudioCodec::Pcmu | AudioCodec::Pcma => 8_000,
        }
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioCodec::Opus => "opus/48000/2",
            AudioCodec::G722 => "G722/8000",
            AudioCodec::Pcmu => "PCMU/8000",
            AudioCodec::Pcma => "PCMA/8000",
        })
    }
}

/// Opus options from the negotiated `a=fmtp` line, and our encoder choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusOptions {
    /// `useinbandfec=1`: send in-band forward error correction.
    pub inband_fec: bool,
    /// Encoder bitrate in bit/s (capped by `maxaveragebitrate` if the peer sent one).
    pub bitrate: u32,
    /// Expected packet loss in percent, tunes the FEC.
    pub packet_loss_percent: u32,
}

impl OpusOptions {
    /// Apply the remote's Opus `a=fmtp` parameters (RFC 7587): `useinbandfec` (whether it wants
    /// FEC) and `maxaveragebitrate` (a cap on our bitrate). Unknown or malformed parameters are
    /// ignored; nothing here can fail on hostile input.
    pub fn with_remote_fmtp(mut self, fmtp: &str) -> Self {
        for param in fmtp.split(';').take(32) {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key.eq_ignore_ascii_case("useinbandfec") {
                self.inband_fec = value == "1";
            } else if key.eq_ignore_ascii_case("maxaveragebitrate")
                && let Ok(max) = value.parse::<u32>()
                && (6000..=510_000).contains(&max)
            {
                self.bitrate = self.bitrate.min(max);
            }
        }
        self
    }
}

impl Default for OpusOptions {
    fn default() -> Self {
        OpusOptions { inband_fec: true, bitrate: 32_000, packet_loss_percent: 5 }
    }
}

/// The negotiated codec and its payload types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecParams {
    pub codec: AudioCodec,
    /// Payload type we send with: the number in the *remote* SDP.
    pub payload_type: u8,
    /// Payload type we receive with: the number in *our* SDP. `None`: the same as `payload_type`.
    pub recv_payload_type: Option<u8>,
    /// Used only for Opus.
    pub opus: OpusOptions,
}

impl CodecParams {
    pub fn new(codec: AudioCodec, payload_type: u8) -> Self {
        CodecParams { codec, payload_type, recv_payload_type: None, opus: OpusOptions::default() }
    }
    /// Opus with a dynamic payload type.
    pub fn opus(payload_type: u8) -> Self {
        Self::new(AudioCodec::Opus, payload_type)
    }
    pub fn g722() -> Self {
        Self::new(AudioCodec::G722, 9)
    }
    pub fn pcmu() -> Self {
        Self::new(AudioCodec::Pcmu, 0)
    }
    pub fn pcma() -> Self {
        Self::new(AudioCodec::Pcma, 8)
    }
    pub fn recv_pt(&self) -> u8 {
        self.recv_payload_type.unwrap_or(self.payload_type)
    }
}

/// The negotiated `telephone-event` format (RFC 4733).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Payload type we send with (remote SDP).
    pub payload_type: u8,
    /// Payload type we receive with (our SDP). `None`: the same.
    pub recv_payload_type: Option<u8>,
    /// Clock rate from SDP (`telephone-event/8000` or `/48000`); should equal the codec's.
    pub clock_rate: u32,
}

impl TelephoneEvent {
    pub fn new(payload_type: u8, clock_rate: u32) -> Self {
        TelephoneEvent { payload_type, recv_payload_type: None, clock_rate }
    }
    pub fn recv_pt(&self) -> u8 {
        self.recv_payload_type.unwrap_or(self.payload_type)
    }
}

/// SRTP crypto suites (RFC 4568 `a=crypto` for SDES; DTLS-SRTP agrees on the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    /// `AES_CM_128_HMAC_SHA1_80`, the one every SDES peer supports.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (32-bit tag on SRTP, 80-bit on SRTCP).
    AesCm128HmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Master key plus master salt, in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32 => 30,
            SrtpProfile::AeadAes128Gcm => 28,
            SrtpProfile::AeadAes256Gcm => 44,
        }
    }
    /// The suite's name in SDP (and in `Call1.MediaEncryption`).
    pub fn name(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }
    /// srtpenc/srtpdec cipher for SRTP and SRTCP.
    pub(crate) fn cipher(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32 => "aes-128-icm",
            SrtpProfile::AeadAes128Gcm => "aes-128-gcm",
            SrtpProfile::AeadAes256Gcm => "aes-256-gcm",
        }
    }
    /// srtpenc/srtpdec authentication for SRTP (AEAD suites authenticate in the cipher).
    pub(crate) fn rtp_auth(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "hmac-sha1-80",
            SrtpProfile::AesCm128HmacSha1_32 => "hmac-sha1-32",
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => "null",
        }
    }
    /// ... and for SRTCP (always the 80-bit tag with AES-CM, RFC 4568 §6.2).
    pub(crate) fn rtcp_auth(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32 => "hmac-sha1-80",
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => "null",
        }
    }
}

/// SRTP keys from the SDES exchange: the inline key of our `a=crypto` protects what we send, the
/// remote's protects what we receive. Both are the decoded master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpParams {
    pub profile: SrtpProfile,
    pub send_key: Vec<u8>,
    pub recv_key: Vec<u8>,
}

impl SrtpParams {
    /// Both keys must be master key plus salt of the profile's length.
    pub(crate) fn validate(&self) -> Result<(), MediaError> {
        for (which, key) in [("send", &self.send_key), ("receive", &self.recv_key)] {
            if key.len() != self.profile.key_len() {
                return Err(MediaError::InvalidParams(format!(
                    "SRTP {which} key is {} bytes; {:?} needs {} (master key and salt)",
                    key.len(),
                    self.profile,
                    self.profile.key_len()
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for SrtpParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpParams").field("profile", &self.profile).field("keys", &"<redacted>").finish()
    }
}

/// Media direction from *our* side, as negotiated in SDP (`a=sendrecv` etc. in our description).
///
/// Sending stops for `RecvOnly` and `Inactive`; receiving stops for `SendOnly` and `Inactive`.
/// RTCP keeps flowing in every direction, so the call stays alive while on hold. A room that holds
/// the far end offers `sendonly`; if it should not send the room's audio while holding, the call
/// manager also mutes (the stream then carries silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Everything [`super::AudioSession::start`] needs.
#[derive(Debug)]
pub struct AudioSessionParams {
    /// Local RTP (and RTCP) sockets, bound before the SDP was written.
    pub sockets: RtpSockets,
    /// Where the remote wants RTP.
    pub remote_rtp: SocketAddr,
    /// Where the remote wants RTCP (`a=rtcp`); `None`: RTP port + 1, or the RTP address with rtcp-mux.
    pub remote_rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` negotiated: RTP and RTCP share the RTP port both ways.
    pub rtcp_mux: bool,
    pub codec: CodecParams,
    pub telephone_event: Option<TelephoneEvent>,
    /// Packet time in ms (`a=ptime`), 20 by default.
    pub ptime_ms: u32,
    /// Our SSRC; `None` picks a random one.
    pub ssrc: Option<u32>,
    /// RTCP CNAME (e.g. `huis@room-name`).
    pub cname: String,
    /// DSCP code point for our packets: 46 (EF) by default; `None` leaves the socket alone.
    pub dscp: Option<u8>,
    /// Jitter buffer latency.
    pub jitter_buffer: Duration,
    /// Minimum RTCP interval (RFC 3550 says 5 s; tests use less).
    pub rtcp_interval: Duration,
    /// Report [`super::MediaEvent::RtpTimeout`] when nothing arrives for this long. `None`: never.
    pub rtp_timeout: Option<Duration>,
    /// Initial direction.
    pub direction: Direction,
    /// SRTP (SDES) keys; `None` sends plain RTP, which only a configuration that allows it should do.
    pub srtp: Option<SrtpParams>,
    /// DTLS-SRTP instead of SDES keys (not both).
    pub dtls: Option<super::DtlsParams>,
}

impl AudioSessionParams {
    /// Parameters with the usual defaults: ptime 20 ms, DSCP EF, 60 ms jitter buffer, RTCP every
    /// 5 s, RTP timeout 30 s, sendrecv, random SSRC.
    pub fn new(sockets: RtpSockets, remote_rtp: SocketAddr, codec: CodecParams) -> Self {
        AudioSessionParams {
            sockets,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            codec,
            telephone_event: None,
            ptime_ms: 20,
            ssrc: None,
            cname: "huis".to_owned(),
            dscp: Some(46),
            jitter_buffer: Duration::from_millis(60),
            rtcp_interval: Duration::from_secs(5),
            rtp_timeout: Some(Duration::from_secs(30)),
            direction: Direction::SendRecv,
            srtp: None,
            dtls: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::InvalidParams(m));
        if self.codec.payload_type > 127 || self.codec.recv_pt() > 127 {
            return bad(format!("codec payload type {} is above 127", self.codec.payload_type));
        }
        if let Some(te) = &self.telephone_event {
            if te.payload_type > 127 || te.recv_pt() > 127 {
                return bad(format!("telephone-event payload type {} is above 127", te.payload_type));
            }
            if te.payload_type == self.codec.payload_type || te.recv_pt() == self.codec.recv_pt() {
                return bad("telephone-event and the codec share a payload type".into());
            }
            if te.clock_rate == 0 {
                return bad("telephone-event clock rate is 0".into());
            }
        }
        if !(10..=120).contains(&self.ptime_ms) || !self.ptime_ms.is_multiple_of(10) {
            return bad(format!("ptime {} ms is not a multiple of 10 between 10 and 120", self.ptime_ms));
        }
        if self.codec.codec == AudioCodec::Opus && ![10, 20, 40, 60].contains(&self.ptime_ms) {
            return bad(format!("ptime {} ms is not an Opus frame size (10, 20, 40, 60)", self.ptime_ms));
        }
        if let Some(d) = self.dscp
            && d > 63
        {
            return bad(format!("DSCP {d} is above 63"));
        }
        if self.remote_rtp.port() == 0 {
            return bad("remote RTP port is 0".into());
        }
        if self.remote_rtp.is_ipv4() != self.sockets.local_rtp().is_ipv4() {
            return bad(format!(
                "remote RTP address {} and local address {} are of different IP versions",
                self.remote_rtp,
                self.sockets.local_rtp()
            ));
        }
        if let Some(srtp) = &self.srtp {
            srtp.validate()?;
            if self.dtls.is_some() {
                return bad("SDES keys and DTLS-SRTP are exclusive".into());
            }
        }
        if self.rtcp_interval < Duration::from_millis(100) {
            return bad("RTCP interval below 100 ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_names() {
        assert_eq!(AudioCodec::from_rtpmap("opus", 48_000), Some(AudioCodec::Opus));
        assert_eq!(AudioCodec::from_rtpmap("G722", 8000), Some(AudioCodec::G722));
        assert_eq!(AudioCodec::from_rtpmap("pcmu", 8000), Some(AudioCodec::Pcmu));
        assert_eq!(AudioCodec::from_rtpmap("PCMA", 8000), Some(AudioCodec::Pcma));
        assert_eq!(AudioCodec::from_rtpmap("G722", 16_000), None, "G.722 is 8000 in SDP");
        assert_eq!(AudioCodec::from_rtpmap("speex", 8000), None);
        for c in [AudioCodec::Opus, AudioCodec::G722, AudioCodec::Pcmu, AudioCodec::Pcma] {
            let s = c.to_string();
            let mut parts = s.split('/');
            let (name, rate) = (parts.next().unwrap(), parts.next().unwrap().parse().unwrap());
            assert_eq!(AudioCodec::from_rtpmap(name, rate), Some(c));
        }
    }

    #[test]
    fn opus_fmtp() {
        let o = OpusOptions::default().with_remote_fmtp("minptime=10; useinbandfec=0;maxaveragebitrate=20000");
        assert!(!o.inband_fec);
        assert_eq!(o.bitrate, 20_000);
        let o = OpusOptions::default().with_remote_fmtp("maxaveragebitrate=99999999;useinbandfec=1;=;;x");
        assert!(o.inband_fec);
        assert_eq!(o.bitrate, OpusOptions::default().bitrate, "out-of-range caps are ignored");
    }
}
