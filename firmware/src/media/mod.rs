//! Media through GStreamer: a call's audio ([`AudioSession`]) and video ([`VideoSession`]), the
//! RTP transport both run on (`rtp.rs`), and the HDMI screen ([`screen::Screen`]). The overview
//! is `firmware/MEDIA.md`; below, the audio session's life.
//!
//! A signalling backend (`proto/sip/`) drives one [`AudioSession`] per call once SDP is negotiated:
//!
//! 1. Before the offer (or answer) is written, [`RtpSockets::bind`] reserves the local RTP port
//!    (and RTCP on port + 1) so the port can go into the SDP.
//! 2. When the remote address and codec are known (the backend maps huis-sip's `Negotiated`
//!    into [`AudioSessionParams`]), [`AudioSession::start`] builds the pipeline:
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
//! rtpbin, the UDP elements on the bound sockets, RTCP and SRTP are the RTP transport
//! (`rtp.rs`), which the call's video ([`video`]) uses too.
//!
//! 3. During the call: [`AudioSession::set_muted`], [`AudioSession::set_direction`] (hold),
//!    [`AudioSession::set_remote`] (a re-INVITE moved the far end), [`AudioSession::send_dtmf`],
//!    [`AudioSession::stats`] (RTCP figures plus send/playout underruns),
//!    [`AudioSession::poll_event`] or [`AudioSession::take_events`] (DTMF received, RTP timeout,
//!    remote BYE, pipeline errors).
//! 4. [`AudioSession::stop`] ends it: the last packets and an RTCP BYE leave, the pipeline stops,
//!    the threads are joined and the ports are free. `AudioSession` is `Send + Sync`; every method
//!    takes `&self`, so it can live in an `Arc`.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use huis_firmware::media::*;
//!
//! # fn main() -> Result<(), MediaError> {
//! // Before writing the SDP offer: reserve the ports ("m=audio <port> RTP/AVP ...").
//! let sockets = RtpSockets::bind("0.0.0.0:0".parse().unwrap())?;
//! let our_port = sockets.local_rtp().port();
//! # let _ = our_port;
//! // After the answer: remote address, codec and payload types from the negotiated SDP.
//! let remote: SocketAddr = "192.0.2.10:30000".parse().unwrap();
//! let mut params = AudioSessionParams::new(sockets, remote, CodecParams::opus(111));
//! params.telephone_event = Some(TelephoneEvent::new(110, 48_000));
//! params.cname = "huis@room-42".into();
//! let call = AudioSession::start(params)?;
//!
//! // Hand these to the DSP thread (each call swaps them in):
//! let (to_network, from_network) = (call.sender(), call.receiver());
//! let mut frame = [0.0f32; DSP_FRAME];
//! to_network.push(&frame); // every 10 ms, near-end audio
//! from_network.pull(&mut frame); // every 10 ms, far-end audio (silence if none)
//!
//! call.send_dtmf("123456#")?; // a conference PIN
//! call.set_muted(true);
//! let stats = call.stats(); // for org.huis.Call1.Stats
//! # let _ = stats;
//! while let Some(event) = call.poll_event() {
//!     if let MediaEvent::RtpTimeout { .. } = event { /* hang up */ }
//! }
//! call.stop(); // blocks up to ~1 s: from async code use spawn_blocking
//! # Ok(()) }
//! ```
//!
//! Audio crosses the module boundary as mono `f32` at 16 kHz in 10 ms frames (160 samples), the
//! DSP thread's format. Neither [`AudioTx::push`] nor [`AudioRx::pull`] blocks or allocates.
//!
//! Invariant: while the session sends (direction sendrecv or sendonly) an RTP packet leaves every
//! ptime, whether the room is muted or the DSP thread is late: the pacer thread fills the gap
//! with digital silence, because some gateways drop calls that send nothing.

pub mod content_tap;
mod dtls;
mod dtmf;
mod elements;
mod error;
mod params;
mod ring;
mod rtp;
pub mod screen;
mod session;
mod sockets;
pub mod stamp;
mod stats;
pub mod video;
pub mod webrtc;

#[cfg(test)]
mod tests;

/// Hands the memory the C allocator keeps after a call back to the system.
///
/// A call's GStreamer threads each allocate from one of glibc's malloc arenas (up to eight per
/// core); what a call frees stays in those arenas, in pieces the allocator only returns when
/// they are at the top of an arena. Measured with the soak (bench/soak.sh), huisd's resident
/// memory climbed by about 1 MiB a call for hundreds of calls while its live heap (heaptrack)
/// stayed flat: memory kept, not leaked, but on a 1 GB board the same. `malloc_trim` gives back
/// every free page of every arena. Takes a few milliseconds: call it off the async tasks, once a
/// call's media has stopped.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many malloc arenas huisd's threads share (glibc's default is 8 per core).
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`], unless `MALLOC_ARENA_MAX` is set in the
/// environment (then glibc follows that). Every GStreamer streaming thread a call starts
/// allocates its frames and packets from an arena of its own, and a freed arena page stays with
/// its arena: with the default, an idle room after hundreds of calls kept tens of MiB that
/// neither `malloc_trim` nor anything else gave back. With two arenas the soak's idle memory is
/// flat, a video call holds 8 MiB less, and the call costs less CPU, not more (BENCHMARKS.md,
/// "Memory by component"). Call before any thread is started.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one allocator parameter; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

pub use dtls::{DtlsCertificate, DtlsParams, Protection};
pub use dtmf::{DtmfDigit, parse_dtmf_digits};
pub use error::MediaError;
pub use params::{
    AudioCodec, AudioSessionParams, CodecParams, Direction, OpusOptions, SrtpParams, SrtpProfile, TelephoneEvent,
};
pub use ring::{AudioRx, AudioTx};
pub use session::{AudioSession, MediaEvent};
pub use sockets::RtpSockets;
pub use stats::CallStats;
pub use video::{RtxPayloadTypes, VideoFeedback, VideoSession, VideoSessionParams, VideoStats};

/// Sample rate of the audio exchanged with the DSP thread.
pub const DSP_RATE: u32 = 16_000;
/// Samples in one 10 ms DSP frame.
pub const DSP_FRAME: usize = (DSP_RATE / 100) as usize;
