//! A minimal floor control server (RFC 8855 §13, a subset), for calls where huis offered
//! `a=floorctrl:c-s` and the far end answered `c-only`.
//!
//! One floor, no chair, no queue: whoever asks gets the floor at once, and the holder before is
//! revoked (FloorRequestStatus Revoked). Last requester wins, which is what room systems do for
//! the presentation. huis itself is a participant of its own server ([`Server::request_floor`],
//! [`Server::release`]) and hears of its floor through the same [`Event`]s as a [`crate::Client`].
//! Participants that sent FloorQuery get a FloorStatus on every change.
//!
//! Remote participants are told apart by the User ID of their messages; [`Transmit`] names the
//! user a message is for, and the shell maps users to connections or addresses.

use std::collections::VecDeque;
use std::time::Instant;

use crate::Event;
use crate::floor::floor_request_information;
use crate::msg::{Attribute, DecodeError, Message, Primitive, RequestStatus, Value, decode, decode_header, error_code};
use crate::transaction::{Link, Timing, Transport, error_for, hello_ack_attributes};

/// The server's parameters (what it puts in its SDP: RFC 8856 `a=confid`, `a=floorid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Transport of the `m=application` line.
    pub transport: Transport,
    /// `a=confid`.
    pub conference_id: u32,
    /// The one floor (`a=floorid`).
    pub floor_id: u16,
    /// huis's own user id as a participant of its server; remote users must use others.
    pub user_id: u16,
    /// UDP timers.
    pub timing: Timing,
}

/// Bytes for one remote participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The user id they are for.
    pub user_id: u16,
    /// The message.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    user_id: u16,
    floor_request_id: u16,
}

/// Subscribers to FloorStatus at most.
const MAX_SUBSCRIBERS: usize = 16;

const UNDERSTOOD: [Primitive; 11] = [
    Primitive::FloorRequest,
    Primitive::FloorRelease,
    Primitive::FloorQuery,
    Primitive::Hello,
    Primitive::HelloAck,
    Primitive::Error,
    Primitive::FloorRequestStatus,
    Primitive::FloorRequestStatusAck,
    Primitive::FloorStatusAck,
    Primitive::Goodbye,
    Primitive::GoodbyeAck,
];

/// A floor control server (sans-IO).
#[derive(Debug)]
pub struct Server {
    cfg: ServerConfig,
    link: Link,
    holder: Option<Holder>,
    next_request_id: u16,
    subscribers: Vec<u16>,
    events: VecDeque<Event>,
}

impl Server {
    /// A server with the floor free.
    pub fn new(cfg: ServerConfig) -> Server {
        Server {
            cfg,
            link: Link::new(cfg.transport, cfg.timing),
            holder: None,
            next_request_id: 1,
            subscribers: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Who holds the floor.
    pub fn holder(&self) -> Option<u16> {
        self.holder.map(|h| h.user_id)
    }

    fn message(&self, primitive: Primitive, user_id: u16, attributes: Vec<Attribute>) -> Message {
        Message {
            version: self.link.version(),
            responder: false,
            primitive,
            conference_id: self.cfg.conference_id,
            transaction_id: 0,
            user_id,
            attributes,
        }
    }

    fn status_message(&self, user_id: u16, floor_request_id: u16, status: RequestStatus) -> Message {
        let fri = floor_request_information(floor_request_id, self.cfg.floor_id, status, Some(user_id));
        self.message(Primitive::FloorRequestStatus, user_id, vec![fri])
    }

    fn new_request_id(&mut self) -> u16 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Gives the floor to `user_id`, revoking it from the holder before.
    fn grant(&mut self, now: Instant, user_id: u16) -> u16 {
        if let Some(h) = self.holder
            && h.user_id == user_id
        {
            return h.floor_request_id;
        }
        self.revoke(now);
        let floor_request_id = self.new_request_id();
        self.holder = Some(Holder { user_id, floor_request_id });
        let floor_id = self.cfg.floor_id;
        if user_id == self.cfg.user_id {
            self.events.push_back(Event::FloorGranted { floor_id });
        } else {
            self.events.push_back(Event::OtherHoldsFloor { floor_id, user_id: Some(user_id) });
        }
        floor_request_id
    }

    fn revoke(&mut self, now: Instant) {
        let Some(h) = self.holder.take() else { return };
        let floor_id = self.cfg.floor_id;
        if h.user_id == self.cfg.user_id {
            self.events.push_back(Event::FloorRevoked { floor_id });
        } else {
            let m = self.status_message(h.user_id, h.floor_request_id, RequestStatus::Revoked);
            self.link.notify(now, h.user_id, m);
        }
    }

    fn floor_status(&self, to: u16) -> Message {
        let mut attributes = vec![Attribute::new(Value::FloorId(self.cfg.floor_id))];
        if let Some(h) = self.holder {
            attributes.push(floor_request_information(
                h.floor_request_id,
                self.cfg.floor_id,
                RequestStatus::Granted,
                Some(h.user_id),
            ));
        }
        self.message(Primitive::FloorStatus, to, attributes)
    }

    fn notify_subscribers(&mut self, now: Instant) {
        for s in self.subscribers.clone() {
            let m = self.floor_status(s);
            self.link.notify(now, s, m);
        }
    }

    /// huis takes the floor of its own server: granted at once, revoked from whoever held it.
    pub fn request_floor(&mut self, now: Instant) {
        let me = self.cfg.user_id;
        self.grant(now, me);
        self.notify_subscribers(now);
    }

    /// huis releases the floor of its own server, if it holds it.
    pub fn release(&mut self, now: Instant) {
        if self.holder.is_some_and(|h| h.user_id == self.cfg.user_id) {
            self.holder = None;
            self.events.push_back(Event::FloorReleased { floor_id: self.cfg.floor_id });
            self.notify_subscribers(now);
        }
    }

    fn error(&mut self, now: Instant, m: &Message, code: u8, info: &str) {
        self.link.respond_error(now, m.user_id, m.conference_id, m.transaction_id, m.user_id, code, vec![], info);
    }

    /// One received message from a remote participant (a UDP datagram, or one message cut by
    /// [`crate::framer::StreamFramer`]).
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DecodeError> {
        let m = match decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                if let Ok(h) = decode_header(bytes)
                    && !h.responder
                    && h.primitive != Primitive::Error as u8
                {
                    let (code, details) = error_for(&e);
                    let info = e.to_string();
                    self.link.respond_error(
                        now,
                        h.user_id,
                        h.conference_id,
                        h.transaction_id,
                        h.user_id,
                        code,
                        details,
                        &info,
                    );
                }
                return Err(e);
            }
        };
        let user = m.user_id;
        if self.link.is_duplicate(user, &m) {
            return Ok(());
        }
        if self.link.take_response(user, &m).is_some() || m.responder {
            if m.primitive == Primitive::Error {
                self.error_received(&m);
            }
            return Ok(());
        }
        if m.conference_id != self.cfg.conference_id {
            self.error(now, &m, error_code::CONFERENCE_DOES_NOT_EXIST, "unknown conference");
            return Ok(());
        }
        if user == self.cfg.user_id {
            self.error(now, &m, error_code::USER_DOES_NOT_EXIST, "this user id is the server's own");
            return Ok(());
        }
        match m.primitive {
            Primitive::Hello => {
                let ack = self.message(Primitive::HelloAck, user, hello_ack_attributes(&UNDERSTOOD));
                self.link.respond(now, user, m.transaction_id, ack);
            }
            Primitive::FloorRequest => {
                let floors: Vec<u16> = m
                    .attributes
                    .iter()
                    .filter_map(|a| match a.value {
                        Value::FloorId(f) => Some(f),
                        _ => None,
                    })
                    .collect();
                if floors.is_empty() || floors.iter().any(|f| *f != self.cfg.floor_id) {
                    self.error(now, &m, error_code::INVALID_FLOOR_ID, "no such floor");
                    return Ok(());
                }
                let id = self.grant(now, user);
                let st = self.status_message(user, id, RequestStatus::Granted);
                self.link.respond(now, user, m.transaction_id, st);
                self.notify_subscribers(now);
            }
            Primitive::FloorRelease => {
                let id = m.find(|v| match v {
                    Value::FloorRequestId(i) => Some(*i),
                    _ => None,
                });
                match (id, self.holder) {
                    (Some(id), Some(h)) if h.floor_request_id == id && h.user_id == user => {
                        self.holder = None;
                        let st = self.status_message(user, id, RequestStatus::Released);
                        self.link.respond(now, user, m.transaction_id, st);
                        self.events.push_back(Event::FloorFree { floor_id: self.cfg.floor_id });
                        self.notify_subscribers(now);
                    }
                    _ => self.error(now, &m, error_code::FLOOR_REQUEST_ID_DOES_NOT_EXIST, "no such floor request"),
                }
            }
            Primitive::FloorQuery => {
                if !self.subscribers.contains(&user) && self.subscribers.len() < MAX_SUBSCRIBERS {
                    self.subscribers.push(user);
                }
                let st = self.floor_status(user);
                self.link.respond(now, user, m.transaction_id, st);
            }
            Primitive::Goodbye => {
                let ack = self.message(Primitive::GoodbyeAck, user, vec![]);
                self.link.respond(now, user, m.transaction_id, ack);
                self.link.forget(user);
                self.subscribers.retain(|s| *s != user);
                if self.holder.is_some_and(|h| h.user_id == user) {
                    self.holder = None;
                    self.events.push_back(Event::FloorFree { floor_id: self.cfg.floor_id });
                    self.notify_subscribers(now);
                }
                self.events.push_back(Event::Goodbye { user_id: user });
            }
            Primitive::Error => self.error_received(&m),
            Primitive::ChairAction => {
                self.error(now, &m, error_code::UNAUTHORIZED_OPERATION, "this server has no chair")
            }
            // Acks and answers outside any transaction of ours, and what this server does not do.
            Primitive::FloorRequestStatusAck
            | Primitive::FloorStatusAck
            | Primitive::GoodbyeAck
            | Primitive::HelloAck => {}
            Primitive::FloorRequestQuery
            | Primitive::UserQuery
            | Primitive::FloorRequestStatus
            | Primitive::UserStatus
            | Primitive::FloorStatus
            | Primitive::ChairActionAck => {
                self.error(now, &m, error_code::UNKNOWN_PRIMITIVE, "not supported by this server")
            }
        }
        Ok(())
    }

    fn error_received(&mut self, m: &Message) {
        let code = m
            .find(|v| match v {
                Value::ErrorCode { code, .. } => Some(*code),
                _ => None,
            })
            .unwrap_or(0);
        let info = m.find(|v| match v {
            Value::ErrorInfo(s) => Some(s.clone()),
            _ => None,
        });
        self.events.push_back(Event::ErrorReceived { code, info });
    }

    /// Runs the UDP timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
    }

    /// The next message to send, with the user it is for.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.link.out.pop_front().map(|(user_id, bytes)| Transmit { user_id, bytes })
    }

    /// When [`Server::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        while let Some(p) = self.link.failed.pop_front() {
            self.events.push_back(Event::TransactionFailed { primitive: p });
        }
        self.events.pop_front()
    }

    /// The transport (for the shell).
    pub fn transport(&self) -> Transport {
        self.link.transport
    }
}
