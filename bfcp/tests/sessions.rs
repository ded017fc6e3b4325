//! Our participant and our server against each other in memory, on virtual time: grants,
//! last-requester-wins revocation, release, UDP loss and duplicates, and Error answers.

use std::time::{Duration, Instant};

use huis_bfcp::msg::{self, Attribute, Message, Primitive, Value, decode, encode, error_code};
use huis_bfcp::{Client, ClientConfig, Event, Server, ServerConfig, Timing, Transport};

const CONF: u32 = 77;
const FLOOR: u16 = 1;
/// huis's own user id on its server.
const ME: u16 = 1;

struct Net {
    now: Instant,
    server: Server,
    clients: Vec<(u16, Client)>,
    /// Drop the next n datagrams sent by the server.
    drop_from_server: usize,
    /// Drop the next n datagrams sent by clients.
    drop_from_clients: usize,
    /// Deliver every datagram twice.
    duplicate: bool,
    delivered: Vec<Message>,
}

impl Net {
    fn new(transport: Transport, users: &[u16]) -> Net {
        let timing = Timing::default();
        let server = Server::new(ServerConfig { transport, conference_id: CONF, floor_id: FLOOR, user_id: ME, timing });
        let clients = users
            .iter()
            .map(|u| (*u, Client::new(ClientConfig { transport, conference_id: CONF, user_id: *u, timing })))
            .collect();
        Net {
            now: Instant::now(),
            server,
            clients,
            drop_from_server: 0,
            drop_from_clients: 0,
            duplicate: false,
            delivered: Vec::new(),
        }
    }

    fn client(&mut self, user: u16) -> &mut Client {
        &mut self.clients.iter_mut().find(|(u, _)| *u == user).unwrap().1
    }

    /// Moves every datagram until nothing is left to send.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some(b) = self.clients[i].1.poll_transmit() {
                    moved = true;
                    if self.drop_from_clients > 0 {
                        self.drop_from_clients -= 1;
                        continue;
                    }
                    self.delivered.push(decode(&b).unwrap());
                    self.server.handle_input(self.now, &b).unwrap();
                    if self.duplicate {
                        self.server.handle_input(self.now, &b).unwrap();
                    }
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                if self.drop_from_server > 0 {
                    self.drop_from_server -= 1;
                    continue;
                }
                self.delivered.push(decode(&t.bytes).unwrap());
                let (now, duplicate) = (self.now, self.duplicate);
                let c = self.client(t.user_id);
                c.handle_input(now, &t.bytes).unwrap();
                if duplicate {
                    c.handle_input(now, &t.bytes).unwrap();
                }
            }
            if !moved {
                return;
            }
        }
        panic!("messages keep flowing");
    }

    /// Advances virtual time to the earliest deadline and runs the timers.
    fn tick(&mut self) {
        let mut next = self.server.poll_timeout();
        for (_, c) in &self.clients {
            next = match (next, c.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.now = next.expect("a deadline");
        self.server.handle_timeout(self.now);
        let now = self.now;
        for (_, c) in &mut self.clients {
            c.handle_timeout(now);
        }
    }

    fn events(&mut self, user: u16) -> Vec<Event> {
        let c = self.client(user);
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn server_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }
}

#[test]
fn hello_then_grant_then_release_over_udp_and_tcp() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut n = Net::new(transport, &[2]);
        let now = n.now;
        n.client(2).hello(now);
        n.pump();
        assert_eq!(n.events(2), vec![Event::Connected]);
        n.client(2).request_floor(now, FLOOR).unwrap();
        n.pump();
        assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
        assert_eq!(n.server_events(), vec![Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) }]);
        assert_eq!(n.server.holder(), Some(2));
        n.client(2).release(now).unwrap();
        n.pump();
        assert_eq!(n.events(2), vec![Event::FloorReleased { floor_id: FLOOR }]);
        assert_eq!(n.server_events(), vec![Event::FloorFree { floor_id: FLOOR }]);
        assert_eq!(n.server.holder(), None);
        let want_version = if transport == Transport::Udp { 2 } else { 1 };
        assert!(n.delivered.iter().all(|m| m.version == want_version));
        // Over UDP answers carry the R bit, over TCP nothing does.
        let r: Vec<bool> = n.delivered.iter().map(|m| m.responder).collect();
        assert_eq!(
            r,
            if transport == Transport::Udp { vec![false, true, false, true, false, true] } else { vec![false; 6] }
        );
        assert_eq!(n.server.poll_timeout().is_some(), transport == Transport::Udp, "the UDP response cache");
    }
}

#[test]
fn last_requester_wins_and_the_first_is_revoked() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut n = Net::new(transport, &[2, 3]);
        let now = n.now;
        // Client 3 subscribes to the floor's state (FloorQuery) to learn who presents.
        n.client(3).query_floor(now, FLOOR);
        n.client(2).request_floor(now, FLOOR).unwrap();
        n.pump();
        assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
        assert_eq!(n.events(3), vec![Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) }]);
        n.client(3).request_floor(now, FLOOR).unwrap();
        n.pump();
        assert_eq!(n.events(2), vec![Event::FloorRevoked { floor_id: FLOOR }]);
        assert_eq!(n.events(3), vec![Event::FloorGranted { floor_id: FLOOR }]);
        assert_eq!(n.server.holder(), Some(3));
        // The revoked participant's request is over: it may ask again (and wins again).
        n.client(2).request_floor(now, FLOOR).unwrap();
        n.pump();
        assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
        assert_eq!(
            n.events(3),
            vec![Event::FloorRevoked { floor_id: FLOOR }, Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) }]
        );
        // Over UDP the server-initiated Revoked was acknowledged: nothing is retransmitted.
        while n.server.poll_timeout().is_some() {
            n.tick();
            n.pump();
        }
        assert!(n.server_events().iter().all(|e| !matches!(e, Event::TransactionFailed { .. })));
    }
}

#[test]
fn huis_as_server_takes_the_floor_from_the_far_end_and_yields_to_it() {
    let mut n = Net::new(Transport::Udp, &[2]);
    let now = n.now;
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.pump();
    n.server_events();
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
    // huis presents: the far end is revoked.
    n.server.request_floor(now);
    n.pump();
    assert_eq!(n.server_events(), vec![Event::FloorGranted { floor_id: FLOOR }]);
    assert_eq!(n.events(2), vec![Event::FloorRevoked { floor_id: FLOOR }]);
    // The far end asks again: huis is revoked and must stop presenting.
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.pump();
    assert_eq!(
        n.server_events(),
        vec![Event::FloorRevoked { floor_id: FLOOR }, Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) }]
    );
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
    // huis releasing a floor it does not hold does nothing.
    n.server.release(now);
    assert_eq!(n.server_events(), vec![]);
}

#[test]
fn udp_request_is_retransmitted_on_loss() {
    let mut n = Net::new(Transport::Udp, &[2]);
    let start = n.now;
    n.client(2).request_floor(start, FLOOR).unwrap();
    n.drop_from_clients = 2;
    n.pump();
    assert_eq!(n.client(2).poll_timeout(), Some(start + Duration::from_millis(500)));
    n.tick(); // first retransmission at T1, lost too
    n.pump();
    assert_eq!(n.client(2).poll_timeout(), Some(start + Duration::from_millis(1500)));
    n.tick(); // second at T1 + 2 T1, arrives
    n.pump();
    assert_eq!(n.now, start + Duration::from_millis(1500));
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
}

#[test]
fn lost_response_is_answered_again_from_the_cache_not_processed_twice() {
    let mut n = Net::new(Transport::Udp, &[2]);
    let now = n.now;
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.drop_from_server = 1; // the Granted answer is lost
    n.pump();
    assert_eq!(n.events(2), vec![]);
    n.tick(); // the client retransmits; the server answers from its cache
    n.pump();
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }]);
    // One grant only: one floor request id handed out.
    assert_eq!(n.server_events(), vec![Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) }]);
}

#[test]
fn duplicated_datagrams_change_nothing() {
    let mut n = Net::new(Transport::Udp, &[2, 3]);
    n.duplicate = true;
    let now = n.now;
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.pump();
    n.client(3).request_floor(now, FLOOR).unwrap();
    n.pump();
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }, Event::FloorRevoked { floor_id: FLOOR }]);
    assert_eq!(n.events(3), vec![Event::FloorGranted { floor_id: FLOOR }]);
    assert_eq!(
        n.server_events(),
        vec![
            Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(2) },
            Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(3) }
        ]
    );
}

#[test]
fn unanswered_request_fails_after_the_bounded_retransmissions() {
    let timing = Timing::default();
    let mut c = Client::new(ClientConfig { transport: Transport::Udp, conference_id: CONF, user_id: 2, timing });
    let start = Instant::now();
    c.request_floor(start, FLOOR).unwrap();
    let mut sends = 0;
    let mut now = start;
    loop {
        while c.poll_transmit().is_some() {
            sends += 1;
        }
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
    }
    assert_eq!(sends, 1 + timing.max_retransmits as usize);
    // 0.5 + 1 + 2 + 4 + 8 s.
    assert_eq!(now - start, Duration::from_millis(15_500));
    assert_eq!(c.poll_event(), Some(Event::TransactionFailed { primitive: Primitive::FloorRequest }));
    // The request is over: a new one may be made.
    c.request_floor(now, FLOOR).unwrap();
}

#[test]
fn server_answers_errors() {
    let mut n = Net::new(Transport::Udp, &[2]);
    let now = n.now;
    let ask = |primitive, conference_id, attributes| {
        encode(&Message {
            version: 2,
            responder: false,
            primitive,
            conference_id,
            transaction_id: 9,
            user_id: 2,
            attributes,
        })
        .unwrap()
    };
    let code_of = |b: &[u8]| {
        let m = decode(b).unwrap();
        assert_eq!((m.primitive, m.transaction_id, m.responder), (Primitive::Error, 9, true));
        m.find(|v| match v {
            Value::ErrorCode { code, details } => Some((*code, details.clone())),
            _ => None,
        })
        .unwrap()
    };
    let cases: Vec<(Vec<u8>, u8)> = vec![
        (ask(Primitive::FloorRequest, CONF, vec![Attribute::new(Value::FloorId(5))]), error_code::INVALID_FLOOR_ID),
        (ask(Primitive::FloorRequest, CONF + 1, vec![]), error_code::CONFERENCE_DOES_NOT_EXIST),
        (
            ask(Primitive::FloorRelease, CONF, vec![Attribute::new(Value::FloorRequestId(44))]),
            error_code::FLOOR_REQUEST_ID_DOES_NOT_EXIST,
        ),
        (ask(Primitive::UserQuery, CONF, vec![]), error_code::UNKNOWN_PRIMITIVE),
    ];
    for (b, want) in cases {
        let mut s = Server::new(ServerConfig {
            transport: Transport::Udp,
            conference_id: CONF,
            floor_id: FLOOR,
            user_id: ME,
            timing: Timing::default(),
        });
        s.handle_input(now, &b).unwrap();
        assert_eq!(code_of(&s.poll_transmit().unwrap().bytes).0, want);
    }
    // An unknown mandatory attribute (type 100, M bit): Error 4 naming it (RFC 8855 §13.1).
    let mut b = ask(Primitive::FloorRequest, CONF, vec![Attribute::new(Value::FloorId(FLOOR))]);
    b.extend_from_slice(&[100 << 1 | 1, 4, 0, 0]);
    b[3] += 1;
    assert!(matches!(n.server.handle_input(now, &b), Err(msg::DecodeError::UnknownMandatory { .. })));
    let t = n.server.poll_transmit().unwrap();
    assert_eq!(t.user_id, 2);
    assert_eq!(code_of(&t.bytes), (error_code::UNKNOWN_MANDATORY_ATTRIBUTE, vec![100]));
    // A bad version: Error 12.
    let mut b = ask(Primitive::Hello, CONF, vec![]);
    b[0] = 5 << 5;
    assert!(n.server.handle_input(now, &b).is_err());
    assert_eq!(code_of(&n.server.poll_transmit().unwrap().bytes).0, error_code::UNSUPPORTED_VERSION);
    // The client hears an Error to its FloorRequest as a denial.
    n.client(2).request_floor(now, 9).unwrap();
    n.pump();
    let ev = n.events(2);
    assert!(matches!(ev[0], Event::FloorDenied { floor_id: 9, .. }), "{ev:?}");
    assert!(matches!(ev[1], Event::ErrorReceived { code: error_code::INVALID_FLOOR_ID, .. }), "{ev:?}");
}

#[test]
fn far_end_goodbye_frees_its_floor() {
    let mut n = Net::new(Transport::Udp, &[2]);
    let now = n.now;
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.pump();
    n.server_events();
    n.client(2).goodbye(now);
    n.pump();
    assert_eq!(n.server_events(), vec![Event::FloorFree { floor_id: FLOOR }, Event::Goodbye { user_id: 2 }]);
    assert_eq!(n.server.holder(), None);
}

#[test]
fn release_before_the_server_answered_is_sent_once_the_id_is_known() {
    let mut n = Net::new(Transport::Tcp, &[2]);
    let now = n.now;
    n.client(2).request_floor(now, FLOOR).unwrap();
    n.client(2).release(now).unwrap();
    n.pump();
    assert_eq!(n.events(2), vec![Event::FloorGranted { floor_id: FLOOR }, Event::FloorReleased { floor_id: FLOOR }]);
    assert_eq!(n.server.holder(), None);
    assert!(n.client(2).release(now).is_err());
}

/// A FloorRequestStatus as a server would send it: `responder` for the answer to our request.
fn status(tid: u16, responder: bool, frid: u16, st: msg::RequestStatus, info: Option<&str>) -> Vec<u8> {
    let mut fri = huis_bfcp::floor::floor_request_information(frid, FLOOR, st, None);
    if let (Some(text), Value::Grouped { attributes, .. }) = (info, &mut fri.value) {
        attributes.push(Attribute::group(
            msg::Group::OverallRequestStatus,
            frid,
            vec![Attribute::new(Value::StatusInfo(text.into()))],
        ));
    }
    encode(&Message {
        version: 2,
        responder,
        primitive: Primitive::FloorRequestStatus,
        conference_id: CONF,
        transaction_id: tid,
        user_id: 2,
        attributes: vec![fri],
    })
    .unwrap()
}

fn udp_client() -> Client {
    Client::new(ClientConfig { transport: Transport::Udp, conference_id: CONF, user_id: 2, timing: Timing::default() })
}

#[test]
fn client_follows_every_request_status() {
    use msg::RequestStatus::*;
    let now = Instant::now();
    let mut c = udp_client();
    c.request_floor(now, FLOOR).unwrap();
    let req = decode(&c.poll_transmit().unwrap()).unwrap();
    // Pending as the answer, then Accepted (queue position 0 in our builder), Granted, Revoked as
    // notices from the server, each acknowledged with FloorRequestStatusAck in its transaction.
    c.handle_input(now, &status(req.transaction_id, true, 40, Pending, None)).unwrap();
    assert_eq!(c.poll_event(), Some(Event::FloorPending { floor_id: FLOOR }));
    assert_eq!(c.poll_transmit(), None, "an answer is not acknowledged");
    for (tid, st, want) in [
        (100, Accepted, Event::FloorAccepted { floor_id: FLOOR, queue_position: 0 }),
        (101, Granted, Event::FloorGranted { floor_id: FLOOR }),
        (102, Revoked, Event::FloorRevoked { floor_id: FLOOR }),
    ] {
        c.handle_input(now, &status(tid, false, 40, st, None)).unwrap();
        assert_eq!(c.poll_event(), Some(want));
        let ack = decode(&c.poll_transmit().unwrap()).unwrap();
        assert_eq!((ack.primitive, ack.transaction_id, ack.responder), (Primitive::FloorRequestStatusAck, tid, true));
    }
    assert_eq!(c.floor_request_id(), None, "a revoked request is over");
    // A notice about a request that is not ours changes nothing (but is acknowledged).
    c.handle_input(now, &status(103, false, 41, Granted, None)).unwrap();
    assert_eq!(c.poll_event(), None);
    assert!(c.poll_transmit().is_some());

    // Denied with a reason; Cancelled; Released.
    for (st, want) in [
        (Denied, Event::FloorDenied { floor_id: FLOOR, reason: Some("busy".into()) }),
        (Cancelled, Event::FloorCancelled { floor_id: FLOOR }),
        (Released, Event::FloorReleased { floor_id: FLOOR }),
    ] {
        let mut c = udp_client();
        c.request_floor(now, FLOOR).unwrap();
        let req = decode(&c.poll_transmit().unwrap()).unwrap();
        c.handle_input(now, &status(req.transaction_id, true, 7, st, Some("busy"))).unwrap();
        assert_eq!(c.poll_event(), Some(want));
        assert_eq!(c.floor_request_id(), None);
        assert_eq!(c.poll_timeout(), None, "the transaction is over");
    }
}

#[test]
fn client_answers_unknown_mandatory_attributes_with_error_4() {
    let now = Instant::now();
    let mut c = udp_client();
    let mut b = status(55, false, 1, msg::RequestStatus::Granted, None);
    b.extend_from_slice(&[99 << 1 | 1, 4, 0, 0]);
    b[3] += 1;
    assert!(c.handle_input(now, &b).is_err());
    let e = decode(&c.poll_transmit().unwrap()).unwrap();
    assert_eq!((e.primitive, e.transaction_id), (Primitive::Error, 55));
    assert_eq!(
        e.find(|v| match v {
            Value::ErrorCode { code, details } => Some((*code, details.clone())),
            _ => None,
        }),
        Some((error_code::UNKNOWN_MANDATORY_ATTRIBUTE, vec![99]))
    );
    // Garbage that is not even a header gets no answer.
    assert!(c.handle_input(now, b"hello").is_err());
    assert_eq!(c.poll_transmit(), None);
}

/// Over TCP the messages of both sides go through `StreamFramer`, cut into 3-byte pieces.
#[test]
fn tcp_stream_in_small_pieces() {
    use huis_bfcp::framer::StreamFramer;
    let now = Instant::now();
    let mut s = Server::new(ServerConfig {
        transport: Transport::Tcp,
        conference_id: CONF,
        floor_id: FLOOR,
        user_id: ME,
        timing: Timing::default(),
    });
    let mut c = Client::new(ClientConfig {
        transport: Transport::Tcp,
        conference_id: CONF,
        user_id: 2,
        timing: Timing::default(),
    });
    let (mut to_server, mut to_client) = (StreamFramer::new(), StreamFramer::new());
    c.hello(now);
    c.query_floor(now, FLOOR);
    c.request_floor(now, FLOOR).unwrap();
    for _ in 0..4 {
        let mut stream = Vec::new();
        while let Some(b) = c.poll_transmit() {
            stream.extend(b);
        }
        for piece in stream.chunks(3) {
            to_server.push(piece);
            while let Some(m) = to_server.next_message() {
                s.handle_input(now, &m.unwrap()).unwrap();
            }
        }
        let mut stream = Vec::new();
        while let Some(t) = s.poll_transmit() {
            stream.extend(t.bytes);
        }
        for piece in stream.chunks(3) {
            to_client.push(piece);
            while let Some(m) = to_client.next_message() {
                c.handle_input(now, &m.unwrap()).unwrap();
            }
        }
    }
    // huis (the server's own user) takes the floor: the client is revoked and told who holds it.
    s.request_floor(now);
    let mut stream = Vec::new();
    while let Some(t) = s.poll_transmit() {
        stream.extend(t.bytes);
    }
    for piece in stream.chunks(3) {
        to_client.push(piece);
        while let Some(m) = to_client.next_message() {
            c.handle_input(now, &m.unwrap()).unwrap();
        }
    }
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(
        events,
        vec![
            Event::Connected,
            Event::FloorGranted { floor_id: FLOOR },
            Event::FloorRevoked { floor_id: FLOOR },
            Event::OtherHoldsFloor { floor_id: FLOOR, user_id: Some(ME) },
        ]
    );
    assert_eq!(c.poll_timeout(), None, "no timers over TCP");
}
