//! The floor participant (RFC 8855 §10): huis asks the far end's floor control server for the
//! presentation floor, learns when it is granted, revoked or taken by someone else, and
//! releases it.

use std::collections::VecDeque;
use std::time::Instant;

use thiserror::Error;

use crate::Event;
use crate::floor::floor_requests;
use crate::msg::{Attribute, DecodeError, Message, Primitive, RequestStatus, Value, decode, decode_header};
use crate::transaction::{Link, Timing, Transport, error_for, hello_ack_attributes};

/// The client's own parameters, from the SDP (RFC 8856 `a=confid`, `a=userid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Transport of the `m=application` line.
    pub transport: Transport,
    /// `a=confid` of the server.
    pub conference_id: u32,
    /// `a=userid` the server gave us.
    pub user_id: u16,
    /// UDP timers.
    pub timing: Timing,
}

/// A call the client cannot carry out in its current state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// A floor request is already under way or granted.
    #[error("a floor request for floor {floor_id} is already under way")]
    AlreadyRequested {
        /// Its floor.
        floor_id: u16,
    },
    /// Nothing to release.
    #[error("no floor request to release")]
    NothingToRelease,
}

#[derive(Debug)]
struct Request {
    floor_id: u16,
    /// Known once the server answered.
    floor_request_id: Option<u16>,
    /// Release asked before the id was known.
    release_asked: bool,
}

/// The primitives the participant understands, for HelloAck.
const UNDERSTOOD: [Primitive; 9] = [
    Primitive::FloorRequestStatus,
    Primitive::FloorStatus,
    Primitive::Hello,
    Primitive::HelloAck,
    Primitive::Error,
    Primitive::FloorRequestStatusAck,
    Primitive::FloorStatusAck,
    Primitive::Goodbye,
    Primitive::GoodbyeAck,
];

/// A floor participant (sans-IO).
#[derive(Debug)]
pub struct Client {
    cfg: ClientConfig,
    link: Link,
    request: Option<Request>,
    /// Who holds each floor we heard of by FloorStatus (`None` inside: unknown holder).
    others: Vec<(u16, Option<u16>)>,
    events: VecDeque<Event>,
}

/// The server's peer id in [`Link`].
const SERVER: u16 = 0;

impl Client {
    /// A participant that has sent nothing yet.
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg,
            link: Link::new(cfg.transport, cfg.timing),
            request: None,
            others: Vec::new(),
            events: VecDeque::new(),
        }
    }

    fn message(&self, primitive: Primitive, attributes: Vec<Attribute>) -> Message {
        Message {
            version: self.link.version(),
            responder: false,
            primitive,
            conference_id: self.cfg.conference_id,
            transaction_id: 0,
            user_id: self.cfg.user_id,
            attributes,
        }
    }

    /// Sends Hello (RFC 8855 §12): checks that the server is there; HelloAck gives [`Event::Connected`].
    pub fn hello(&mut self, now: Instant) {
        let m = self.message(Primitive::Hello, vec![]);
        self.link.request(now, SERVER, m);
    }

    /// Asks for `floor_id` (FloorRequest, RFC 8855 §10).
    pub fn request_floor(&mut self, now: Instant, floor_id: u16) -> Result<(), ClientError> {
        if let Some(r) = &self.request {
            return Err(ClientError::AlreadyRequested { floor_id: r.floor_id });
        }
        let m = self.message(Primitive::FloorRequest, vec![Attribute::new(Value::FloorId(floor_id))]);
        self.link.request(now, SERVER, m);
        self.request = Some(Request { floor_id, floor_request_id: None, release_asked: false });
        Ok(())
    }

    /// Releases our floor request, granted or not (FloorRelease, RFC 8855 §10). The server's
    /// Released (or Cancelled) status gives the event.
    pub fn release(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(r) = &mut self.request else { return Err(ClientError::NothingToRelease) };
        match r.floor_request_id {
            Some(id) => {
                let m = self.message(Primitive::FloorRelease, vec![Attribute::new(Value::FloorRequestId(id))]);
                self.link.request(now, SERVER, m);
            }
            None => r.release_asked = true,
        }
        Ok(())
    }

    /// Subscribes to the state of `floor_id` (FloorQuery, RFC 8855 §12): the server then sends
    /// FloorStatus on every change, which tells who else holds the floor.
    pub fn query_floor(&mut self, now: Instant, floor_id: u16) {
        let m = self.message(Primitive::FloorQuery, vec![Attribute::new(Value::FloorId(floor_id))]);
        self.link.request(now, SERVER, m);
    }

    /// Ends the BFCP session (Goodbye).
    pub fn goodbye(&mut self, now: Instant) {
        let m = self.message(Primitive::Goodbye, vec![]);
        self.link.request(now, SERVER, m);
        self.request = None;
    }

    /// Our floor request's id, once the server named it.
    pub fn floor_request_id(&self) -> Option<u16> {
        self.request.as_ref().and_then(|r| r.floor_request_id)
    }

    /// One received message (a UDP datagram, or one message cut by
    /// [`crate::framer::StreamFramer`]). A message that does not decode is answered with an
    /// Error when it was a request, and returned as the error.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DecodeError> {
        let m = match decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                if let Ok(h) = decode_header(bytes)
                    && !h.responder
                    && h.primitive != Primitive::Error as u8
                    && !matches!(e, DecodeError::TruncatedHeader { .. })
                {
                    let (code, details) = error_for(&e);
                    let info = e.to_string();
                    self.link.respond_error(
                        now,
                        SERVER,
                        h.conference_id,
                        h.transaction_id,
                        self.cfg.user_id,
                        code,
                        details,
                        &info,
                    );
                }
                return Err(e);
            }
        };
        if self.link.is_duplicate(SERVER, &m) {
            return Ok(());
        }
        let answered = self.link.take_response(SERVER, &m);
        if m.responder && answered.is_none() {
            // A late or repeated answer over UDP: its transaction is already over.
            return Ok(());
        }
        match m.primitive {
            Primitive::HelloAck => self.events.push_back(Event::Connected),
            Primitive::FloorRequestStatus => {
                self.floor_request_status(now, &m, answered);
                if answered.is_none() && self.link.transport == Transport::Udp {
                    let ack = self.message(Primitive::FloorRequestStatusAck, vec![]);
                    self.link.respond(now, SERVER, m.transaction_id, ack);
                }
            }
            Primitive::FloorStatus => {
                self.floor_status(&m);
                if answered.is_none() && self.link.transport == Transport::Udp {
                    let ack = self.message(Primitive::FloorStatusAck, vec![]);
                    self.link.respond(now, SERVER, m.transaction_id, ack);
                }
            }
            Primitive::Error => {
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
                if answered == Some(Primitive::FloorRequest)
                    && let Some(r) = self.request.take()
                {
                    self.events.push_back(Event::FloorDenied { floor_id: r.floor_id, reason: info.clone() });
                }
                self.events.push_back(Event::ErrorReceived { code, info });
            }
            Primitive::Hello => {
                let ack = self.message(Primitive::HelloAck, hello_ack_attributes(&UNDERSTOOD));
                self.link.respond(now, SERVER, m.transaction_id, ack);
            }
            Primitive::Goodbye => {
                let ack = self.message(Primitive::GoodbyeAck, vec![]);
                self.link.respond(now, SERVER, m.transaction_id, ack);
                self.link.forget(SERVER);
                self.request = None;
                self.events.push_back(Event::Goodbye { user_id: m.user_id });
            }
            // Answers that end a transaction and carry nothing we act on.
            Primitive::GoodbyeAck | Primitive::FloorRequestStatusAck | Primitive::FloorStatusAck => {}
            // Requests meant for a floor control server or a chair.
            Primitive::FloorRequest
            | Primitive::FloorRelease
            | Primitive::FloorRequestQuery
            | Primitive::UserQuery
            | Primitive::FloorQuery
            | Primitive::ChairAction => {
                if !m.responder {
                    let (conf, tid) = (m.conference_id, m.transaction_id);
                    self.link.respond_error(
                        now,
                        SERVER,
                        conf,
                        tid,
                        self.cfg.user_id,
                        crate::msg::error_code::UNAUTHORIZED_OPERATION,
                        vec![],
                        "this endpoint is a floor participant",
                    );
                }
            }
            Primitive::UserStatus | Primitive::ChairActionAck => {}
        }
        Ok(())
    }

    fn floor_request_status(&mut self, now: Instant, m: &Message, answered: Option<Primitive>) {
        for info in floor_requests(&m.attributes) {
            let Some(r) = &mut self.request else { return };
            match r.floor_request_id {
                Some(id) if id == info.floor_request_id => {}
                // The first status for our request names its id.
                None if answered == Some(Primitive::FloorRequest) || answered.is_none() => {
                    r.floor_request_id = Some(info.floor_request_id);
                }
                _ => continue,
            }
            let floor_id = info.floor_id.unwrap_or(r.floor_id);
            let ended = match info.status {
                Some(RequestStatus::Pending) => {
                    self.events.push_back(Event::FloorPending { floor_id });
                    false
                }
                Some(RequestStatus::Accepted) => {
                    self.events.push_back(Event::FloorAccepted { floor_id, queue_position: info.queue_position });
                    false
                }
                Some(RequestStatus::Granted) => {
                    self.events.push_back(Event::FloorGranted { floor_id });
                    self.others.retain(|(f, _)| *f != floor_id);
                    false
                }
                Some(RequestStatus::Denied) => {
                    self.events.push_back(Event::FloorDenied { floor_id, reason: info.status_info.clone() });
                    true
                }
                Some(RequestStatus::Cancelled) => {
                    self.events.push_back(Event::FloorCancelled { floor_id });
                    true
                }
                Some(RequestStatus::Released) => {
                    self.events.push_back(Event::FloorReleased { floor_id });
                    true
                }
                Some(RequestStatus::Revoked) => {
                    self.events.push_back(Event::FloorRevoked { floor_id });
                    true
                }
                None => false,
            };
            if ended {
                self.request = None;
                return;
            }
            let Some(r) = &mut self.request else { return };
            if r.release_asked
                && let Some(id) = r.floor_request_id
            {
                r.release_asked = false;
                let m = self.message(Primitive::FloorRelease, vec![Attribute::new(Value::FloorRequestId(id))]);
                self.link.request(now, SERVER, m);
            }
        }
    }

    fn floor_status(&mut self, m: &Message) {
        let Some(floor_id) = m.find(|v| match v {
            Value::FloorId(f) => Some(*f),
            _ => None,
        }) else {
            return;
        };
        let ours = self.floor_request_id();
        let holder = floor_requests(&m.attributes)
            .into_iter()
            .find(|i| i.status == Some(RequestStatus::Granted) && Some(i.floor_request_id) != ours);
        let known = self.others.iter().position(|(f, _)| *f == floor_id);
        match (holder, known) {
            (Some(h), Some(i)) if self.others[i].1 == h.user_id => {}
            (Some(h), Some(i)) => {
                self.others[i].1 = h.user_id;
                self.events.push_back(Event::OtherHoldsFloor { floor_id, user_id: h.user_id });
            }
            (Some(h), None) => {
                if self.others.len() < 16 {
                    self.others.push((floor_id, h.user_id));
                }
                self.events.push_back(Event::OtherHoldsFloor { floor_id, user_id: h.user_id });
            }
            (None, Some(i)) => {
                self.others.swap_remove(i);
                self.events.push_back(Event::FloorFree { floor_id });
            }
            (None, None) => {}
        }
    }

    /// Runs the UDP timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.collect_failures();
    }

    fn collect_failures(&mut self) {
        while let Some(p) = self.link.failed.pop_front() {
            if p == Primitive::FloorRequest {
                self.request = None;
            }
            self.events.push_back(Event::TransactionFailed { primitive: p });
        }
    }

    /// The next bytes to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.out.pop_front().map(|(_, b)| b)
    }

    /// When [`Client::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.collect_failures();
        self.events.pop_front()
    }
}
