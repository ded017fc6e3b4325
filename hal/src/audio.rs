//! Mic-array capture and loudspeaker output.
//!
//! Samples are `f32` in [-1, 1], interleaved. A capture stream delivers whole
//! frames of `channels` samples; `read` blocks until `buf` is full, paced by
//! the device (or by the wall clock for the simulation), so the DSP thread
//! that calls it runs at the hardware's rate.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{HalError, Result};

/// Format of a capture or playback stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub sample_rate: u32,
    pub channels: u16,
}

/// A source of multichannel microphone audio.
pub trait MicArray: Send {
    fn format(&self) -> StreamFormat;
    /// Fills `buf` (a whole number of frames, interleaved) and blocks until it can.
    fn read(&mut self, buf: &mut [f32]) -> Result<()>;
}

/// A sink for loudspeaker audio.
pub trait AudioOutput: Send {
    fn format(&self) -> StreamFormat;
    /// Plays `buf` (interleaved frames); blocks when the device buffer is full.
    fn write(&mut self, buf: &[f32]) -> Result<()>;
}

// ---------------------------------------------------------------- simulated

/// A mic array that plays a room recording, looping, at real-time pace.
///
/// The recording carries the true inter-mic delays and reflections of a room.
/// A mono file is accepted too. By itself it is spread to every channel
/// unchanged, which is a source straight above the array; given the array's
/// geometry ([`SimMicArray::mono_as_talker`]) it reaches each mic with the
/// delay a talker in front of the array would give it, as a room would. Any
/// other channel count must match the array.
///
/// A file is streamed, not loaded: like a real capture device the simulated
/// one holds only a read buffer, so huisd's memory on the sim board is what
/// it would be on hardware. The whole file is checked once at open, so a
/// damaged recording is refused up front rather than part-way through a call.
pub struct SimMicArray {
    source: Source,
    file_channels: u16,
    format: StreamFormat,
    started: Option<Instant>,
    delivered_frames: u64,
    paced: bool,
    talker: Option<Talker>,
}

/// Half the length of the windowed sinc that delays a mono recording by a fraction of a sample.
const TALKER_HALF_TAPS: usize = 16;
/// Speed of sound for the simulated talker's delays, m/s.
const SPEED_OF_SOUND: f64 = 343.0;

/// A mono recording played as a far-field talker: one fractional-delay filter (a Hann-windowed
/// sinc centred on that mic's delay) per mic channel, over the last samples.
struct Talker {
    /// `(capture channel, taps)`; tap `k` weighs the sample `k` samples old.
    filters: Vec<(usize, Vec<f32>)>,
    /// The last samples, in a ring as long as the filters; `head` is where the newest went.
    history: Vec<f32>,
    head: usize,
}

impl Talker {
    /// Delays for a plane wave from `azimuth_deg` in the array's horizontal plane, relative to
    /// the mic it reaches first, plus half a filter so that every filter is causal.
    fn new(mics: &[(u16, [f64; 3])], azimuth_deg: f64, rate: u32) -> Self {
        use std::f64::consts::PI;
        let (s, c) = azimuth_deg.to_radians().sin_cos();
        // How far each mic sits towards the talker: it hears the wave that much earlier.
        let ahead: Vec<f64> = mics.iter().map(|(_, p)| p[0] * c + p[1] * s).collect();
        let most = ahead.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let delays: Vec<f64> =
            ahead.iter().map(|a| TALKER_HALF_TAPS as f64 + (most - a) / SPEED_OF_SOUND * rate as f64).collect();
        let len = delays.iter().cloned().fold(0.0, f64::max).ceil() as usize + TALKER_HALF_TAPS + 1;
        let filters = mics
            .iter()
            .zip(&delays)
            .map(|((ch, _), &delay)| {
                let taps = (0..len)
                    .map(|k| {
                        let x = k as f64 - delay;
                        if x.abs() >= TALKER_HALF_TAPS as f64 {
                            return 0.0;
                        }
                        let sinc = if x.abs() < 1e-9 { 1.0 } else { (PI * x).sin() / (PI * x) };
                        (sinc * (0.5 + 0.5 * (PI * x / TALKER_HALF_TAPS as f64).cos())) as f32
                    })
                    .collect();
                (*ch as usize, taps)
            })
            .collect();
        Self { filters, history: vec![0.0; len], head: 0 }
    }

    /// Takes the next mono sample and writes every mic channel of `frame`.
    fn spread(&mut self, x: f32, frame: &mut [f32]) {
        let n = self.history.len();
        self.head = (self.head + 1) % n;
        self.history[self.head] = x;
        for (ch, taps) in &self.filters {
            let mut acc = 0.0f32;
            for (k, t) in taps.iter().enumerate() {
                acc += t * self.history[(self.head + n - k) % n];
            }
            if let Some(v) = frame.get_mut(*ch) {
                *v = acc;
            }
        }
    }
}

enum Source {
    Memory { samples: Vec<f32>, pos: usize },
    File { path: PathBuf, reader: hound::WavReader<std::io::BufReader<File>>, scale: Option<f32> },
}

impl Source {
    /// The next frame of `frame.len()` samples, from the start again at the end.
    fn next_frame(&mut self, frame: &mut [f32]) -> Result<()> {
        match self {
            Source::Memory { samples, pos } => {
                frame.copy_from_slice(&samples[*pos..*pos + frame.len()]);
                *pos = (*pos + frame.len()) % samples.len();
                Ok(())
            }
            Source::File { path, reader, scale } => {
                let err = |reason: String| HalError::File { path: path.display().to_string(), reason };
                if reader.samples::<f32>().len() < frame.len() {
                    reader.seek(0).map_err(|e| err(format!("cannot rewind: {e}")))?;
                }
                for v in frame.iter_mut() {
                    let s = match scale {
                        None => reader.samples::<f32>().next(),
                        Some(k) => reader.samples::<i32>().next().map(|r| r.map(|i| i as f32 * *k)),
                    };
                    *v = s
                        .ok_or_else(|| err("ended early: the file changed while it was played".into()))?
                        .map_err(|e| err(format!("read error: {e}")))?;
                }
                Ok(())
            }
        }
    }
}

impl SimMicArray {
    /// Opens `path` for streaming, checking it against the array's channel
    /// count and rate and reading it through once.
    pub fn open(path: &Path, channels: u16, sample_rate: u32) -> Result<Self> {
        let err = |reason: String| HalError::File { path: path.display().to_string(), reason };
        let open = || hound::WavReader::open(path).map_err(|e| err(format!("not a readable WAV file: {e}")));
        let spec = open()?.spec();
        if spec.sample_rate != sample_rate {
            return Err(err(format!(
                "sample rate is {} Hz; the board's mic array runs at {} Hz",
                spec.sample_rate, sample_rate
            )));
        }
        if spec.channels != 1 && spec.channels != channels {
            return Err(err(format!(
                "has {} channels; the board's mic array has {} (a mono file is also accepted)",
                spec.channels, channels
            )));
        }
        let scale = match spec.sample_format {
            hound::SampleFormat::Float => None,
            hound::SampleFormat::Int => Some(1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32),
        };
        // Read it all once: truncation or damage is an error now, not mid-call.
        let mut check = open()?;
        let n = match scale {
            None => check.samples::<f32>().try_fold(0usize, |n, s| s.map(|_| n + 1)),
            Some(_) => check.samples::<i32>().try_fold(0usize, |n, s| s.map(|_| n + 1)),
        }
        .map_err(|e| err(format!("truncated or damaged WAV data: {e}")))?;
        if n < spec.channels as usize {
            return Err(err("holds no audio".into()));
        }
        if n % spec.channels as usize != 0 {
            return Err(err("truncated WAV data: the last frame is incomplete".into()));
        }
        let source = Source::File { path: path.to_owned(), reader: open()?, scale };
        Ok(Self::with_source(source, spec.channels, StreamFormat { sample_rate, channels }))
    }

    /// Plays samples already in memory (interleaved with `file_channels`).
    pub fn from_samples(samples: Vec<f32>, file_channels: u16, format: StreamFormat) -> Self {
        Self::with_source(Source::Memory { samples, pos: 0 }, file_channels, format)
    }

    fn with_source(source: Source, file_channels: u16, format: StreamFormat) -> Self {
        Self { source, file_channels, format, started: None, delivered_frames: 0, paced: true, talker: None }
    }

    /// Plays a mono recording as a talker at `azimuth_deg` (counter-clockwise from the array's
    /// x axis, in its plane, far away): each mic of `mics` (capture channel, position in metres)
    /// hears it with its own delay, through a fractional-delay filter; other channels (loopback)
    /// get it unchanged. A recording with a channel per mic already carries its room and is
    /// left as it is.
    pub fn mono_as_talker(mut self, mics: &[(u16, [f64; 3])], azimuth_deg: f64) -> Self {
        if self.file_channels == 1 && !mics.is_empty() {
            self.talker = Some(Talker::new(mics, azimuth_deg, self.format.sample_rate));
        }
        self
    }

    /// Turns real-time pacing off (offline processing, tests).
    pub fn unpaced(mut self) -> Self {
        self.paced = false;
        self
    }
}

impl MicArray for SimMicArray {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<()> {
        let ch = self.format.channels as usize;
        let fch = self.file_channels as usize;
        let frames = buf.len() / ch;
        for dst in buf.chunks_exact_mut(ch) {
            if fch == 1 {
                self.source.next_frame(&mut dst[..1])?;
                let v = dst[0];
                dst.fill(v);
                if let Some(t) = self.talker.as_mut() {
                    t.spread(v, dst);
                }
            } else {
                self.source.next_frame(dst)?;
            }
        }
        if self.paced {
            // Deliver at the device's rate: the frame that ends at sample N is
            // available N / rate seconds after the stream started.
            let started = *self.started.get_or_insert_with(Instant::now);
            self.delivered_frames += frames as u64;
            let due = started + Duration::from_secs_f64(self.delivered_frames as f64 / self.format.sample_rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        Ok(())
    }
}

/// A loudspeaker that writes what it plays to a 16-bit WAV file.
///
/// The WAV header is brought up to date every half second, so the file can be
/// read while huisd runs.
pub struct SimAudioOut {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    format: StreamFormat,
    since_flush: u32,
}

impl SimAudioOut {
    pub fn create(path: &Path, format: StreamFormat) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HalError::Io {
                device: dir.display().to_string(),
                what: "creating the directory for the audio output file",
                source,
            })?;
        }
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|e| HalError::File { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self { path: path.to_owned(), writer: Some(writer), format, since_flush: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AudioOutput for SimAudioOut {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn write(&mut self, buf: &[f32]) -> Result<()> {
        let err = |e: hound::Error, p: &Path| HalError::File { path: p.display().to_string(), reason: e.to_string() };
        let w = self.writer.as_mut().expect("writer lives until drop");
        for &s in buf {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).map_err(|e| err(e, &self.path))?;
        }
        self.since_flush += (buf.len() / self.format.channels as usize) as u32;
        if self.since_flush >= self.format.sample_rate / 2 {
            self.since_flush = 0;
            w.flush().map_err(|e| err(e, &self.path))?;
        }
        Ok(())
    }
}

impl Drop for SimAudioOut {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::warn!(path = %self.path.display(), error = %e, "could not finish the audio output file");
            }
        }
    }
}

/// Reads a WAV file (16/24/32-bit integer or 32-bit float) into f32 samples.
pub fn read_wav(path: &Path) -> Result<(Vec<f32>, hound::WavSpec)> {
    let err = |reason: String| HalError::File { path: path.display().to_string(), reason };
    let mut reader = hound::WavReader::open(path).map_err(|e| err(format!("not a readable WAV file: {e}")))?;
    let spec = reader.spec();
    let samples: std::result::Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect()
        }
    };
    let samples = samples.map_err(|e| err(format!("truncated or damaged WAV data: {e}")))?;
    Ok((samples, spec))
}

// ---------------------------------------------------------------- ALSA

/// Capture from an ALSA PCM (the mic array's card).
pub struct AlsaCapture {
    pcm: alsa::pcm::PCM,
    device: String,
    format: StreamFormat,
    scratch: Vec<i32>,
}

impl AlsaCapture {
    pub fn open(device: &str, channels: u16, sample_rate: u32) -> Result<Self> {
        let pcm = open_pcm(device, alsa::Direction::Capture, channels, sample_rate)?;
        Ok(Self { pcm, device: device.to_owned(), format: StreamFormat { sample_rate, channels }, scratch: Vec::new() })
    }
}

impl MicArray for AlsaCapture {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<()> {
        self.scratch.resize(buf.len(), 0);
        let io = self.pcm.io_i32().map_err(|source| alsa_err(&self.device, "io", source))?;
        let ch = self.format.channels as usize;
        let mut done = 0;
        while done < buf.len() {
            match io.readi(&mut self.scratch[done..]) {
                Ok(frames) => done += frames * ch,
                Err(e) => {
                    // An overrun (EPIPE) is recovered by preparing the PCM again.
                    self.pcm.try_recover(e, true).map_err(|source| alsa_err(&self.device, "read", source))?;
                }
            }
        }
        const SCALE: f32 = 1.0 / 2_147_483_648.0;
        for (d, s) in buf.iter_mut().zip(&self.scratch) {
            *d = *s as f32 * SCALE;
        }
        Ok(())
    }
}

/// Playback to an ALSA PCM (HDMI audio or the HAT's codec).
pub struct AlsaPlayback {
    pcm: alsa::pcm::PCM,
    device: String,
    format: StreamFormat,
    scratch: Vec<i32>,
}

impl AlsaPlayback {
    pub fn open(device: &str, channels: u16, sample_rate: u32) -> Result<Self> {
        let pcm = open_pcm(device, alsa::Direction::Playback, channels, sample_rate)?;
        Ok(Self { pcm, device: device.to_owned(), format: StreamFormat { sample_rate, channels }, scratch: Vec::new() })
    }
}

impl AudioOutput for AlsaPlayback {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn write(&mut self, buf: &[f32]) -> Result<()> {
        self.scratch.clear();
        self.scratch.extend(buf.iter().map(|s| (s.clamp(-1.0, 1.0) as f64 * 2_147_483_647.0) as i32));
        let io = self.pcm.io_i32().map_err(|source| alsa_err(&self.device, "io", source))?;
        let ch = self.format.channels as usize;
        let mut done = 0;
        while done < self.scratch.len() {
            match io.writei(&self.scratch[done..]) {
                Ok(frames) => done += frames * ch,
                Err(e) => {
                    self.pcm.try_recover(e, true).map_err(|source| alsa_err(&self.device, "write", source))?;
                }
            }
        }
        Ok(())
    }
}

fn alsa_err(device: &str, what: &'static str, source: alsa::Error) -> HalError {
    HalError::Alsa { device: device.to_owned(), what, source }
}

fn open_pcm(device: &str, dir: alsa::Direction, channels: u16, rate: u32) -> Result<alsa::pcm::PCM> {
    use alsa::pcm::{Access, Format, HwParams};
    let pcm = alsa::pcm::PCM::new(device, dir, false).map_err(|s| alsa_err(device, "open", s))?;
    {
        let hwp = HwParams::any(&pcm).map_err(|s| alsa_err(device, "hw params", s))?;
        hwp.set_channels(channels as u32).map_err(|s| alsa_err(device, "set channels", s))?;
        hwp.set_rate(rate, alsa::ValueOr::Nearest).map_err(|s| alsa_err(device, "set rate", s))?;
        hwp.set_format(Format::s32()).map_err(|s| alsa_err(device, "set format S32", s))?;
        hwp.set_access(Access::RWInterleaved).map_err(|s| alsa_err(device, "set access", s))?;
        // 10 ms periods, four of them: low latency, tolerant of a late wakeup.
        let period = (rate / 100) as alsa::pcm::Frames;
        hwp.set_period_size_near(period, alsa::ValueOr::Nearest).map_err(|s| alsa_err(device, "set period", s))?;
        hwp.set_buffer_size_near(period * 4).map_err(|s| alsa_err(device, "set buffer", s))?;
        pcm.hw_params(&hwp).map_err(|s| alsa_err(device, "apply hw params", s))?;
        let got = hwp.get_rate().map_err(|s| alsa_err(device, "get rate", s))?;
        if got != rate {
            return Err(HalError::Device {
                device: device.to_owned(),
                reason: format!("runs at {got} Hz, not the {rate} Hz the board descriptor says"),
            });
        }
    }
    pcm.prepare().map_err(|s| alsa_err(device, "prepare", s))?;
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, channels: u16, rate: u32, frames: usize, f: impl Fn(usize, u16) -> f32) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            for c in 0..channels {
                w.write_sample((f(i, c) * 32767.0) as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn sim_mic_loops_and_keeps_channel_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("room.wav");
        write_wav(&p, 4, 16000, 100, |i, c| (i as f32 / 1000.0) + c as f32 * 0.1);
        let mut mic = SimMicArray::open(&p, 4, 16000).unwrap().unpaced();
        let mut buf = vec![0.0; 4 * 150];
        mic.read(&mut buf).unwrap();
        // Frame 0 and frame 100 (looped) are the same; channel c carries its offset.
        for c in 0..4 {
            assert!((buf[c] - buf[100 * 4 + c]).abs() < 1e-6);
            assert!((buf[c] - c as f32 * 0.1).abs() < 1e-3);
        }
    }

    #[test]
    fn sim_mic_spreads_mono() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tone.wav");
        write_wav(&p, 1, 16000, 50, |i, _| (i as f32 * 0.3).sin() * 0.5);
        let mut mic = SimMicArray::open(&p, 6, 16000).unwrap().unpaced();
        let mut buf = vec![0.0; 6 * 10];
        mic.read(&mut buf).unwrap();
        for f in 0..10 {
            let frame = &buf[f * 6..f * 6 + 6];
            assert!(frame.iter().all(|&s| s == frame[0]));
        }
        assert!(buf.iter().any(|&s| s != 0.0));
    }

    #[test]
    fn sim_mic_places_a_mono_talker_with_each_mics_delay() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tone.wav");
        let (rate, hz) = (16000u32, 1000.0f64);
        let w = 2.0 * std::f64::consts::PI * hz / rate as f64;
        write_wav(&p, 1, rate, 1600, |i, _| (w * i as f64).sin() as f32 * 0.5);
        // Two mics 9.26 cm apart on the x axis, a loopback channel between them, the talker on +x.
        let mics = [(0u16, [-0.0463, 0.0, 0.0]), (2u16, [0.0463, 0.0, 0.0])];
        let mut mic = SimMicArray::open(&p, 3, rate).unwrap().unpaced().mono_as_talker(&mics, 0.0);
        let mut buf = vec![0.0; 3 * 1600];
        mic.read(&mut buf).unwrap();
        // Phase and amplitude of the tone on each channel, past the filters' start.
        let phasor = |ch: usize| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for i in 400..1600 {
                let v = buf[i * 3 + ch] as f64;
                re += v * (w * i as f64).cos();
                im += v * (w * i as f64).sin();
            }
            let n = 1200.0 / 2.0;
            ((re / n).hypot(im / n), re.atan2(im))
        };
        let (a0, p0) = phasor(0);
        let (a1, _) = phasor(1);
        let (a2, p2) = phasor(2);
        for a in [a0, a1, a2] {
            assert!((a - 0.5).abs() < 0.01, "the tone keeps its level on every channel: {a0} {a1} {a2}");
        }
        // The mic nearer the talker hears it 0.0926 m / 343 m/s earlier: 1.696 rad at 1 kHz.
        let lead = (p2 - p0).rem_euclid(2.0 * std::f64::consts::PI);
        let want = w * 0.0926 / 343.0 * rate as f64;
        assert!((lead - want).abs() < 0.02, "mic 2 leads by {lead:.3} rad, want {want:.3}");
    }

    #[test]
    fn sim_mic_refuses_wrong_rate_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("room.wav");
        write_wav(&p, 2, 16000, 10, |_, _| 0.0);
        let e = SimMicArray::open(&p, 6, 16000).err().unwrap().to_string();
        assert!(e.contains("room.wav") && e.contains("2 channels"), "{e}");
        let e = SimMicArray::open(&p, 2, 48000).err().unwrap().to_string();
        assert!(e.contains("16000 Hz") && e.contains("48000"), "{e}");
    }

    #[test]
    fn sim_mic_refuses_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.wav");
        write_wav(&p, 2, 16000, 1000, |i, _| (i as f32 * 0.01).sin());
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2 + 1]).unwrap();
        let e = SimMicArray::open(&p, 2, 16000).err().unwrap().to_string();
        assert!(e.contains("cut.wav"), "{e}");
    }

    #[test]
    fn sim_out_writes_what_it_plays() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.wav");
        let fmt = StreamFormat { sample_rate: 48000, channels: 2 };
        {
            let mut out = SimAudioOut::create(&p, fmt).unwrap();
            let buf: Vec<f32> = (0..960).map(|i| if i % 2 == 0 { 0.25 } else { -0.5 }).collect();
            out.write(&buf).unwrap();
        }
        let (s, spec) = read_wav(&p).unwrap();
        assert_eq!((spec.channels, spec.sample_rate), (2, 48000));
        assert_eq!(s.len(), 960);
        assert!((s[0] - 0.25).abs() < 1e-3 && (s[1] + 0.5).abs() < 1e-3);
    }
}
