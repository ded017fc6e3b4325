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
    /// `janus+https://host/janus?room=1234&pin=…`: a Janus VideoRoom, joined as a participant.
    /// `api` is the Janus REST endpoint (`https://host/janus`), without the query.
    Janus { api: String, room: u64, pin: String },
    /// `whip+https://host/path[#whep=<percent-encoded URL>]`: publish to a WHIP endpoint
    /// (RFC 9725) and, with a WHEP URL, receive from it. The fragment never reaches a server.
    /// `token` (the bearer token) never is in the dial string: it comes from the
    /// `[[destination]]` table ([`Destination::with_token`]) and is never shown.
    Whip { whip: String, whep: Option<String>, token: String },
    /// `visio:<PIN>`: a Visio (La Suite Meet) meeting through its SIP video gateway, which takes
    /// the meeting's PIN. `gateway` is the gateway's `sip:` URI from a `[[destination]]` with a
    /// `pin`; empty: the configured `visio.gateway`. The PIN is never shown in full.
    Visio { gateway: String, pin: String },
}

/// The most digits a meeting PIN has. LiveKit's SIP service, under Visio's gateway, takes at
/// most 16 digits before `#` and refuses the call beyond (`pinLimit` in its `inbound.go`).
pub const MAX_PIN_DIGITS: usize = 16;

/// A meeting PIN: 4 to [`MAX_PIN_DIGITS`] digits, nothing else. The error says why, without
/// quoting the PIN.
pub fn check_pin(pin: &str) -> Result<(), String> {
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a meeting PIN holds digits only (0-9)".into());
    }
    if !(4..=MAX_PIN_DIGITS).contains(&pin.len()) {
        return Err(format!("a meeting PIN has 4 to {MAX_PIN_DIGITS} digits, not {}", pin.len()));
    }
    Ok(())
}

impl Destination {
    /// Parses `sip:`, `sips:`, `tel:` and `https://` destinations. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Destination, CallError> {
        let t = text.trim();
        let bad = |why: &str| {
            CallError::InvalidDestination(format!("'{}' is not a destination: {why}", crate::text::excerpt(t)))
        };
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        if t.len() > MAX_LEN {
            return Err(CallError::InvalidDestination(format!(
                "a destination of {} characters is too long (at most {MAX_LEN})",
                t.len()
            )));
        }
        if t.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("visio:")) {
            // Not quoted back: the text holds a PIN.
            let pin = t[6..].strip_suffix('#').unwrap_or(&t[6..]);
            return check_pin(pin)
                .map(|()| Destination::Visio { gateway: String::new(), pin: pin.to_owned() })
                .map_err(|why| CallError::InvalidDestination(format!("'visio:…' is not a destination: {why}")));
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
        if let Some(rest) = lower.strip_prefix("janus+") {
            return janus(&t[6..], rest.starts_with("https://") || rest.starts_with("http://")).map_err(|w| bad(&w));
        }
        if let Some(rest) = lower.strip_prefix("whip+") {
            return whip(&t[5..], rest.starts_with("https://") || rest.starts_with("http://")).map_err(|w| bad(&w));
        }
        if lower.starts_with("https://") {
            let rest = &t[8..];
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("the URL has no host"));
            }
            return Ok(Destination::Web { url: t.to_owned() });
        }
        Err(bad(
            "expected sip:user@host, sips:user@host, tel:+number, visio:PIN, janus+https://host/janus?room=N, whip+https://host/path or an https:// URL",
        ))
    }

    /// The same destination, with `digits` to send once the call is up (a meeting PIN).
    pub fn with_dtmf(mut self, digits: &str) -> Destination {
        match &mut self {
            Destination::Sip { dtmf, .. } | Destination::Tel { dtmf, .. } => *dtmf = digits.to_owned(),
            Destination::Web { .. }
            | Destination::Janus { .. }
            | Destination::Whip { .. }
            | Destination::Visio { .. } => {}
        }
        self
    }

    /// A `[[destination]]`'s `pin`: its `sip:` URI is then a Visio gateway given that PIN.
    /// Without a PIN, the destination as it was.
    pub fn with_pin(self, pin: &str) -> Destination {
        match self {
            Destination::Sip { uri, .. } if !pin.is_empty() => Destination::Visio { gateway: uri, pin: pin.to_owned() },
            other => other,
        }
    }

    /// The same destination, with the bearer token of a `[[destination]]` (WHIP/WHEP only;
    /// other destinations have no use for one).
    pub fn with_token(mut self, secret: &str) -> Destination {
        if let Destination::Whip { token, .. } = &mut self {
            *token = secret.to_owned();
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
            Destination::Janus { .. } => "janus",
            Destination::Whip { .. } => "whip",
            Destination::Visio { .. } => "visio",
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Sip { uri, .. } => write!(f, "{uri}"),
            Destination::Tel { number, .. } => write!(f, "tel:{number}"),
            Destination::Web { url } => write!(f, "{url}"),
            Destination::Janus { api, room, .. } => write!(f, "janus+{api}?room={room}"),
            // Never the token.
            Destination::Whip { whip, whep: None, .. } => write!(f, "whip+{whip}"),
            Destination::Whip { whip, whep: Some(whep), .. } => {
                write!(f, "whip+{whip}#whep={}", percent_encode(whep))
            }
            // Never the PIN: its last two digits, enough to tell two meetings apart.
            Destination::Visio { pin, .. } => write!(f, "visio:{}", masked_pin(pin)),
        }
    }
}

/// `http(s)://host[:port]/path?room=N[&pin=P]` after `janus+`.
fn janus(t: &str, web: bool) -> Result<Destination, String> {
    if !web {
        return Err("a Janus room is janus+https://host/janus?room=N".into());
    }
    let (api, query) = t.split_once('?').unwrap_or((t, ""));
    let host = api.split_once("://").map(|(_, r)| r).unwrap_or("");
    if host.is_empty() || host.starts_with('/') {
        return Err("the URL has no host".into());
    }
    let (mut room, mut pin) = (None, String::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "room" => room = Some(v.parse::<u64>().map_err(|_| format!("room '{v}' is not a room number"))?),
            "pin" => pin = percent_decode(v).ok_or_else(|| "the PIN is not valid percent-encoding".to_string())?,
            _ => return Err(format!("unknown parameter '{k}' (room and pin are known)")),
        }
    }
    let room = room.ok_or_else(|| "no room number (add ?room=N)".to_string())?;
    Ok(Destination::Janus { api: api.to_owned(), room, pin })
}

/// `http(s)://host[:port]/path[#whep=<percent-encoded URL>]` after `whip+`.
fn whip(t: &str, web: bool) -> Result<Destination, String> {
    if !web {
        return Err("a WHIP endpoint is whip+https://host/path".into());
    }
    let (url, fragment) = t.split_once('#').unwrap_or((t, ""));
    web_url(url).map_err(|w| format!("the WHIP URL {w}"))?;
    let mut whep = None;
    for pair in fragment.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "whep" => {
                let u = percent_decode(v).ok_or_else(|| "the WHEP URL is not valid percent-encoding".to_string())?;
                web_url(&u).map_err(|w| format!("the WHEP URL {w}"))?;
                whep = Some(u);
            }
            _ => return Err(format!("unknown parameter '{k}' after # (whep is known)")),
        }
    }
    Ok(Destination::Whip { whip: url.to_owned(), whep, token: String::new() })
}

/// Checks an `http(s)://host[:port]/…` URL: the scheme, a host, no spaces or fragment.
fn web_url(u: &str) -> Result<(), &'static str> {
    let lower = u.to_ascii_lowercase();
    let rest =
        lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).ok_or("is not http:// or https://")?;
    if rest.is_empty() || rest.starts_with(['/', ':', '?']) {
        return Err("has no host");
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        return Err("holds spaces, control characters or a #");
    }
    Ok(())
}

/// `%XX` encoding of everything but unreserved characters and `/` `:`.
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` decoding of a query value (UTF-8 only).
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A PIN as logs and the screen show it: `••••••••90`.
pub fn masked_pin(pin: &str) -> String {
    let keep = if pin.len() >= 8 { 2 } else { 0 };
    let (hidden, shown) = pin.split_at(pin.len() - keep);
    format!("{}{shown}", "•".repeat(hidden.chars().count()))
}
