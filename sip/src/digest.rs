//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760):
//! MD5 and SHA-256 (and their `-sess` variants), `qop=auth` or no qop, `nc`/`cnonce`, `stale`.
//!
//! `auth-int` is not offered by us: when a challenge offers only `auth-int` we answer without qop
//! being acceptable to the server is its choice; in practice registrars offer `auth`.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use thiserror::Error;

/// Digest hash algorithm named in a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    /// The token used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data.as_bytes())),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a challenge could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigestError {
    /// The scheme is not `Digest`.
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// A mandatory parameter (realm, nonce) is missing.
    #[error("digest challenge lacks {0}")]
    Missing(&'static str),
    /// The algorithm is not one we implement (MD5, SHA-256 and their -sess forms).
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The challenge text is malformed or too long.
    #[error("malformed digest challenge")]
    Malformed,
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque value to echo.
    pub opaque: Option<String>,
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// True if `qop` offers `auth` (we then answer with `qop=auth`).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but the credentials were right.
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge header value such as `Digest realm="x", nonce="y", qop="auth"`.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        if value.len() > 4096 {
            return Err(DigestError::Malformed);
        }
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::NotDigest);
        }
        let params = parse_params(rest)?;
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a))?,
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth: get("qop").is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth"))),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// Splits `k=v, k="v, w"` into pairs. Quoted values may contain commas and `\"`.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n)
                            }
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        _ => val.push(c),
                    }
                }
                if !closed {
                    return Err(DigestError::Malformed);
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
                val = val.trim().to_string();
            }
        }
        if key.is_empty() || out.len() > 32 {
            return Err(DigestError::Malformed);
        }
        out.push((key, val));
    }
    Ok(out)
}

/// Computes the digest `response` value (RFC 7616 §3.4.1; RFC 2617 when `qop` is `None`).
#[allow(clippy::too_many_arguments)]
pub fn compute_response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
    qop_auth: bool,
) -> String {
    let mut ha1 = algorithm.hash(&format!("{username}:{realm}:{password}"));
    if algorithm.is_sess() {
        ha1 = algorithm.hash(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    if qop_auth {
        algorithm.hash(&format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}"))
    } else {
        algorithm.hash(&format!("{ha1}:{nonce}:{ha2}"))
    }
}

/// Builds the `Authorization` / `Proxy-Authorization` header value answering `ch`.
pub fn authorization_value(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let response =
        compute_response(ch.algorithm, username, &ch.realm, password, method, uri, &ch.nonce, nc, cnonce, ch.qop_auth);
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        response,
        ch.algorithm.as_str()
    );
    if ch.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc:08x}, cnonce=\"{}\"", quote(cnonce)));
    }
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque=\"{}\"", quote(o)));
    }
    v
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Picks the challenge to answer from several header values: the first one whose algorithm we
/// support (RFC 8760 §2.4: servers list them in order of preference).
pub fn pick_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge, DigestError> {
    let mut last = DigestError::Missing("challenge");
    for v in values {
        match Challenge::parse(v) {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Example values of RFC 7616 §3.9.1 (user "Mufasa", password "Circle of Life",
    // GET /dir/index.html, nc=00000001, qop=auth).
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const REALM: &str = "http-auth@example.org";

    #[test]
    fn rfc7616_md5_example() {
        let r = compute_response(
            Algorithm::Md5,
            "Mufasa",
            REALM,
            "Circle of Life",
            "GET",
            "/dir/index.html",
            NONCE,
            1,
            CNONCE,
            true,
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_example() {
        let r = compute_response(
            Algorithm::Sha256,
            "Mufasa",
            REALM,
            "Circle of Life",
            "GET",
            "/dir/index.html",
            NONCE,
            1,
            CNONCE,
            true,
        );
        assert_eq!(r, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    #[test]
    fn challenge_parsing() {
        let c = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf\", opaque=\"FQ\", stale=TRUE",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth && c.stale);
        assert_eq!(c.opaque.as_deref(), Some("FQ"));
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Err(DigestError::NotDigest));
        assert_eq!(Challenge::parse("Digest realm=\"x"), Err(DigestError::Malformed));
        assert_eq!(Challenge::parse("Digest nonce=1"), Err(DigestError::Missing("realm")));
        let picked =
            pick_challenge(["Digest realm=a, nonce=b, algorithm=SHA-512-256", "Digest realm=a, nonce=c"]).unwrap();
        assert_eq!((picked.algorithm, picked.nonce.as_str()), (Algorithm::Md5, "c"));
    }

    #[test]
    fn authorization_header_value() {
        let c = Challenge::parse(&format!("Digest realm=\"{REALM}\", nonce=\"{NONCE}\", qop=\"auth\", opaque=\"o\""))
            .unwrap();
        let v = authorization_value(&c, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, CNONCE);
        assert!(v.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""), "{v}");
        assert!(v.contains("nc=00000001") && v.contains("qop=auth") && v.contains("opaque=\"o\""));
    }
}
