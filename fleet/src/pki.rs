//! The fleet's certificate authority: it signs the broker's and the service's certificates and,
//! at enrolment, each room's, named by its room id. Keys are P-256, made from the OS's random
//! source (ring); the CA's key stays in the service's data directory, readable by it alone.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("the certificate request is refused: {0}")]
    Request(String),
    #[error("cannot make a certificate: {0}")]
    Make(#[from] rcgen::Error),
}

fn file_err(p: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::File { path: p.display().to_string(), reason: e.to_string() }
}

/// How long a room's certificate is valid. A room asks again (a new claim) when it runs out;
/// revocation is by the broker's ACL and the service's inventory, not by waiting.
pub const ROOM_CERT_DAYS: i64 = 825;

/// The CA as files: `ca.crt` (given to rooms and the broker) and `ca.key` (0600).
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = time_now();
    p.not_before = now - std::time::Duration::from_secs(300);
    p.not_after = now + std::time::Duration::from_secs(days as u64 * 86_400);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Ca {
    /// Makes a new CA in `dir`, refusing to overwrite one.
    pub fn create(dir: &Path, name: &str) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = ca_paths(dir);
        if key_path.exists() {
            return Err(file_err(&key_path, "exists already; a fleet's CA is made once"));
        }
        let (cert_pem, key) = Self::make(name)?;
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
        Ca::load(dir)
    }

    /// A CA that lives in memory only (for the fuzz targets).
    pub fn in_memory(name: &str) -> Result<Ca, PkiError> {
        let (cert_pem, key) = Self::make(name)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Ca { cert_pem, issuer })
    }

    /// A new CA key and its self-signed certificate (PEM).
    fn make(name: &str) -> Result<(String, KeyPair), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, format!("{name} fleet CA"));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p, 3650);
        let cert = p.self_signed(&key)?;
        Ok((cert.pem(), key))
    }

    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = ca_paths(dir);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&key_path, e))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| file_err(&cert_path, e))?;
        Ok(Ca { cert_pem, issuer })
    }

    /// A server or client certificate for a service of the fleet (the broker, the service
    /// itself), with a new key: (certificate PEM, key PEM).
    pub fn issue(&self, cn: &str, names: &[String], server: bool) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        for n in names {
            p.subject_alt_names.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into()?),
            });
        }
        p.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        validity(&mut p, 825);
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok((format!("{}{}", cert.pem(), self.cert_pem), key.serialize_pem()))
    }

    /// Signs a room's request: the certificate names the room by `room_id` whatever the request
    /// asked for, and is good for client authentication only. The request's signature proves the
    /// room holds the key.
    pub fn sign_room(&self, room_id: &str, csr_pem: &str) -> Result<String, PkiError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(PkiError::Request("it is longer than 16 KiB".into()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::Request(e.to_string()))?;
        let asked = match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(s)) => Some(s.clone()),
            Some(rcgen::DnValue::PrintableString(s)) => Some(s.as_str().to_owned()),
            Some(_) => Some(String::new()),
            None => None,
        };
        if asked.is_some_and(|a| a != room_id) {
            return Err(PkiError::Request(format!("it names another room than {room_id}")));
        }
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, room_id);
        p.subject_alt_names = vec![SanType::DnsName(room_id.to_owned().try_into()?)];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, ROOM_CERT_DAYS);
        let cert = p.signed_by(&csr.public_key, &self.issuer)?;
        Ok(format!("{}{}", cert.pem(), self.cert_pem))
    }
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
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

/// The common name of a certificate (DER), as the broker and the service name clients.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_room_gets_a_certificate_named_by_its_id_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "Test").unwrap();
        assert!(Ca::create(dir.path(), "Again").is_err(), "a CA is never overwritten");
        let pem = ca.sign_room("room-7", &request("room-7")).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("room-7"));
        let e = ca.sign_room("room-7", &request("room-8")).unwrap_err().to_string();
        assert!(e.contains("another room"), "{e}");
        let e =
            ca.sign_room("room-7", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
        assert!(e.is_err());
        let reloaded = Ca::load(dir.path()).unwrap();
        assert!(reloaded.sign_room("room-9", &request("room-9")).is_ok());
    }
}
