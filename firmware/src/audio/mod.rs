//! The audio engine: one real-time thread in fixed 10 ms frames.
//!
//! It reads the mic array (ALSA, or the room recording on the sim board),
//! measures levels, hands the near-end frame on, and plays the far-end
//! signal on the loudspeaker in the same loop, so that what the echo
//! canceller takes as reference is exactly what the loudspeaker plays. The
//! thread is paced by the capture device; it shares only atomics with the
//! rest of huisd, and allocates nothing once running.

pub mod scene;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use huis_hal::audio::{AudioOutput, MicArray};

/// Samples per 10 ms frame at rate `rate`.
pub const fn frame_len(rate: u32) -> usize {
    (rate / 100) as usize
}

/// An `f32` readable and writable from any thread without locks.
#[derive(Default)]
pub struct AtomicF32(AtomicU32);

impl AtomicF32 {
    pub fn new(v: f32) -> Self {
        Self(AtomicU32::new(v.to_bits()))
    }
    pub fn load(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn store(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
}

/// What the engine measures, published every 200 ms.
pub struct Meters {
    /// Mean RMS over the mics, dBFS.
    pub input_dbfs: AtomicF32,
    /// Loudspeaker RMS, dBFS.
    pub output_dbfs: AtomicF32,
    /// Current talker direction in degrees, NaN when nobody talks.
    pub talker_azimuth: AtomicF32,
    /// Frames processed since start.
    pub frames: AtomicU64,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            input_dbfs: AtomicF32::new(-120.0),
            output_dbfs: AtomicF32::new(-120.0),
            talker_azimuth: AtomicF32::new(f32::NAN),
            frames: AtomicU64::new(0),
        }
    }
}

/// Settings the engine reads every frame.
pub struct Controls {
    pub muted: AtomicBool,
    pub echo_cancellation: AtomicBool,
    pub beamforming: AtomicBool,
    pub noise_suppression: AtomicBool,
    pub gain_control: AtomicBool,
    /// Loudspeaker volume 0..=100.
    pub volume: AtomicU32,
    stop: AtomicBool,
}

impl Controls {
    pub fn new(cfg: &crate::config::Audio) -> Self {
        let c = Self {
            muted: AtomicBool::new(false),
            echo_cancellation: AtomicBool::new(false),
            beamforming: AtomicBool::new(false),
            noise_suppression: AtomicBool::new(false),
            gain_control: AtomicBool::new(false),
            volume: AtomicU32::new(0),
            stop: AtomicBool::new(false),
        };
        c.apply(cfg);
        c
    }

    pub fn apply(&self, cfg: &crate::config::Audio) {
        self.echo_cancellation
            .store(cfg.echo_cancellation, Ordering::Relaxed);
        self.beamforming.store(cfg.beamforming, Ordering::Relaxed);
        self.noise_suppression
            .store(cfg.noise_suppression, Ordering::Relaxed);
        self.gain_control.store(cfg.gain_control, Ordering::Relaxed);
        self.volume.store(cfg.output_volume, Ordering::Relaxed);
    }
}

/// A running engine.
pub struct Engine {
    pub meters: Arc<Meters>,
    pub controls: Arc<Controls>,
    thread: Option<JoinHandle<()>>,
}

/// Level in dBFS of a mean square value.
fn dbfs(mean_square: f64) -> f32 {
    (10.0 * mean_square.max(1e-12).log10()) as f32
}

impl Engine {
    /// Starts the engine thread on `mic` and `out`.
    pub fn start(
        mut mic: Box<dyn MicArray>,
        mut out: Box<dyn AudioOutput>,
        mic_channels: Vec<u16>,
        controls: Arc<Controls>,
    ) -> std::io::Result<Engine> {
        let meters = Arc::new(Meters::default());
        let (m, c) = (meters.clone(), controls.clone());
        let thread = std::thread::Builder::new().name("huis-audio".into()).spawn(move || {
            let inf = mic.format();
            let outf = out.format();
            let n_in = frame_len(inf.sample_rate);
            let n_out = frame_len(outf.sample_rate);
            let ich = inf.channels as usize;
            let och = outf.channels as usize;
            let mut capture = vec![0.0f32; n_in * ich];
            let mut far = vec![0.0f32; n_in];
            let mut play = vec![0.0f32; n_out * och];
            let (mut in_acc, mut out_acc, mut acc_frames) = (0.0f64, 0.0f64, 0u32);
            while !c.stop.load(Ordering::Relaxed) {
                if let Err(e) = mic.read(&mut capture) {
                    tracing::error!(error = %e, "microphone capture failed; audio engine stops");
                    break;
                }
                // Input level over the array's mic channels (not loopback channels).
                let mut sq = 0.0f64;
                for frame in capture.chunks_exact(ich) {
                    for &ch in &mic_channels {
                        let s = frame[ch as usize] as f64;
                        sq += s * s;
                    }
                }
                in_acc += sq / (n_in * mic_channels.len().max(1)) as f64;

                // The far end arrives here once calls exist; until then it is silence.
                far.fill(0.0);
                let gain = c.volume.load(Ordering::Relaxed) as f32 / 100.0;
                let mut osq = 0.0f64;
                for (i, frame) in play.chunks_exact_mut(och).enumerate() {
                    // Zero-order hold is enough for silence; the far-end path
                    // resamples properly before it reaches this loop.
                    let s = far[i * n_in / n_out] * gain;
                    frame.fill(s);
                    osq += (s as f64) * (s as f64);
                }
                out_acc += osq / n_out as f64;
                if let Err(e) = out.write(&play) {
                    tracing::error!(error = %e, "loudspeaker output failed; audio engine stops");
                    break;
                }

                acc_frames += 1;
                m.frames.fetch_add(1, Ordering::Relaxed);
                if acc_frames == 20 {
                    m.input_dbfs.store(dbfs(in_acc / 20.0));
                    m.output_dbfs.store(dbfs(out_acc / 20.0));
                    (in_acc, out_acc, acc_frames) = (0.0, 0.0, 0);
                }
            }
            // Dropping the output finishes its file (the sim speaker's WAV header).
            drop(out);
        })?;
        Ok(Engine {
            meters,
            controls,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (the output is closed cleanly).
    pub fn stop(&mut self) {
        self.controls.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
