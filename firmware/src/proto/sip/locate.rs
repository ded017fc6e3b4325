//! RFC 3263 server location: which addresses, ports and transports a `sip:`/`sips:` URI means.
//!
//! hickory-resolver reads the system's `/etc/resolv.conf` when the backend starts (so a device
//! or a test namespace uses its own DNS server). An IP literal, or an explicit port, skips
//! NAPTR and SRV (RFC 3263 §4.2); a transport given without a port (`sips:`, `;transport=`) asks
//! SRV for it; otherwise NAPTR picks among the transports we have (TLS first when there is no
//! NAPTR), SRV orders the servers (priority, then weight, RFC 2782), and A/AAAA gives their
//! addresses. The result is a list to fail over along: the next one is tried when one does not
//! answer.
//!
//! The certificate of every target must name the URI's domain (RFC 5922 §4), not the SRV
//! target: [`Target::host`] carries it for the TLS check.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use huis_sip::TransportKind;

use super::SipError;
use super::net::uri_host;

/// Most targets we keep for one URI.
const MAX_TARGETS: usize = 16;

/// One place to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: TransportKind,
    /// The name a TLS certificate must carry (the URI's host), or the IP.
    pub host: String,
}

/// Which transports the caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    Any,
    TlsOnly,
}

impl Allowed {
    fn ok(self, t: TransportKind) -> bool {
        self == Allowed::Any || t == TransportKind::Tls
    }
}

/// Builds the resolver from the system's configuration.
pub fn system_resolver() -> Result<TokioResolver, SipError> {
    Ok(TokioResolver::builder_tokio()
        .map_err(|e| SipError::Resolve { host: "/etc/resolv.conf".into(), why: e.to_string() })?
        .build())
}

fn srv_name(t: TransportKind, domain: &str) -> String {
    match t {
        TransportKind::Udp => format!("_sip._udp.{domain}."),
        TransportKind::Tcp => format!("_sip._tcp.{domain}."),
        TransportKind::Tls => format!("_sips._tcp.{domain}."),
    }
}

/// The transport of a NAPTR service field (RFC 3263 §4.1).
fn naptr_transport(service: &[u8]) -> Option<TransportKind> {
    match service.to_ascii_uppercase().as_slice() {
        b"SIP+D2U" => Some(TransportKind::Udp),
        b"SIP+D2T" => Some(TransportKind::Tcp),
        b"SIPS+D2T" => Some(TransportKind::Tls),
        _ => None,
    }
}

/// A small, good-enough random number for SRV weights (no need for a crypto RNG).
fn rand_below(n: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id().rotate_left(16)) % n
}

/// Orders SRV records: by priority, then by weighted random choice within a priority (RFC 2782).
pub fn order_srv(mut recs: Vec<(u16, u16, u16, String)>, mut pick: impl FnMut(u32) -> u32) -> Vec<(u16, String)> {
    recs.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    while !recs.is_empty() {
        let prio = recs[0].0;
        let mut group: Vec<_> = recs.iter().filter(|r| r.0 == prio).cloned().collect();
        recs.retain(|r| r.0 != prio);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.1)).sum();
            let mut x = pick(total + 1);
            let mut i = 0;
            for (j, r) in group.iter().enumerate() {
                i = j;
                if x <= u32::from(r.1) {
                    break;
                }
                x -= u32::from(r.1);
            }
            let r = group.remove(i);
            out.push((r.2, r.3));
        }
    }
    out
}

async fn addresses(r: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, SipError> {
    let ips = r
        .lookup_ip(format!("{}.", host.trim_end_matches('.')))
        .await
        .map_err(|e| SipError::Resolve { host: host.to_owned(), why: e.to_string() })?;
    Ok(ips.iter().collect())
}

/// The SRV records of `name`, in the order to try; none when there are none.
async fn srv(r: &TokioResolver, name: &str) -> Vec<(u16, String)> {
    match r.srv_lookup(name).await {
        Ok(l) => order_srv(
            l.iter()
                .take(MAX_TARGETS)
                .map(|s| (s.priority(), s.weight(), s.port(), s.target().to_utf8().trim_end_matches('.').to_owned()))
                .filter(|s| !s.3.is_empty())
                .collect(),
            rand_below,
        ),
        Err(_) => Vec::new(),
    }
}

/// Where `uri` (a `sip:`/`sips:` URI) is served, in the order to try. `default` is the
/// transport when neither the URI nor DNS says one (the account's `transport`).
pub async fn locate(
    r: &TokioResolver,
    uri: &str,
    default: TransportKind,
    allowed: Allowed,
) -> Result<Vec<Target>, SipError> {
    let (host, port, transport) =
        uri_host(uri).ok_or_else(|| SipError::Resolve { host: uri.to_owned(), why: "not a sip: URI".into() })?;
    let refuse = |t: TransportKind| SipError::NotTls { what: uri.to_owned(), transport: t.param() };
    // An IP literal: no DNS at all.
    if let Ok(ip) = host.parse::<IpAddr>() {
        let t = transport.unwrap_or(default);
        if !allowed.ok(t) {
            return Err(refuse(t));
        }
        return Ok(vec![Target { addr: SocketAddr::new(ip, port.unwrap_or(t.default_port())), transport: t, host }]);
    }
    // A port: A/AAAA only.
    if let Some(port) = port {
        let t = transport.unwrap_or(default);
        if !allowed.ok(t) {
            return Err(refuse(t));
        }
        let ips = addresses(r, &host).await?;
        return Ok(ips
            .into_iter()
            .take(MAX_TARGETS)
            .map(|ip| Target { addr: SocketAddr::new(ip, port), transport: t, host: host.clone() })
            .collect());
    }
    // Transports to look for, in order: the URI's; else NAPTR's; else TLS, TCP, UDP by SRV.
    let mut plan: Vec<(TransportKind, String)> = Vec::new();
    if let Some(t) = transport {
        if !allowed.ok(t) {
            return Err(refuse(t));
        }
        plan.push((t, srv_name(t, &host)));
    } else {
        if let Ok(l) = r.lookup(format!("{host}."), RecordType::NAPTR).await {
            let mut recs: Vec<_> = l
                .iter()
                .filter_map(|d| match d {
                    RData::NAPTR(n) if n.flags().eq_ignore_ascii_case(b"s") => {
                        let t = naptr_transport(n.services())?;
                        Some((n.order(), n.preference(), t, n.replacement().to_utf8()))
                    }
                    _ => None,
                })
                .take(MAX_TARGETS)
                .collect();
            recs.sort_by_key(|r| (r.0, r.1));
            plan = recs.into_iter().filter(|r| allowed.ok(r.2)).map(|r| (r.2, r.3)).collect();
        }
        if plan.is_empty() {
            plan = [TransportKind::Tls, TransportKind::Tcp, TransportKind::Udp]
                .into_iter()
                .filter(|t| allowed.ok(*t))
                .map(|t| (t, srv_name(t, &host)))
                .collect();
        }
    }
    let mut out = Vec::new();
    for (t, name) in &plan {
        let recs = srv(r, name).await;
        for (port, target) in recs {
            let Ok(ips) = addresses(r, &target).await else {
                tracing::warn!(%target, "an SRV target of {host} has no address");
                continue;
            };
            for ip in ips {
                out.push(Target { addr: SocketAddr::new(ip, port), transport: *t, host: host.clone() });
            }
        }
        if out.len() >= MAX_TARGETS {
            break;
        }
        if !out.is_empty() && transport.is_none() {
            // The first transport that has servers wins; others are not mixed in.
            break;
        }
    }
    if out.is_empty() {
        // No SRV: the host's own addresses, on the transport's default port (RFC 3263 §4.2).
        let t = transport.unwrap_or(if allowed == Allowed::TlsOnly { TransportKind::Tls } else { default });
        let ips = addresses(r, &host).await?;
        out = ips
            .into_iter()
            .map(|ip| Target { addr: SocketAddr::new(ip, t.default_port()), transport: t, host: host.clone() })
            .collect();
    }
    out.truncate(MAX_TARGETS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_order_is_priority_then_weight() {
        let recs =
            vec![(20, 0, 5061, "c".to_string()), (10, 0, 5062, "b".to_string()), (10, 100, 5063, "a".to_string())];
        // Always the smallest pick: zero-weight records come first only when drawn; here the
        // first record in the group whose running weight reaches the pick.
        let got = order_srv(recs.clone(), |_| 0);
        assert_eq!(got.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["b", "a", "c"]);
        let got = order_srv(recs, |n| n - 1);
        assert_eq!(got.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn naptr_services() {
        assert_eq!(naptr_transport(b"SIPS+D2T"), Some(TransportKind::Tls));
        assert_eq!(naptr_transport(b"sip+d2u"), Some(TransportKind::Udp));
        assert_eq!(naptr_transport(b"SIP+D2S"), None);
    }
}
