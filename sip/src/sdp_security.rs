//! Media encryption in SDP: SDES-SRTP (RFC 4568 `a=crypto`), DTLS-SRTP (RFC 5763/5764
//! `a=fingerprint`, `a=setup`) and rtcp-mux (RFC 5761), for every RTP m-line (audio and video).
//!
//! **What we offer** ([`LocalSecurity::offer_kind`]): with `media_encryption = "off"` plain
//! `RTP/AVP`. Otherwise, when the call's signalling runs over TLS, SDES on `RTP/SAVP` (the keys
//! travel inside the SIP message, so they may never be written into clear SIP); over UDP or TCP,
//! DTLS-SRTP on `UDP/TLS/RTP/SAVP` with our certificate's SHA-256 fingerprint and
//! `a=setup:actpass`. One m-line has one transport protocol, and SIP peers (baresip 1.0
//! included) pick an m-line by its protocol, so an offer carries one kind, never both; an
//! answerer that refuses it makes the shell retry once with plain RTP (best-effort), see the
//! firmware's SIP backend. Every RTP m-line we write also offers `a=rtcp-mux`.
//!
//! **What we answer** ([`LocalSecurity::answer_media`]), per offered m-line: `RTP/AVP(F)` is
//! plain (unusable under "required"); `RTP/SAVP(F)` needs an `a=crypto` with a suite we have
//! and signalling over TLS; `UDP/TLS/RTP/SAVP(F)` needs a SHA-256 fingerprint, a usable
//! `a=setup` and a certificate of ours. We answer DTLS `a=setup:active` to `actpass` (RFC 5763
//! §5: the answerer should be the DTLS client), and SDES with the first offered suite we
//! support, under the offer's tag, with our own fresh key.
//!
//! Keys ([`SrtpKey`]) are never printed: their `Debug` is redacted.
//!
//! Parsing is bounded (attribute length, key length, number of crypto lines) and every refusal
//! has a typed reason ([`SecurityError`]); [`fuzz_security`] runs every parser of this module
//! on arbitrary text.

use std::fmt;

use thiserror::Error;

use crate::sdp::{Media, SessionDescription};

/// Longest `a=crypto` or `a=fingerprint` value we look at.
const MAX_ATTR_LEN: usize = 512;
/// Most `a=crypto` lines looked at per m-line.
const MAX_CRYPTO_LINES: usize = 16;

/// The transport protocol of an RTP m-line, as far as security goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpProto {
    /// `RTP/AVP` or `RTP/AVPF`: plain RTP.
    Plain,
    /// `RTP/SAVP` or `RTP/SAVPF`: SRTP with keys from SDES.
    Sdes,
    /// `UDP/TLS/RTP/SAVP` or `UDP/TLS/RTP/SAVPF`: DTLS-SRTP.
    Dtls,
}

impl RtpProto {
    /// Classifies an m-line's protocol; `None` for anything that is not RTP over UDP.
    /// Returns the kind and whether it is the feedback (`F`) profile.
    pub fn parse(proto: &str) -> Option<(RtpProto, bool)> {
        let p = proto.to_ascii_uppercase();
        match p.as_str() {
            "RTP/AVP" => Some((RtpProto::Plain, false)),
            "RTP/AVPF" => Some((RtpProto::Plain, true)),
            "RTP/SAVP" => Some((RtpProto::Sdes, false)),
            "RTP/SAVPF" => Some((RtpProto::Sdes, true)),
            "UDP/TLS/RTP/SAVP" => Some((RtpProto::Dtls, false)),
            "UDP/TLS/RTP/SAVPF" => Some((RtpProto::Dtls, true)),
            _ => None,
        }
    }

    /// SRTP of either kind.
    pub fn is_encrypted(self) -> bool {
        self != RtpProto::Plain
    }

    /// The protocol name, with or without feedback.
    pub fn name(self, feedback: bool) -> &'static str {
        match (self, feedback) {
            (RtpProto::Plain, false) => "RTP/AVP",
            (RtpProto::Plain, true) => "RTP/AVPF",
            (RtpProto::Sdes, false) => "RTP/SAVP",
            (RtpProto::Sdes, true) => "RTP/SAVPF",
            (RtpProto::Dtls, false) => "UDP/TLS/RTP/SAVP",
            (RtpProto::Dtls, true) => "UDP/TLS/RTP/SAVPF",
        }
    }
}

/// SRTP crypto suites (RFC 4568 §6.2, RFC 7714 §14.2 for the AEAD ones). GStreamer 1.22's
/// `srtpenc`/`srtpdec` have all four ciphers (aes-128-icm, aes-128-gcm, aes-256-gcm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: what every SDES peer has.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit tag on SRTP, 80-bit on SRTCP.
    AesCm128HmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl CryptoSuite {
    /// Every suite, in the order we offer and prefer them.
    pub const ALL: [CryptoSuite; 4] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
        CryptoSuite::AeadAes256Gcm,
        CryptoSuite::AeadAes128Gcm,
    ];

    /// The name in `a=crypto` (and in `Call1.MediaEncryption`).
    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            CryptoSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The suite of a name (exact, as RFC 4568 registers them).
    pub fn from_name(s: &str) -> Option<CryptoSuite> {
        CryptoSuite::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Master key plus master salt, in bytes.
    pub fn key_len(self) -> usize {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 | CryptoSuite::AesCm128HmacSha1_32 => 16 + 14,
            CryptoSuite::AeadAes128Gcm => 16 + 12,
            CryptoSuite::AeadAes256Gcm => 32 + 12,
        }
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The longest master key plus salt of any suite: what [`LocalSecurity::sdes_keys`] holds per
/// m-line.
pub const MAX_KEY_LEN: usize = 44;

/// SRTP master key and salt. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey(Vec<u8>);

impl SrtpKey {
    /// Wraps key bytes (master key followed by master salt).
    pub fn new(bytes: Vec<u8>) -> SrtpKey {
        SrtpKey(bytes)
    }
    /// The key bytes, for the SRTP elements.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn prefix(&self, len: usize) -> SrtpKey {
        SrtpKey(self.0[..len.min(self.0.len())].to_vec())
    }
}

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrtpKey(<{} bytes redacted>)", self.0.len())
    }
}

/// Why a security attribute or m-line is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecurityError {
    /// An attribute value is longer than we read.
    #[error("{0} attribute too long")]
    TooLong(&'static str),
    /// `a=crypto` is not `TAG SUITE inline:KEY[|LIFETIME][|MKI:LEN] [PARAMS]`.
    #[error("malformed a=crypto: {0}")]
    MalformedCrypto(&'static str),
    /// `a=fingerprint` is not `HASH XX:XX:...`.
    #[error("malformed a=fingerprint: {0}")]
    MalformedFingerprint(&'static str),
    /// The offer or answer asks for SDES, but the signalling is not over TLS: the keys would be
    /// readable by anyone on the path.
    #[error("SDES-SRTP keys offered over signalling that is not encrypted (TLS); refused")]
    SdesWithoutTls,
    /// SRTP asked for (RTP/SAVP) without any crypto suite we have.
    #[error("no common SRTP crypto suite")]
    NoCommonSuite,
    /// DTLS-SRTP asked for without a SHA-256 fingerprint.
    #[error("DTLS-SRTP without a SHA-256 certificate fingerprint")]
    NoFingerprint,
    /// `a=setup` missing or not usable for the role asked.
    #[error("DTLS-SRTP a=setup:{0} is not usable here")]
    BadSetup(String),
    /// DTLS-SRTP asked for, but we have no certificate.
    #[error("DTLS-SRTP is not available (no certificate)")]
    NoCertificate,
    /// Encryption asked for, but media encryption is off here.
    #[error("media encryption is off here")]
    EncryptionOff,
    /// The far end's media is not encrypted and our policy requires it.
    #[error("the far end does not support encryption")]
    NotEncrypted,
    /// An answer whose protocol or keys do not match what we offered.
    #[error("the answer's media security does not match the offer: {0}")]
    Mismatch(&'static str),
    /// Not an RTP profile we know.
    #[error("unknown transport protocol {0}")]
    UnknownProto(String),
}

/// One `a=crypto` line (RFC 4568 §9.1), with one inline key and no MKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    /// The tag, echoed by the answer.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// Master key and salt.
    pub key: SrtpKey,
}

impl CryptoAttr {
    /// Parses the value of `a=crypto:`. Unknown suites, session parameters, MKIs and
    /// several keys are refused with a reason (we never use such a line).
    pub fn parse(v: &str) -> Result<CryptoAttr, SecurityError> {
        if v.len() > MAX_ATTR_LEN {
            return Err(SecurityError::TooLong("crypto"));
        }
        let mut it = v.split_ascii_whitespace();
        let tag = it
            .next()
            .and_then(|t| (t.len() <= 9).then_some(t))
            .and_then(|t| t.parse::<u32>().ok())
            .ok_or(SecurityError::MalformedCrypto("the tag is not a number"))?;
        let suite = it
            .next()
            .ok_or(SecurityError::MalformedCrypto("no suite"))
            .and_then(|s| CryptoSuite::from_name(s).ok_or(SecurityError::NoCommonSuite))?;
        let params = it.next().ok_or(SecurityError::MalformedCrypto("no key parameters"))?;
        if it.next().is_some() {
            return Err(SecurityError::MalformedCrypto("session parameters are not supported"));
        }
        if params.contains(';') {
            return Err(SecurityError::MalformedCrypto("more than one key"));
        }
        let inline =
            params.strip_prefix("inline:").ok_or(SecurityError::MalformedCrypto("the key method is not inline"))?;
        let mut parts = inline.split('|');
        let key_text = parts.next().unwrap_or("");
        for p in parts {
            if p.contains(':') {
                return Err(SecurityError::MalformedCrypto("an MKI is not supported"));
            }
            // A lifetime ("2^31" or a number) is accepted: calls are far shorter.
            let ok = p.strip_prefix("2^").unwrap_or(p);
            if ok.is_empty() || !ok.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SecurityError::MalformedCrypto("bad key lifetime"));
            }
        }
        let key = base64_decode(key_text).ok_or(SecurityError::MalformedCrypto("the key is not base64"))?;
        if key.len() != suite.key_len() {
            return Err(SecurityError::MalformedCrypto("the key has the wrong length for its suite"));
        }
        Ok(CryptoAttr { tag, suite, key: SrtpKey(key) })
    }

    /// The value for `a=crypto:`.
    pub fn to_value(&self) -> String {
        format!("{} {} inline:{}", self.tag, self.suite.name(), base64_encode(self.key.bytes()))
    }
}

/// A SHA-256 certificate fingerprint (`a=fingerprint:sha-256 ...`, RFC 8122).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses an `a=fingerprint` value. Only `sha-256` is accepted; other hashes give
    /// [`SecurityError::NoFingerprint`].
    pub fn parse(v: &str) -> Result<Fingerprint, SecurityError> {
        if v.len() > MAX_ATTR_LEN {
            return Err(SecurityError::TooLong("fingerprint"));
        }
        let (hash, hex) = v.trim().split_once(' ').ok_or(SecurityError::MalformedFingerprint("no hash name"))?;
        if !hash.eq_ignore_ascii_case("sha-256") {
            return Err(SecurityError::NoFingerprint);
        }
        let mut out = [0u8; 32];
        let mut n = 0;
        for byte in hex.trim().split(':') {
            if n == 32 || byte.len() != 2 {
                return Err(SecurityError::MalformedFingerprint("not 32 hex bytes"));
            }
            out[n] = u8::from_str_radix(byte, 16).map_err(|_| SecurityError::MalformedFingerprint("not a hex byte"))?;
            n += 1;
        }
        if n != 32 {
            return Err(SecurityError::MalformedFingerprint("not 32 hex bytes"));
        }
        Ok(Fingerprint(out))
    }

    /// The value for `a=fingerprint:`.
    pub fn to_value(&self) -> String {
        format!("sha-256 {self}")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// `a=setup` (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Opens the connection: the DTLS client.
    Active,
    /// Waits for it: the DTLS server.
    Passive,
    /// Either (offers only).
    ActPass,
    /// No connection now.
    HoldConn,
}

impl Setup {
    /// Parses an `a=setup` value.
    pub fn parse(v: &str) -> Option<Setup> {
        match v.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            "actpass" => Some(Setup::ActPass),
            "holdconn" => Some(Setup::HoldConn),
            _ => None,
        }
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// How one m-line's SRTP keys were agreed: the outcome of offer/answer for its security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    /// Plain RTP.
    Plain,
    /// SDES: our key protects what we send, the peer's what we receive.
    Sdes {
        /// The agreed suite.
        suite: CryptoSuite,
        /// Our key (sending).
        local: SrtpKey,
        /// The peer's key (receiving).
        remote: SrtpKey,
    },
    /// DTLS-SRTP: the handshake makes the keys; the peer's certificate must match `remote`.
    Dtls {
        /// We open the DTLS connection (`a=setup:active` on our side).
        client: bool,
        /// The peer's certificate fingerprint from its SDP.
        remote: Fingerprint,
    },
}

impl Keying {
    /// Whether the media is encrypted.
    pub fn is_encrypted(&self) -> bool {
        !matches!(self, Keying::Plain)
    }
}

/// `[call] media_encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionPolicy {
    /// Plain RTP/AVP only, as before media encryption existed.
    Off,
    /// Offer encryption; take plain RTP only when the far end refuses it.
    #[default]
    BestEffort,
    /// Encrypted media or no call.
    Required,
}

impl EncryptionPolicy {
    /// The configuration's name.
    pub fn name(self) -> &'static str {
        match self {
            EncryptionPolicy::Off => "off",
            EncryptionPolicy::BestEffort => "best-effort",
            EncryptionPolicy::Required => "required",
        }
    }

    /// The policy of a configuration value.
    pub fn from_name(s: &str) -> Option<EncryptionPolicy> {
        [EncryptionPolicy::Off, EncryptionPolicy::BestEffort, EncryptionPolicy::Required]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// What we offer and accept of media security for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSecurity {
    /// The call's policy.
    pub policy: EncryptionPolicy,
    /// The call's signalling runs over TLS: only then is SDES written or accepted.
    pub signalling_tls: bool,
    /// Our DTLS certificate's fingerprint; `None`: no DTLS-SRTP.
    pub fingerprint: Option<Fingerprint>,
    /// Fresh random key material per m-line index we may use (audio 0, video 1), each
    /// [`MAX_KEY_LEN`] bytes; empty: no SDES. Each suite uses a prefix of its m-line's bytes.
    pub sdes_keys: Vec<SrtpKey>,
    /// Offer and accept `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// This offer is the best-effort retry after a refusal: plain RTP.
    pub plain_retry: bool,
    /// The far end refused our SDES offer: offer DTLS-SRTP instead (a peer that keys media only
    /// by DTLS, as WebRTC gateways and baresip's `dtls_srtp` do, refuses `RTP/SAVP`).
    pub sdes_refused: bool,
    /// Accept whatever the peer asks as long as it parses (the SIP core's probe of an offer,
    /// which checks codecs only; the shell decides security).
    pub permissive: bool,
}

impl Default for LocalSecurity {
    /// Plain RTP, as before media encryption: nothing encrypted offered or accepted.
    fn default() -> Self {
        LocalSecurity {
            policy: EncryptionPolicy::Off,
            signalling_tls: false,
            fingerprint: None,
            sdes_keys: Vec::new(),
            rtcp_mux: false,
            plain_retry: false,
            sdes_refused: false,
            permissive: false,
        }
    }
}

/// The security side of one negotiated m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSecurity {
    /// How the keys are agreed.
    pub keying: Keying,
    /// Both sides agreed `a=rtcp-mux`.
    pub rtcp_mux: bool,
}

impl LocalSecurity {
    /// Accepts every security the peer asks for (the SIP core's codec probe).
    pub fn permissive() -> LocalSecurity {
        LocalSecurity { permissive: true, rtcp_mux: true, ..LocalSecurity::default() }
    }

    /// What our offers carry.
    pub fn offer_kind(&self) -> RtpProto {
        if self.policy == EncryptionPolicy::Off || self.plain_retry {
            RtpProto::Plain
        } else if self.signalling_tls && !self.sdes_keys.is_empty() && !self.sdes_refused {
            RtpProto::Sdes
        } else if self.fingerprint.is_some() {
            RtpProto::Dtls
        } else {
            RtpProto::Plain
        }
    }

    fn key_for(&self, index: usize, suite: CryptoSuite) -> Option<SrtpKey> {
        let k = self.sdes_keys.get(index).or(self.sdes_keys.last())?;
        (k.bytes().len() >= suite.key_len()).then(|| k.prefix(suite.key_len()))
    }

    /// Sets the protocol and adds our security attributes to our offer's m-line number
    /// `index` (audio 0, video 1). `feedback`: the AVPF profile.
    pub fn offer_media(&self, m: &mut Media, index: usize, feedback: bool) {
        let kind = self.offer_kind();
        m.proto = kind.name(feedback).into();
        match kind {
            RtpProto::Plain => {}
            RtpProto::Sdes => {
                for (i, suite) in CryptoSuite::ALL.into_iter().enumerate() {
                    if let Some(key) = self.key_for(index, suite) {
                        let c = CryptoAttr { tag: i as u32 + 1, suite, key };
                        m.attributes.push(("crypto".into(), Some(c.to_value())));
                    }
                }
            }
            RtpProto::Dtls => {
                if let Some(fp) = &self.fingerprint {
                    m.attributes.push(("fingerprint".into(), Some(fp.to_value())));
                }
                m.attributes.push(("setup".into(), Some(Setup::ActPass.as_str().into())));
            }
        }
        if self.rtcp_mux {
            m.attributes.push(("rtcp-mux".into(), None));
        }
    }

    /// Decides the security of our answer to the offered m-line `om` (number `index`), sets
    /// the answer m-line's protocol and attributes. `Err`: the m-line cannot be used.
    pub fn answer_media(
        &self,
        offer: &SessionDescription,
        om: &Media,
        am: &mut Media,
        index: usize,
    ) -> Result<MediaSecurity, SecurityError> {
        let (kind, feedback) =
            RtpProto::parse(&om.proto).ok_or_else(|| SecurityError::UnknownProto(om.proto.clone()))?;
        am.proto = kind.name(feedback).into();
        let keying = match kind {
            RtpProto::Plain if self.policy == EncryptionPolicy::Required && !self.permissive => {
                return Err(SecurityError::NotEncrypted);
            }
            RtpProto::Plain => Keying::Plain,
            _ if self.policy == EncryptionPolicy::Off && !self.permissive => return Err(SecurityError::EncryptionOff),
            RtpProto::Sdes => {
                if !self.signalling_tls && !self.permissive {
                    return Err(SecurityError::SdesWithoutTls);
                }
                let mut offered = Vec::new();
                let mut first_error = None;
                for v in om.attrs("crypto").take(MAX_CRYPTO_LINES) {
                    match CryptoAttr::parse(v) {
                        Ok(c) => offered.push(c),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                let pick = offered.into_iter().find_map(|c| {
                    let local = if self.permissive {
                        Some(SrtpKey(vec![0; c.suite.key_len()]))
                    } else {
                        self.key_for(index, c.suite)
                    };
                    local.map(|l| (c, l))
                });
                let Some((c, local)) = pick else {
                    return Err(match first_error {
                        Some(SecurityError::MalformedCrypto(m)) => SecurityError::MalformedCrypto(m),
                        _ => SecurityError::NoCommonSuite,
                    });
                };
                let ours = CryptoAttr { tag: c.tag, suite: c.suite, key: local.clone() };
                am.attributes.push(("crypto".into(), Some(ours.to_value())));
                Keying::Sdes { suite: c.suite, local, remote: c.key }
            }
            RtpProto::Dtls => {
                let remote = remote_fingerprint(offer, om)?;
                let setup = setup_of(offer, om).unwrap_or(Setup::ActPass);
                let (ours, client) = match setup {
                    Setup::ActPass | Setup::Passive => (Setup::Active, true),
                    Setup::Active => (Setup::Passive, false),
                    Setup::HoldConn => return Err(SecurityError::BadSetup("holdconn".into())),
                };
                match (&self.fingerprint, self.permissive) {
                    (Some(fp), _) => am.attributes.push(("fingerprint".into(), Some(fp.to_value()))),
                    (None, true) => {}
                    (None, false) => return Err(SecurityError::NoCertificate),
                }
                am.attributes.push(("setup".into(), Some(ours.as_str().into())));
                Keying::Dtls { client, remote }
            }
        };
        let rtcp_mux = self.rtcp_mux && om.attrs("rtcp-mux").next().is_some();
        if rtcp_mux {
            am.attributes.push(("rtcp-mux".into(), None));
        }
        Ok(MediaSecurity { keying, rtcp_mux })
    }

    /// Reads the security of the answer's m-line `m` (number `index`) to our offer. A plain
    /// answer to an encrypted offer is `Keying::Plain`: whether that is acceptable is the
    /// policy's call ([`LocalSecurity::check_policy`]).
    pub fn accept_answer_media(
        &self,
        answer: &SessionDescription,
        m: &Media,
        index: usize,
    ) -> Result<MediaSecurity, SecurityError> {
        let (kind, _) = RtpProto::parse(&m.proto).ok_or_else(|| SecurityError::UnknownProto(m.proto.clone()))?;
        let offered = self.offer_kind();
        let keying = match (kind, offered) {
            (RtpProto::Plain, _) => Keying::Plain,
            (_, _) if self.permissive => Keying::Plain,
            (RtpProto::Sdes, RtpProto::Sdes) => {
                let c = m
                    .attrs("crypto")
                    .take(MAX_CRYPTO_LINES)
                    .find_map(|v| CryptoAttr::parse(v).ok())
                    .ok_or(SecurityError::NoCommonSuite)?;
                // The tag says which of our lines was taken; its suite must be that line's.
                let ours = CryptoSuite::ALL
                    .get((c.tag as usize).wrapping_sub(1))
                    .copied()
                    .ok_or(SecurityError::Mismatch("a=crypto tag we did not offer"))?;
                if ours != c.suite {
                    return Err(SecurityError::Mismatch("a=crypto suite differs from our line with that tag"));
                }
                let local = self.key_for(index, c.suite).ok_or(SecurityError::NoCommonSuite)?;
                Keying::Sdes { suite: c.suite, local, remote: c.key }
            }
            (RtpProto::Dtls, RtpProto::Dtls) => {
                let remote = remote_fingerprint(answer, m)?;
                let client = match setup_of(answer, m) {
                    Some(Setup::Active) => false,
                    // RFC 5763 §5: an answer without a=setup means active. Passive: we open.
                    None => false,
                    Some(Setup::Passive) => true,
                    Some(s) => return Err(SecurityError::BadSetup(s.as_str().into())),
                };
                Keying::Dtls { client, remote }
            }
            _ => return Err(SecurityError::Mismatch("the answer's protocol differs from the offer's")),
        };
        let rtcp_mux = self.rtcp_mux && m.attrs("rtcp-mux").next().is_some();
        Ok(MediaSecurity { keying, rtcp_mux })
    }

    /// Turns our m-line of a new offer in an established call (hold, resume) into one that keeps
    /// what was agreed: the DTLS role we have (`active`/`passive`, not `actpass`, so the
    /// association stays), only the SDES line of the agreed suite (same key), and rtcp-mux only
    /// if it was agreed.
    pub fn keep_agreed(m: &mut Media, agreed: &MediaSecurity) {
        match &agreed.keying {
            Keying::Dtls { client, .. } => {
                let role = if *client { Setup::Active } else { Setup::Passive };
                for (n, v) in m.attributes.iter_mut() {
                    if n == "setup" {
                        *v = Some(role.as_str().into());
                    }
                }
            }
            Keying::Sdes { suite, .. } => {
                m.attributes.retain(|(n, v)| {
                    n != "crypto"
                        || v.as_deref().and_then(|v| CryptoAttr::parse(v).ok()).is_some_and(|c| c.suite == *suite)
                });
            }
            Keying::Plain => {}
        }
        if !agreed.rtcp_mux {
            m.attributes.retain(|(n, _)| n != "rtcp-mux");
        }
    }

    /// Whether a call whose media ended up as `keyings` is allowed by the policy.
    pub fn check_policy<'a>(&self, keyings: impl IntoIterator<Item = &'a Keying>) -> Result<(), SecurityError> {
        if self.policy == EncryptionPolicy::Required && keyings.into_iter().any(|k| !k.is_encrypted()) {
            return Err(SecurityError::NotEncrypted);
        }
        Ok(())
    }
}

fn remote_fingerprint(s: &SessionDescription, m: &Media) -> Result<Fingerprint, SecurityError> {
    let values = m
        .attrs("fingerprint")
        .chain(s.attributes.iter().filter(|(n, _)| n == "fingerprint").map(|(_, v)| v.as_deref().unwrap_or("")));
    let mut err = SecurityError::NoFingerprint;
    for v in values.take(8) {
        match Fingerprint::parse(v) {
            Ok(fp) => return Ok(fp),
            Err(e @ SecurityError::MalformedFingerprint(_)) => err = e,
            Err(_) => {}
        }
    }
    Err(err)
}

fn setup_of(s: &SessionDescription, m: &Media) -> Option<Setup> {
    m.attrs("setup")
        .next()
        .or_else(|| s.attributes.iter().find(|(n, _)| n == "setup").map(|(_, v)| v.as_deref().unwrap_or("")))
        .and_then(Setup::parse)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as `inline:` keys use.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; padding optional; `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=');
    if t.len() > MAX_ATTR_LEN || text.len() - t.len() > 2 || t.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in t.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Runs this module's parsers on arbitrary text (a `cargo fuzz` entry point, also used by
/// [`crate::framing::fuzz_parse`]). Never panics.
pub fn fuzz_security(text: &str) {
    let _ = CryptoAttr::parse(text);
    let _ = Fingerprint::parse(text);
    let _ = Setup::parse(text);
    let _ = base64_decode(text);
    let _ = RtpProto::parse(text);
    if let Ok(sdp) = SessionDescription::parse(text) {
        let sec = LocalSecurity {
            policy: EncryptionPolicy::BestEffort,
            signalling_tls: true,
            fingerprint: Some(Fingerprint([7; 32])),
            sdes_keys: vec![SrtpKey(vec![1; MAX_KEY_LEN]); 2],
            rtcp_mux: true,
            plain_retry: false,
            sdes_refused: false,
            permissive: false,
        };
        for (i, m) in sdp.media.iter().enumerate() {
            let mut am = m.clone();
            let _ = sec.answer_media(&sdp, m, &mut am, i);
            let _ = sec.accept_answer_media(&sdp, m, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Codec, Direction, LocalMedia, SdpError};
    use crate::sdp_video::LocalVideo;

    const FP: Fingerprint = Fingerprint([0xab; 32]);

    fn sec(policy: EncryptionPolicy, tls: bool) -> LocalSecurity {
        LocalSecurity {
            policy,
            signalling_tls: tls,
            fingerprint: Some(FP),
            sdes_keys: vec![SrtpKey::new((0..44).collect()), SrtpKey::new((100..144).collect())],
            rtcp_mux: true,
            plain_retry: false,
            sdes_refused: false,
            permissive: false,
        }
    }

    fn local(security: LocalSecurity, port: u16) -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10".parse().unwrap(),
            audio_port: port,
            codecs: vec![Codec::Opus, Codec::Pcmu],
            telephone_event: true,
            session_id: 42,
            direction: Direction::SendRecv,
            security,
        }
    }

    fn video(port: u16) -> LocalVideo {
        LocalVideo { port, level_idc: 31, max_kbps: 2000, rtcp_feedback: true, high_profiles: false }
    }

    fn offer_text(l: &LocalMedia) -> String {
        l.offer_with_video(Some(&video(l.audio_port + 2))).to_text()
    }

    fn parse(t: &str) -> SessionDescription {
        SessionDescription::parse(t).unwrap()
    }

    #[test]
    fn crypto_lines_parse_and_refuse() {
        let key = base64_encode(&(1..=30).collect::<Vec<u8>>());
        let c = CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20")).unwrap();
        assert_eq!((c.tag, c.suite, c.key.bytes().len()), (1, CryptoSuite::AesCm128HmacSha1_80, 30));
        assert_eq!(CryptoAttr::parse(&c.to_value()).unwrap(), c);
        assert!(!format!("{c:?}").contains("[1, 2"), "Debug shows no key: {c:?}");
        assert!(format!("{:?}", c.key).contains("redacted"));
        for (bad, why) in [
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4"),
                SecurityError::MalformedCrypto("an MKI is not supported"),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTP"),
                SecurityError::MalformedCrypto("session parameters are not supported"),
            ),
        ] {
            assert_eq!(CryptoAttr::parse(&bad), Err(why), "{bad:?}");
        }
        for (bad, why) in [
            ("", SecurityError::MalformedCrypto("the tag is not a number")),
            ("x AES_CM_128_HMAC_SHA1_80 inline:AAAA", SecurityError::MalformedCrypto("the tag is not a number")),
            ("1 F8_128_HMAC_SHA1_80 inline:AAAA", SecurityError::NoCommonSuite),
            ("1 AES_CM_128_HMAC_SHA1_80", SecurityError::MalformedCrypto("no key parameters")),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                SecurityError::MalformedCrypto("the key has the wrong length for its suite"),
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", SecurityError::MalformedCrypto("the key is not base64")),
            ("1 AES_CM_128_HMAC_SHA1_80 key:AAAA", SecurityError::MalformedCrypto("the key method is not inline")),
        ] {
            assert_eq!(CryptoAttr::parse(bad), Err(why), "{bad:?}");
        }
        assert_eq!(CryptoAttr::parse(&"1 ".repeat(400)), Err(SecurityError::TooLong("crypto")));
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..50usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zm8==="), None);
    }

    #[test]
    fn fingerprints() {
        let text = FP.to_value();
        assert!(text.starts_with("sha-256 AB:AB:"));
        assert_eq!(Fingerprint::parse(&text), Ok(FP));
        assert_eq!(Fingerprint::parse(&text.to_lowercase()), Ok(FP));
        assert_eq!(Fingerprint::parse("sha-1 AB:CD"), Err(SecurityError::NoFingerprint));
        assert!(matches!(Fingerprint::parse("sha-256 AB:CD"), Err(SecurityError::MalformedFingerprint(_))));
        assert!(matches!(Fingerprint::parse("sha-256"), Err(SecurityError::MalformedFingerprint(_))));
        assert!(matches!(Fingerprint::parse(&format!("{text}:AB")), Err(SecurityError::MalformedFingerprint(_))));
    }

    #[test]
    fn sdes_is_offered_only_over_tls() {
        let over_tls = offer_text(&local(sec(EncryptionPolicy::BestEffort, true), 40000));
        assert!(over_tls.contains("m=audio 40000 RTP/SAVP "), "{over_tls}");
        assert!(over_tls.contains("m=video 40002 RTP/SAVP "), "{over_tls}");
        assert_eq!(over_tls.matches("a=crypto:").count(), 8, "4 suites on each of 2 m-lines: {over_tls}");
        assert!(!over_tls.contains("a=fingerprint"));
        for clear in [EncryptionPolicy::BestEffort, EncryptionPolicy::Required] {
            let t = offer_text(&local(sec(clear, false), 40000));
            assert!(!t.contains("a=crypto"), "SDES keys in clear SIP: {t}");
            assert!(t.contains("m=audio 40000 UDP/TLS/RTP/SAVP "), "{t}");
            assert!(t.contains("m=video 40002 UDP/TLS/RTP/SAVP "), "{t}");
            assert_eq!(t.matches("a=fingerprint:sha-256 AB:").count(), 2);
            assert_eq!(t.matches("a=setup:actpass").count(), 2);
            assert_eq!(t.matches("a=rtcp-mux").count(), 2);
        }
        let off = offer_text(&local(sec(EncryptionPolicy::Off, true), 40000));
        assert!(off.contains("m=audio 40000 RTP/AVP ") && off.contains("m=video 40002 RTP/AVP "), "{off}");
        assert!(!off.contains("a=crypto") && !off.contains("a=fingerprint"));
        let mut retry = sec(EncryptionPolicy::BestEffort, false);
        retry.plain_retry = true;
        let t = offer_text(&local(retry, 40000));
        assert!(t.contains("m=audio 40000 RTP/AVP ") && !t.contains("a=fingerprint"), "{t}");
        // SDES refused over TLS: DTLS-SRTP next, and no key written.
        let mut retry = sec(EncryptionPolicy::Required, true);
        retry.sdes_refused = true;
        let t = offer_text(&local(retry, 40000));
        assert!(t.contains("m=audio 40000 UDP/TLS/RTP/SAVP") && t.contains("a=fingerprint"), "{t}");
        assert!(!t.contains("a=crypto"), "{t}");
    }

    #[test]
    fn sdes_offer_and_answer_agree_on_keys() {
        let caller = local(sec(EncryptionPolicy::BestEffort, true), 40000);
        let mut callee_sec = sec(EncryptionPolicy::Required, true);
        callee_sec.sdes_keys = vec![SrtpKey::new(vec![9; 44]), SrtpKey::new(vec![8; 44])];
        let callee = local(callee_sec, 50000);
        let offer = parse(&offer_text(&caller));
        let (answer, n, nv) = callee.answer_with_video(&offer, Some(&video(50002))).unwrap();
        let text = answer.to_text();
        assert_eq!(text.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:").count(), 2, "{text}");
        assert!(text.contains("m=audio 50000 RTP/SAVP ") && text.contains("m=video 50002 RTP/SAVP "), "{text}");
        let Keying::Sdes { suite, local: l, remote: r } = &n.security.keying else { panic!("{n:?}") };
        assert_eq!(*suite, CryptoSuite::AesCm128HmacSha1_80);
        assert_eq!((l.bytes(), r.bytes()), (&[9u8; 30][..], &(0..30).collect::<Vec<u8>>()[..]));
        assert!(n.security.rtcp_mux);
        let nv = nv.unwrap();
        let Keying::Sdes { local: vl, remote: vr, .. } = &nv.security.keying else { panic!() };
        assert_eq!((vl.bytes(), vr.bytes()), (&[8u8; 30][..], &(100..130).collect::<Vec<u8>>()[..]));
        // The caller reads the answer back to the mirrored keys.
        let back = caller.accept_answer(&parse(&text)).unwrap();
        let Keying::Sdes { local: bl, remote: br, .. } = back.security.keying else { panic!() };
        assert_eq!((bl, br), (r.clone(), l.clone()));
        let vback = video(40002).accept_answer(&parse(&text), &caller.security).unwrap();
        assert!(vback.security.keying.is_encrypted() && vback.security.rtcp_mux);
    }

    #[test]
    fn sdes_offer_over_clear_signalling_is_refused() {
        // A peer that writes SDES keys into UDP SIP: we never answer with a key of ours.
        let offer = parse(&offer_text(&local(sec(EncryptionPolicy::BestEffort, true), 40000)));
        let err = local(sec(EncryptionPolicy::BestEffort, false), 50000).answer(&offer).unwrap_err();
        assert_eq!(err, SdpError::Security(SecurityError::SdesWithoutTls));
        let err = local(sec(EncryptionPolicy::Off, true), 50000).answer(&offer).unwrap_err();
        assert_eq!(err, SdpError::Security(SecurityError::EncryptionOff));
        // Only suites we do not have.
        let t = offer_text(&local(sec(EncryptionPolicy::BestEffort, true), 40000))
            .replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80")
            .replace("AES_CM_128_HMAC_SHA1_32", "F8_128_HMAC_SHA1_80")
            .replace("AEAD_AES_128_GCM", "F8_128_HMAC_SHA1_80")
            .replace("AEAD_AES_256_GCM", "F8_128_HMAC_SHA1_80");
        let err = local(sec(EncryptionPolicy::BestEffort, true), 50000).answer(&parse(&t)).unwrap_err();
        assert_eq!(err, SdpError::Security(SecurityError::NoCommonSuite));
    }

    #[test]
    fn dtls_offer_and_answer_roles_and_fingerprints() {
        let caller = local(sec(EncryptionPolicy::BestEffort, false), 40000);
        let mut callee_sec = sec(EncryptionPolicy::BestEffort, false);
        callee_sec.fingerprint = Some(Fingerprint([0x11; 32]));
        let callee = local(callee_sec, 50000);
        let offer = parse(&offer_text(&caller));
        let (answer, n, nv) = callee.answer_with_video(&offer, Some(&video(50002))).unwrap();
        let text = answer.to_text();
        assert_eq!(n.security.keying, Keying::Dtls { client: true, remote: FP });
        assert_eq!(nv.unwrap().security.keying, Keying::Dtls { client: true, remote: FP });
        assert_eq!(text.matches("a=setup:active").count(), 2, "the answerer opens DTLS: {text}");
        assert_eq!(text.matches("a=fingerprint:sha-256 11:11").count(), 2);
        assert!(text.contains("m=audio 50000 UDP/TLS/RTP/SAVP "));
        let back = caller.accept_answer(&parse(&text)).unwrap();
        assert_eq!(back.security.keying, Keying::Dtls { client: false, remote: Fingerprint([0x11; 32]) });
        // An answer saying passive makes us the client; actpass in an answer is refused.
        let passive = text.replace("a=setup:active", "a=setup:passive");
        assert_eq!(
            caller.accept_answer(&parse(&passive)).unwrap().security.keying,
            Keying::Dtls { client: true, remote: Fingerprint([0x11; 32]) }
        );
        let actpass = text.replace("a=setup:active", "a=setup:actpass");
        assert_eq!(
            caller.accept_answer(&parse(&actpass)).unwrap_err(),
            SdpError::Security(SecurityError::BadSetup("actpass".into()))
        );
        // An offer with setup:active gets passive (we are the server).
        let active = offer_text(&caller).replace("a=setup:actpass", "a=setup:active");
        let (a, n) = callee.answer(&parse(&active)).unwrap();
        assert!(a.to_text().contains("a=setup:passive"));
        assert_eq!(n.security.keying, Keying::Dtls { client: false, remote: FP });
        // A DTLS offer without a fingerprint, or when we have no certificate.
        let no_fp: String = offer_text(&caller)
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(callee.answer(&parse(&no_fp)).unwrap_err(), SdpError::Security(SecurityError::NoFingerprint));
        let mut no_cert = sec(EncryptionPolicy::BestEffort, false);
        no_cert.fingerprint = None;
        assert_eq!(local(no_cert, 1).answer(&offer).unwrap_err(), SdpError::Security(SecurityError::NoCertificate));
        // DTLS is accepted over TLS signalling too.
        assert!(local(sec(EncryptionPolicy::Required, true), 1).answer(&offer).is_ok());
    }

    #[test]
    fn rtcp_mux_accepted_or_refused() {
        let caller = local(sec(EncryptionPolicy::Off, false), 40000);
        let offer_t = offer_text(&caller);
        let (a, n) = local(sec(EncryptionPolicy::BestEffort, false), 50000).answer(&parse(&offer_t)).unwrap();
        assert!(n.security.rtcp_mux && a.to_text().contains("a=rtcp-mux"));
        assert!(caller.accept_answer(&a).unwrap().security.rtcp_mux);
        // A peer that does not offer it gets none; one that does not answer it gets separate RTCP.
        let no_mux = offer_t.replace("a=rtcp-mux\r\n", "");
        let (a, n) = local(sec(EncryptionPolicy::BestEffort, false), 50000).answer(&parse(&no_mux)).unwrap();
        assert!(!n.security.rtcp_mux && !a.to_text().contains("a=rtcp-mux"));
        assert!(!caller.accept_answer(&a).unwrap().security.rtcp_mux);
        // Without rtcp-mux of our own (the SIP core's defaults), an offered one is not taken.
        let mut plain = sec(EncryptionPolicy::Off, false);
        plain.rtcp_mux = false;
        let (a, n) = local(plain, 50000).answer(&parse(&offer_t)).unwrap();
        assert!(!n.security.rtcp_mux && !a.to_text().contains("a=rtcp-mux"));
    }

    #[test]
    fn policy_refusals() {
        let plain_offer = parse(&offer_text(&local(sec(EncryptionPolicy::Off, false), 40000)));
        // Required: a plain offer is refused, with the reason people see.
        let err = local(sec(EncryptionPolicy::Required, true), 50000).answer(&plain_offer).unwrap_err();
        assert_eq!(err, SdpError::Security(SecurityError::NotEncrypted));
        assert_eq!(err.to_string(), "the far end does not support encryption");
        // Best-effort and off take it as plain RTP.
        for p in [EncryptionPolicy::BestEffort, EncryptionPolicy::Off] {
            let (_, n) = local(sec(p, false), 50000).answer(&plain_offer).unwrap();
            assert_eq!(n.security.keying, Keying::Plain);
        }
        // Off refuses an encrypted offer (the caller retries plain).
        let dtls_offer = parse(&offer_text(&local(sec(EncryptionPolicy::BestEffort, false), 40000)));
        let err = local(sec(EncryptionPolicy::Off, false), 50000).answer(&dtls_offer).unwrap_err();
        assert_eq!(err, SdpError::Security(SecurityError::EncryptionOff));
        // We offered DTLS, the answer is plain: acceptable to best-effort, not to required.
        let caller = local(sec(EncryptionPolicy::Required, false), 40000);
        let (plain_answer, _) = local(sec(EncryptionPolicy::Off, false), 50000).answer(&plain_offer).unwrap();
        let n = caller.accept_answer(&plain_answer).unwrap();
        assert_eq!(n.security.keying, Keying::Plain);
        assert_eq!(caller.security.check_policy([&n.security.keying]), Err(SecurityError::NotEncrypted));
        assert!(sec(EncryptionPolicy::BestEffort, false).check_policy([&n.security.keying]).is_ok());
        // A video stream we cannot secure is refused alone: audio goes on.
        let mixed = offer_text(&local(sec(EncryptionPolicy::BestEffort, false), 40000));
        let (audio_part, video_part) = mixed.split_at(mixed.find("m=video").unwrap());
        let mixed = format!("{audio_part}{}", video_part.replace("UDP/TLS/RTP/SAVP", "RTP/SAVP"));
        let (a, _, nv) = local(sec(EncryptionPolicy::BestEffort, false), 50000)
            .answer_with_video(&parse(&mixed), Some(&video(50002)))
            .unwrap();
        assert!(nv.is_none());
        assert!(a.to_text().contains("m=video 0 "), "{}", a.to_text());
    }

    #[test]
    fn a_re_offer_keeps_what_was_agreed() {
        let caller = local(sec(EncryptionPolicy::BestEffort, false), 40000);
        let mut offer = caller.offer();
        let agreed = MediaSecurity { keying: Keying::Dtls { client: false, remote: FP }, rtcp_mux: false };
        LocalSecurity::keep_agreed(&mut offer.media[0], &agreed);
        let t = offer.to_text();
        assert!(t.contains("a=setup:passive") && !t.contains("actpass") && !t.contains("rtcp-mux"), "{t}");
        let sdes = local(sec(EncryptionPolicy::BestEffort, true), 40000);
        let mut offer = sdes.offer();
        let agreed = MediaSecurity {
            keying: Keying::Sdes {
                suite: CryptoSuite::AesCm128HmacSha1_32,
                local: SrtpKey::new(vec![0; 30]),
                remote: SrtpKey::new(vec![1; 30]),
            },
            rtcp_mux: true,
        };
        LocalSecurity::keep_agreed(&mut offer.media[0], &agreed);
        let t = offer.to_text();
        assert_eq!(t.matches("a=crypto:").count(), 1, "{t}");
        assert!(t.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:") && t.contains("a=rtcp-mux"), "{t}");
    }

    #[test]
    fn the_sip_core_probe_takes_any_security() {
        let p = LocalSecurity::permissive();
        for t in [
            offer_text(&local(sec(EncryptionPolicy::BestEffort, true), 40000)),
            offer_text(&local(sec(EncryptionPolicy::BestEffort, false), 40000)),
            offer_text(&local(sec(EncryptionPolicy::Off, false), 40000)),
        ] {
            let l = local(p.clone(), 1);
            let (a, _) = l.answer(&parse(&t)).unwrap();
            assert!(l.accept_answer(&a).is_ok());
        }
    }

    #[test]
    fn fuzz_entry_point_survives_garbage() {
        let base = offer_text(&local(sec(EncryptionPolicy::BestEffort, true), 40000));
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            let mut b = base.clone().into_bytes();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % b.len() as u64) as usize;
                b[i] = (seed >> 32) as u8 % 128;
            }
            fuzz_security(&String::from_utf8_lossy(&b));
        }
    }
}
