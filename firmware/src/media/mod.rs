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

/// Hands the memory the C allocator keeps after a call back to the system, and logs what it
/// holds then.
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
    {
        // SAFETY: malloc_trim and mallinfo2 only walk the allocator's own lists, under its locks.
        let m = unsafe {
            libc::malloc_trim(0);
            libc::mallinfo2()
        };
        let heap = HeapFigures { in_use: m.uordblks + m.hblkhd, free: m.fordblks, arena: m.arena + m.hblkhd };
        // Tasks still alive: one a call more each time would be a task that never ends.
        let tasks = tokio::runtime::Handle::try_current().map(|h| h.metrics().num_alive_tasks()).ok();
        // The soak (tests/tests/soak.rs) reads this line.
        tracing::info!(tasks, "after the call: {heap}");
    }
}

/// What the C allocator holds (glibc's `mallinfo2`), in bytes. Telling the two apart is what
/// tells a leak (`in_use` climbing) from memory kept in the arenas (`free` climbing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapFigures {
    /// Allocated and not freed: live objects, mmapped blocks included.
    pub in_use: usize,
    /// Freed but kept in the arenas (pieces between live ones, which no trim can give back).
    pub free: usize,
    /// Everything the allocator has from the system.
    pub arena: usize,
}

impl std::fmt::Display for HeapFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kib = |b: usize| b / 1024;
        write!(
            f,
            "heap in use {} KiB, free in arenas {} KiB, from the system {} KiB",
            kib(self.in_use),
            kib(self.free),
            kib(self.arena)
        )
    }
}

/// How many malloc arenas huisd's threads share (glibc's default is 8 per core).
pub const MALLOC_ARENAS: i32 = 2;

/// From what size glibc serves an allocation by `mmap` of its own (glibc's starting value,
/// which it otherwise raises by itself).
pub const MALLOC_MMAP_THRESHOLD: i32 = 128 * 1024;

/// Sets glibc's allocator up for a process whose calls start and end hundreds of streaming
/// threads, unless the environment already says otherwise (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES`, which glibc then follows). Call before any
/// thread is started.
///
/// - **Two arenas** ([`MALLOC_ARENAS`]). Every GStreamer streaming thread a call starts
///   allocates its frames and packets from an arena of its own, and a freed arena page stays with
///   its arena: with the default, an idle room after hundreds of calls kept tens of MiB that
///   neither `malloc_trim` nor anything else gave back. With two arenas the soak's idle memory is
///   far flatter, a video call holds 8 MiB less, and the call costs less CPU, not more
///   (BENCHMARKS.md, "Memory by component").
/// - **A fixed mmap threshold** ([`MALLOC_MMAP_THRESHOLD`]). glibc raises its threshold to the
///   size of every large block freed, up to 32 MiB, so after the first call a video frame (a
///   640×360 frame is 338 KiB, a 720p one 1.3 MiB) is cut from an arena instead of mapped, and
///   what it leaves between live objects is kept. Fixed, frames are mapped and unmapped whole:
///   the memory the arenas keep after a call fell from 28–35 MiB to 9–12 MiB in the soak
///   (BENCHMARKS.md, "Soak").
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str| std::env::var_os(var).is_some();
        let tunable = |name: &str| std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(name));
        // SAFETY: mallopt sets one allocator parameter; called before other threads exist.
        unsafe {
            if !set("MALLOC_ARENA_MAX") && !tunable("arena_max") {
                libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
            }
            if !set("MALLOC_MMAP_THRESHOLD_") && !tunable("mmap_threshold") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
            }
        }
    }
}

/// GLib before 2.76 (Debian 12 has 2.74) keeps the memory of freed GSlice chunks — every
/// GstBuffer, GstEvent and list node GStreamer makes — in per-thread magazines and a shared
/// depot that malloc never sees again, so `malloc_trim` cannot hand it back. In the 1000-call
/// soak, a room with `G_SLICE=always-malloc` held 3.5 MiB less heap in use than one without, in
/// the same run (BENCHMARKS.md, "Soak"). GLib reads the variable once, in a library constructor
/// that runs before `main`, so when it is not set huisd sets it and executes itself again (same
/// pid, same arguments). Call first thing in `main`, before any thread is started. GLib 2.76
/// and later always use malloc and ignore it.
pub fn glib_slices_from_malloc() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("G_SLICE").is_some() {
            return;
        }
        // SAFETY: no other thread exists yet (first thing in main; GLib's constructors start none).
        unsafe { std::env::set_var("G_SLICE", "always-malloc") };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        let err = cmd.args(args).exec();
        // Still here: the restart failed; GLib keeps its magazines, nothing else changes.
        eprintln!("huisd: could not restart itself with G_SLICE=always-malloc ({err}); going on without it");
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
