//! Real SIP peers for end-to-end tests: baresip, Kamailio and SIPp in a
//! private network namespace per test, plus tone analysis and a sender of
//! malformed SIP. See `README-peers.md` here for how each peer is configured
//! and the quirks found on the way.

pub mod baresip;
pub mod bench;
pub mod huisd;
pub mod kamailio;
pub mod malformed;
pub mod netns;
pub mod picture;
pub mod sipp;
pub mod tone;

pub use baresip::{AnswerMode, AudioSource, Baresip, BaresipOpts, VideoDebug};
pub use kamailio::{Algorithm, Kamailio, KamailioOpts};
pub use malformed::{Transport, options_ping, options_ping_uri};
pub use netns::NetNs;
pub use sipp::{Sipp, SippOpts, SippResult};
