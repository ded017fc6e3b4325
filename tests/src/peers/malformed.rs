//! Hostile SIP in raw bytes, and a plain OPTIONS probe to see that the
//! target still answers afterwards.
//!
//! SIPp scenarios (`sipp::malformed_scenario`) cover the malformed messages
//! SIPp can send; this module covers what SIPp can't: arbitrary bytes,
//! invalid UTF-8, NULs, datagrams near 64 KB and a 70 KB header on TCP.
//! All sockets are opened inside the test's [`NetNs`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::netns::NetNs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One hostile message.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Too big for one UDP datagram: send on TCP only.
    pub tcp_only: bool,
}

/// What happened when sending the cases.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(case, transport, first status line code received within 40 ms, if any)`.
    pub sent: Vec<(&'static str, Transport, Option<u16>)>,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    format!("{:x}{:x}", t, N.fetch_add(1, Ordering::SeqCst))
}

/// A well-formed OPTIONS from `local` to `ruri` with fresh branch and Call-ID.
pub fn options_request(ruri: &str, local: SocketAddr, transport: Transport) -> (String, String) {
    let id = unique();
    let proto = match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    let call_id = format!("huis-probe-{id}");
    let msg = format!(
        "OPTIONS {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/{proto} {local};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{ip}>;tag={id}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:probe@{local}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        ip = local.ip()
    );
    (msg, call_id)
}

fn status_of(resp: &[u8], call_id: &str) -> Option<u16> {
    let text = String::from_utf8_lossy(resp);
    if !text.starts_with("SIP/2.0 ") || !text.contains(call_id) {
        return None;
    }
    text[8..].split_whitespace().next()?.parse().ok()
}

/// Sends one OPTIONS (`sip:IP:PORT` as R-URI) and returns the final status
/// code. UDP retransmits every 200 ms; provisional responses are skipped.
pub fn options_ping(ns: &NetNs, transport: Transport, target: impl ToSocketAddrs, timeout: Duration) -> Result<u16> {
    let addr = target.to_socket_addrs()?.next().ok_or_else(|| anyhow!("no address"))?;
    options_ping_uri(ns, transport, addr, &format!("sip:{addr}"), timeout)
}

/// [`options_ping`] with an explicit R-URI (baresip wants its AOR's user).
pub fn options_ping_uri(
    ns: &NetNs,
    transport: Transport,
    addr: SocketAddr,
    ruri: &str,
    timeout: Duration,
) -> Result<u16> {
    let ruri = ruri.to_string();
    ns.enter(move || -> Result<u16> {
        let deadline = Instant::now() + timeout;
        match transport {
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                let (msg, call_id) = options_request(&ruri, s.local_addr()?, transport);
                let mut buf = vec![0u8; 65536];
                while Instant::now() < deadline {
                    s.send_to(msg.as_bytes(), addr)?;
                    let resend = Instant::now() + Duration::from_millis(200);
                    loop {
                        let now = Instant::now();
                        let until = resend.min(deadline);
                        if now >= until {
                            break;
                        }
                        s.set_read_timeout(Some(until - now))?;
                        match s.recv(&mut buf) {
                            Ok(n) => {
                                if let Some(code) = status_of(&buf[..n], &call_id) {
                                    if code >= 200 {
                                        return Ok(code);
                                    }
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                bail!("no final response to OPTIONS {ruri} over UDP within {timeout:?}")
            }
            Transport::Tcp => {
                let mut s = TcpStream::connect_timeout(&addr, timeout)?;
                let (msg, call_id) = options_request(&ruri, s.local_addr()?, transport);
                s.write_all(msg.as_bytes())?;
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                while Instant::now() < deadline {
                    s.set_read_timeout(Some(
                        deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
                    ))?;
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    // Responses end at the blank line (OPTIONS answers may carry
                    // a body, but the status line is all we need).
                    let text = String::from_utf8_lossy(&got).to_string();
                    for resp in text.split("SIP/2.0 ").skip(1) {
                        let full = format!("SIP/2.0 {resp}");
                        if full.contains("\r\n\r\n") {
                            if let Some(code) = status_of(full.as_bytes(), &call_id) {
                                if code >= 200 {
                                    return Ok(code);
                                }
                            }
                        }
                    }
                }
                bail!("no final response to OPTIONS {ruri} over TCP within {timeout:?}")
            }
        }
    })?
}

/// A small deterministic generator for the garbage cases.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn request(method: &str, ruri: &str, headers: &[String], body: &[u8], content_length: Option<&str>) -> Vec<u8> {
    let mut m = format!("{method} {ruri} SIP/2.0\r\n").into_bytes();
    for h in headers {
        m.extend_from_slice(h.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    match content_length {
        Some(cl) => m.extend_from_slice(format!("Content-Length: {cl}\r\n").as_bytes()),
        None => {}
    }
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(body);
    m
}

/// The standard headers of a request to `ruri`, each removable by name.
fn std_headers(ruri: &str, id: &str, method: &str, without: &str) -> Vec<String> {
    [
        ("Via", format!("Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{id}")),
        ("Max-Forwards", "Max-Forwards: 70".to_string()),
        ("From", format!("From: <sip:evil@127.0.0.1>;tag={id}")),
        ("To", format!("To: <{ruri}>")),
        ("Call-ID", format!("Call-ID: evil-{id}")),
        ("CSeq", format!("CSeq: 1 {method}")),
        ("Contact", "Contact: <sip:evil@127.0.0.1:5999>".to_string()),
    ]
    .into_iter()
    .filter(|(n, _)| *n != without)
    .map(|(_, h)| h)
    .collect()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// The hostile messages, aimed at `ruri` (e.g. `sip:huis@127.0.0.1:5060`).
pub fn cases(ruri: &str) -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name, bytes, tcp_only| v.push(Case { name, bytes, tcp_only });
    let id = unique();
    let h = |without: &str, m: &str| std_headers(ruri, &format!("{id}{without}{m}"), m, without);
    let ct = "Content-Type: application/sdp".to_string();

    let mut hh = h("", "INVITE");
    hh.push(ct.clone());
    add(
        "truncated body (Content-Length 500, 60 bytes sent)",
        request("INVITE", ruri, &hh, &SDP.as_bytes()[..60], Some("500")),
        false,
    );
    add("huge Content-Length", request("INVITE", ruri, &hh, SDP.as_bytes(), Some("4294967296000")), false);
    add("negative Content-Length", request("INVITE", ruri, &hh, SDP.as_bytes(), Some("-1")), false);
    add("non-numeric Content-Length", request("INVITE", ruri, &hh, SDP.as_bytes(), Some("lots")), false);
    for missing in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let name: &'static str = match missing {
            "Via" => "INVITE without Via",
            "From" => "INVITE without From",
            "To" => "INVITE without To",
            "Call-ID" => "INVITE without Call-ID",
            _ => "INVITE without CSeq",
        };
        let mut hh = h(missing, "INVITE");
        hh.push(ct.clone());
        add(name, request("INVITE", ruri, &hh, SDP.as_bytes(), Some(&SDP.len().to_string())), false);
    }
    add("OPTIONS without Via", request("OPTIONS", ruri, &h("Via", "OPTIONS"), b"", Some("0")), false);
    add("OPTIONS without Call-ID", request("OPTIONS", ruri, &h("Call-ID", "OPTIONS"), b"", Some("0")), false);
    let mut hh = h("", "OPTIONS");
    hh.push(format!("X-Long: {}", "a".repeat(60_000)));
    add("60 KB header line (UDP)", request("OPTIONS", ruri, &hh, b"", Some("0")), false);
    let mut hh = h("", "OPTIONS");
    hh.push(format!("X-Long: {}", "b".repeat(70_000)));
    add("70 KB header line (TCP)", request("OPTIONS", ruri, &hh, b"", Some("0")), true);
    let mut hh = h("", "OPTIONS");
    for i in 0..500 {
        hh.push(format!("X-Many-{i}: {i}"));
    }
    add("500 headers", request("OPTIONS", ruri, &hh, b"", Some("0")), false);
    let mut hh = h("", "OPTIONS");
    for _ in 0..200 {
        hh.push("Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKvia".into());
    }
    add("200 Via headers", request("OPTIONS", ruri, &hh, b"", Some("0")), false);
    let mut m = request("OPTIONS", ruri, &h("", "OPTIONS"), b"", Some("0"));
    let bad = b"From: \"\xff\xfe\xc3\x28\xe2\x82\" <sip:\xf0\x28\x8c\x28@127.0.0.1>;tag=x\r\n";
    let pos = m.windows(6).position(|w| w == b"From: ").unwrap();
    let end = pos + m[pos..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    m.splice(pos..end, bad.iter().copied());
    add("invalid UTF-8 in From", m, false);
    let mut m = request("OPTIONS", ruri, &h("", "OPTIONS"), b"", Some("0"));
    m.splice(20..20, b"\0\0\0".iter().copied());
    add("NUL bytes in the request line", m, false);
    add("garbage bytes (1500)", garbage(1500, 0x5eed), false);
    add("garbage bytes (60000)", garbage(60_000, 0xbad), false);
    add("empty datagram", Vec::new(), false);
    add("only CRLFs", b"\r\n\r\n\r\n\r\n".to_vec(), false);
    add("request line only", format!("INVITE {ruri} SIP/2.0\r\n").into_bytes(), false);
    add(
        "SIP/9.0",
        request("OPTIONS", ruri, &h("", "OPTIONS"), b"", Some("0")).replace_first(b"SIP/2.0\r\n", b"SIP/9.0\r\n"),
        false,
    );
    let mut hh = h("CSeq", "OPTIONS");
    hh.push("CSeq: 99999999999999999999 OPTIONS".into());
    add("CSeq number overflow", request("OPTIONS", ruri, &hh, b"", Some("0")), false);
    let mut hh = h("CSeq", "OPTIONS");
    hh.push("CSeq: 1 INVITE".into());
    add("CSeq method mismatch", request("OPTIONS", ruri, &hh, b"", Some("0")), false);
    add("a response to nothing", format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKnothing\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <{ruri}>;tag=2\r\nCall-ID: nothing-{id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes(), false);
    let mut hh = h("", "INVITE");
    hh.push(ct);
    add("SDP garbage body", request("INVITE", ruri, &hh, &garbage(300, 7), Some("300")), false);
    v
}

trait ReplaceFirst {
    fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8>;
}
impl ReplaceFirst for Vec<u8> {
    fn replace_first(mut self, from: &[u8], to: &[u8]) -> Vec<u8> {
        if let Some(p) = self.windows(from.len()).position(|w| w == from) {
            self.splice(p..p + from.len(), to.iter().copied());
        }
        self
    }
}

/// Sends every case to `target` over `transports` (TCP: one connection per
/// case, closed after a short read), then returns what came back. It never
/// waits long: 40 ms per case for a response.
pub fn send_cases(ns: &NetNs, target: SocketAddr, cases: Vec<Case>, transports: &[Transport]) -> Result<Report> {
    let transports = transports.to_vec();
    ns.enter(move || -> Result<Report> {
        let mut report = Report::default();
        let udp = UdpSocket::bind("127.0.0.1:0").context("bind UDP")?;
        udp.set_read_timeout(Some(Duration::from_millis(40)))?;
        let mut buf = vec![0u8; 65536];
        for c in &cases {
            for &t in &transports {
                match t {
                    Transport::Udp if !c.tcp_only => {
                        // A failure to send (e.g. EMSGSIZE) is part of the test's facts, not fatal.
                        let _ = udp.send_to(&c.bytes, target);
                        let code = udp.recv(&mut buf).ok().and_then(|n| {
                            let s = String::from_utf8_lossy(&buf[..n]);
                            s.strip_prefix("SIP/2.0 ")?.split_whitespace().next()?.parse().ok()
                        });
                        report.sent.push((c.name, t, code));
                    }
                    Transport::Udp => {}
                    Transport::Tcp => {
                        let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                            bail!("TCP connect to {target} failed while sending `{}`", c.name);
                        };
                        s.set_write_timeout(Some(Duration::from_secs(2)))?;
                        s.set_read_timeout(Some(Duration::from_millis(40)))?;
                        let _ = s.write_all(&c.bytes);
                        let n = s.read(&mut buf).unwrap_or(0);
                        let s2 = String::from_utf8_lossy(&buf[..n]);
                        let code = s2.strip_prefix("SIP/2.0 ").and_then(|r| r.split_whitespace().next()?.parse().ok());
                        report.sent.push((c.name, t, code));
                    }
                }
            }
        }
        Ok(report)
    })?
}
