//! SIP sockets: one UDP socket and a TCP listener on the same port, an optional TLS listener,
//! plus TCP and TLS connections opened on demand. Reader tasks hand received bytes (decrypted
//! for TLS) to the SIP backend's task as [`NetInput`]; nothing here parses SIP.
//!
//! TLS is rustls (ring provider, TLS 1.2 and 1.3) through tokio-rustls. Servers' certificates
//! are checked against the system's trust store (rustls-native-certs: `/etc/ssl/certs`, or
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus `sip.tls_ca_file`, and against the host name the
//! address was looked up for (the core knows only addresses: the map is here). A refused
//! certificate is a [`TransportError`] that names the reason; the bytes that were to go over
//! that connection are dropped, never sent another way.
//!
//! Connections we open get RFC 5626 keep-alives: a CRLF CRLF ping every `keepalive`, and a
//! flow from which nothing (a pong or anything else) comes back within [`PONG_TIMEOUT`] is
//! closed and reported as failed, so the backend registers again.
//!
//! Connections are bounded (per remote address, in total, and a deadline for the first whole
//! message of an inbound one): see [`super::conns`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use huis_sip::{Transmit, TransportKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::SipError;
use super::conns::{self, ConnLimits, ConnTable, Tracked};

/// How long a pong (or any bytes) may take to come back after a ping (RFC 5626 §4.4.1 says
/// 10 s).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP connect, and then a TLS handshake, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be used. What a person reads in `Room1.LastError` and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("certificate for {host} is signed by an unknown authority")]
    UnknownAuthority { host: String },
    #[error("certificate for {presented} does not name host {host} (host name mismatch)")]
    NameMismatch { host: String, presented: String },
    #[error("certificate for {host} has expired")]
    Expired { host: String },
    #[error("certificate for {host} is not valid yet (check the clock)")]
    NotValidYet { host: String },
    #[error("certificate for {host} was refused: {why}")]
    BadCertificate { host: String, why: String },
    #[error("TLS handshake with {host} ({addr}) failed: {why}")]
    Handshake { host: String, addr: SocketAddr, why: String },
    #[error("cannot connect to {addr}: {why}")]
    Connect { addr: SocketAddr, why: String },
    #[error("no connection to {addr} within {secs} s")]
    ConnectTimeout { addr: SocketAddr, secs: u64 },
    #[error("{addr} stopped answering keep-alives")]
    KeepaliveTimeout { addr: SocketAddr },
    #[error("no TLS connection to {addr} while a clear one is open: refused rather than sent in clear")]
    WouldBeClear { addr: SocketAddr },
}

impl TransportError {
    /// The error of a failed TLS handshake with `host`: certificate refusals by name.
    fn from_handshake(e: &std::io::Error, host: &str, addr: SocketAddr) -> TransportError {
        use rustls::CertificateError as C;
        let host = host.to_owned();
        let Some(rustls::Error::InvalidCertificate(c)) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        else {
            return TransportError::Handshake { host, addr, why: e.to_string() };
        };
        match c {
            C::UnknownIssuer | C::BadSignature => TransportError::UnknownAuthority { host },
            C::NotValidForName => TransportError::NameMismatch { host, presented: "the server".into() },
            C::NotValidForNameContext { presented, .. } => {
                // webpki writes `DnsName("pbx.example.org")`, `IpAddress(10.0.0.1)`: keep the names.
                let names: Vec<String> = presented
                    .iter()
                    .take(8)
                    .map(|p| {
                        let p = p.strip_prefix("DnsName(\"").and_then(|p| p.strip_suffix("\")")).unwrap_or(p);
                        p.strip_prefix("IpAddress(").and_then(|p| p.strip_suffix(')')).unwrap_or(p).to_owned()
                    })
                    .collect();
                let presented = if names.is_empty() { "the server".to_owned() } else { names.join(", ") };
                TransportError::NameMismatch { host, presented }
            }
            C::Expired | C::ExpiredContext { .. } => TransportError::Expired { host },
            C::NotValidYet | C::NotValidYetContext { .. } => TransportError::NotValidYet { host },
            other => TransportError::BadCertificate { host, why: format!("{other:?}") },
        }
    }
}

/// What the socket tasks hand the SIP backend.
#[derive(Debug)]
pub enum NetInput {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Stream {
        from: SocketAddr,
        to: SocketAddr,
        transport: TransportKind,
        bytes: Vec<u8>,
    },
    /// A peer connected to one of our listeners; `tx` writes to it.
    StreamOpened {
        peer: SocketAddr,
        transport: TransportKind,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    },
    /// A connection we opened is up (TLS: the certificate was accepted).
    StreamUp {
        peer: SocketAddr,
        transport: TransportKind,
    },
    StreamClosed {
        from: SocketAddr,
    },
    /// A connection could not be opened or died (keep-alive): what waited on it failed.
    StreamFailed {
        peer: SocketAddr,
        transport: TransportKind,
        error: TransportError,
    },
}

/// Largest SIP datagram we accept (the core's own bound is lower).
const MAX_DATAGRAM: usize = 65_535;

/// TLS settings from the configuration.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CAs (PEM), beside the system's.
    pub ca_file: Option<String>,
    /// Our certificate chain and key (PEM): served by the TLS listener and shown to servers
    /// that ask for a client certificate.
    pub certificate: Option<(String, String)>,
    /// Where to listen for TLS (needs `certificate`).
    pub listen: Option<SocketAddr>,
}

struct Tls {
    connector: TlsConnector,
    acceptor: Option<TlsAcceptor>,
}

/// ring rather than aws-lc-rs: no C/cmake build, a smaller binary. rustls 0.23.3x deprecated
/// ring's default provider only because it lacks the post-quantum key exchange, which SIP
/// servers do not offer anyway.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn tls_err(key: &'static str, why: impl std::fmt::Display) -> SipError {
    SipError::Config { key, why: why.to_string() }
}

fn read_chain(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, SipError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(key, format!("{path}: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(key, format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(key, format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, SipError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err("sip.tls_key", format!("{path}: {e}")))
}

impl Tls {
    fn new(o: &TlsOptions) -> Result<Tls, SipError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!("system trust store: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(ca) = &o.ca_file {
            for c in read_chain("sip.tls_ca_file", ca)? {
                roots.add(c).map_err(|e| tls_err("sip.tls_ca_file", format!("{ca}: {e}")))?;
            }
        }
        tracing::info!(system = added, ignored, extra = ?o.ca_file, "TLS trust anchors loaded");
        if roots.is_empty() {
            tracing::warn!(
                "no trusted CA at all: every TLS server will be refused (install ca-certificates or set sip.tls_ca_file)"
            );
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| tls_err("sip", e))?
            .with_root_certificates(roots);
        let (client, acceptor) = match &o.certificate {
            Some((cert, key)) => {
                let chain = read_chain("sip.tls_certificate", cert)?;
                let client = builder
                    .with_client_auth_cert(chain.clone(), read_key(key)?)
                    .map_err(|e| tls_err("sip.tls_key", e))?;
                let server = rustls::ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(VERSIONS)
                    .map_err(|e| tls_err("sip", e))?
                    .with_no_client_auth()
                    .with_single_cert(chain, read_key(key)?)
                    .map_err(|e| tls_err("sip.tls_key", e))?;
                (client, Some(TlsAcceptor::from(Arc::new(server))))
            }
            None => (builder.with_no_client_auth(), None),
        };
        Ok(Tls { connector: TlsConnector::from(Arc::new(client)), acceptor })
    }
}

struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    transport: TransportKind,
}

pub struct SipSockets {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
    streams: HashMap<SocketAddr, Conn>,
    /// Resolved address → the host name its certificate must carry (from the URI).
    names: HashMap<SocketAddr, String>,
    tls: Arc<Tls>,
    keepalive: Option<Duration>,
    input_tx: mpsc::Sender<NetInput>,
    conns: Arc<Mutex<ConnTable>>,
}

/// Refuses an inbound connection over a cap (the stream is dropped, so closed, at once) and says
/// so at most once per [`conns::LOG_EVERY`].
fn admit(table: &Arc<Mutex<ConnTable>>, peer: SocketAddr, transport: TransportKind) -> Option<Tracked> {
    let now = std::time::Instant::now();
    let mut t = conns::lock(table);
    match t.admit_inbound(peer.ip(), now) {
        Ok(slot) => {
            drop(t);
            Some(Tracked::new(table.clone(), slot))
        }
        Err(refusal) => {
            if let Some(unlogged) = t.log_refusal(now) {
                let c = t.counters();
                tracing::warn!(
                    %peer,
                    transport = transport.param(),
                    refused_per_address = c.refused_per_ip,
                    refused_total = c.refused_total,
                    not_logged_since_last = unlogged,
                    "SIP connection refused: {refusal}"
                );
            }
            None
        }
    }
}

impl SipSockets {
    pub async fn bind(
        listen: SocketAddr,
        tls: &TlsOptions,
        keepalive: Option<Duration>,
        limits: ConnLimits,
        input_tx: mpsc::Sender<NetInput>,
    ) -> Result<SipSockets, SipError> {
        let tls_cfg = Arc::new(Tls::new(tls)?);
        let conns = Arc::new(Mutex::new(ConnTable::new(limits)));
        let (udp, tcp, local) = bind_pair(listen).await?;
        let udp = Arc::new(udp);
        {
            let (udp, tx) = (udp.clone(), input_tx.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    match udp.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            let cmd = NetInput::Datagram { from, to: local, bytes: buf[..n].to_vec() };
                            if tx.send(cmd).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "SIP UDP receive"),
                    }
                }
            });
        }
        {
            let (tx, table) = (input_tx.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    match tcp.accept().await {
                        Ok((stream, peer)) => {
                            if let Some(slot) = admit(&table, peer, TransportKind::Tcp) {
                                let _ = stream.set_nodelay(true);
                                spawn_accepted(stream, peer, local, TransportKind::Tcp, tx.clone(), slot, limits);
                            }
                        }
                        Err(e) => {
                            // Out of fds (EMFILE) or the like: do not spin on it.
                            tracing::warn!(error = %e, "SIP TCP accept");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        let mut tls_local = None;
        match (&tls_cfg.acceptor, tls.listen) {
            (Some(acceptor), Some(at)) => {
                let l = TcpListener::bind(at)
                    .await
                    .map_err(|e| SipError::Listen { what: format!("TLS {at}"), why: e.to_string() })?;
                let here =
                    l.local_addr().map_err(|e| SipError::Listen { what: format!("TLS {at}"), why: e.to_string() })?;
                tls_local = Some(here);
                let (acceptor, tx, table) = (acceptor.clone(), input_tx.clone(), conns.clone());
                tokio::spawn(async move {
                    loop {
                        let (stream, peer) = match l.accept().await {
                            Ok(x) => x,
                            Err(e) => {
                                tracing::warn!(error = %e, "SIP TLS accept");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                        // Counted before the handshake: a handshake held open is a connection too.
                        let Some(slot) = admit(&table, peer, TransportKind::Tls) else { continue };
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => spawn_accepted(s, peer, here, TransportKind::Tls, tx, slot, limits),
                                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "incoming TLS handshake failed"),
                                Err(_) => tracing::warn!(%peer, "incoming TLS handshake timed out"),
                            }
                        });
                    }
                });
                tracing::info!(listen = %here, "SIP TLS listener up");
            }
            (None, Some(at)) => tracing::warn!(
                listen = %at,
                "no TLS listener: sip.tls_certificate and sip.tls_key are not set; incoming TLS only arrives over connections we opened (registrations)"
            ),
            (_, None) => tracing::info!(
                "no TLS listener (sip.tls_listen is empty): incoming TLS only arrives over connections we opened (registrations)"
            ),
        }
        Ok(SipSockets {
            udp,
            local,
            tls_local,
            streams: HashMap::new(),
            names: HashMap::new(),
            tls: tls_cfg,
            keepalive,
            input_tx,
            conns,
        })
    }

    /// Connections from `ip` (a registrar's server) are taken even when the total is reached.
    pub fn trust(&self, ip: IpAddr) {
        conns::lock(&self.conns).trust(ip);
    }

    /// What the connection bounds have refused and closed so far (the log says it in use).
    #[cfg(test)]
    pub fn conn_counters(&self) -> conns::ConnCounters {
        conns::lock(&self.conns).counters()
    }

    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// The TLS listener's port, if there is one.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_local.map(|a| a.port())
    }

    /// A TLS connection to `addr` must present a certificate for `host`.
    pub fn set_name(&mut self, addr: SocketAddr, host: &str) {
        if host.parse::<IpAddr>().is_err() {
            self.names.insert(addr, host.to_ascii_lowercase());
        }
    }

    pub fn stream_opened(&mut self, peer: SocketAddr, transport: TransportKind, tx: mpsc::UnboundedSender<Vec<u8>>) {
        self.streams.insert(peer, Conn { tx, transport });
    }

    /// The transport of the open connection to `peer`, if there is one.
    pub fn transport_of(&self, peer: SocketAddr) -> Option<TransportKind> {
        self.streams.get(&peer).map(|c| c.transport)
    }

    pub fn stream_closed(&mut self, peer: SocketAddr) {
        // Dropping the sender ends the writer, which closes the connection.
        self.streams.remove(&peer);
    }

    pub async fn send(&mut self, t: Transmit) {
        match t.transport {
            TransportKind::Udp => {
                if let Err(e) = self.udp.send_to(&t.bytes, t.dest).await {
                    tracing::warn!(dest = %t.dest, error = %e, "SIP UDP send failed");
                }
            }
            TransportKind::Tcp | TransportKind::Tls => self.send_stream(t).await,
        }
    }

    async fn send_stream(&mut self, t: Transmit) {
        if let Some(c) = self.streams.get(&t.dest) {
            if c.transport == TransportKind::Tcp && t.transport == TransportKind::Tls {
                // Never let bytes meant for TLS go over a clear connection.
                let error = TransportError::WouldBeClear { addr: t.dest };
                tracing::error!(%error, "not sent");
                let _ =
                    self.input_tx.send(NetInput::StreamFailed { peer: t.dest, transport: t.transport, error }).await;
                return;
            }
            if c.tx.send(t.bytes.clone()).is_ok() {
                return;
            }
            self.streams.remove(&t.dest);
        }
        // No connection yet: open one; the bytes go first.
        let (wtx, wrx) = mpsc::unbounded_channel();
        let _ = wtx.send(t.bytes);
        self.streams.insert(t.dest, Conn { tx: wtx.clone(), transport: t.transport });
        let (local, input_tx, dest, transport) = (self.local, self.input_tx.clone(), t.dest, t.transport);
        let keepalive = self.keepalive;
        let (slot, evicted) = conns::lock(&self.conns).admit_outbound(dest.ip(), std::time::Instant::now());
        if let Some(id) = evicted {
            tracing::warn!(%dest, evicted = id, "SIP connections at their limit: closed the inbound one idle longest for ours");
        }
        let slot = Tracked::new(self.conns.clone(), slot);
        let tls = (transport == TransportKind::Tls).then(|| {
            let host = self.names.get(&dest).cloned().unwrap_or_else(|| dest.ip().to_string());
            (self.tls.connector.clone(), host)
        });
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dest)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let error = TransportError::Connect { addr: dest, why: e.to_string() };
                    let _ = input_tx.send(NetInput::StreamFailed { peer: dest, transport, error }).await;
                    return;
                }
                Err(_) => {
                    let error = TransportError::ConnectTimeout { addr: dest, secs: CONNECT_TIMEOUT.as_secs() };
                    let _ = input_tx.send(NetInput::StreamFailed { peer: dest, transport, error }).await;
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some((connector, host)) = tls else {
                let _ = input_tx.send(NetInput::StreamUp { peer: dest, transport }).await;
                run_stream(tcp, dest, local, transport, input_tx, wtx, wrx, keepalive, slot, None).await;
                return;
            };
            let name = match ServerName::try_from(host.clone()) {
                Ok(n) => n,
                Err(e) => {
                    let error = TransportError::Handshake { host, addr: dest, why: e.to_string() };
                    let _ = input_tx.send(NetInput::StreamFailed { peer: dest, transport, error }).await;
                    return;
                }
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
                Ok(Ok(s)) => {
                    let (_, conn) = s.get_ref();
                    tracing::info!(
                        %dest, %host,
                        version = ?conn.protocol_version(),
                        suite = ?conn.negotiated_cipher_suite().map(|c| c.suite()),
                        ms = started.elapsed().as_millis() as u64,
                        "TLS connection up, certificate accepted"
                    );
                    let _ = input_tx.send(NetInput::StreamUp { peer: dest, transport }).await;
                    run_stream(s, dest, local, transport, input_tx, wtx, wrx, keepalive, slot, None).await;
                }
                Ok(Err(e)) => {
                    let error = TransportError::from_handshake(&e, &host, dest);
                    let _ = input_tx.send(NetInput::StreamFailed { peer: dest, transport, error }).await;
                }
                Err(_) => {
                    let error = TransportError::Handshake {
                        host,
                        addr: dest,
                        why: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    };
                    let _ = input_tx.send(NetInput::StreamFailed { peer: dest, transport, error }).await;
                }
            }
        });
    }
}

/// Binds UDP and TCP on the same port. With port 0 the OS picks a UDP port whose TCP twin may
/// be taken (the two port spaces are separate): try another pick rather than fail the start.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), SipError> {
    const PICKS: usize = 32;
    for pick in 1..=PICKS {
        let udp = UdpSocket::bind(listen).await.map_err(|e| SipError::Listen {
            what: format!("UDP {listen}"),
            why: format!("{e} (is another SIP program using the port? set sip.listen)"),
        })?;
        let local =
            udp.local_addr().map_err(|e| SipError::Listen { what: format!("UDP {listen}"), why: e.to_string() })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && pick < PICKS => {
                tracing::debug!(port = local.port(), "TCP twin of the picked UDP port is taken; picking again");
            }
            Err(e) => return Err(SipError::Listen { what: format!("TCP {local}"), why: e.to_string() }),
        }
    }
    unreachable!("the last pick returns")
}

fn spawn_accepted<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    transport: TransportKind,
    input_tx: mpsc::Sender<NetInput>,
    slot: Tracked,
    limits: ConnLimits,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (wtx, wrx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if input_tx.send(NetInput::StreamOpened { peer, transport, tx: wtx.clone() }).await.is_ok() {
            // Connections that came to us are the peer's to keep alive.
            let first = Some(limits.first_message);
            run_stream(stream, peer, local, transport, input_tx, wtx, wrx, None, slot, first).await;
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn run_stream<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    transport: TransportKind,
    input_tx: mpsc::Sender<NetInput>,
    wtx: mpsc::UnboundedSender<Vec<u8>>,
    mut wrx: mpsc::UnboundedReceiver<Vec<u8>>,
    keepalive: Option<Duration>,
    slot: Tracked,
    first_message: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let mut writer = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let period = keepalive.unwrap_or(Duration::from_secs(3600 * 24));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut pong_due: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut failed = None;
    // Inbound: until one whole message arrived, a framer of our own watches for it, and the
    // connection is closed at the deadline (slowloris). The core frames for real.
    let mut first = first_message.map(|d| {
        (huis_sip::framing::StreamFramer::new(huis_sip::framing::Limits::default()), tokio::time::Instant::now() + d)
    });
    // The writer holds the receiving end; drop our sender only when we leave.
    let wtx = Some(wtx);
    loop {
        let pong_timer = async {
            match pong_due {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let first_due = async {
            match &first {
                Some((_, d)) => tokio::time::sleep_until(*d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Anything from the peer proves the flow alive, a pong or a message.
                    pong_due = None;
                    slot.touch();
                    let bytes = buf[..n].to_vec();
                    if let Some((framer, _)) = &mut first
                        && (framer.push(&bytes).iter().any(|m| m.is_ok()) || framer.is_broken())
                    {
                        // A whole message (or garbage, which the core closes the stream for).
                        first = None;
                    }
                    if input_tx.send(NetInput::Stream { from: peer, to: local, transport, bytes }).await.is_err() {
                        break;
                    }
                }
            },
            _ = ping.tick(), if keepalive.is_some() => {
                if pong_due.is_none() {
                    if let Some(tx) = &wtx {
                        let _ = tx.send(b"\r\n\r\n".to_vec());
                    }
                    pong_due = Some(tokio::time::Instant::now() + PONG_TIMEOUT);
                }
            }
            _ = pong_timer => {
                tracing::warn!(%peer, "no pong within {} s: the flow is dead", PONG_TIMEOUT.as_secs());
                failed = Some(TransportError::KeepaliveTimeout { addr: peer });
                break;
            }
            _ = first_due => {
                slot.slow();
                let c = slot.counters();
                tracing::warn!(
                    %peer,
                    closed_slow = c.slow,
                    "SIP connection closed: no whole message within {} s",
                    first_message.unwrap_or_default().as_secs()
                );
                break;
            }
            _ = slot.close.notified() => {
                tracing::info!(%peer, "SIP connection closed to make room for one of ours");
                break;
            }
            _ = &mut writer => break,
        }
    }
    writer.abort();
    drop(wtx);
    let ev = match failed {
        Some(error) => NetInput::StreamFailed { peer, transport, error },
        None => NetInput::StreamClosed { from: peer },
    };
    let _ = input_tx.send(ev).await;
}

/// The host and port of a `sip:`/`sips:` URI (name or IP, `None` port when not given), and
/// the transport it asks for (`sips:` or `;transport=`). Bounded: at most 1 KiB is looked at.
pub fn uri_host(uri: &str) -> Option<(String, Option<u16>, Option<TransportKind>)> {
    let uri = uri.get(..uri.len().min(1024))?.trim();
    let uri = uri.strip_prefix('<').map(|u| u.split('>').next().unwrap_or(u)).unwrap_or(uri);
    huis_sip::msg::uri_host(uri)
}

/// The first IPv4 address of an interface that is up and not loopback.
pub fn first_interface_address() -> Option<IpAddr> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return None;
        }
        let mut found = None;
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            let lo = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
            if up && !lo && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                break;
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With port 0, the UDP port the OS picks may have its TCP twin taken by another program;
    /// the start must pick again rather than fail (seen as a false "SIP cannot start" on a busy
    /// machine). Holding 800 of the ~28,000 ephemeral TCP ports makes such a clash happen in a
    /// few percent of the picks, so 200 starts would almost surely meet one.
    #[tokio::test]
    async fn port_zero_finds_a_udp_port_whose_tcp_twin_is_free() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..800 {
            held.push(std::net::TcpListener::bind(lo).unwrap());
        }
        for i in 0..200 {
            let (udp, tcp, local) = bind_pair(lo).await.unwrap_or_else(|e| panic!("start {i}: {e}"));
            assert_eq!(udp.local_addr().unwrap(), local);
            assert_eq!(tcp.local_addr().unwrap(), local);
        }
        // A port given explicitly is never changed: a clash there is the user's to see.
        let taken = held[0].local_addr().unwrap();
        let err = bind_pair(taken).await.map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(&format!("TCP {taken}")), "{err}");
    }

    /// The caps on real sockets: connections over the per-address cap are closed at once, one
    /// that sends half a message is closed at the deadline, one that sent a whole message stays.
    #[tokio::test]
    async fn connections_over_the_caps_and_slow_ones_are_closed() {
        use tokio::io::AsyncReadExt as _;
        let (tx, mut rx) = mpsc::channel(64);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let limits = ConnLimits { per_ip: 3, total: 4, first_message: Duration::from_millis(400) };
        let sockets =
            SipSockets::bind("127.0.0.1:0".parse().unwrap(), &TlsOptions::default(), None, limits, tx).await.unwrap();
        let at: SocketAddr = format!("127.0.0.1:{}", sockets.port()).parse().unwrap();
        let connect_from = |ip: [u8; 4]| async move {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(SocketAddr::from((ip, 0))).unwrap();
            s.connect(at).await.unwrap()
        };
        /// Closed by huisd within `within`: a read ends (0 bytes or reset).
        async fn closed(s: &mut TcpStream, within: Duration) -> bool {
            let mut b = [0u8; 64];
            matches!(tokio::time::timeout(within, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
        }
        let mut good = connect_from([127, 0, 0, 1]).await;
        good.write_all(b"OPTIONS sip:r@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:r@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let mut slow = connect_from([127, 0, 0, 1]).await;
        slow.write_all(b"OPTIONS sip:r@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP").await.unwrap();
        let mut third = connect_from([127, 0, 0, 1]).await;
        let mut over = connect_from([127, 0, 0, 1]).await;
        assert!(closed(&mut over, Duration::from_millis(300)).await, "the 4th connection from one address stays open");
        assert!(!closed(&mut third, Duration::from_millis(50)).await, "the 3rd connection was closed");
        // Another address still gets in, up to the total.
        let mut other = connect_from([127, 0, 0, 2]).await;
        let mut past_total = connect_from([127, 0, 0, 3]).await;
        assert!(!closed(&mut other, Duration::from_millis(50)).await, "a connection from another address was closed");
        assert!(closed(&mut past_total, Duration::from_millis(300)).await, "a 5th connection in all stays open");
        // The deadline for a whole message: the slow one, and the silent ones, go.
        assert!(closed(&mut slow, Duration::from_millis(1000)).await, "half a message kept the connection open");
        assert!(closed(&mut third, Duration::from_millis(500)).await, "a silent connection stays open");
        assert!(!closed(&mut good, Duration::from_millis(300)).await, "a connection that sent a message was closed");
        let c = sockets.conn_counters();
        assert_eq!((c.refused_per_ip, c.refused_total), (1, 1), "{c:?}");
        assert!(c.slow >= 2, "{c:?}");
    }

    fn refusal(c: rustls::CertificateError) -> String {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(c));
        TransportError::from_handshake(&e, "pbx.example.org", "192.0.2.5:5061".parse().unwrap()).to_string()
    }

    #[test]
    fn certificate_refusals_read_like_sentences() {
        use rustls::CertificateError as C;
        assert_eq!(refusal(C::UnknownIssuer), "certificate for pbx.example.org is signed by an unknown authority");
        assert_eq!(refusal(C::Expired), "certificate for pbx.example.org has expired");
        let mismatch = C::NotValidForNameContext {
            expected: ServerName::try_from("pbx.example.org").unwrap(),
            presented: vec!["DnsName(\"other.example\")".into(), "IpAddress(10.0.0.1)".into()],
        };
        assert_eq!(
            refusal(mismatch),
            "certificate for other.example, 10.0.0.1 does not name host pbx.example.org (host name mismatch)"
        );
        let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let t = TransportError::from_handshake(&e, "pbx.example.org", "192.0.2.5:5061".parse().unwrap());
        assert!(t.to_string().starts_with("TLS handshake with pbx.example.org (192.0.2.5:5061) failed"));
    }

    #[test]
    fn uri_hosts() {
        assert_eq!(uri_host("sips:pbx.Example.org"), Some(("pbx.example.org".into(), None, Some(TransportKind::Tls))));
        assert_eq!(
            uri_host("sip:room@pbx.example.org:5071;transport=tls"),
            Some(("pbx.example.org".into(), Some(5071), Some(TransportKind::Tls)))
        );
        assert_eq!(uri_host("<sip:a@[2001:db8::1]:5062>"), Some(("2001:db8::1".into(), Some(5062), None)));
        assert_eq!(uri_host("sip:a@10.0.0.1"), Some(("10.0.0.1".into(), None, None)));
        for bad in ["", "http://x", "sip:", "sip:a@b c", "sip:a@h:99999", "sip:a@[::1"] {
            assert_eq!(uri_host(bad), None, "{bad}");
        }
        assert_eq!(uri_host(&"sip:a@".repeat(10_000)), None);
    }
}
