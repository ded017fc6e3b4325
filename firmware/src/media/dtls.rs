//! DTLS-SRTP (RFC 5763/5764) for the RTP transport: our certificate, the peer's fingerprint
//! check, and what a stream's protection is now ([`Protection`]).
//!
//! **The certificate.** One ECDSA P-256 certificate per huisd run, made at start-up off the call
//! path ([`DtlsCertificate::generate`], with the `openssl` command: GStreamer 1.22's own is RSA
//! and takes up to ~4 s, and some peers offer only ECDSA suites). Its SHA-256 fingerprint goes
//! into our SDP; its PEM (certificate and key) goes to every `dtlssrtpdec` as `pem`. Without
//! `openssl`, GStreamer's generated certificate is used (`pem` unset) and its fingerprint read
//! from a `dtlssrtpdec`. Either way the generation runs once, before the first call needs it.
//!
//! **The peer's certificate.** GStreamer's DTLS elements accept any certificate; the transport
//! reads `peer-pem` when the handshake delivers it and compares its SHA-256 with the SDP's
//! `a=fingerprint`. Until that matched, no media passes either way; a mismatch stops the
//! stream for good and is reported as [`Protection::DtlsFailed`], so the backend hangs up.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gstreamer as gst;

use gst::glib;
use gst::prelude::*;

use super::MediaError;
use super::SrtpProfile;

/// What the transport needs for DTLS-SRTP.
#[derive(Clone)]
pub struct DtlsParams {
    /// Our certificate and private key (PEM); `None`: GStreamer's generated one.
    pub pem: Option<String>,
    /// We open the handshake (`a=setup:active` on our side).
    pub client: bool,
    /// SHA-256 of the peer's certificate (DER), from its SDP `a=fingerprint`.
    pub remote_fingerprint: [u8; 32],
}

impl std::fmt::Debug for DtlsParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsParams")
            .field("pem", &self.pem.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .field("remote_fingerprint", &hex(&self.remote_fingerprint))
            .finish()
    }
}

/// Our DTLS certificate: PEM (certificate and key) and the SHA-256 fingerprint of its DER.
#[derive(Clone)]
pub struct DtlsCertificate {
    /// `None`: GStreamer's generated certificate (no `openssl` here).
    pub pem: Option<String>,
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsCertificate").field("fingerprint", &hex(&self.fingerprint)).finish()
    }
}

impl DtlsCertificate {
    /// Makes this run's certificate: ECDSA P-256 through `openssl`, else GStreamer's own. It
    /// also makes GStreamer generate its default certificate now (every `dtlssrtpdec` makes
    /// one the first time), so no call waits for it. Blocking: call it off async code.
    pub fn generate() -> Result<DtlsCertificate, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let started = Instant::now();
        let cert = match openssl_ecdsa() {
            Ok(pem) => {
                // The first dtlsdec of a process generates GStreamer's default RSA certificate
                // even when given ours: do it now, beside the start-up, not in the first call.
                std::thread::spawn(|| {
                    let t = Instant::now();
                    if super::elements::make("dtlssrtpdec", "DTLS-SRTP").is_ok() {
                        tracing::debug!(ms = t.elapsed().as_millis() as u64, "GStreamer's DTLS agent is ready");
                    }
                });
                DtlsCertificate { fingerprint: pem_fingerprint(&pem)?, pem: Some(pem) }
            }
            Err(e) => {
                tracing::warn!("no ECDSA certificate for DTLS-SRTP ({e}); using GStreamer's RSA one");
                let pem = super::elements::make("dtlssrtpdec", "DTLS-SRTP")?
                    .property::<Option<String>>("pem")
                    .ok_or_else(|| MediaError::pipeline("dtlssrtpdec has no certificate"))?;
                DtlsCertificate { fingerprint: pem_fingerprint(&pem)?, pem: None }
            }
        };
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            fingerprint = %hex(&cert.fingerprint),
            ecdsa = cert.pem.is_some(),
            "DTLS-SRTP certificate ready"
        );
        Ok(cert)
    }
}

/// An ECDSA P-256 self-signed certificate and its key, as one PEM text.
fn openssl_ecdsa() -> Result<String, MediaError> {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "-",
            "-out",
            "-",
            "-days",
            "30",
            "-subj",
            "/CN=huis",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| MediaError::Pipeline(format!("cannot run openssl: {e}")))?;
    let text = String::from_utf8(out.stdout).map_err(MediaError::pipeline)?;
    if !out.status.success() || !text.contains("BEGIN CERTIFICATE") || !text.contains("PRIVATE KEY") {
        return Err(MediaError::Pipeline(format!("openssl failed ({})", out.status)));
    }
    Ok(text)
}

/// SHA-256 of the DER of the first certificate in a PEM text.
pub fn pem_fingerprint(pem: &str) -> Result<[u8; 32], MediaError> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).ok_or_else(|| MediaError::pipeline("no certificate in the PEM"))? + begin.len();
    let end = pem[start..].find("-----END").ok_or_else(|| MediaError::pipeline("unterminated PEM"))? + start;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = glib::base64_decode(&b64);
    if der.is_empty() {
        return Err(MediaError::pipeline("the certificate is not base64"));
    }
    let mut sum =
        glib::Checksum::new(glib::ChecksumType::Sha256).ok_or_else(|| MediaError::pipeline("GLib has no SHA-256"))?;
    sum.update(&der);
    let digest = sum.digest();
    digest.try_into().map_err(|_| MediaError::pipeline("SHA-256 digest of the wrong length"))
}

/// `AB:CD:...` as in SDP.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(":")
}

/// How one stream's media is protected now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    Plain,
    /// SRTP with keys from SDES.
    Sdes(SrtpProfile),
    /// DTLS-SRTP, handshake under way: no media passes yet.
    DtlsHandshaking,
    /// DTLS-SRTP up, the peer's certificate matched its fingerprint.
    Dtls {
        profile: SrtpProfile,
        handshake: Duration,
    },
    /// DTLS-SRTP failed (wrong certificate, handshake error): no media passes.
    DtlsFailed(String),
}

impl Protection {
    /// Media is encrypted (and, for DTLS, the peer proved its certificate).
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Protection::Sdes(_) | Protection::Dtls { .. })
    }

    /// What `Call1.MediaEncryption` says: `DTLS-SRTP AES_CM_128_HMAC_SHA1_80`, `SDES ...`,
    /// `DTLS-SRTP (handshake)`, `none`.
    pub fn label(&self) -> String {
        match self {
            Protection::Plain => "none".into(),
            Protection::Sdes(p) => format!("SDES {}", p.name()),
            Protection::DtlsHandshaking => "DTLS-SRTP (handshake)".into(),
            Protection::Dtls { profile, .. } => format!("DTLS-SRTP {}", profile.name()),
            Protection::DtlsFailed(why) => format!("DTLS-SRTP failed: {why}"),
        }
    }
}

/// The DTLS state of a transport, shared with the GStreamer callbacks.
pub(super) struct DtlsState {
    started: Instant,
    components: usize,
    inner: Mutex<DtlsInner>,
    remote: [u8; 32],
}

#[derive(Default)]
struct DtlsInner {
    /// Components whose peer certificate matched, and whose keys arrived.
    verified: usize,
    keyed: usize,
    profile: Option<SrtpProfile>,
    handshake: Option<Duration>,
    failed: Option<String>,
}

impl DtlsState {
    /// `components`: 1 with rtcp-mux, 2 (RTP and RTCP each with its own handshake) without.
    pub(super) fn new(components: usize, remote: [u8; 32]) -> Arc<DtlsState> {
        Arc::new(DtlsState { started: Instant::now(), components, inner: Mutex::default(), remote })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DtlsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Media may pass: every component's peer proved its certificate.
    pub(super) fn open(&self) -> bool {
        let g = self.lock();
        g.failed.is_none() && g.verified >= self.components
    }

    pub(super) fn protection(&self) -> Protection {
        let g = self.lock();
        match (&g.failed, g.verified >= self.components, g.handshake) {
            (Some(why), _, _) => Protection::DtlsFailed(why.clone()),
            (None, true, Some(handshake)) => {
                Protection::Dtls { profile: g.profile.unwrap_or(SrtpProfile::AesCm128HmacSha1_80), handshake }
            }
            _ => Protection::DtlsHandshaking,
        }
    }

    /// How long since the transport was built, while the handshake is not done.
    pub(super) fn waiting_for(&self) -> Option<Duration> {
        let g = self.lock();
        (g.failed.is_none() && g.handshake.is_none()).then(|| self.started.elapsed())
    }

    pub(super) fn fail(&self, why: String) {
        let mut g = self.lock();
        if g.failed.is_none() {
            tracing::error!("DTLS-SRTP: {why}");
            g.failed = Some(why);
        }
    }

    /// A component's SRTP keys arrived (its handshake finished), with the agreed profile.
    pub(super) fn keyed(&self, profile: Option<SrtpProfile>) {
        let mut g = self.lock();
        g.keyed += 1;
        if profile.is_some() {
            g.profile = profile;
        }
        if g.keyed >= self.components && g.handshake.is_none() {
            let t = self.started.elapsed();
            g.handshake = Some(t);
            tracing::info!(
                ms = t.as_millis() as u64,
                suite = g.profile.map(|p| p.name()).unwrap_or("?"),
                verified = g.verified >= self.components,
                "DTLS-SRTP handshake done"
            );
        }
    }

    /// The peer's certificate arrived on one component: check it against its SDP.
    pub(super) fn peer_certificate(&self, pem: &str) {
        match pem_fingerprint(pem) {
            Ok(fp) if fp == self.remote => {
                let mut g = self.lock();
                g.verified += 1;
                tracing::info!("DTLS-SRTP: the far end's certificate matches the fingerprint in its SDP");
            }
            Ok(fp) => self.fail(format!(
                "the far end's certificate ({}) does not match the fingerprint in its SDP ({})",
                hex(&fp),
                hex(&self.remote)
            )),
            Err(e) => self.fail(format!("unreadable certificate from the far end: {e}")),
        }
    }
}
