//! Sans-IO BFCP core for huis (see `README.md` beside this crate, and `ARCHITECTURE.md` at the
//! top): the Binary Floor Control Protocol of RFC 8855 and its SDP of RFC 8856, which SIP room
//! systems and gateways use to pass the presentation (the second video, `a=content:slides`)
//! from one side to the other.
//!
//! Nothing here opens a socket or reads a clock: the shell feeds received datagrams (or, over
//! TCP, the messages [`framer::StreamFramer`] cuts) and the current time in, and takes bytes to
//! send, the next deadline and [`Event`]s out. [`Client`] is the floor participant, huis's
//! usual role; [`Server`] the minimal floor control server huis is when the far end answers
//! `a=floorctrl:c-only`.

#![warn(missing_docs)]

pub mod client;
pub mod floor;
pub mod framer;
pub mod fuzzing;
pub mod msg;
pub mod sdp;
pub mod server;
pub mod transaction;

pub use client::{Client, ClientConfig, ClientError};
pub use msg::{DecodeError, Message, Primitive, RequestStatus};
pub use server::{Server, ServerConfig, Transmit};
pub use transaction::{Timing, Transport};

/// What happened, for the application (the screen-sharing logic of the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The far end answered our Hello (HelloAck).
    Connected,
    /// Our floor request is queued (Pending).
    FloorPending {
        /// The floor.
        floor_id: u16,
    },
    /// Our floor request is accepted and waits its turn (Accepted).
    FloorAccepted {
        /// The floor.
        floor_id: u16,
        /// Position in the queue.
        queue_position: u8,
    },
    /// We hold the floor: we may present.
    FloorGranted {
        /// The floor.
        floor_id: u16,
    },
    /// We released the floor and the server confirmed it (Released).
    FloorReleased {
        /// The floor.
        floor_id: u16,
    },
    /// Our floor request was cancelled before it was granted (Cancelled).
    FloorCancelled {
        /// The floor.
        floor_id: u16,
    },
    /// Our floor request was refused.
    FloorDenied {
        /// The floor.
        floor_id: u16,
        /// STATUS-INFO or ERROR-INFO text, if the server gave one.
        reason: Option<String>,
    },
    /// The floor was taken from us (Revoked): we must stop presenting.
    FloorRevoked {
        /// The floor.
        floor_id: u16,
    },
    /// Someone else holds the floor (the far end presents): we must yield.
    OtherHoldsFloor {
        /// The floor.
        floor_id: u16,
        /// Its holder, when the message says who.
        user_id: Option<u16>,
    },
    /// Whoever held the floor released it; it is free.
    FloorFree {
        /// The floor.
        floor_id: u16,
    },
    /// The far end answered with an Error.
    ErrorReceived {
        /// ERROR-CODE (see [`msg::error_code`]).
        code: u8,
        /// ERROR-INFO text.
        info: Option<String>,
    },
    /// A request got no answer over UDP after every retransmission.
    TransactionFailed {
        /// The request's primitive.
        primitive: Primitive,
    },
    /// The far end said Goodbye (the BFCP session is over).
    Goodbye {
        /// Its user id.
        user_id: u16,
    },
}
