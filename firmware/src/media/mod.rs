//! Media: the audio path of a call, through GStreamer.
//!
//! The call manager drives one [`AudioSession`] per call once the SIP core has negotiated SDP:
//!
//! 1. Before the offer (or answer) is written, [`RtpSockets::bind`] reserves the local RTP port
//!    (and RTCP on port + 1) so the port can go into the SDP.
//! 2. When the remote address and codec are known, [`AudioSession::start`] builds the pipeline:
//!
//! ```text
//!  send:    DSP thread ─AudioTx (lock-free ring)─▶ pacer thread ─▶ appsrc ─▶ audioconvert ─▶ audioresample
//!           ─▶ encoder ─▶ payloader ─▶ valve (direction) ─▶ rtpdtmfmux ◀─ rtpdtmfsrc (RFC 4733)
//!           ─▶ rtpbin (RTP session 0, RTCP; srtpenc when SRTP) ─▶ udpsink ─▶ network
//!  receive: network ─▶ udpsrc (same socket as udpsink) ─▶ rtpbin (srtpdec when SRTP, jitter buffer,
//!           RTCP) ─▶ per payload type:
//!           codec ─▶ depayloader ─▶ decoder ─▶ audioconvert ─▶ audioresample ─▶ funnel ─▶ appsink
//!                 ─AudioRx (lock-free ring)─▶ DSP thread      (discarded while not receiving)
//!           telephone-event ─▶ parsed RFC 4733 events ─▶ MediaEvent::Dtmf
//! ```
//!
//! With rtcp-mux, RTCP shares the RTP socket: a probe moves it to rtpbin's RTCP input (plain RTP),
//! or srtpdec separates it (SRTP). SRTP keys come from SDES (`a=crypto`), see [`SrtpParams`].
//!
//! 3. During the call: [`AudioSession::set_muted`], [`AudioSession::set_direction`] (hold),
//!    [`AudioSession::send_dtmf`], [`AudioSession::stats`], [`AudioSession::poll_event`].
//! 4. [`AudioSession::stop`] ends it: the last packets and an RTCP BYE leave, then the pipeline stops.
//!
//! Audio crosses the module boundary as mono `f32` at 16 kHz in 10 ms frames (160 samples), the
//! DSP thread's format. Neither [`AudioTx::push`] nor [`AudioRx::pull`] blocks or allocates.
//!
//! Invariant: while the session sends (direction sendrecv or sendonly) an RTP packet leaves every
//! ptime, whether the room is muted or the DSP thread is late: the pacer thread fills the gap
//! with digital silence, because some gateways drop calls that send nothing.

mod dtmf;
mod error;
mod params;
mod ring;
mod session;
mod sockets;
mod stats;

#[cfg(test)]
mod tests;

pub use dtmf::{DtmfDigit, parse_dtmf_digits};
pub use error::MediaError;
pub use params::{
    AudioCodec, AudioSessionParams, CodecParams, Direction, OpusOptions, SrtpParams, SrtpProfile,
    TelephoneEvent,
};
pub use ring::{AudioRx, AudioTx};
pub use session::{AudioSession, MediaEvent};
pub use sockets::RtpSockets;
pub use stats::CallStats;

/// Sample rate of the audio exchanged with the DSP thread.
pub const DSP_RATE: u32 = 16_000;
/// Samples in one 10 ms DSP frame.
pub const DSP_FRAME: usize = (DSP_RATE / 100) as usize;
