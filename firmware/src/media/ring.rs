//! The two audio handles the DSP thread holds: lock-free single-producer/single-consumer rings.
//!
//! Each ring end sits behind a `Mutex` only so the handles can be cloned and shared; the DSP thread
//! takes it with `try_lock` (one atomic compare-and-swap, never a wait). If another clone holds it at
//! that instant the frame is dropped and counted, which cannot happen with a single DSP thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{DSP_FRAME, DSP_RATE};

/// Send side handle: the DSP thread pushes the room's processed audio here.
#[derive(Clone)]
pub struct AudioTx {
    shared: Arc<TxShared>,
}

pub(crate) struct TxShared {
    producer: Mutex<rtrb::Producer<f32>>,
    dropped: AtomicU64,
    /// Packets that had to be padded with silence because the DSP thread was late.
    underruns: AtomicU64,
    closed: AtomicBool,
}

impl AudioTx {
    /// Queue mono f32 samples at 16 kHz (normally one 10 ms frame of 160 samples) for sending.
    /// Never blocks or allocates. Returns how many samples were queued; the rest were dropped
    /// because the send queue was full or the session has stopped.
    pub fn push(&self, samples: &[f32]) -> usize {
        if self.shared.closed.load(Ordering::Relaxed) {
            return 0;
        }
        let Ok(mut p) = self.shared.producer.try_lock() else {
            self.shared.dropped.fetch_add(samples.len() as u64, Ordering::Relaxed);
            return 0;
        };
        let (pushed, rest) = p.push_partial_slice(samples);
        if !rest.is_empty() {
            self.shared.dropped.fetch_add(rest.len() as u64, Ordering::Relaxed);
        }
        pushed.len()
    }

    /// Samples dropped so far (queue full or handle contended).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Times the send side ran dry (the DSP thread was late) and padded a packet with silence.
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// False once the session has stopped.
    pub fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Relaxed)
    }
}

/// The pacer thread's end of the send ring.
pub(crate) struct TxReader {
    consumer: rtrb::Consumer<f32>,
    shared: Arc<TxShared>,
}

/// Send ring: room for 200 ms, far more than one ptime, so a late pacer loses nothing.
pub(crate) fn tx_ring() -> (AudioTx, TxReader) {
    let (producer, consumer) = rtrb::RingBuffer::new(DSP_RATE as usize / 5);
    let shared = Arc::new(TxShared {
        producer: Mutex::new(producer),
        dropped: AtomicU64::new(0),
        underruns: AtomicU64::new(0),
        closed: AtomicBool::new(false),
    });
    (AudioTx { shared: shared.clone() }, TxReader { consumer, shared })
}

impl TxReader {
    /// Samples queued.
    pub(crate) fn available(&self) -> usize {
        self.consumer.slots()
    }

    /// Fill `out` from the ring, padding with silence (and counting an underrun) if it holds
    /// less. Returns how many real samples were read.
    pub(crate) fn read(&mut self, out: &mut [f32]) -> usize {
        let (got, rest) = self.consumer.pop_partial_slice(out);
        let n = got.len();
        if !rest.is_empty() {
            rest.fill(0.0);
            if n > 0 {
                self.shared.underruns.fetch_add(1, Ordering::Relaxed);
            }
        }
        n
    }

    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

/// Receive side handle: the DSP thread pulls the far end's decoded audio here.
#[derive(Clone)]
pub struct AudioRx {
    shared: Arc<Mutex<RxState>>,
    underruns: Arc<AtomicU64>,
}

struct RxState {
    consumer: rtrb::Consumer<f32>,
    /// Playing out (true) or waiting for the prefill level after an underrun (false).
    primed: bool,
    /// Current prefill: starts at [`RX_PREFILL`], grows by a frame with every underrun up to
    /// [`RX_PREFILL_MAX`], so a call whose audio arrives unevenly trades a little latency for
    /// fewer gaps.
    prefill: usize,
}

/// Audio waits until this much is queued before playing out, to ride over burstiness between
/// the jitter buffer's output and the DSP thread.
const RX_PREFILL: usize = 4 * DSP_FRAME; // 40 ms
const RX_PREFILL_MAX: usize = 10 * DSP_FRAME; // 100 ms
/// Beyond prefill plus this, older audio is skipped down to the prefill level to bound latency.
const RX_HEADROOM: usize = 12 * DSP_FRAME; // 120 ms

impl AudioRx {
    /// Times playout ran dry mid-stream (network or decoder late, or the call went quiet) and
    /// waited for the prefill again.
    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }

    /// Fill `out` (mono f32, 16 kHz) with received audio. Never blocks or allocates: what is not
    /// there is silence. Returns how many samples were real audio (0 when nothing arrived).
    pub fn pull(&self, out: &mut [f32]) -> usize {
        let Ok(mut st) = self.shared.try_lock() else {
            out.fill(0.0);
            return 0;
        };
        let level = st.consumer.slots();
        let prefill = st.prefill;
        if level > prefill + RX_HEADROOM
            && let Ok(chunk) = st.consumer.read_chunk(level - prefill)
        {
            chunk.commit_all();
        }
        if !st.primed {
            if st.consumer.slots() < prefill {
                out.fill(0.0);
                return 0;
            }
            st.primed = true;
        }
        let (got, rest) = st.consumer.pop_partial_slice(out);
        let n = got.len();
        if !rest.is_empty() {
            rest.fill(0.0);
            st.primed = false;
            st.prefill = (st.prefill + DSP_FRAME).min(RX_PREFILL_MAX);
            self.underruns.fetch_add(1, Ordering::Relaxed);
        }
        n
    }
}

/// The appsink's end of the receive ring.
pub(crate) struct RxWriter {
    producer: rtrb::Producer<f32>,
}

pub(crate) fn rx_ring() -> (AudioRx, RxWriter) {
    let (producer, consumer) = rtrb::RingBuffer::new(DSP_RATE as usize / 2);
    (
        AudioRx {
            underruns: Arc::new(AtomicU64::new(0)),
            shared: Arc::new(Mutex::new(RxState { consumer, primed: false, prefill: RX_PREFILL })),
        },
        RxWriter { producer },
    )
}

impl RxWriter {
    /// Append little-endian f32 bytes; what does not fit is dropped (the reader skips ahead anyway).
    pub(crate) fn write_le_bytes(&mut self, bytes: &[u8]) {
        let n = (bytes.len() / 4).min(self.producer.slots());
        if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_reads_pads_and_closes() {
        let (tx, mut rd) = tx_ring();
        let mut out = [9.0f32; 2 * DSP_FRAME];
        assert_eq!(rd.read(&mut out), 0, "nothing queued: silence, not an underrun");
        assert!(out.iter().all(|&s| s == 0.0));
        assert_eq!(tx.underruns(), 0);
        tx.push(&[1.0; 3 * DSP_FRAME]);
        assert_eq!(rd.available(), 3 * DSP_FRAME);
        assert_eq!(rd.read(&mut out), 2 * DSP_FRAME);
        assert!(out.iter().all(|&s| s == 1.0));
        assert_eq!(rd.read(&mut out), DSP_FRAME);
        assert!(out[..DSP_FRAME].iter().all(|&s| s == 1.0));
        assert!(out[DSP_FRAME..].iter().all(|&s| s == 0.0));
        assert_eq!(tx.underruns(), 1, "a packet padded mid-stream counts");
        rd.close();
        assert_eq!(tx.push(&[1.0; 10]), 0);
        assert!(!tx.is_open());
    }

    #[test]
    fn tx_full_ring_drops_and_counts() {
        let (tx, _rd) = tx_ring();
        let big = vec![0.1f32; DSP_RATE as usize];
        let n = tx.push(&big);
        assert!(n < big.len());
        assert_eq!(tx.dropped(), (big.len() - n) as u64);
    }

    #[test]
    fn rx_prefills_then_plays_and_reprimes_after_underrun() {
        let (rx, mut w) = rx_ring();
        let bytes: Vec<u8> = (0..DSP_FRAME * 2).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.write_le_bytes(&bytes);
        let mut out = [1.0f32; DSP_FRAME];
        assert_eq!(rx.pull(&mut out), 0, "below prefill nothing plays");
        assert!(out.iter().all(|&s| s == 0.0));
        w.write_le_bytes(&bytes);
        assert_eq!(rx.pull(&mut out), DSP_FRAME);
        assert_eq!(out[1], 1.0);
        assert_eq!(rx.pull(&mut out), DSP_FRAME);
        assert_eq!(rx.pull(&mut out), DSP_FRAME);
        assert_eq!(rx.pull(&mut out), DSP_FRAME);
        assert_eq!(rx.pull(&mut out), 0, "empty");
        w.write_le_bytes(&bytes);
        assert_eq!(rx.pull(&mut out), 0, "re-priming after the underrun");
    }

    #[test]
    fn rx_skips_down_when_too_far_behind() {
        let (rx, mut w) = rx_ring();
        let bytes: Vec<u8> = (0..RX_PREFILL + RX_HEADROOM + 800).flat_map(|i| (i as f32).to_le_bytes()).collect();
        w.write_le_bytes(&bytes);
        let mut out = [0.0f32; DSP_FRAME];
        assert_eq!(rx.pull(&mut out), DSP_FRAME);
        assert_eq!(out[0], (RX_HEADROOM + 800) as f32, "kept only the newest prefill");
    }
}
