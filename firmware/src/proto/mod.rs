//! Signalling backends: one folder per protocol, each a task that takes [`crate::call::Command`]s
//! and reports [`crate::call::Event`]s (see `call/` for the contract, ARCHITECTURE.md for how to
//! add one).

pub mod sip;
pub mod webrtc;
