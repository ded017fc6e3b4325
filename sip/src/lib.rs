//! Sans-IO SIP core for huis (see `README.md` beside this crate, and `ARCHITECTURE.md` at the top).
//!
//! Nothing here opens a socket, starts a task or reads a clock: the firmware shell feeds
//! received bytes and the current time in, and takes bytes to send, the next deadline and
//! events out.

#![warn(missing_docs)]

pub mod digest;
pub mod dtmf;
pub mod framing;
pub mod msg;
pub mod sdp;
pub mod sdp_content;
pub mod sdp_security;
pub mod sdp_video;
pub mod transaction;
pub mod types;
pub mod ua;

pub use types::*;
pub use ua::UserAgent;
