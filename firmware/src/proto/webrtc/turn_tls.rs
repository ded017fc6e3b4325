//! TURN over TLS for `webrtcbin`, with the server's certificate checked.
//!
//! libnice (0.1.21, Debian 12), under `webrtcbin`, answers `turns:` with the pseudo-TLS
//! handshake of Google's old relays, which standard TURN servers (coturn) drop at once, and it
//! checks no certificate. So huisd carries TURN over TLS itself: for each
//! `turns://user:password@host:port` it listens on a loopback TCP port and gives libnice
//! `turn://user:password@127.0.0.1:PORT?transport=tcp` instead; every connection libnice opens
//! there is carried over TLS (rustls: the system's trust anchors and `webrtc.ca_file`, the
//! certificate checked against `host`) to the real server. TURN over TCP is a stream of STUN
//! messages and ChannelData framed by their own lengths (RFC 8656 §12), so carrying the bytes
//! unchanged is all it takes; the credentials stay inside that stream, encrypted on the way.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// Connections carried at once per server (libnice opens one per local address and stream).
const MAX_CONNECTIONS: usize = 16;
/// How long reaching the server and its TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TurnTlsError {
    #[error("'{uri}' is not turns://user:password@host:port")]
    Uri { uri: String },
    #[error("'{host}' is not a name a certificate can carry")]
    Name { host: String },
    #[error("cannot read the CA file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("cannot listen on loopback for TURN over TLS: {0}")]
    Listen(std::io::Error),
}

/// The ICE servers to give `webrtcbin`: `turns://` entries replaced by a loopback TCP relay that
/// huisd carries over TLS (tasks started here, on the current runtime, for huisd's lifetime).
pub fn carry(servers: &[String], ca_file: Option<&Path>) -> Result<Vec<String>, TurnTlsError> {
    if !servers.iter().any(|s| s.starts_with("turns://")) {
        return Ok(servers.to_vec());
    }
    let connector = TlsConnector::from(Arc::new(client_config(ca_file)?));
    let mut out = Vec::with_capacity(servers.len());
    for uri in servers {
        let Some(rest) = uri.strip_prefix("turns://") else {
            out.push(uri.clone());
            continue;
        };
        let (creds, server) = parse(rest).ok_or_else(|| TurnTlsError::Uri { uri: redacted(uri) })?;
        let name =
            ServerName::try_from(server.host.clone()).map_err(|_| TurnTlsError::Name { host: server.host.clone() })?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(TurnTlsError::Listen)?;
        std_listener.set_nonblocking(true).map_err(TurnTlsError::Listen)?;
        let local = std_listener.local_addr().map_err(TurnTlsError::Listen)?;
        let listener = TcpListener::from_std(std_listener).map_err(TurnTlsError::Listen)?;
        tracing::info!(server = %format!("{}:{}", server.host, server.port), local = %local, "TURN over TLS carried by huisd");
        tokio::spawn(serve(listener, connector.clone(), name, server));
        out.push(format!("turn://{creds}@{local}?transport=tcp"));
    }
    Ok(out)
}

struct Server {
    host: String,
    port: u16,
}

/// `user:password@host:port[?…]` → (`user:password`, server). The password may hold `@`.
fn parse(rest: &str) -> Option<(&str, Server)> {
    let rest = rest.split('?').next()?;
    let (creds, hostport) = rest.rsplit_once('@')?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once("]:")?;
        (h, p)
    } else {
        hostport.rsplit_once(':')?
    };
    let port = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && creds.contains(':')).then(|| (creds, Server { host: host.to_owned(), port }))
}

/// The URI without its password, for errors.
fn redacted(uri: &str) -> String {
    match uri.rsplit_once('@') {
        Some((_, host)) => format!("turns://(hidden)@{}", crate::text::excerpt(host)),
        None => crate::text::excerpt(uri),
    }
}

fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TurnTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let bad = |why: String| TurnTlsError::CaFile { path: path.display().to_string(), why };
        let certs: Vec<CertificateDer<'static>> = rustls::pki_types::pem::PemObject::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    // ring, as for SIP over TLS (see proto/sip/net.rs): no post-quantum exchange needed here.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TurnTlsError::CaFile { path: String::new(), why: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn serve(listener: TcpListener, connector: TlsConnector, name: ServerName<'static>, server: Server) {
    let open = Arc::new(AtomicUsize::new(0));
    let server = Arc::new(server);
    loop {
        let Ok((local, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(max = MAX_CONNECTIONS, "TURN over TLS: too many connections; one refused");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (connector, name, server, open) = (connector.clone(), name.clone(), server.clone(), open.clone());
        tokio::spawn(async move {
            if let Err(why) = carry_one(local, &connector, name, &server).await {
                tracing::warn!(server = %format!("{}:{}", server.host, server.port), "TURN over TLS: {why}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn carry_one(
    mut local: TcpStream,
    connector: &TlsConnector,
    name: ServerName<'static>,
    server: &Server,
) -> Result<(), String> {
    let _ = local.set_nodelay(true);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| format!("cannot reach the server: {e}"))?;
        let _ = tcp.set_nodelay(true);
        connector.connect(name, tcp).await.map_err(|e| format!("TLS with the server failed: {e}"))
    })
    .await
    .map_err(|_| format!("no TLS session with the server within {} s", CONNECT_TIMEOUT.as_secs()))??;
    let mut tls = tls;
    match tokio::io::copy_bidirectional(&mut local, &mut tls).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the connection ended: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_uris_are_read_with_passwords_holding_at_signs_and_ipv6_hosts() {
        let (c, s) = parse("huis:p@ss@turn.example.org:5349").unwrap();
        assert_eq!((c, s.host.as_str(), s.port), ("huis:p@ss", "turn.example.org", 5349));
        let (_, s) = parse("u:p@[2001:db8::1]:443?transport=tcp").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("2001:db8::1", 443));
        for bad in ["turn.example.org:5349", "u:p@host", "u:p@host:0", "u:p@:5349", "nopass@host:5349"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert!(!redacted("turns://u:secret@host:5349").contains("secret"));
    }

    #[tokio::test]
    async fn only_turns_entries_are_replaced_by_a_loopback_relay() {
        let servers = vec!["turn://u:p@192.0.2.1:3478".to_string(), "turns://u:p@turn.example.org:5349".to_string()];
        let out = carry(&servers, None).unwrap();
        assert_eq!(out[0], servers[0]);
        assert!(out[1].starts_with("turn://u:p@127.0.0.1:") && out[1].ends_with("?transport=tcp"), "{}", out[1]);
        let bad = carry(&["turns://u:secret@host".to_string()], None).unwrap_err().to_string();
        assert!(!bad.contains("secret") && bad.contains("turns://"), "{bad}");
    }
}
