//! The BFCP shell of a call: its socket (UDP, or a TCP listener when the far end offered
//! `TCP/BFCP` and connects to us), the sans-IO `huis_bfcp` core (a [`Client`] when the far end
//! runs the floor, a [`Server`] when we do), tokio timers, and the floor as a watch for the call.
//!
//! The call asks for the floor ([`FloorCommand::Request`]: a laptop plugged in, `share start`)
//! and gives it back ([`FloorCommand::Release`]: unplugged, `share stop`); it reads [`Floor`]:
//! ours (send the slides), theirs (stop sending, show the far end's), free. Datagrams and
//! connections from any address but the one the SDP negotiated are dropped (the core answers
//! undecodable requests with an Error, which must not reflect towards spoofed sources).
//! Dropping the link (or closing its command channel) says Goodbye as a client and ends the task.
//!
//! Over TCP we are always the passive side: huis offers `UDP/BFCP` only, and answers a
//! `TCP/BFCP` offer with `a=setup:passive` (RFC 8856 §8), so the offerer connects. One
//! connection is kept; messages are cut out of the stream by the core's bounded
//! [`StreamFramer`], and a stream that announces an oversized message is closed.

use std::net::SocketAddr;
use std::time::Instant;

use huis_bfcp::framer::StreamFramer;
use huis_bfcp::sdp::Role;
use huis_bfcp::{Client, ClientConfig, Event, Server, ServerConfig, Timing, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

/// Who holds the presentation floor, as this side knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// Nobody presents.
    Free,
    /// We asked and wait for the answer.
    Requesting,
    /// We hold it: we send the slides.
    Ours,
    /// The far end holds it (its user id when known): we show theirs.
    Theirs(Option<u16>),
}

/// What the call asks of its floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorCommand {
    Request,
    Release,
}

/// The agreed BFCP stream (from `huis_sip::sdp_content::NegotiatedBfcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfcpParams {
    pub remote: SocketAddr,
    /// [`Role::Server`]: we run the floor; otherwise we are its client.
    pub role: Role,
    pub conf_id: u32,
    pub user_id: u16,
    pub floor_id: u16,
}

/// The running shell of one call.
pub struct BfcpLink {
    pub commands: mpsc::Sender<FloorCommand>,
    pub floor: watch::Receiver<Floor>,
}

enum Core {
    Client(Client),
    Server(Server),
}

impl Core {
    fn transmits(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Core::Client(c) => {
                while let Some(b) = c.poll_transmit() {
                    out.push(b);
                }
            }
            Core::Server(s) => {
                // One remote participant: every message goes to the negotiated address.
                while let Some(t) = s.poll_transmit() {
                    out.push(t.bytes);
                }
            }
        }
        out
    }

    fn event(&mut self) -> Option<Event> {
        match self {
            Core::Client(c) => c.poll_event(),
            Core::Server(s) => s.poll_event(),
        }
    }

    fn timeout(&self) -> Option<Instant> {
        match self {
            Core::Client(c) => c.poll_timeout(),
            Core::Server(s) => s.poll_timeout(),
        }
    }
}

/// Where the shell talks: the UDP socket, or the TCP listener, bound to the port our SDP names.
pub enum BfcpSocket {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

/// The socket in use, and for TCP the accepted connection and its framer.
struct Io {
    socket: BfcpSocket,
    stream: Option<(TcpStream, StreamFramer)>,
    /// Messages made before the far end connected (TCP).
    pending: Vec<Vec<u8>>,
}

/// What came in.
enum Input {
    Messages(Vec<Vec<u8>>),
    Nothing,
}

/// The most messages kept for a TCP peer that has not connected yet.
const MAX_PENDING: usize = 32;

impl Io {
    fn transport(&self) -> Transport {
        match self.socket {
            BfcpSocket::Udp(_) => Transport::Udp,
            BfcpSocket::Tcp(_) => Transport::Tcp,
        }
    }

    async fn send(&mut self, remote: SocketAddr, b: Vec<u8>) {
        match (&self.socket, &mut self.stream) {
            (BfcpSocket::Udp(s), _) => {
                if let Err(e) = s.send_to(&b, remote).await {
                    tracing::debug!("BFCP: cannot send to {remote}: {e}");
                }
            }
            (BfcpSocket::Tcp(_), Some((stream, _))) => {
                if let Err(e) = stream.write_all(&b).await {
                    tracing::debug!("BFCP: cannot send to {remote} over TCP: {e}");
                    self.stream = None;
                }
            }
            (BfcpSocket::Tcp(_), None) => {
                if self.pending.len() < MAX_PENDING {
                    self.pending.push(b);
                }
            }
        }
    }

    /// Waits for the next input from `remote`: a datagram, a connection, bytes on it.
    async fn receive(&mut self, remote: SocketAddr, buf: &mut [u8]) -> Input {
        match (&self.socket, &mut self.stream) {
            (BfcpSocket::Udp(s), _) => match s.recv_from(buf).await {
                Ok((n, from)) if from.ip() == remote.ip() => Input::Messages(vec![buf[..n].to_vec()]),
                Ok((_, from)) => {
                    tracing::debug!("BFCP: dropped a datagram from {from}, not the negotiated peer");
                    Input::Nothing
                }
                Err(e) => {
                    tracing::debug!("BFCP: receive: {e}");
                    Input::Nothing
                }
            },
            (BfcpSocket::Tcp(l), None) => match l.accept().await {
                Ok((stream, from)) if from.ip() == remote.ip() => {
                    tracing::info!(%from, "BFCP: the far end connected over TCP");
                    let _ = stream.set_nodelay(true);
                    self.stream = Some((stream, StreamFramer::new()));
                    for b in std::mem::take(&mut self.pending) {
                        Box::pin(self.send(remote, b)).await;
                    }
                    Input::Nothing
                }
                Ok((_, from)) => {
                    tracing::debug!("BFCP: refused a TCP connection from {from}, not the negotiated peer");
                    Input::Nothing
                }
                Err(e) => {
                    tracing::debug!("BFCP: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Input::Nothing
                }
            },
            (BfcpSocket::Tcp(_), Some((stream, framer))) => match stream.read(buf).await {
                Ok(0) | Err(_) => {
                    tracing::info!("BFCP: the far end closed its TCP connection");
                    self.stream = None;
                    Input::Nothing
                }
                Ok(n) => {
                    framer.push(&buf[..n]);
                    let mut out = Vec::new();
                    while let Some(m) = framer.next_message() {
                        match m {
                            Ok(m) => out.push(m),
                            Err(e) => {
                                tracing::warn!("BFCP: closing the TCP connection: {e}");
                                self.stream = None;
                                break;
                            }
                        }
                    }
                    Input::Messages(out)
                }
            },
        }
    }
}

/// Starts the shell on `socket` (bound to the port our SDP names).
pub fn start(socket: BfcpSocket, p: BfcpParams) -> BfcpLink {
    let (tx, rx) = mpsc::channel(8);
    let (ftx, frx) = watch::channel(Floor::Free);
    let io = Io { socket, stream: None, pending: Vec::new() };
    tokio::spawn(run(io, p, rx, ftx));
    BfcpLink { commands: tx, floor: frx }
}

/// The floor after `ev`, from `now`.
fn next_floor(now: Floor, ev: &Event) -> Floor {
    match ev {
        Event::FloorGranted { .. } => Floor::Ours,
        Event::FloorPending { .. } | Event::FloorAccepted { .. } => Floor::Requesting,
        Event::FloorReleased { .. }
        | Event::FloorCancelled { .. }
        | Event::FloorDenied { .. }
        | Event::FloorRevoked { .. } => Floor::Free,
        Event::OtherHoldsFloor { user_id, .. } => Floor::Theirs(*user_id),
        Event::FloorFree { .. } if now != Floor::Ours => Floor::Free,
        Event::TransactionFailed { .. } if now == Floor::Requesting => Floor::Free,
        Event::Goodbye { .. } if matches!(now, Floor::Theirs(_)) => Floor::Free,
        _ => now,
    }
}

async fn run(mut io: Io, p: BfcpParams, mut commands: mpsc::Receiver<FloorCommand>, floor: watch::Sender<Floor>) {
    let now = Instant::now();
    let mut core = match p.role {
        Role::Server => Core::Server(Server::new(ServerConfig {
            transport: io.transport(),
            conference_id: p.conf_id,
            floor_id: p.floor_id,
            user_id: p.user_id,
            timing: Timing::default(),
        })),
        Role::Client | Role::Both => {
            let mut c = Client::new(ClientConfig {
                transport: io.transport(),
                conference_id: p.conf_id,
                user_id: p.user_id,
                timing: Timing::default(),
            });
            c.hello(now);
            // Subscribe: FloorStatus tells us when the far end takes the floor.
            c.query_floor(now, p.floor_id);
            Core::Client(c)
        }
    };
    let mut buf = vec![0u8; 65536];
    loop {
        for b in core.transmits() {
            io.send(p.remote, b).await;
        }
        while let Some(ev) = core.event() {
            tracing::info!(?ev, "BFCP");
            let f = next_floor(*floor.borrow(), &ev);
            floor.send_if_modified(|v| std::mem::replace(v, f) != f);
        }
        let deadline = core.timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            cmd = commands.recv() => {
                let now = Instant::now();
                match (cmd, &mut core) {
                    (None, Core::Client(c)) => {
                        c.goodbye(now);
                        for b in core.transmits() {
                            io.send(p.remote, b).await;
                        }
                        break;
                    }
                    (None, Core::Server(_)) => break,
                    (Some(FloorCommand::Request), Core::Client(c)) => {
                        if c.request_floor(now, p.floor_id).is_ok() {
                            floor.send_if_modified(|v| std::mem::replace(v, Floor::Requesting) != Floor::Requesting);
                        }
                    }
                    (Some(FloorCommand::Request), Core::Server(s)) => s.request_floor(now),
                    (Some(FloorCommand::Release), Core::Client(c)) => {
                        let _ = c.release(now);
                    }
                    (Some(FloorCommand::Release), Core::Server(s)) => s.release(now),
                }
            }
            input = io.receive(p.remote, &mut buf) => {
                if let Input::Messages(ms) = input {
                    let now = Instant::now();
                    for m in ms {
                        let res = match &mut core {
                            Core::Client(c) => c.handle_input(now, &m),
                            Core::Server(s) => s.handle_input(now, &m),
                        };
                        if let Err(e) = res {
                            tracing::debug!("BFCP from {}: {e}", p.remote);
                        }
                    }
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                match &mut core {
                    Core::Client(c) => c.handle_timeout(now),
                    Core::Server(s) => s.handle_timeout(now),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn wait(rx: &mut watch::Receiver<Floor>, want: Floor) -> Duration {
        let t = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|f| *f == want)).await.map(drop);
        assert!(r.is_ok(), "floor never became {want:?} (is {:?})", *rx.borrow());
        t.elapsed()
    }

    /// Two rooms over loopback: A offered c-s and runs the floor, B is its client.
    #[tokio::test]
    async fn two_rooms_pass_the_floor_and_release_it_within_a_second() {
        let sa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sb = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (aa, ab) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
        let mut a = start(
            BfcpSocket::Udp(sa),
            BfcpParams { remote: ab, role: Role::Server, conf_id: 7, user_id: 1, floor_id: 1 },
        );
        let mut b = start(
            BfcpSocket::Udp(sb),
            BfcpParams { remote: aa, role: Role::Client, conf_id: 7, user_id: 2, floor_id: 1 },
        );

        // A shares: granted at once by its own server; B hears of it (its FloorQuery).
        a.commands.send(FloorCommand::Request).await.unwrap();
        wait(&mut a.floor, Floor::Ours).await;
        wait(&mut b.floor, Floor::Theirs(Some(1))).await;

        // B shares: A is revoked and yields.
        b.commands.send(FloorCommand::Request).await.unwrap();
        wait(&mut b.floor, Floor::Ours).await;
        wait(&mut a.floor, Floor::Theirs(Some(2))).await;

        // B stops (its laptop unplugged): the floor is free on both sides within a second.
        b.commands.send(FloorCommand::Release).await.unwrap();
        let t = wait(&mut b.floor, Floor::Free).await;
        let u = wait(&mut a.floor, Floor::Free).await;
        assert!(t + u < Duration::from_secs(1), "release took {:?}", t + u);

        // A shares again and releases: B sees it free.
        a.commands.send(FloorCommand::Request).await.unwrap();
        wait(&mut b.floor, Floor::Theirs(Some(1))).await;
        a.commands.send(FloorCommand::Release).await.unwrap();
        wait(&mut a.floor, Floor::Free).await;
        let t = wait(&mut b.floor, Floor::Free).await;
        assert!(t < Duration::from_secs(1), "B saw the release after {t:?}");
    }

    /// The far end offered `TCP/BFCP` and runs no floor: we answered passive and run it. Its
    /// client connects, is granted, and releases; we see it hold the floor and let it go.
    #[tokio::test]
    async fn over_tcp_the_far_end_connects_and_its_floor_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = listener.local_addr().unwrap();
        let mut link = start(
            BfcpSocket::Tcp(listener),
            BfcpParams {
                remote: "127.0.0.1:9".parse().unwrap(),
                role: Role::Server,
                conf_id: 5,
                user_id: 3,
                floor_id: 1,
            },
        );
        let mut stream = TcpStream::connect(ours).await.unwrap();
        let mut client = Client::new(ClientConfig {
            transport: Transport::Tcp,
            conference_id: 5,
            user_id: 2,
            timing: Timing::default(),
        });
        let mut framer = StreamFramer::new();
        // Runs the client over the stream until an event satisfies `want`.
        async fn pump(
            client: &mut Client,
            stream: &mut TcpStream,
            framer: &mut StreamFramer,
            want: impl Fn(&Event) -> bool,
        ) -> Event {
            let mut buf = [0u8; 2048];
            loop {
                while let Some(b) = client.poll_transmit() {
                    stream.write_all(&b).await.unwrap();
                }
                while let Some(e) = client.poll_event() {
                    if want(&e) {
                        return e;
                    }
                }
                let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
                    .await
                    .expect("the shell answered within 3 s")
                    .unwrap();
                assert!(n > 0, "the shell closed the connection");
                framer.push(&buf[..n]);
                while let Some(m) = framer.next_message() {
                    client.handle_input(Instant::now(), &m.unwrap()).unwrap();
                }
            }
        }
        client.hello(Instant::now());
        pump(&mut client, &mut stream, &mut framer, |e| *e == Event::Connected).await;
        client.request_floor(Instant::now(), 1).unwrap();
        pump(&mut client, &mut stream, &mut framer, |e| *e == Event::FloorGranted { floor_id: 1 }).await;
        wait(&mut link.floor, Floor::Theirs(Some(2))).await;
        client.release(Instant::now()).unwrap();
        pump(&mut client, &mut stream, &mut framer, |e| *e == Event::FloorReleased { floor_id: 1 }).await;
        wait(&mut link.floor, Floor::Free).await;
    }

    #[tokio::test]
    async fn datagrams_from_elsewhere_are_dropped() {
        let sa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let aa = sa.local_addr().unwrap();
        // The negotiated peer is on another address than the sender below.
        let peer: SocketAddr = "127.0.0.2:9".parse().unwrap();
        let mut a = start(
            BfcpSocket::Udp(sa),
            BfcpParams { remote: peer, role: Role::Server, conf_id: 7, user_id: 1, floor_id: 1 },
        );
        let x = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // A FloorRequest from user 2 (version 2, conference 7, transaction 1, FLOOR-ID 1).
        let req = [0x40, 1, 0, 3, 0, 0, 0, 7, 0, 1, 0, 2, 0x05, 4, 0, 1, 0, 0, 0, 0];
        x.send_to(&req[..16], aa).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*a.floor.borrow_and_update(), Floor::Free);
    }
}
