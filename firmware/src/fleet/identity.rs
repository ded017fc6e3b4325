//! The room's identity in the fleet: its certificate, its key and the fleet's CA.
//!
//! Either the organisation's own PKI gives them (`fleet.cert_file`, `key_file`, `ca_file`), or
//! the room enrols: it makes a P-256 key here (from the OS's random source, through ring), asks
//! the fleet service for a certificate of it with a certificate signing request and the one-time
//! claim code, and keeps the three under `<state dir>/fleet/` (the key readable by huisd only).
//! The key never leaves the room and is never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::config;
use crate::text::excerpt;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("enrolment at {url} failed: {reason}")]
    Enrol { url: String, reason: String },
    /// The service refused the claim code or the request: retrying the same will not help.
    #[error("enrolment at {url} refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("no identity: {0}")]
    Missing(String),
}

/// What the room presents to the broker and the fleet service, and whom it trusts.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: rustls::RootCertStore,
    /// PEM of the chain and key, for HTTPS uploads (reqwest's identity).
    pub pem: Vec<u8>,
    /// PEM of the CA, for HTTPS uploads.
    pub ca_pem: Vec<u8>,
}

/// The enrolment request: the room's id, the one-time code and a CSR of the room's key.
#[derive(Serialize, Deserialize)]
pub struct EnrolRequest {
    pub room_id: String,
    pub claim_code: String,
    pub csr_pem: String,
}

/// The service's answer: the room's certificate (PEM, the chain) and the fleet's CA.
#[derive(Serialize, Deserialize)]
pub struct EnrolResponse {
    pub certificate_pem: String,
    pub ca_pem: String,
}

/// Where an enrolled room keeps its identity.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet")
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> IdentityError {
    IdentityError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// The identity from the configuration's files, or the one enrolment left in `state_dir`;
/// `None` when the room still has to enrol.
pub fn load(cfg: &config::Fleet, state_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let (cert, key, ca) = if !cfg.cert_file.is_empty() {
        (PathBuf::from(&cfg.cert_file), PathBuf::from(&cfg.key_file), PathBuf::from(&cfg.ca_file))
    } else {
        let d = dir(state_dir);
        let (cert, key) = (d.join("room.crt"), d.join("room.key"));
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        let ca = if cfg.ca_file.is_empty() { d.join("ca.crt") } else { PathBuf::from(&cfg.ca_file) };
        (cert, key, ca)
    };
    let read = |p: &Path| std::fs::read(p).map_err(|e| file_err(p, format!("cannot be read: {e}")));
    // Each file is read and checked in turn, so the error names the first that is wrong.
    let cert_pem = read(&cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(&cert, "holds no certificate"));
    }
    let key_pem = read(&key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| file_err(&key, "holds no PEM private key"))?;
    let ca_pem = read(&ca)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut anchors = Vec::new();
    for c in CertificateDer::pem_slice_iter(&ca_pem) {
        let c = c.map_err(|e| file_err(&ca, format!("not a PEM certificate: {e}")))?;
        anchors.push(c.clone());
        roots.add(c).map_err(|e| file_err(&ca, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(file_err(&ca, "holds no CA certificate"));
    }
    // The broker has the CA already (RFC 8446, 4.4.2: the trust anchor may be left out): the
    // room sends its own certificate and any intermediates only, which the broker then neither
    // parses nor keeps for the connection's life, 10,000 times over.
    let mut chain = chain;
    if chain.len() > 1 {
        chain.retain(|c| !anchors.contains(c));
    }
    let mut pem = cert_pem;
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    Ok(Some(Identity { chain, key: key_der, roots, pem, ca_pem }))
}

/// A new P-256 key and a signing request for `room_id`; the key as PEM, then the request.
pub fn new_key_and_request(room_id: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, room_id);
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), csr.pem().map_err(|e| e.to_string())?))
}

/// Enrols: a new key, its request to `cfg.enrol_url` with the claim code, and the answer kept
/// in `state_dir`. The key is written (mode 0600) before it is used, and the certificate last,
/// so an interrupted enrolment leaves no half identity that [`load`] would take.
pub async fn enrol(cfg: &config::Fleet, state_dir: &Path) -> Result<Identity, IdentityError> {
    let url = cfg.enrol_url.clone();
    if cfg.claim_code.is_empty() {
        return Err(IdentityError::Missing(format!(
            "the room is not enrolled and fleet.claim_code is empty (ask the fleet's administrator for one for {})",
            cfg.room_id
        )));
    }
    let enrol_err = |reason: String| IdentityError::Enrol { url: url.clone(), reason };
    let (key_pem, csr_pem) =
        new_key_and_request(&cfg.room_id).map_err(|e| enrol_err(format!("cannot make a key: {e}")))?;
    let mut http =
        reqwest::Client::builder().use_rustls_tls().https_only(true).timeout(std::time::Duration::from_secs(30));
    if !cfg.ca_file.is_empty() {
        let p = Path::new(&cfg.ca_file);
        let pem = std::fs::read(p).map_err(|e| file_err(p, format!("cannot be read: {e}")))?;
        for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| file_err(p, e))? {
            http = http.add_root_certificate(c);
        }
    }
    let http = http.build().map_err(|e| enrol_err(e.to_string()))?;
    let req = EnrolRequest { room_id: cfg.room_id.clone(), claim_code: cfg.claim_code.clone(), csr_pem };
    let resp = http.post(&url).json(&req).send().await.map_err(|e| enrol_err(error_chain(&e)))?;
    let status = resp.status();
    let body = read_bounded(resp, 256 * 1024).await.map_err(enrol_err)?;
    if status.is_client_error() {
        let why = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(IdentityError::Refused { url, reason: format!("{status}: {}", excerpt(&why)) });
    }
    if !status.is_success() {
        return Err(enrol_err(format!("the service answered {status}")));
    }
    let answer: EnrolResponse =
        serde_json::from_slice(&body).map_err(|e| enrol_err(format!("the answer is not an enrolment: {e}")))?;
    let d = dir(state_dir);
    std::fs::create_dir_all(&d).map_err(|e| file_err(&d, e))?;
    write_private(&d.join("room.key"), key_pem.as_bytes())?;
    write_atomic(&d.join("ca.crt"), answer.ca_pem.as_bytes())?;
    write_atomic(&d.join("room.crt"), answer.certificate_pem.as_bytes())?;
    // Enrolment is configured only without cert_file (the settings' check), so `load` now finds
    // the files just written.
    load(cfg, state_dir)?.ok_or_else(|| IdentityError::Missing("the enrolment's files vanished".into()))
}

/// The reasons of an error and its sources, joined: reqwest's own says only "error sending
/// request for url (…)", which repeats the address the caller names anyway, so with sources
/// it is left out and the causes (refused, timed out, certificate) are what is read.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    if e.source().is_none() || !e.to_string().starts_with("error sending request") {
        parts.push(e.to_string());
    }
    let mut src = e.source();
    while let Some(c) = src {
        parts.push(c.to_string());
        src = c.source();
    }
    crate::text::excerpt_long(&parts.join(": "))
}

/// A response's body, refused beyond `limit` bytes.
pub async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    write_mode(path, data, 0o644)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    write_mode(path, data, 0o600)
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// The TLS configuration the room connects to the broker with: its own certificate, and only
/// the fleet's CA trusted (not the system's store: the broker is the fleet's, not the web's).
#[allow(deprecated)] // ring's provider, as the SIP shell's (proto/sip/net.rs says why).
pub fn client_tls(id: &Identity) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Missing(e.to_string()))?
        .with_root_certificates(id.roots.clone())
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| IdentityError::Missing(format!("the room's certificate and key do not go together: {e}")))?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_makes_a_request_named_after_the_room() {
        let (key, csr) = new_key_and_request("room-12").unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{csr}");
        let (key2, _) = new_key_and_request("room-12").unwrap();
        assert_ne!(key, key2, "every key is new");
    }

    #[test]
    fn files_that_are_not_an_identity_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("c.pem"), "not a certificate").unwrap();
        std::fs::write(d.join("k.pem"), "").unwrap();
        let cfg = config::Fleet {
            cert_file: d.join("c.pem").display().to_string(),
            key_file: d.join("k.pem").display().to_string(),
            ca_file: d.join("missing.pem").display().to_string(),
            ..Default::default()
        };
        let e = load(&cfg, d).err().expect("refused").to_string();
        assert!(e.contains("c.pem") && e.contains("no certificate"), "{e}");
        let cfg = config::Fleet { cert_file: String::new(), ..cfg };
        assert!(load(&cfg, d).unwrap().is_none(), "not enrolled yet");
    }
}
