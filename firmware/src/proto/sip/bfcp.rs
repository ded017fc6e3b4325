//! The BFCP shell of a call: one UDP socket, the sans-IO `huis_bfcp` core (a [`Client`] when
//! the far end runs the floor, a [`Server`] when we do), tokio timers, and the floor as a watch
//! for the call.
//!
//! The call asks for the floor ([`FloorCommand::Request`]: a laptop plugged in, `share start`)
//! and gives it back ([`FloorCommand::Release`]: unplugged, `share stop`); it reads [`Floor`]:
//! ours (send the slides), theirs (stop sending, show the far end's), free. Datagrams from any
//! address but the one the SDP negotiated are dropped (the core answers undecodable requests
//! with an Error, which must not reflect towards spoofed sources). Dropping the link (or
//! closing its command channel) says Goodbye as a client and ends the task.
//!
//! Not yet wired into the SIP backend's calls: see `firmware/MEDIA.md`, *Content*.

use std::net::SocketAddr;
use std::time::Instant;

use huis_bfcp::sdp::Role;
use huis_bfcp::{Client, ClientConfig, Event, Server, ServerConfig, Timing, Transport};
use tokio::net::UdpSocket;
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

/// Starts the shell on `socket` (bound to the port our SDP names).
pub fn start(socket: UdpSocket, p: BfcpParams) -> BfcpLink {
    let (tx, rx) = mpsc::channel(8);
    let (ftx, frx) = watch::channel(Floor::Free);
    tokio::spawn(run(socket, p, rx, ftx));
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

async fn run(
    socket: UdpSocket,
    p: BfcpParams,
    mut commands: mpsc::Receiver<FloorCommand>,
    floor: watch::Sender<Floor>,
) {
    let now = Instant::now();
    let mut core = match p.role {
        Role::Server => Core::Server(Server::new(ServerConfig {
            transport: Transport::Udp,
            conference_id: p.conf_id,
            floor_id: p.floor_id,
            user_id: p.user_id,
            timing: Timing::default(),
        })),
        Role::Client | Role::Both => {
            let mut c = Client::new(ClientConfig {
                transport: Transport::Udp,
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
            if let Err(e) = socket.send_to(&b, p.remote).await {
                tracing::debug!("BFCP: cannot send to {}: {e}", p.remote);
            }
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
                            let _ = socket.send_to(&b, p.remote).await;
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
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) if from.ip() == p.remote.ip() => {
                    let now = Instant::now();
                    let res = match &mut core {
                        Core::Client(c) => c.handle_input(now, &buf[..n]),
                        Core::Server(s) => s.handle_input(now, &buf[..n]),
                    };
                    if let Err(e) = res {
                        tracing::debug!("BFCP from {from}: {e}");
                    }
                }
                Ok((_, from)) => tracing::debug!("BFCP: dropped a datagram from {from}, not the negotiated peer"),
                Err(e) => tracing::debug!("BFCP: receive: {e}"),
            },
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
        let mut a = start(sa, BfcpParams { remote: ab, role: Role::Server, conf_id: 7, user_id: 1, floor_id: 1 });
        let mut b = start(sb, BfcpParams { remote: aa, role: Role::Client, conf_id: 7, user_id: 2, floor_id: 1 });

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

    #[tokio::test]
    async fn datagrams_from_elsewhere_are_dropped() {
        let sa = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let aa = sa.local_addr().unwrap();
        // The negotiated peer is on another address than the sender below.
        let peer: SocketAddr = "127.0.0.2:9".parse().unwrap();
        let mut a = start(sa, BfcpParams { remote: peer, role: Role::Server, conf_id: 7, user_id: 1, floor_id: 1 });
        let x = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // A FloorRequest from user 2 (version 2, conference 7, transaction 1, FLOOR-ID 1).
        let req = [0x40, 1, 0, 3, 0, 0, 0, 7, 0, 1, 0, 2, 0x05, 4, 0, 1, 0, 0, 0, 0];
        x.send_to(&req[..16], aa).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*a.floor.borrow_and_update(), Floor::Free);
    }
}
