//! Where a call goes, parsed once from what a person typed or configured.

use super::CallError;

/// Longest destination text taken (a URI with a PIN fits many times over).
const MAX_LEN: usize = 2048;

/// A place to call. Parsing checks the form only; the backend that takes it checks the rest
/// (name resolution, accounts, certificates) when it dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `sip:user@host[:port][;params]` or, with `secure`, `sips:…`. `uri` is the text as given,
    /// parameters included (`;transport=tcp`, `;dtmf=1234%23`).
    Sip { uri: String, secure: bool, dtmf: String },
    /// `tel:+33123456789`: a telephone number, reached through the SIP account's proxy.
    Tel { number: String, dtmf: String },
    /// `https://…`: a web conference (WebRTC).
    Web { url: String },
}

impl Destination {
    /// Parses `sip:`, `sips:`, `tel:` and `https://` destinations. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Destination, CallError> {
        let t = text.trim();
        let bad = |why: &str| CallError::InvalidDestination(format!("'{t}' is not a destination: {why}"));
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        if t.len() > MAX_LEN {
            return Err(CallError::InvalidDestination(format!(
                "a destination of {} characters is too long (at most {MAX_LEN})",
                t.len()
            )));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let lower = t.to_ascii_lowercase();
        let sip = |rest: &str, secure: bool| {
            let host = rest.split(['@', ';', '?']).nth(if rest.contains('@') { 1 } else { 0 }).unwrap_or("");
            if host.is_empty() || host.starts_with(':') {
                return Err(bad("the URI has no host (expected sip:user@host)"));
            }
            Ok(Destination::Sip { uri: t.to_owned(), secure, dtmf: String::new() })
        };
        if lower.starts_with("sips:") {
            return sip(&t[5..], true);
        }
        if lower.starts_with("sip:") {
            return sip(&t[4..], false);
        }
        if lower.starts_with("tel:") {
            let number = &t[4..];
            let digits = number.split(';').next().unwrap_or("");
            let ok = !digits.is_empty()
                && digits.trim_start_matches('+').chars().all(|c| c.is_ascii_digit() || "-.()*#".contains(c));
            if !ok {
                return Err(bad("a tel: number holds digits, an optional leading + and - . ( ) separators"));
            }
            return Ok(Destination::Tel { number: number.to_owned(), dtmf: String::new() });
        }
        if lower.starts_with("https://") {
            let rest = &t[8..];
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("the URL has no host"));
            }
            return Ok(Destination::Web { url: t.to_owned() });
        }
        Err(bad("expected sip:user@host, sips:user@host, tel:+number or an https:// URL"))
    }

    /// The same destination, with `digits` to send once the call is up (a meeting PIN).
    pub fn with_dtmf(mut self, digits: &str) -> Destination {
        match &mut self {
            Destination::Sip { dtmf, .. } | Destination::Tel { dtmf, .. } => *dtmf = digits.to_owned(),
            Destination::Web { .. } => {}
        }
        self
    }

    /// The scheme, for messages: `sip`, `sips`, `tel`, `https`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Destination::Sip { secure: false, .. } => "sip",
            Destination::Sip { secure: true, .. } => "sips",
            Destination::Tel { .. } => "tel",
            Destination::Web { .. } => "https",
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Sip { uri, .. } => write!(f, "{uri}"),
            Destination::Tel { number, .. } => write!(f, "tel:{number}"),
            Destination::Web { url } => write!(f, "{url}"),
        }
    }
}
