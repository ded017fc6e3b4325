//! Small helpers over `rsip` messages: header look-up by name (long and compact forms),
//! header parameters, encoding to bytes, and the raw split made by the framing pre-check.
//!
//! Header values are read as text and the few parameters the UA needs (tag, branch, expires,
//! refresher...) are extracted here with bounded string operations, so a header that `rsip`'s
//! typed parsers would refuse cannot make a whole message unusable.

use rsip::{Header, Headers};

/// A message split by [`crate::framing::precheck`]: start line, headers (name, value) in order
/// and body. Used to answer requests that `rsip` cannot parse (e.g. 501 for unknown methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The first line, without its line end.
    pub start_line: String,
    /// Header names and values as received (folded lines joined).
    pub headers: Vec<(String, String)>,
    /// The body: exactly `Content-Length` bytes.
    pub body: Vec<u8>,
    /// How many bytes of the input this message used.
    pub wire_len: usize,
}

impl RawMessage {
    /// The first value of the header `name` (long or compact form, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| name_matches(n, name)).map(|(_, v)| v.as_str())
    }

    /// True if the start line is a request line.
    pub fn is_request(&self) -> bool {
        !self.start_line.starts_with("SIP/2.0 ")
    }

    /// The method of a request line.
    pub fn method(&self) -> Option<&str> {
        if self.is_request() { self.start_line.split(' ').next() } else { None }
    }
}

const COMPACT: &[(&str, &str)] = &[
    ("via", "v"),
    ("from", "f"),
    ("to", "t"),
    ("call-id", "i"),
    ("contact", "m"),
    ("content-length", "l"),
    ("content-type", "c"),
    ("supported", "k"),
    ("session-expires", "x"),
    ("subject", "s"),
    ("event", "o"),
];

/// True if header name `have` is `want` (a long lower-case name) in any case or compact form.
pub fn name_matches(have: &str, want: &str) -> bool {
    if have.eq_ignore_ascii_case(want) {
        return true;
    }
    COMPACT.iter().any(|(long, short)| *long == want && have.eq_ignore_ascii_case(short))
}

/// Name and value of a header as text.
pub fn header_parts(h: &Header) -> (String, String) {
    let s = h.to_string();
    match s.split_once(':') {
        Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
        None => (s, String::new()),
    }
}

/// All values of header `name` (long lower-case name), in order. Comma-separated values in one
/// header line are not split (use [`split_list`]).
pub fn header_values(headers: &Headers, name: &str) -> Vec<String> {
    headers.iter().map(header_parts).filter(|(n, _)| name_matches(n, name)).map(|(_, v)| v).collect()
}

/// The first value of header `name`.
pub fn header_value(headers: &Headers, name: &str) -> Option<String> {
    headers.iter().map(header_parts).find(|(n, _)| name_matches(n, name)).map(|(_, v)| v)
}

/// Splits a comma-separated header value, respecting quotes and `<...>`.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The header parameter `name` of a name-addr or plain value (parameters after `>` if the
/// value has angle brackets, otherwise after the first `;`). `Some("")` for a flag parameter.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => match value.find(';') {
            Some(i) => &value[i..],
            None => "",
        },
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case(name) { Some(v.trim().trim_matches('"').to_string()) } else { None }
    })
}

/// The URI inside `<...>` of a name-addr, or the value before its parameters.
pub fn addr_uri(value: &str) -> &str {
    if let (Some(a), Some(b)) = (value.find('<'), value.rfind('>'))
        && a < b
    {
        return &value[a + 1..b];
    }
    value.split(';').next().unwrap_or("").trim()
}

/// The host and port of a bare `sip:`/`sips:` URI (name or IP literal, lower-cased; `None`
/// port when not given) and the transport it asks for (`sips:` means TLS, RFC 3261 §26.2.2,
/// else `;transport=`). `None` when it is not such a URI. Callers unwrap name-addrs first.
pub fn uri_host(uri: &str) -> Option<(String, Option<u16>, Option<crate::TransportKind>)> {
    let lower = uri.get(..5).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let (sips, rest) = if lower == "sips:" {
        (true, &uri[5..])
    } else if lower.starts_with("sip:") {
        (false, &uri[4..])
    } else {
        return None;
    };
    let (hostpart, params) = match rest.find([';', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hostport = hostpart.rsplit('@').next()?;
    let transport = params.split([';', '?']).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("transport").then(|| crate::TransportKind::from_param(v)).flatten()
    });
    let transport = if sips { Some(crate::TransportKind::Tls) } else { transport };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if port.is_empty() => None,
            None => return None,
        };
        (ip, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c)) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port, transport))
}

/// Longest URI we keep from the network as a dialog's target or route.
pub const MAX_NETWORK_URI: usize = 1024;

/// A URI taken from the network (a Contact or a Record-Route value), re-serialised from its
/// parsed form, so that what we later put on a request line or in a Route header is exactly
/// what we understood. `None` when it does not parse, holds characters a URI cannot (spaces,
/// angle brackets, quotes, controls), or does not survive a parse/print round trip: a lenient
/// parse must never turn into a request line the far end cannot read.
pub fn network_uri(value: &str) -> Option<String> {
    let bad = |t: &str| {
        t.is_empty()
            || t.len() > MAX_NETWORK_URI
            || t.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    };
    let raw = addr_uri(value);
    if bad(raw) {
        return None;
    }
    let text = rsip::Uri::try_from(raw).ok()?.to_string();
    if bad(&text) {
        return None;
    }
    let again = rsip::Uri::try_from(text.as_str()).ok()?.to_string();
    (again == text).then_some(text)
}

/// One route entry (from Record-Route) as `<uri>`, re-serialised like [`network_uri`].
pub fn network_route(value: &str) -> Option<String> {
    network_uri(value).map(|u| format!("<{u}>"))
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<String> {
    header_param(value, "tag").filter(|t| !t.is_empty())
}

/// Parses `CSeq: 123 INVITE` into number and method text.
pub fn parse_cseq(value: &str) -> Option<(u32, String)> {
    let mut it = value.split_whitespace();
    let n = it.next()?.parse().ok()?;
    let m = it.next()?.to_string();
    Some((n, m))
}

/// Encodes a message to wire bytes. The body is written unchanged and `Content-Length` is set
/// from it (any `Content-Length` header present is replaced).
pub fn encode(msg: &rsip::SipMessage) -> Vec<u8> {
    let (start, headers, body) = match msg {
        rsip::SipMessage::Request(r) => (format!("{} {} {}", r.method, r.uri, r.version), &r.headers, &r.body),
        rsip::SipMessage::Response(r) => (format!("{} {}", r.version, r.status_code), &r.headers, &r.body),
    };
    let mut out = String::with_capacity(512 + body.len());
    out.push_str(&start);
    out.push_str("\r\n");
    for h in headers.iter() {
        if matches!(h, Header::ContentLength(_)) {
            continue;
        }
        let (n, _) = header_parts(h);
        if name_matches(&n, "content-length") {
            continue;
        }
        out.push_str(&h.to_string());
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A header from a name and value, as an `rsip` header (untyped `Other` unless it is one the
/// UA inspects through `rsip`'s own variants).
pub fn hdr(name: &str, value: impl Into<String>) -> Header {
    let v = value.into();
    match name {
        "Via" => Header::Via(v.into()),
        "From" => Header::From(v.into()),
        "To" => Header::To(v.into()),
        "Call-ID" => Header::CallId(v.into()),
        "CSeq" => Header::CSeq(v.into()),
        "Contact" => Header::Contact(v.into()),
        "Max-Forwards" => Header::MaxForwards(v.into()),
        "Content-Type" => Header::ContentType(v.into()),
        _ => Header::Other(name.to_string(), v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_uris() {
        let v = "\"A;b\" <sip:a@b;transport=tcp>;tag=xyz;lr";
        assert_eq!(tag_of(v).as_deref(), Some("xyz"));
        assert_eq!(header_param(v, "lr").as_deref(), Some(""));
        assert_eq!(header_param(v, "transport"), None);
        assert_eq!(addr_uri(v), "sip:a@b;transport=tcp");
        assert_eq!(addr_uri("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(header_param("SIP/2.0/UDP h;branch=z9hG4bKx;rport", "branch").as_deref(), Some("z9hG4bKx"));
        assert_eq!(split_list("<sip:a,b>, \"x,y\" <sip:c>"), vec!["<sip:a,b>", "\"x,y\" <sip:c>"]);
        assert_eq!(parse_cseq("12 INVITE"), Some((12, "INVITE".into())));
        assert_eq!(parse_cseq("x INVITE"), None);
    }
}

#[cfg(test)]
mod network_uri_tests {
    use super::*;

    #[test]
    fn a_contact_is_kept_in_its_parsed_form() {
        assert_eq!(
            network_uri("\"Bob\" <sip:bob@192.0.2.2:5062;transport=tcp>;expires=60").as_deref(),
            Some("sip:bob@192.0.2.2:5062;transport=TCP")
        );
        assert_eq!(network_uri("<sip:192.0.2.2>").as_deref(), Some("sip:192.0.2.2"));
        assert_eq!(network_route("<sip:proxy.example.org;lr>").as_deref(), Some("<sip:proxy.example.org;lr>"));
    }

    #[test]
    fn a_contact_that_would_break_our_request_line_is_refused() {
        // Seen in a fuzzing probe: accepted by rsip's lenient check, then sent verbatim as
        // `BYE sip:peer: <sip:proxy@192.0.2.9;lr SIP/2.0`.
        assert_eq!(network_uri("<sip:peer: <sip:proxy@192.0.2.9;lr>"), None);
        assert_eq!(network_uri("<sip:bob@host\tx>"), None);
        assert_eq!(network_uri("<sip:bob@host\"x>"), None);
        assert_eq!(network_uri(""), None);
        assert_eq!(network_uri(&format!("<sip:{}@host>", "a".repeat(2000))), None);
    }
}
