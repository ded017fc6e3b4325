//! Transactions shared by the participant and the server (RFC 8855 §8 and, for UDP, §6.2).
//!
//! Over UDP a request is retransmitted after T1 (500 ms), then at doubling intervals, and fails
//! after [`Timing::max_retransmits`] retransmissions without a response. A response is kept for
//! [`Timing::response_cache`] so that a retransmitted request is answered again with the same
//! bytes instead of being processed twice. Over TCP nothing is retransmitted or cached.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::msg::{
    Attribute, Message, Primitive, VERSION_RELIABLE, VERSION_UNRELIABLE, Value, attr_type, encode, error_code,
};

/// The transport under BFCP; it decides the version, the R bit and retransmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Reliable: TCP or TLS (`TCP/BFCP`, `TCP/TLS/BFCP`). Version 1.
    Tcp,
    /// Unreliable: UDP or DTLS (`UDP/BFCP`, `UDP/TLS/BFCP`). Version 2.
    Udp,
}

/// Timers of the unreliable transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First retransmission interval (T1), doubled after each retransmission.
    pub t1: Duration,
    /// Retransmissions before the transaction fails.
    pub max_retransmits: u32,
    /// How long a response is kept to answer retransmitted requests (T2).
    pub response_cache: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { t1: Duration::from_millis(500), max_retransmits: 4, response_cache: Duration::from_secs(10) }
    }
}

/// Responses kept at most for duplicate detection, oldest dropped first.
const MAX_CACHED: usize = 64;
/// Requests in flight at most; more fail at once.
const MAX_PENDING: usize = 64;

#[derive(Debug)]
struct Pending {
    peer: u16,
    tid: u16,
    primitive: Primitive,
    bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    retransmits: u32,
}

#[derive(Debug)]
struct Cached {
    peer: u16,
    tid: u16,
    bytes: Vec<u8>,
    until: Instant,
}

/// One side's transactions; `peer` is the far end's user id (the client uses 0 for its server).
#[derive(Debug)]
pub(crate) struct Link {
    pub transport: Transport,
    timing: Timing,
    next_tid: u16,
    pending: Vec<Pending>,
    cache: VecDeque<Cached>,
    pub out: VecDeque<(u16, Vec<u8>)>,
    pub failed: VecDeque<Primitive>,
}

impl Link {
    pub fn new(transport: Transport, timing: Timing) -> Link {
        Link {
            transport,
            timing,
            next_tid: 1,
            pending: Vec::new(),
            cache: VecDeque::new(),
            out: VecDeque::new(),
            failed: VecDeque::new(),
        }
    }

    pub fn version(&self) -> u8 {
        match self.transport {
            Transport::Tcp => VERSION_RELIABLE,
            Transport::Udp => VERSION_UNRELIABLE,
        }
    }

    fn new_tid(&mut self) -> u16 {
        let t = self.next_tid;
        self.next_tid = self.next_tid.checked_add(1).unwrap_or(1);
        t
    }

    fn encode_or_fail(&mut self, m: &Message) -> Option<Vec<u8>> {
        match encode(m) {
            Ok(b) => Some(b),
            Err(_) => {
                // Only our own oversized texts can get here; the transaction fails visibly.
                self.failed.push_back(m.primitive);
                None
            }
        }
    }

    /// Sends a request in a new transaction; returns its transaction id.
    pub fn request(&mut self, now: Instant, peer: u16, mut m: Message) -> Option<u16> {
        if self.pending.len() >= MAX_PENDING {
            self.failed.push_back(m.primitive);
            return None;
        }
        m.version = self.version();
        m.responder = false;
        m.transaction_id = self.new_tid();
        let bytes = self.encode_or_fail(&m)?;
        self.out.push_back((peer, bytes.clone()));
        let interval = self.timing.t1;
        self.pending.push(Pending {
            peer,
            tid: m.transaction_id,
            primitive: m.primitive,
            bytes,
            next: now + interval,
            interval,
            retransmits: 0,
        });
        Some(m.transaction_id)
    }

    /// A server-initiated message: a transaction of its own over UDP (acknowledged by the
    /// participant), transaction id 0 and no answer over TCP (RFC 8855 §8).
    pub fn notify(&mut self, now: Instant, peer: u16, mut m: Message) {
        match self.transport {
            Transport::Udp => {
                self.request(now, peer, m);
            }
            Transport::Tcp => {
                m.version = self.version();
                m.responder = false;
                m.transaction_id = 0;
                if let Some(b) = self.encode_or_fail(&m) {
                    self.out.push_back((peer, b));
                }
            }
        }
    }

    /// Answers `req` with `m` in its transaction, cached over UDP for retransmitted requests.
    pub fn respond(&mut self, now: Instant, peer: u16, req_tid: u16, mut m: Message) {
        m.version = self.version();
        m.responder = self.transport == Transport::Udp;
        m.transaction_id = req_tid;
        let Some(bytes) = self.encode_or_fail(&m) else { return };
        if self.transport == Transport::Udp {
            if self.cache.len() >= MAX_CACHED {
                self.cache.pop_front();
            }
            self.cache.push_back(Cached {
                peer,
                tid: req_tid,
                bytes: bytes.clone(),
                until: now + self.timing.response_cache,
            });
        }
        self.out.push_back((peer, bytes));
    }

    /// Answers an Error (RFC 8855 §13) in the transaction `tid`.
    #[allow(clippy::too_many_arguments)]
    pub fn respond_error(
        &mut self,
        now: Instant,
        peer: u16,
        conference_id: u32,
        tid: u16,
        user_id: u16,
        code: u8,
        details: Vec<u8>,
        info: &str,
    ) {
        let mut attributes = vec![Attribute { mandatory: true, value: Value::ErrorCode { code, details } }];
        if !info.is_empty() {
            // At most 200 bytes, cut at a character boundary: the attribute's length is 8 bits.
            let mut end = info.len().min(200);
            while !info.is_char_boundary(end) {
                end -= 1;
            }
            attributes.push(Attribute::new(Value::ErrorInfo(info[..end].to_owned())));
        }
        let m = Message {
            version: 0,
            responder: false,
            primitive: Primitive::Error,
            conference_id,
            transaction_id: 0,
            user_id,
            attributes,
        };
        self.respond(now, peer, tid, m);
    }

    /// A received request that repeats one already answered: the answer is sent again.
    pub fn is_duplicate(&mut self, peer: u16, m: &Message) -> bool {
        if self.transport != Transport::Udp || m.responder {
            return false;
        }
        if let Some(c) = self.cache.iter().find(|c| c.peer == peer && c.tid == m.transaction_id) {
            self.out.push_back((peer, c.bytes.clone()));
            return true;
        }
        false
    }

    /// If `m` answers one of our requests, ends that transaction and returns the request's
    /// primitive. Over UDP answers carry the R bit; over TCP a non-zero matching transaction id.
    pub fn take_response(&mut self, peer: u16, m: &Message) -> Option<Primitive> {
        let is_answer = match self.transport {
            Transport::Udp => m.responder,
            Transport::Tcp => m.transaction_id != 0 && !is_request_only(m.primitive),
        };
        if !is_answer {
            return None;
        }
        let i = self.pending.iter().position(|p| p.peer == peer && p.tid == m.transaction_id)?;
        Some(self.pending.swap_remove(i).primitive)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.transport != Transport::Udp {
            return None;
        }
        let p = self.pending.iter().map(|p| p.next);
        let c = self.cache.iter().map(|c| c.until);
        p.chain(c).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.transport != Transport::Udp {
            return;
        }
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.next > now {
                i += 1;
                continue;
            }
            if p.retransmits >= self.timing.max_retransmits {
                let p = self.pending.swap_remove(i);
                self.failed.push_back(p.primitive);
                continue;
            }
            p.retransmits += 1;
            p.interval *= 2;
            p.next = now + p.interval;
            self.out.push_back((p.peer, p.bytes.clone()));
            i += 1;
        }
        self.cache.retain(|c| c.until > now);
    }

    /// Forgets every transaction in flight towards `peer`.
    pub fn forget(&mut self, peer: u16) {
        self.pending.retain(|p| p.peer != peer);
    }
}

/// Primitives that only ever start a transaction (never answer one).
fn is_request_only(p: Primitive) -> bool {
    matches!(
        p,
        Primitive::FloorRequest
            | Primitive::FloorRelease
            | Primitive::FloorRequestQuery
            | Primitive::UserQuery
            | Primitive::FloorQuery
            | Primitive::ChairAction
            | Primitive::Hello
            | Primitive::Goodbye
    )
}

/// The Error to answer a message that did not decode with, if it deserves one: (code, details).
pub(crate) fn error_for(e: &crate::msg::DecodeError) -> (u8, Vec<u8>) {
    use crate::msg::DecodeError as D;
    match e {
        D::UnknownMandatory { kinds, .. } => (error_code::UNKNOWN_MANDATORY_ATTRIBUTE, kinds.clone()),
        D::BadVersion { .. } => (error_code::UNSUPPORTED_VERSION, Vec::new()),
        D::UnknownPrimitive { .. } => (error_code::UNKNOWN_PRIMITIVE, Vec::new()),
        D::LengthMismatch { .. } | D::TooLong { .. } => (error_code::INCORRECT_MESSAGE_LENGTH, Vec::new()),
        _ => (error_code::UNABLE_TO_PARSE_MESSAGE, Vec::new()),
    }
}

/// SUPPORTED-ATTRIBUTES and SUPPORTED-PRIMITIVES of a HelloAck (RFC 8855 §5.3.12).
pub(crate) fn hello_ack_attributes(primitives: &[Primitive]) -> Vec<Attribute> {
    vec![
        Attribute::new(Value::SupportedPrimitives(primitives.iter().map(|p| *p as u8).collect())),
        Attribute::new(Value::SupportedAttributes(
            (attr_type::BENEFICIARY_ID..=attr_type::OVERALL_REQUEST_STATUS).collect(),
        )),
    ]
}
