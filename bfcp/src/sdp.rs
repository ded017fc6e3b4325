//! The SDP of a BFCP stream (RFC 8856): the `m=application <port> <proto> *` line, its
//! attributes, and who is floor control server (the `floorctrl` table).
//!
//! [`parse_media`] reads one media section (the `m=` line and the lines after it) with bounds on
//! lines and values, and says which line is wrong; [`build_media`] writes what it reads.

use thiserror::Error;

/// Lines of one media section at most.
pub const MAX_LINES: usize = 64;
/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 1024;
/// `a=floorid` lines, and stream labels per line, at most.
pub const MAX_FLOORS: usize = 16;

/// The transport protocol of the `m=` line (RFC 8856).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `TCP/BFCP`.
    TcpBfcp,
    /// `TCP/TLS/BFCP`.
    TcpTlsBfcp,
    /// `UDP/BFCP`.
    UdpBfcp,
    /// `UDP/TLS/BFCP` (DTLS).
    UdpTlsBfcp,
}

impl Proto {
    /// As written in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::TcpBfcp => "TCP/BFCP",
            Proto::TcpTlsBfcp => "TCP/TLS/BFCP",
            Proto::UdpBfcp => "UDP/BFCP",
            Proto::UdpTlsBfcp => "UDP/TLS/BFCP",
        }
    }

    fn parse(s: &str) -> Option<Proto> {
        [Proto::TcpBfcp, Proto::TcpTlsBfcp, Proto::UdpBfcp, Proto::UdpTlsBfcp]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The BFCP transport it runs on.
    pub fn transport(self) -> crate::Transport {
        match self {
            Proto::TcpBfcp | Proto::TcpTlsBfcp => crate::Transport::Tcp,
            Proto::UdpBfcp | Proto::UdpTlsBfcp => crate::Transport::Udp,
        }
    }
}

/// A value of `a=floorctrl` (RFC 8856).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorCtrl {
    /// `c-only`: floor control client only.
    ClientOnly,
    /// `s-only`: floor control server only.
    ServerOnly,
    /// `c-s`: either (in an offer) or both (in an answer).
    ClientServer,
}

impl FloorCtrl {
    /// As written in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            FloorCtrl::ClientOnly => "c-only",
            FloorCtrl::ServerOnly => "s-only",
            FloorCtrl::ClientServer => "c-s",
        }
    }

    fn parse(s: &str) -> Option<FloorCtrl> {
        match s {
            "c-only" => Some(FloorCtrl::ClientOnly),
            "s-only" => Some(FloorCtrl::ServerOnly),
            "c-s" => Some(FloorCtrl::ClientServer),
            _ => None,
        }
    }
}

/// `a=setup` (RFC 4145, for the TCP and TLS protos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    /// As written in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// `a=connection` (RFC 4145).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Connection {
    New,
    Existing,
}

/// `a=floorid:<id> mstrm:<label> ...` (RFC 8856): a floor and the media streams it controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorId {
    /// The floor.
    pub id: u16,
    /// The `a=label` values of the streams (the presentation `m=video`).
    pub labels: Vec<String>,
}

/// A BFCP media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfcpMedia {
    /// Port of the `m=` line (0: stream refused).
    pub port: u16,
    /// Protocol of the `m=` line.
    pub proto: Proto,
    /// `a=floorctrl` values (empty: the attribute is absent).
    pub floorctrl: Vec<FloorCtrl>,
    /// `a=confid`.
    pub confid: Option<u32>,
    /// `a=userid`.
    pub userid: Option<u16>,
    /// `a=floorid` lines.
    pub floors: Vec<FloorId>,
    /// `a=bfcpver` versions (empty: absent, meaning version 1 over TCP and 2 over UDP).
    pub bfcpver: Vec<u8>,
    /// `a=setup`.
    pub setup: Option<Setup>,
    /// `a=connection`.
    pub connection: Option<Connection>,
}

/// Why a media section was not read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The first line is not `m=application <port> <BFCP proto> *`.
    #[error("line 1: not a BFCP m= line: {0}")]
    NotBfcp(String),
    /// Over [`MAX_LINES`] lines, or one over [`MAX_LINE`] bytes.
    #[error("line {line}: over the bounds of a BFCP media section")]
    TooLong {
        /// 1-based line.
        line: usize,
    },
    /// A known attribute with a value that does not parse.
    #[error("line {line}: bad a={attribute} value {value:?}")]
    BadValue {
        /// 1-based line.
        line: usize,
        /// The attribute name.
        attribute: &'static str,
        /// The value (at most 64 characters).
        value: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Reads a BFCP media section: its `m=` line first, then its lines up to the end of `text`
/// (CRLF or LF). Unknown attributes and other lines are ignored.
pub fn parse_media(text: &str) -> Result<BfcpMedia, SdpError> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let first = lines.next().unwrap_or("");
    if first.len() > MAX_LINE {
        return Err(SdpError::TooLong { line: 1 });
    }
    let mut f = first.strip_prefix("m=application ").unwrap_or("").split(' ');
    let port = f.next().and_then(|p| p.parse::<u16>().ok());
    let proto = f.next().and_then(Proto::parse);
    let (Some(port), Some(proto), Some("*"), None) = (port, proto, f.next(), f.next()) else {
        return Err(SdpError::NotBfcp(shown(first)));
    };
    let mut m = BfcpMedia {
        port,
        proto,
        floorctrl: vec![],
        confid: None,
        userid: None,
        floors: vec![],
        bfcpver: vec![],
        setup: None,
        connection: None,
    };
    for (i, l) in lines.enumerate() {
        let line = i + 2;
        if line > MAX_LINES || l.len() > MAX_LINE {
            return Err(SdpError::TooLong { line });
        }
        let Some(attr) = l.strip_prefix("a=") else { continue };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        let bad = |attribute: &'static str| SdpError::BadValue { line, attribute, value: shown(value) };
        match name {
            "floorctrl" => {
                let v: Option<Vec<FloorCtrl>> = value.split_whitespace().map(FloorCtrl::parse).collect();
                m.floorctrl = v.filter(|v| !v.is_empty() && v.len() <= 3).ok_or_else(|| bad("floorctrl"))?;
            }
            "confid" => m.confid = Some(digits(value).ok_or_else(|| bad("confid"))?),
            "userid" => {
                m.userid = Some(digits(value).and_then(|v| u16::try_from(v).ok()).ok_or_else(|| bad("userid"))?)
            }
            "floorid" => {
                let mut w = value.split_whitespace();
                let id = w.next().and_then(digits).and_then(|v| u16::try_from(v).ok()).ok_or_else(|| bad("floorid"))?;
                let mut labels = Vec::new();
                for x in w {
                    // RFC 8856 writes `mstrm:`, RFC 4583 wrote `m-stream:`; several labels may follow one.
                    let label = x.strip_prefix("mstrm:").or_else(|| x.strip_prefix("m-stream:")).unwrap_or(x);
                    if label.is_empty() || labels.len() >= MAX_FLOORS {
                        return Err(bad("floorid"));
                    }
                    labels.push(label.to_owned());
                }
                if m.floors.len() >= MAX_FLOORS {
                    return Err(bad("floorid"));
                }
                m.floors.push(FloorId { id, labels });
            }
            "bfcpver" => {
                let v: Option<Vec<u8>> = value
                    .split_whitespace()
                    .map(|x| digits(x).and_then(|v| u8::try_from(v).ok()).filter(|v| (1..=2).contains(v)))
                    .collect();
                m.bfcpver = v.filter(|v| !v.is_empty() && v.len() <= 2).ok_or_else(|| bad("bfcpver"))?;
            }
            "setup" => {
                m.setup = Some(match value {
                    "active" => Setup::Active,
                    "passive" => Setup::Passive,
                    "actpass" => Setup::ActPass,
                    "holdconn" => Setup::HoldConn,
                    _ => return Err(bad("setup")),
                })
            }
            "connection" => {
                m.connection = Some(match value {
                    "new" => Connection::New,
                    "existing" => Connection::Existing,
                    _ => return Err(bad("connection")),
                })
            }
            _ => {}
        }
    }
    Ok(m)
}

/// A decimal number of at most 10 digits fitting in u32.
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Writes a media section, lines ending in CRLF.
pub fn build_media(m: &BfcpMedia) -> String {
    let mut s = format!("m=application {} {} *\r\n", m.port, m.proto.as_str());
    if !m.floorctrl.is_empty() {
        let v: Vec<&str> = m.floorctrl.iter().map(|f| f.as_str()).collect();
        s += &format!("a=floorctrl:{}\r\n", v.join(" "));
    }
    if let Some(c) = m.confid {
        s += &format!("a=confid:{c}\r\n");
    }
    if let Some(u) = m.userid {
        s += &format!("a=userid:{u}\r\n");
    }
    for f in &m.floors {
        s += &format!("a=floorid:{}", f.id);
        for l in &f.labels {
            s += &format!(" mstrm:{l}");
        }
        s += "\r\n";
    }
    if !m.bfcpver.is_empty() {
        let v: Vec<String> = m.bfcpver.iter().map(|v| v.to_string()).collect();
        s += &format!("a=bfcpver:{}\r\n", v.join(" "));
    }
    if let Some(x) = m.setup {
        s += &format!("a=setup:{}\r\n", x.as_str());
    }
    if let Some(c) = m.connection {
        s += match c {
            Connection::New => "a=connection:new\r\n",
            Connection::Existing => "a=connection:existing\r\n",
        };
    }
    s
}

/// A side's role in the BFCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Floor control client (participant).
    Client,
    /// Floor control server.
    Server,
    /// Both (answer `c-s` to an offer `c-s`).
    Both,
}

/// The roles an offer/answer exchange gives (RFC 8856).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The offerer's role.
    pub offerer: Role,
    /// The answerer's role.
    pub answerer: Role,
}

/// An answer's `floorctrl` the offer does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a=floorctrl answer {answer:?} does not match the offer {offer:?}")]
pub struct RoleError {
    /// The offer's values.
    pub offer: Vec<FloorCtrl>,
    /// The answer's values.
    pub answer: Vec<FloorCtrl>,
}

/// Who is floor control server, from the offer's and the answer's `a=floorctrl` (RFC 8856's
/// table). Absent (empty) in the offer means `c-only`; absent in the answer means the
/// answerer is server. The answer holds one value, which the offer must allow:
///
/// | offer        | answer  | offerer | answerer |
/// |--------------|---------|---------|----------|
/// | c-only       | s-only  | client  | server   |
/// | s-only       | c-only  | server  | client   |
/// | c-s          | c-only  | server  | client   |
/// | c-s          | s-only  | client  | server   |
/// | c-s          | c-s     | both    | both     |
pub fn negotiate_roles(offer: &[FloorCtrl], answer: &[FloorCtrl]) -> Result<Roles, RoleError> {
    use FloorCtrl::*;
    let offer_allows = |v: FloorCtrl| {
        if offer.is_empty() {
            return v == ClientOnly;
        }
        offer.contains(&v) || (v != ClientServer && offer.contains(&ClientServer))
    };
    let err = || RoleError { offer: offer.to_vec(), answer: answer.to_vec() };
    let roles = match answer {
        [] if offer_allows(ClientOnly) => Roles { offerer: Role::Client, answerer: Role::Server },
        [ServerOnly] if offer_allows(ClientOnly) => Roles { offerer: Role::Client, answerer: Role::Server },
        [ClientOnly] if offer_allows(ServerOnly) => Roles { offerer: Role::Server, answerer: Role::Client },
        [ClientServer] if offer.contains(&ClientServer) => Roles { offerer: Role::Both, answerer: Role::Both },
        _ => return Err(err()),
    };
    Ok(roles)
}

/// The value to answer an offer's `floorctrl` with, huis preferring to be `prefer` (a room
/// endpoint prefers client: the far end's server then arbitrates). Never `c-s`: one role each.
pub fn answer_floorctrl(offer: &[FloorCtrl], prefer: Role) -> Option<FloorCtrl> {
    use FloorCtrl::*;
    let can_be_server = offer.is_empty() || offer.contains(&ClientOnly) || offer.contains(&ClientServer);
    let can_be_client = offer.contains(&ServerOnly) || offer.contains(&ClientServer);
    match (prefer, can_be_server, can_be_client) {
        (Role::Server, true, _) | (_, true, false) => Some(ServerOnly),
        (_, _, true) => Some(ClientOnly),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FloorCtrl::*;

    const OFFER: &str = "m=application 50000 UDP/BFCP *\r\n\
a=floorctrl:c-s\r\n\
a=confid:4321\r\n\
a=userid:1234\r\n\
a=floorid:1 mstrm:12\r\n\
a=bfcpver:2\r\n\
a=unknown:kept out\r\n";

    #[test]
    fn parses_rfc_8856_example_and_builds_it_back() {
        let m = parse_media(OFFER).unwrap();
        assert_eq!(m.port, 50000);
        assert_eq!(m.proto, Proto::UdpBfcp);
        assert_eq!(m.floorctrl, vec![ClientServer]);
        assert_eq!((m.confid, m.userid), (Some(4321), Some(1234)));
        assert_eq!(m.floors, vec![FloorId { id: 1, labels: vec!["12".into()] }]);
        assert_eq!(m.bfcpver, vec![2]);
        let built = build_media(&m);
        assert_eq!(parse_media(&built).unwrap(), m);
        assert!(built.contains("a=floorid:1 mstrm:12\r\n"));
    }

    #[test]
    fn tcp_with_setup_and_old_m_stream_spelling() {
        let text = "m=application 9 TCP/TLS/BFCP *\na=setup:actpass\na=connection:new\n\
            a=floorctrl:c-only s-only\na=floorid:2 m-stream:3 mstrm:4\n";
        let m = parse_media(text).unwrap();
        assert_eq!(m.proto, Proto::TcpTlsBfcp);
        assert_eq!(m.proto.transport(), crate::Transport::Tcp);
        assert_eq!((m.setup, m.connection), (Some(Setup::ActPass), Some(Connection::New)));
        assert_eq!(m.floorctrl, vec![ClientOnly, ServerOnly]);
        assert_eq!(m.floors[0].labels, vec!["3", "4"]);
        assert_eq!(parse_media(&build_media(&m)).unwrap(), m);
    }

    #[test]
    fn errors_name_the_line() {
        assert!(matches!(parse_media("m=video 9 RTP/AVP 96"), Err(SdpError::NotBfcp(_))));
        assert!(matches!(parse_media("m=application 9 UDP/BFCP 96"), Err(SdpError::NotBfcp(_))));
        assert!(matches!(parse_media("m=application 70000 UDP/BFCP *"), Err(SdpError::NotBfcp(_))));
        let e = parse_media("m=application 9 UDP/BFCP *\na=confid:1\na=userid:70000\n").unwrap_err();
        assert_eq!(e, SdpError::BadValue { line: 3, attribute: "userid", value: "70000".into() });
        assert!(parse_media("m=application 9 UDP/BFCP *\na=floorctrl:boss").is_err());
        assert!(parse_media("m=application 9 UDP/BFCP *\na=bfcpver:3").is_err());
        assert!(parse_media("m=application 9 UDP/BFCP *\na=confid:-1").is_err());
        assert!(parse_media("m=application 9 UDP/BFCP *\na=floorid:x mstrm:1").is_err());
        let many = format!("m=application 9 UDP/BFCP *\n{}", "a=x\n".repeat(MAX_LINES));
        assert_eq!(parse_media(&many), Err(SdpError::TooLong { line: MAX_LINES + 1 }));
        let long = format!("m=application 9 UDP/BFCP *\na=x{}", "y".repeat(MAX_LINE));
        assert_eq!(parse_media(&long), Err(SdpError::TooLong { line: 2 }));
    }

    /// RFC 8856's floorctrl table, every row of the table, and the default when the attribute is absent.
    #[test]
    fn roles_table() {
        let r = |o: Role, a: Role| Ok(Roles { offerer: o, answerer: a });
        use Role::*;
        assert_eq!(negotiate_roles(&[ClientOnly], &[ServerOnly]), r(Client, Server));
        assert_eq!(negotiate_roles(&[ServerOnly], &[ClientOnly]), r(Server, Client));
        // huis offers c-s and the far end answers c-only: huis is the server.
        assert_eq!(negotiate_roles(&[ClientServer], &[ClientOnly]), r(Server, Client));
        assert_eq!(negotiate_roles(&[ClientServer], &[ServerOnly]), r(Client, Server));
        assert_eq!(negotiate_roles(&[ClientServer], &[ClientServer]), r(Both, Both));
        // Absent on both sides: offerer client, answerer server.
        assert_eq!(negotiate_roles(&[], &[]), r(Client, Server));
        assert_eq!(negotiate_roles(&[ClientOnly], &[]), r(Client, Server));
        // An offer listing several roles allows each of them.
        assert_eq!(negotiate_roles(&[ClientOnly, ServerOnly], &[ClientOnly]), r(Server, Client));
        // Answers the offer does not allow.
        for (o, a) in [
            (&[ClientOnly][..], &[ClientOnly][..]),
            (&[ServerOnly], &[ServerOnly]),
            (&[ClientOnly], &[ClientServer]),
            (&[ServerOnly], &[ClientServer]),
            (&[ServerOnly], &[]),
            (&[ClientServer], &[ClientOnly, ServerOnly]),
        ] {
            assert!(negotiate_roles(o, a).is_err(), "{o:?} / {a:?}");
        }
    }

    #[test]
    fn answers_follow_the_preference_when_the_offer_allows() {
        assert_eq!(answer_floorctrl(&[ClientServer], Role::Client), Some(ClientOnly));
        assert_eq!(answer_floorctrl(&[ClientServer], Role::Server), Some(ServerOnly));
        assert_eq!(answer_floorctrl(&[ClientOnly], Role::Client), Some(ServerOnly));
        assert_eq!(answer_floorctrl(&[ServerOnly], Role::Server), Some(ClientOnly));
        assert_eq!(answer_floorctrl(&[], Role::Client), Some(ServerOnly));
        for o in [&[ClientServer][..], &[ClientOnly], &[ServerOnly], &[]] {
            for p in [Role::Client, Role::Server] {
                let a = answer_floorctrl(o, p).unwrap();
                assert!(negotiate_roles(o, &[a]).is_ok());
            }
        }
    }
}
