//! Tones: write a sine to WAV, read WAVs that peers record, and tell which
//! frequency dominates each 100 ms window.
//!
//! The WAV reader is tolerant on purpose: a peer that is still recording (or
//! was killed) leaves a header whose sizes are 0 or wrong, so the data chunk
//! is taken to run to the end of the file when its size does not fit.

use std::f64::consts::PI;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// PCM audio read from a WAV file, samples as f32 in [-1, 1], interleaved.
#[derive(Debug, Clone)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

impl Wav {
    /// The first channel only.
    pub fn mono(&self) -> Vec<f32> {
        self.samples.iter().step_by(self.channels.max(1) as usize).copied().collect()
    }

    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.channels.max(1) as f64 / self.rate as f64
    }
}

/// The room's test tone: the mono recording the sim board plays as its talker in the call
/// tests, in Hz. Not 1000 Hz: a 440 Hz tone coded at 8 or 48 kHz has its quantisation products
/// on a 40 Hz grid, and a room tone exactly on that grid is phase-locked to a line of the far
/// end, which no real room and far end are (they run on different clocks). An adaptive echo
/// canceller learns such a locked tone as echo, within its gain bound, and the beam then takes
/// it for residual echo; 1010 Hz is 10 Hz off every line and still a whole number of cycles in
/// a 5 s loop.
pub const ROOM_TONE_HZ: f32 = 1010.0;

/// Writes the room's test tone ([`ROOM_TONE_HZ`], 5 s, mono, 16 kHz, amplitude 0.4): the
/// `audio.sim_recording` of the call tests.
pub fn write_room_tone_wav(path: &Path) -> Result<()> {
    write_sine_wav(path, ROOM_TONE_HZ, 5.0, 16000, 1, 0.4)
}

/// Writes a 16-bit PCM WAV holding a sine of `hz` for `seconds`, the same
/// signal in every channel; `amplitude` is linear, 0..1 of full scale.
pub fn write_sine_wav(path: &Path, hz: f32, seconds: f32, rate: u32, channels: u16, amplitude: f32) -> Result<()> {
    let frames = (seconds as f64 * rate as f64).round() as usize;
    let mut pcm = Vec::with_capacity(frames * channels as usize * 2);
    for i in 0..frames {
        let v = (amplitude as f64 * (2.0 * PI * hz as f64 * i as f64 / rate as f64).sin()).clamp(-1.0, 1.0);
        let s = (v * 32767.0).round() as i16;
        for _ in 0..channels {
            pcm.extend_from_slice(&s.to_le_bytes());
        }
    }
    write_wav_s16(path, rate, channels, &pcm)
}

/// Writes a mono 16-bit PCM WAV of `hz` bursts, `on_ms` on and `off_ms` off, over a hiss 50 dB
/// below them (a tonal sound such as a test tone or a gateway's prompt, in a quiet room).
pub fn write_tone_bursts_wav(
    path: &Path,
    hz: f32,
    on_ms: u32,
    off_ms: u32,
    seconds: f32,
    rate: u32,
    amplitude: f32,
) -> Result<()> {
    let frames = (seconds as f64 * rate as f64).round() as usize;
    let mut pcm = Vec::with_capacity(frames * 2);
    let mut seed = 0x9e37_79b9u32;
    for i in 0..frames {
        let on = (i as u64 * 1000 / rate as u64) % u64::from(on_ms + off_ms) < u64::from(on_ms);
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let hiss = ((seed >> 8) as f64 / f64::from(1u32 << 24) - 0.5) * amplitude as f64 * 0.01;
        let tone = if on { amplitude as f64 * (2.0 * PI * hz as f64 * i as f64 / rate as f64).sin() } else { 0.0 };
        pcm.extend_from_slice(&(((tone + hiss).clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    write_wav_s16(path, rate, 1, &pcm)
}

fn write_wav_s16(path: &Path, rate: u32, channels: u16, pcm: &[u8]) -> Result<()> {
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(pcm);
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// Reads a PCM WAV (8/16/24/32-bit integer or 32-bit float).
pub fn read_wav(path: &Path) -> Result<Wav> {
    let b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        bail!("{} is not a RIFF/WAVE file", path.display());
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            if body + 16 > b.len() {
                bail!("{}: short fmt chunk", path.display());
            }
            let f = |o: usize| u16::from_le_bytes(b[body + o..body + o + 2].try_into().unwrap());
            let rate = u32::from_le_bytes(b[body + 4..body + 8].try_into().unwrap());
            fmt = Some((f(0), f(2), rate, f(14)));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.with_context(|| format!("{}: data before fmt", path.display()))?;
            let end = if len == 0 || body + len > b.len() { b.len() } else { body + len };
            let data = &b[body..end];
            let samples = decode(data, format, bits)
                .with_context(|| format!("{}: format {format}, {bits} bits", path.display()))?;
            return Ok(Wav { rate, channels, samples });
        }
        pos = body + len + (len & 1);
    }
    bail!("{}: no data chunk", path.display())
}

fn decode(data: &[u8], format: u16, bits: u16) -> Result<Vec<f32>> {
    // 0xFFFE (extensible) is treated by its bit depth: integer unless 32-bit float was meant.
    Ok(match (format, bits) {
        (1 | 0xFFFE, 16) => data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0).collect(),
        (1 | 0xFFFE, 8) => data.iter().map(|&v| (v as f32 - 128.0) / 128.0).collect(),
        (1 | 0xFFFE, 24) => data
            .chunks_exact(3)
            .map(|c| (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f32 / 8_388_608.0)
            .collect(),
        (1, 32) => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 / 2_147_483_648.0)
            .collect(),
        (3 | 0xFFFE, 32) => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        _ => bail!("unsupported WAV sample format"),
    })
}

/// Level of `samples` in dB relative to full scale (a full-scale sine is
/// about -3 dBFS); -120 for silence or no samples.
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return -120.0;
    }
    let ms = samples.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / samples.len() as f64;
    if ms <= 1e-12 { -120.0 } else { (10.0 * ms.log10()).max(-120.0) }
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * PI / len as f64;
        let (wr, wi) = (ang.cos(), ang.sin());
        for start in (0..n).step_by(len) {
            let (mut cr, mut ci) = (1.0f64, 0.0f64);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * cr - im[b] * ci;
                let ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
                let nr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = nr;
            }
        }
        len <<= 1;
    }
}

/// The frequency (Hz) with the most energy in `samples` (mono), ignoring
/// DC and anything below 50 Hz. Hann window, zero-padded FFT with parabolic
/// interpolation of the peak; 0.0 for fewer than 16 samples.
pub fn dominant_frequency(samples: &[f32], rate: u32) -> f32 {
    let n = samples.len();
    if n < 16 {
        return 0.0;
    }
    let size = (n * 2).next_power_of_two();
    let mut re = vec![0.0f64; size];
    let mut im = vec![0.0f64; size];
    for (i, &s) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
        re[i] = s as f64 * w;
    }
    fft(&mut re, &mut im);
    let bin_hz = rate as f64 / size as f64;
    let first = ((50.0 / bin_hz).ceil() as usize).max(1);
    let mag: Vec<f64> = (0..size / 2).map(|k| re[k].hypot(im[k])).collect();
    let mut best = first;
    for k in first..size / 2 {
        if mag[k] > mag[best] {
            best = k;
        }
    }
    let mut peak = best as f64;
    if best > 0 && best + 1 < mag.len() {
        let (a, b, c) = (mag[best - 1], mag[best], mag[best + 1]);
        let d = a - 2.0 * b + c;
        if d.abs() > 1e-12 {
            peak += 0.5 * (a - c) / d;
        }
    }
    (peak * bin_hz) as f32
}

/// What [`tone_fraction`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneReport {
    /// Windows analysed (after `skip_ms`).
    pub windows: usize,
    /// Windows louder than the silence threshold.
    pub voiced: usize,
    /// Voiced windows whose dominant frequency is within tolerance.
    pub matching: usize,
    /// `matching / voiced` (0 when nothing was voiced).
    pub fraction: f64,
    /// The most common dominant frequency among voiced windows, rounded to 10 Hz.
    pub typical_hz: f32,
    /// Level of the whole analysed part.
    pub level_dbfs: f64,
    pub seconds: f64,
}

/// Windows quieter than this count as silence.
pub const SILENCE_DBFS: f64 = -50.0;

/// Reads `wav_path` and reports which share of its voiced `window_ms`
/// windows (after skipping the first `skip_ms`) have `expected_hz` ±
/// `tolerance_hz` as their dominant frequency. Analyses the first channel.
pub fn tone_fraction(
    wav_path: &Path,
    expected_hz: f32,
    tolerance_hz: f32,
    window_ms: u32,
    skip_ms: u32,
) -> Result<ToneReport> {
    let wav = read_wav(wav_path)?;
    Ok(tone_fraction_of(&wav.mono(), wav.rate, expected_hz, tolerance_hz, window_ms, skip_ms))
}

/// [`tone_fraction`] on samples already in memory (mono).
pub fn tone_fraction_of(
    mono: &[f32],
    rate: u32,
    expected_hz: f32,
    tolerance_hz: f32,
    window_ms: u32,
    skip_ms: u32,
) -> ToneReport {
    let win = (rate as usize * window_ms as usize / 1000).max(16);
    let skip = (rate as usize * skip_ms as usize / 1000).min(mono.len());
    let body = &mono[skip..];
    let (mut windows, mut voiced, mut matching) = (0, 0, 0);
    let mut hist = std::collections::BTreeMap::<i64, usize>::new();
    for w in body.chunks_exact(win) {
        windows += 1;
        if rms_dbfs(w) < SILENCE_DBFS {
            continue;
        }
        voiced += 1;
        let f = dominant_frequency(w, rate);
        *hist.entry((f / 10.0).round() as i64 * 10).or_default() += 1;
        if (f - expected_hz).abs() <= tolerance_hz {
            matching += 1;
        }
    }
    let typical_hz = hist.iter().max_by_key(|(_, n)| **n).map(|(f, _)| *f as f32).unwrap_or(0.0);
    ToneReport {
        windows,
        voiced,
        matching,
        fraction: if voiced == 0 { 0.0 } else { matching as f64 / voiced as f64 },
        typical_hz,
        level_dbfs: rms_dbfs(body),
        seconds: mono.len() as f64 / rate as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tone_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        write_sine_wav(&p, 1000.0, 1.0, 8000, 1, 0.5).unwrap();
        let r = tone_fraction(&p, 1000.0, 20.0, 100, 0).unwrap();
        assert_eq!((r.windows, r.voiced, r.matching), (10, 10, 10));
        assert!((r.level_dbfs + 9.0).abs() < 0.2, "{r:?}");
        // A different tone does not pass for this one.
        let r = tone_fraction(&p, 440.0, 20.0, 100, 0).unwrap();
        assert_eq!(r.matching, 0);
        write_sine_wav(&p, 440.0, 0.5, 48000, 2, 0.3).unwrap();
        let w = read_wav(&p).unwrap();
        assert_eq!((w.rate, w.channels), (48000, 2));
        let f = dominant_frequency(&w.mono()[..4800], 48000);
        assert!((f - 440.0).abs() < 3.0, "{f}");
    }

    #[test]
    fn silence_is_not_voiced() {
        let r = tone_fraction_of(&vec![0.0; 8000], 8000, 1000.0, 20.0, 100, 0);
        assert_eq!((r.windows, r.voiced, r.fraction), (10, 0, 0.0));
    }
}

/// One G.711 µ-law byte as a sample in [-1, 1] (what a PCMU payload plays as).
pub fn ulaw_sample(b: u8) -> f32 {
    let b = !b;
    let t = ((i32::from(b & 0x0f) << 3) + 0x84) << ((b & 0x70) >> 4);
    let v = if b & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    v as f32 / 32768.0
}
