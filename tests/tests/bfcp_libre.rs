//! huis's BFCP core against an independent implementation: libre's BFCP (Debian `libre-dev`),
//! driven by the small C program `tests/src/peers/bfcp_peer.c`, over UDP on 127.0.0.1. (The
//! whole room against the same peer, in a call: `visio.rs`.)
//!
//! - `huis_client_against_libre_server`: huis is the floor participant (its usual role, a
//!   `Client` on a std UDP socket in this process); the peer is the floor control server. huis
//!   asks for the floor and gets it; the peer's own user takes the floor over (the peer revokes
//!   huis) and huis yields; huis asks again, gets it, and releases it.
//! - `libre_client_against_huis_server`: huis is the floor control server (a `Server`, as when
//!   the far end answered `a=floorctrl:c-only`); the peer is a participant. The peer asks for the
//!   floor and gets it; huis takes it (the peer is revoked); the peer asks again and huis yields;
//!   the peer releases.
//!
//! The peer is compiled here with the system's `cc`; without libre's headers the tests say so
//! and pass (`scripts/deps.sh test` installs `libre-dev`).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use huis_bfcp::{Client, ClientConfig, Event, Server, ServerConfig, Timing, Transport};
use huis_tests::peers::bfcp_peer::{BfcpPeer as Peer, peer_binary};

const CONF: u32 = 7;
const FLOOR: u16 = 1;
const WAIT: Duration = Duration::from_secs(10);

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// The shell of a `Client`: its socket and clock, as the firmware's would be.
struct ClientShell {
    sock: UdpSocket,
    to: SocketAddr,
    client: Client,
    events: Vec<Event>,
}

impl ClientShell {
    /// Runs the client until an event satisfies `want`, and returns it.
    fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let end = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        loop {
            while let Some(b) = self.client.poll_transmit() {
                self.sock.send_to(&b, self.to).unwrap();
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if let Some(i) = self.events.iter().position(&want) {
                return self.events.remove(i);
            }
            assert!(Instant::now() < end, "no {what}; events: {:?}", self.events);
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                huis_tests::keep_seed("bfcp", "libre-server", &buf[..n]);
                self.client.handle_input(Instant::now(), &buf[..n]).expect("libre's message decodes");
            }
            if self.client.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                self.client.handle_timeout(Instant::now());
            }
        }
    }
}

#[test]
fn huis_client_against_libre_server() {
    let Some(bin) = peer_binary() else { return };
    // The peer: floor control server of conference 7, floor 1, its own user is 100.
    let (mut peer, port) = Peer::start(&bin, None, &["server", "127.0.0.1", "0", "7", "1", "100"]);
    let mut huis = ClientShell {
        sock: socket(),
        to: SocketAddr::from(([127, 0, 0, 1], port)),
        client: Client::new(ClientConfig {
            transport: Transport::Udp,
            conference_id: CONF,
            user_id: 2,
            timing: Timing::default(),
        }),
        events: Vec::new(),
    };
    let now = Instant::now();
    huis.client.hello(now);
    huis.until("HelloAck", |e| *e == Event::Connected);

    // huis requests the floor and gets it.
    huis.client.request_floor(now, FLOOR).unwrap();
    huis.until("grant", |e| *e == Event::FloorGranted { floor_id: FLOOR });
    peer.wait_line("GRANTED floor=1 user=2");

    // The peer takes the floor over: huis is revoked and yields (acknowledging the notice).
    peer.send("take");
    peer.wait_line("REVOKED user=2 err=0");
    huis.until("revocation", |e| *e == Event::FloorRevoked { floor_id: FLOOR });
    assert!(huis.client.floor_request_id().is_none());

    // huis asks again (last requester wins) and then releases.
    huis.client.request_floor(Instant::now(), FLOOR).unwrap();
    huis.until("second grant", |e| *e == Event::FloorGranted { floor_id: FLOOR });
    peer.wait_line("REVOKED user=100");
    huis.client.release(Instant::now()).unwrap();
    huis.until("release", |e| *e == Event::FloorReleased { floor_id: FLOOR });
    peer.wait_line("RELEASED user=2");

    assert!(!peer.has_line("FAILED"), "{:?}", peer.seen);
    assert!(huis.events.iter().all(|e| !matches!(e, Event::TransactionFailed { .. })), "{:?}", huis.events);
}

#[test]
fn libre_client_against_huis_server() {
    let Some(bin) = peer_binary() else { return };
    // huis: floor control server of conference 7, floor 1; huis's own user is 1.
    let sock = socket();
    let huis_port = sock.local_addr().unwrap().port().to_string();
    let mut server = Server::new(ServerConfig {
        transport: Transport::Udp,
        conference_id: CONF,
        floor_id: FLOOR,
        user_id: 1,
        timing: Timing::default(),
    });
    // The peer: participant with user id 3.
    let (mut peer, _) = Peer::start(&bin, None, &["client", "127.0.0.1", "0", "127.0.0.1", &huis_port, "7", "3", "1"]);
    let mut far: Option<SocketAddr> = None;
    let mut events = Vec::new();
    let mut run = |server: &mut Server, what: &str, want: &dyn Fn(&Event) -> bool| {
        let end = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        loop {
            if let Some(to) = far {
                while let Some(t) = server.poll_transmit() {
                    assert_eq!(t.user_id, 3);
                    sock.send_to(&t.bytes, to).unwrap();
                }
            }
            while let Some(e) = server.poll_event() {
                events.push(e);
            }
            if let Some(i) = events.iter().position(want) {
                return events.remove(i);
            }
            assert!(Instant::now() < end, "no {what}; events: {events:?}");
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                huis_tests::keep_seed("bfcp", "libre-client", &buf[..n]);
                far = Some(from);
                server.handle_input(Instant::now(), &buf[..n]).expect("libre's message decodes");
            }
            if server.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                server.handle_timeout(Instant::now());
            }
        }
    };

    peer.send("hello");
    peer.send("request");
    run(&mut server, "the peer's grant", &|e| *e == Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(3) });
    peer.wait_line("RECV HelloAck");
    peer.wait_line("GRANTED floor=1 user=3");

    // huis presents: the peer is revoked.
    server.request_floor(Instant::now());
    run(&mut server, "huis's grant", &|e| *e == Event::FloorGranted { floor_id: FLOOR });
    // Keep the server running until the peer acknowledged its revocation.
    peer.wait_line("REVOKED user=3");

    // The peer asks again: huis yields.
    peer.send("request");
    run(&mut server, "huis's revocation", &|e| *e == Event::FloorRevoked { floor_id: FLOOR });
    peer.wait_line("GRANTED floor=1 user=3");
    assert_eq!(server.holder(), Some(3));

    peer.send("release");
    run(&mut server, "the floor free", &|e| *e == Event::FloorFree { floor_id: FLOOR });
    peer.wait_line("RELEASED user=3");
    assert_eq!(server.holder(), None);
}
