//! The default room recording for the simulated mic array.
//!
//! When no recording is configured, huisd renders one at first start: a
//! talker in a shoebox room, heard by the board's array with the true
//! propagation delay and attenuation of the direct path and of the six
//! first-order wall reflections (image sources), plus low-level diffuse-ish
//! noise. It is an honest, if simple, stand-in for a real room.

use std::f64::consts::PI;
use std::path::Path;

const SPEED_OF_SOUND: f64 = 343.0;

/// Renders `seconds` of a talker at `azimuth_deg`, 1.5 m from the array
/// centre, in a 6 x 5 x 3 m room, for mics at `positions` (metres).
pub fn render(positions: &[[f64; 3]], rate: u32, seconds: f64, azimuth_deg: f64) -> Vec<f32> {
    let n = (seconds * rate as f64) as usize;
    let source = speech_like(n, rate);
    let room = [6.0, 5.0, 3.0];
    let array_centre = [2.5, 2.2, 0.8];
    let az = azimuth_deg.to_radians();
    let src = [array_centre[0] + 1.5 * az.cos(), array_centre[1] + 1.5 * az.sin(), 1.2];
    // Direct path and first-order images, with a wall reflection coefficient.
    let mut images = vec![(src, 1.0)];
    for axis in 0..3 {
        for wall in [0.0, room[axis]] {
            let mut im = src;
            im[axis] = 2.0 * wall - src[axis];
            images.push((im, 0.7));
        }
    }
    let ch = positions.len();
    let mut out = vec![0.0f32; n * ch];
    let half = 16i64;
    for (m, p) in positions.iter().enumerate() {
        let mic = [array_centre[0] + p[0], array_centre[1] + p[1], array_centre[2] + p[2]];
        for (im, refl) in &images {
            let d = ((im[0] - mic[0]).powi(2) + (im[1] - mic[1]).powi(2) + (im[2] - mic[2]).powi(2)).sqrt();
            let delay = d / SPEED_OF_SOUND * rate as f64;
            let gain = refl / d.max(0.1);
            // Fractional delay by a Hann-windowed sinc of 33 taps.
            let base = delay.floor() as i64;
            let frac = delay - base as f64;
            let taps: Vec<(i64, f64)> = (-half..=half)
                .map(|k| {
                    let x = k as f64 - frac;
                    let sinc = if x.abs() < 1e-9 { 1.0 } else { (PI * x).sin() / (PI * x) };
                    let w = 0.5 + 0.5 * (PI * x / (half as f64 + 1.0)).cos();
                    (base + k, sinc * w * gain)
                })
                .collect();
            for (i, o) in out.chunks_exact_mut(ch).enumerate() {
                let mut acc = 0.0;
                for &(off, t) in &taps {
                    let j = i as i64 - off;
                    if j >= 0 && (j as usize) < n {
                        acc += source[j as usize] * t;
                    }
                }
                o[m] += acc as f32;
            }
        }
    }
    // Independent low-level noise on each mic (about 35 dB below the talker).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for s in out.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *s += ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.004;
    }
    let peak = out.iter().fold(0.0f32, |a, &b| a.max(b.abs())).max(1e-6);
    out.iter_mut().for_each(|s| *s *= 0.5 / peak);
    out
}

/// A voiced, syllable-like signal: a glottal-pulse-rich harmonic series with
/// a wandering pitch, shaped by 4 Hz syllable envelopes with pauses.
fn speech_like(n: usize, rate: u32) -> Vec<f64> {
    let r = rate as f64;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / r;
            let f0 = 120.0 + 25.0 * (2.0 * PI * 0.7 * t).sin();
            phase += 2.0 * PI * f0 / r;
            let voiced: f64 = (1..=25).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            let syllable = (2.0 * PI * 4.0 * t).sin().max(0.0);
            let pause = if (t % 3.0) > 2.4 { 0.0 } else { 1.0 };
            voiced * syllable * pause
        })
        .collect()
}

/// Writes the default scene for `positions` to `path` as 16-bit WAV.
pub fn write_default(path: &Path, positions: &[[f64; 3]], rate: u32) -> Result<(), String> {
    let samples = render(positions, rate, 6.0, 60.0);
    let spec = hound::WavSpec {
        channels: positions.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("wav.part");
    let mut w = hound::WavWriter::create(&tmp, spec).map_err(|e| format!("{}: {e}", tmp.display()))?;
    for s in samples {
        w.write_sample((s * 32767.0) as i16).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    w.finalize().map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearer_mic_hears_the_talker_first() {
        // Two mics 10 cm apart on the x axis; talker at 0 degrees (+x).
        let pos = [[-0.05, 0.0, 0.0], [0.05, 0.0, 0.0]];
        let s = render(&pos, 16000, 1.0, 0.0);
        let a: Vec<f64> = s.chunks(2).map(|f| f[0] as f64).collect();
        let b: Vec<f64> = s.chunks(2).map(|f| f[1] as f64).collect();
        // Cross-correlate over +-10 samples: mic 1 (at +x) leads mic 0 by about
        // 0.1 m / 343 m/s * 16 kHz = 4.7 samples.
        let best = (-10i64..=10)
            .max_by(|&x, &y| {
                let c = |lag: i64| -> f64 { (20..a.len() - 20).map(|i| a[i] * b[(i as i64 + lag) as usize]).sum() };
                c(x).partial_cmp(&c(y)).unwrap()
            })
            .unwrap();
        assert!((-6..=-3).contains(&best), "lag {best}");
    }
}
