//! A small room simulator for tests, echo scenes and the simulated board: image-source method
//! for shoebox rooms (Allen & Berkley 1979) with windowed-sinc fractional-delay taps, wall
//! absorption set from a target RT60 by Sabine's formula, diffuse noise as many uncorrelated
//! plane waves, point noise, a speech-like source, and a loudspeaker echo path with a delay
//! offset, mild nonlinearity and a path change.

use crate::geometry::{Geometry, SPEED_OF_SOUND};
use crate::stft::Fft;
use realfft::num_complex::Complex32;

/// Deterministic pseudo-random numbers (SplitMix64), so fixtures are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// uniform in [0, 1)
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform()
    }
    /// standard normal (Box–Muller)
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A shoebox room with uniform wall absorption.
#[derive(Debug, Clone)]
pub struct Room {
    pub dims: [f64; 3],
    pub rt60_s: f64,
    pub fs: f64,
    /// pressure reflection coefficient of every wall
    pub beta: f64,
}

impl Room {
    /// Room whose Sabine RT60 is `rt60_s` (absorption clamped to a physical range).
    pub fn new(dims: [f64; 3], rt60_s: f64, fs: f64) -> Self {
        let v = dims[0] * dims[1] * dims[2];
        let s = 2.0 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2]);
        let alpha = (0.161 * v / (s * rt60_s)).clamp(0.01, 0.99);
        Self { dims, rt60_s, fs, beta: (1.0 - alpha).sqrt() }
    }

    /// Room impulse response from `src` to `mic` (room coordinates, m), `len_s` long. The direct
    /// path arrives at its true delay (fractional, ±8-tap Hann-windowed sinc).
    pub fn rir(&self, src: [f64; 3], mic: [f64; 3], len_s: f64) -> Vec<f32> {
        let n = (len_s * self.fs).ceil() as usize + 16;
        let mut h = vec![0.0f64; n];
        let max_d = len_s * SPEED_OF_SOUND;
        let mut nmax = [0i64; 3];
        for a in 0..3 {
            nmax[a] = (max_d / (2.0 * self.dims[a])).ceil() as i64 + 1;
        }
        const HALF: i64 = 8;
        for nx in -nmax[0]..=nmax[0] {
            for px in 0..2i64 {
                let ix = (1 - 2 * px) as f64 * src[0] + 2.0 * nx as f64 * self.dims[0] - mic[0];
                let ox = (nx - px).abs() + nx.abs();
                if ix.abs() > max_d {
                    continue;
                }
                for ny in -nmax[1]..=nmax[1] {
                    for py in 0..2i64 {
                        let iy = (1 - 2 * py) as f64 * src[1] + 2.0 * ny as f64 * self.dims[1] - mic[1];
                        let oy = (ny - py).abs() + ny.abs();
                        let dxy = ix * ix + iy * iy;
                        if dxy > max_d * max_d {
                            continue;
                        }
                        for nz in -nmax[2]..=nmax[2] {
                            for pz in 0..2i64 {
                                let iz = (1 - 2 * pz) as f64 * src[2] + 2.0 * nz as f64 * self.dims[2] - mic[2];
                                let d = (dxy + iz * iz).sqrt();
                                if d > max_d {
                                    continue;
                                }
                                let oz = (nz - pz).abs() + nz.abs();
                                let order = (ox + oy + oz) as i32;
                                let g = self.beta.powi(order) / (4.0 * std::f64::consts::PI * d.max(0.05));
                                let t = d / SPEED_OF_SOUND * self.fs;
                                let t0 = t.floor() as i64;
                                for i in (t0 - HALF + 1)..=(t0 + HALF) {
                                    if i < 0 || i as usize >= n {
                                        continue;
                                    }
                                    let x = i as f64 - t;
                                    let w = 0.5 + 0.5 * (std::f64::consts::PI * x / HALF as f64).cos();
                                    h[i as usize] += g * w * sinc(x);
                                }
                            }
                        }
                    }
                }
            }
        }
        h.into_iter().map(|v| v as f32).collect()
    }

    /// Signals at each mic (room coordinates) from a source playing `sig` at `src`.
    pub fn render(&self, sig: &[f32], src: [f64; 3], mics: &[[f64; 3]], len_s: f64) -> Vec<Vec<f32>> {
        mics.iter().map(|&m| convolve(sig, &self.rir(src, m, len_s), sig.len())).collect()
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-9 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) }
}

/// Linear convolution by FFT, truncated to `out_len`.
pub fn convolve(x: &[f32], h: &[f32], out_len: usize) -> Vec<f32> {
    let n = (x.len() + h.len()).next_power_of_two();
    let mut fft = Fft::new(n);
    let mut a = vec![0.0f32; n];
    let mut b = vec![0.0f32; n];
    a[..x.len()].copy_from_slice(x);
    b[..h.len()].copy_from_slice(h);
    let mut fa = vec![Complex32::new(0.0, 0.0); n / 2 + 1];
    let mut fb = fa.clone();
    fft.forward(&mut a, &mut fa);
    fft.forward(&mut b, &mut fb);
    for (p, q) in fa.iter_mut().zip(&fb) {
        *p *= *q / n as f32;
    }
    fft.inverse(&mut fa, &mut a);
    a.truncate(out_len);
    a
}

/// Delays `sig` by `delays[m]` seconds (fractional, circular over a zero-padded length) for each
/// mic; used for plane waves.
pub fn fractional_delays(sig: &[f32], delays: &[f64], fs: f64) -> Vec<Vec<f32>> {
    let pad = 64;
    let n = (sig.len() + 2 * pad).next_power_of_two();
    let mut fft = Fft::new(n);
    let mut a = vec![0.0f32; n];
    a[..sig.len()].copy_from_slice(sig);
    let mut fa = vec![Complex32::new(0.0, 0.0); n / 2 + 1];
    fft.forward(&mut a, &mut fa);
    delays
        .iter()
        .map(|&d| {
            let mut f = fa.clone();
            for (k, v) in f.iter_mut().enumerate() {
                let ph = -2.0 * std::f64::consts::PI * k as f64 / n as f64 * d * fs;
                *v *= Complex32::new(ph.cos() as f32, ph.sin() as f32) / n as f32;
            }
            let mut out = vec![0.0f32; n];
            fft.inverse(&mut f, &mut out);
            out.truncate(sig.len());
            out
        })
        .collect()
}

/// A far-field plane wave from (`az_deg`, `el_deg`) at the array: one signal per mic.
pub fn plane_wave(sig: &[f32], geom: &Geometry, az_deg: f64, el_deg: f64, fs: f64) -> Vec<Vec<f32>> {
    let mut d = vec![0.0; geom.n_mics()];
    geom.delays(az_deg, el_deg, &mut d);
    fractional_delays(sig, &d, fs)
}

/// Channels (one signal each, equal lengths) interleaved frame-major, as a capture device
/// delivers them and `Processor::process` takes them.
pub fn interleave(ch: &[Vec<f32>]) -> Vec<f32> {
    let n = ch[0].len();
    let mut v = Vec::with_capacity(n * ch.len());
    for i in 0..n {
        for c in ch {
            v.push(c[i]);
        }
    }
    v
}

/// Pinkish noise (white through a one-pole low-pass blend), unit-ish RMS.
pub fn pink_noise(n: usize, rng: &mut Rng) -> Vec<f32> {
    let (mut b0, mut b1, mut b2) = (0.0f64, 0.0f64, 0.0f64);
    let mut v: Vec<f32> = (0..n)
        .map(|_| {
            let w = rng.normal();
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            (b0 + b1 + b2 + w * 0.1848) as f32
        })
        .collect();
    normalize_rms(&mut v, 1.0);
    v
}

pub fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / x.len().max(1) as f64).sqrt() as f32
}

pub fn normalize_rms(x: &mut [f32], target: f32) {
    let r = rms(x);
    if r > 0.0 {
        x.iter_mut().for_each(|v| *v *= target / r);
    }
}

/// Spherically diffuse noise: `n_dirs` uncorrelated pink plane waves from directions spread
/// evenly over the sphere (Fibonacci lattice). One signal per mic, about unit RMS.
pub fn diffuse_noise(geom: &Geometry, n: usize, fs: f64, n_dirs: usize, rng: &mut Rng) -> Vec<Vec<f32>> {
    let m = geom.n_mics();
    let mut out = vec![vec![0.0f32; n]; m];
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    for i in 0..n_dirs {
        let z = 1.0 - 2.0 * (i as f64 + 0.5) / n_dirs as f64;
        let az = (golden * i as f64).to_degrees();
        let el = z.asin().to_degrees();
        let s = pink_noise(n, rng);
        let pw = plane_wave(&s, geom, az, el, fs);
        for (o, p) in out.iter_mut().zip(pw) {
            for (a, b) in o.iter_mut().zip(p) {
                *a += b / (n_dirs as f32).sqrt();
            }
        }
    }
    out
}

/// A speech-like signal: syllables of voiced harmonics (gliding f0, three random formants) and
/// some unvoiced bursts, in words and phrases with pauses. Peak-normalised to 0.5.
/// Returns the signal and, per sample, whether the source is "talking" (inside a phrase).
pub fn speech_like(n: usize, fs: f64, rng: &mut Rng) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    let base_f0 = rng.range(95.0, 210.0);
    let mut t = 0usize;
    let mut phase = 0.0f64;
    while t < n {
        let words = 2 + (rng.uniform() * 5.0) as usize;
        for _ in 0..words {
            let syl = 1 + (rng.uniform() * 3.0) as usize;
            for _ in 0..syl {
                let len = (rng.range(0.10, 0.28) * fs) as usize;
                let f1 = rng.range(300.0, 850.0);
                let f2 = rng.range(900.0, 2300.0);
                let f3 = rng.range(2400.0, 3300.0);
                let f0a = base_f0 * rng.range(0.85, 1.2);
                let f0b = f0a * rng.range(0.85, 1.15);
                let voiced = rng.uniform() < 0.85;
                let amp = rng.range(0.5, 1.0);
                for i in 0..len {
                    if t + i >= n {
                        break;
                    }
                    let u = i as f64 / len as f64;
                    let env = (std::f64::consts::PI * u).sin().powf(0.6) * amp;
                    let s = if voiced {
                        let f0 = f0a + (f0b - f0a) * u;
                        phase += 2.0 * std::f64::consts::PI * f0 / fs;
                        let mut s = 0.0;
                        let mut h = 1.0;
                        while h * f0 < 0.45 * fs && h < 60.0 {
                            let f = h * f0;
                            let g = formant(f, f1, 90.0) + 0.6 * formant(f, f2, 120.0) + 0.3 * formant(f, f3, 180.0);
                            s += g * (h * phase).sin() / h.sqrt();
                            h += 1.0;
                        }
                        s
                    } else {
                        0.3 * rng.normal()
                    };
                    out[t + i] += (env * s) as f32;
                }
                t += len;
            }
            t += (rng.range(0.03, 0.15) * fs) as usize;
        }
        t += (rng.range(0.25, 0.6) * fs) as usize;
    }
    // unvoiced bursts are white: tilt them a little with a first difference of the whole
    let peak = out.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    if peak > 0.0 {
        out.iter_mut().for_each(|v| *v *= 0.5 / peak);
    }
    out
}

fn formant(f: f64, fc: f64, bw: f64) -> f64 {
    1.0 / (1.0 + ((f - fc) / bw).powi(2))
}

/// Mild loudspeaker nonlinearity: tanh(a·x)/a (a = 0 is linear).
pub fn soft_clip(x: &[f32], a: f32) -> Vec<f32> {
    if a <= 0.0 {
        return x.to_vec();
    }
    x.iter().map(|v| (a * v).tanh() / a).collect()
}

/// Positions of `geom`'s mics in the room, the array centre at `centre`.
pub fn mics_in_room(geom: &Geometry, centre: [f64; 3]) -> Vec<[f64; 3]> {
    let c = geom.centroid();
    geom.mics.iter().map(|m| [centre[0] + m[0] - c[0], centre[1] + m[1] - c[1], centre[2] + m[2] - c[2]]).collect()
}

/// Azimuth (deg, [0,360)) and elevation of `p` seen from `centre`.
pub fn direction(centre: [f64; 3], p: [f64; 3]) -> (f64, f64, f64) {
    let (dx, dy, dz) = (p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]);
    let r = (dx * dx + dy * dy + dz * dz).sqrt();
    (dy.atan2(dx).to_degrees().rem_euclid(360.0), (dz / r).asin().to_degrees(), r)
}
