//! The audio engine: one real-time thread in fixed 10 ms frames.
//!
//! It reads the mic array (ALSA, or the room recording on the sim board),
//! measures levels, hands the near-end frame on, and plays the far-end
//! signal on the loudspeaker in the same loop, so that what the echo
//! canceller takes as reference is exactly what the loudspeaker plays. The
//! thread is paced by the capture device; it shares only atomics with the
//! rest of huisd, and allocates nothing once running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;

use huis_hal::audio::{AudioOutput, MicArray};

use crate::media::{AudioRx, AudioTx};

/// The audio of the call in progress, as the engine exchanges it: near end out, far end in.
pub struct CallAudio {
    pub tx: AudioTx,
    pub rx: AudioRx,
}

/// Where the backend that carries the current call puts its [`CallAudio`] (and takes it away
/// when the call ends). The engine never waits for it.
pub type CallAudioSlot = Arc<std::sync::Mutex<Option<CallAudio>>>;

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
        self.echo_cancellation.store(cfg.echo_cancellation, Ordering::Relaxed);
        self.beamforming.store(cfg.beamforming, Ordering::Relaxed);
        self.noise_suppression.store(cfg.noise_suppression, Ordering::Relaxed);
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

pub const DSP_RATE: u32 = 16_000;

/// Upsamples 10 ms frames by linear interpolation across frame edges (an
/// integer or fractional ratio), writing every output channel.
struct Upsampler {
    step: f64,
    pos: f64,
    last: f32,
}

impl Upsampler {
    fn new(from: u32, to: u32) -> Self {
        Self { step: from as f64 / to as f64, pos: 0.0, last: 0.0 }
    }

    fn process(&mut self, input: &[f32], gain: f32, out: &mut [f32], channels: usize) {
        // Sample i of the output sits at input position pos + i*step, where
        // position -1 is the last sample of the previous frame.
        for (i, frame) in out.chunks_exact_mut(channels).enumerate() {
            let x = self.pos + i as f64 * self.step - 1.0;
            let i0 = x.floor();
            let frac = (x - i0) as f32;
            let at = |k: f64| if k < 0.0 { self.last } else { input[(k as usize).min(input.len() - 1)] };
            let s = (at(i0) * (1.0 - frac) + at(i0 + 1.0) * frac) * gain;
            frame.fill(s);
        }
        let n_out = out.len() / channels;
        self.pos = self.pos + n_out as f64 * self.step - input.len() as f64;
        self.last = *input.last().unwrap_or(&0.0);
    }
}

/// Level in dBFS of a mean square value.
fn dbfs(mean_square: f64) -> f32 {
    (10.0 * mean_square.max(1e-12).log10()) as f32
}

impl Engine {
    /// Starts the engine thread on `mic` and `out`.
    /// `dsp` processes the near end (echo cancellation, beamforming, noise
    /// suppression); without it the near end is the mean of the mics.
    pub fn start(
        mut mic: Box<dyn MicArray>,
        mut out: Box<dyn AudioOutput>,
        mic_channels: Vec<u16>,
        controls: Arc<Controls>,
        call: CallAudioSlot,
        mut dsp: Option<huis_dsp::Processor>,
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
            // Near end and far end travel at the DSP rate (16 kHz, 10 ms = 160 samples).
            let n_dsp = frame_len(DSP_RATE);
            let mut near = vec![0.0f32; n_dsp];
            let mut far = vec![0.0f32; n_dsp];
            let mut play = vec![0.0f32; n_out * och];
            let mut up = Upsampler::new(DSP_RATE, outf.sample_rate);
            let n_mics = mic_channels.len();
            let mut mics = vec![0.0f32; n_dsp * n_mics];
            let mut stages = [None::<bool>; 4];
            let down = (inf.sample_rate / DSP_RATE).max(1) as usize;
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

                // The array's mics in descriptor order, at the DSP rate.
                for k in 0..n_dsp {
                    for (m, &ch) in mic_channels.iter().enumerate() {
                        let mut acc = 0.0f32;
                        for j in 0..down {
                            acc += capture[(k * down + j) * ich + ch as usize];
                        }
                        mics[k * n_mics + m] = acc / down as f32;
                    }
                }
                // The call's audio: never wait for it (try_lock), never block on the network.
                let slot = call.try_lock().ok();
                let ca = slot.as_ref().and_then(|s| s.as_ref());
                far.fill(0.0);
                if let Some(ca) = ca {
                    ca.rx.pull(&mut far);
                }
                // The far end goes to the loudspeaker below, in this same
                // iteration: it is exactly the echo canceller's reference.
                match dsp.as_mut() {
                    Some(p) => {
                        let wanted = [
                            c.echo_cancellation.load(Ordering::Relaxed),
                            c.beamforming.load(Ordering::Relaxed),
                            c.noise_suppression.load(Ordering::Relaxed),
                            c.gain_control.load(Ordering::Relaxed),
                        ];
                        for (i, stage) in [
                            huis_dsp::Stage::EchoCancellation,
                            huis_dsp::Stage::Beamforming,
                            huis_dsp::Stage::NoiseSuppression,
                            huis_dsp::Stage::GainControl,
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            if stages[i] != Some(wanted[i]) {
                                p.set_stage(stage, wanted[i]);
                                stages[i] = Some(wanted[i]);
                            }
                        }
                        let rep = p.process(&mics, &far, &mut near);
                        m.talker_azimuth.store(rep.talker_azimuth_deg.unwrap_or(f32::NAN));
                    }
                    None => {
                        let inv = 1.0 / n_mics.max(1) as f32;
                        for (k, v) in near.iter_mut().enumerate() {
                            *v = mics[k * n_mics..(k + 1) * n_mics].iter().sum::<f32>() * inv;
                        }
                    }
                }
                if c.muted.load(Ordering::Relaxed) {
                    near.fill(0.0);
                }
                if let Some(ca) = ca {
                    ca.tx.push(&near);
                }
                drop(slot);
                let gain = c.volume.load(Ordering::Relaxed) as f32 / 100.0;
                let mut osq = 0.0f64;
                up.process(&far, gain, &mut play, och);
                for s in play.iter().step_by(och) {
                    osq += (*s as f64) * (*s as f64);
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
        Ok(Engine { meters, controls, thread: Some(thread) })
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
