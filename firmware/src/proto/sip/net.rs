//! SIP sockets: one UDP socket and a TCP listener on the same port, plus TCP
//! connections opened on demand. Reader tasks hand received bytes to the SIP
//! backend's task as [`NetInput`]; nothing here parses SIP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use huis_sip::{Destination, Transmit, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::SipError;

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
        bytes: Vec<u8>,
    },
    /// A peer connected; `tx` writes to it.
    StreamOpened {
        peer: SocketAddr,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    },
    StreamClosed {
        from: SocketAddr,
    },
}

/// Largest SIP datagram we accept (the core's own bound is lower).
const MAX_DATAGRAM: usize = 65_535;

pub struct SipSockets {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    streams: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    input_tx: mpsc::Sender<NetInput>,
}

impl SipSockets {
    pub async fn bind(listen: SocketAddr, input_tx: mpsc::Sender<NetInput>) -> Result<SipSockets, SipError> {
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
            let tx = input_tx.clone();
            tokio::spawn(async move {
                loop {
                    match tcp.accept().await {
                        Ok((stream, peer)) => spawn_stream(stream, peer, local, tx.clone()),
                        Err(e) => tracing::debug!(error = %e, "SIP TCP accept"),
                    }
                }
            });
        }
        Ok(SipSockets { udp, local, streams: HashMap::new(), input_tx })
    }

    pub fn port(&self) -> u16 {
        self.local.port()
    }

    pub fn stream_opened(&mut self, peer: SocketAddr, tx: mpsc::UnboundedSender<Vec<u8>>) {
        self.streams.insert(peer, tx);
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
            TransportKind::Tcp => {
                if let Some(tx) = self.streams.get(&t.dest) {
                    if tx.send(t.bytes.clone()).is_ok() {
                        return;
                    }
                    self.streams.remove(&t.dest);
                }
                // No connection yet: open one; the bytes go first.
                let (wtx, wrx) = mpsc::unbounded_channel();
                let _ = wtx.send(t.bytes);
                self.streams.insert(t.dest, wtx.clone());
                let (local, input_tx, dest) = (self.local, self.input_tx.clone(), t.dest);
                tokio::spawn(async move {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(dest)).await {
                        Ok(Ok(stream)) => run_stream(stream, dest, local, input_tx, wrx).await,
                        Ok(Err(e)) => {
                            tracing::warn!(%dest, error = %e, "SIP TCP connect failed");
                            let _ = input_tx.send(NetInput::StreamClosed { from: dest }).await;
                        }
                        Err(_) => {
                            tracing::warn!(%dest, "SIP TCP connect timed out");
                            let _ = input_tx.send(NetInput::StreamClosed { from: dest }).await;
                        }
                    }
                });
            }
        }
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

fn spawn_stream(stream: TcpStream, peer: SocketAddr, local: SocketAddr, input_tx: mpsc::Sender<NetInput>) {
    let (wtx, wrx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if input_tx.send(NetInput::StreamOpened { peer, tx: wtx }).await.is_ok() {
            run_stream(stream, peer, local, input_tx, wrx).await;
        }
    });
}

async fn run_stream(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    input_tx: mpsc::Sender<NetInput>,
    mut wrx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if w.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input_tx.send(NetInput::Stream { from: peer, to: local, bytes: buf[..n].to_vec() }).await.is_err() {
                        break;
                    }
                }
            },
        }
        if writer.is_finished() {
            break;
        }
    }
    writer.abort();
    let _ = input_tx.send(NetInput::StreamClosed { from: peer }).await;
}

/// Resolves `host` (name or IP) to an address, port `port` unless `host` has one.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SipError> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let q = if host.contains(':') { host.to_owned() } else { format!("{host}:{port}") };
    tokio::net::lookup_host(&q)
        .await
        .map_err(|e| SipError::Resolve { host: host.to_owned(), why: e.to_string() })?
        .next()
        .ok_or_else(|| SipError::Resolve { host: host.to_owned(), why: "it has no address".into() })
}

/// Where to send an INVITE for `target` when the UA has no route itself (a
/// host name rather than an IP literal): its A/AAAA records, port 5060 unless given.
pub async fn resolve_target(target: &str) -> Result<Destination, SipError> {
    let uri = target.split(';').next().unwrap_or(target);
    let rest = uri.trim_start_matches("sips:").trim_start_matches("sip:");
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    let transport =
        if target.to_ascii_lowercase().contains("transport=tcp") { TransportKind::Tcp } else { TransportKind::Udp };
    let addr = resolve(hostport, 5060).await?;
    Ok(Destination { addr, transport })
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
}
