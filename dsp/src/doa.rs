//! Direction of arrival: SRP-PHAT over an azimuth grid on noise-compensated, SNR-weighted
//! cross-spectra accumulated over a block of frames.
//!
//! Per bin the block covariance minus the blind noise covariance leaves (mostly) the
//! directional speech part; each pair's cross-spectrum is then phase-normalised (PHAT) and
//! weighted by the bin's Wiener weight snr/(1+snr), so noise-only and reverberant-tail bins count
//! little. The steered response is scanned on a coarse grid with a phase recurrence over bins
//! (one complex multiply per pair, bin and direction), refined on a 0.5° grid around the best
//! peak and interpolated parabolically.

use crate::geometry::Geometry;
use realfft::num_complex::Complex32;

pub struct DoaEstimate {
    pub azimuth_deg: f32,
    /// normalised steered response at the peak, 0..1 (1 = all weighted bins agree)
    pub coherence: f32,
    /// mean Wiener weight over the band (how much directional signal the block held)
    pub activity: f32,
}

pub struct Doa {
    m: usize,
    pairs: Vec<(usize, usize)>,
    k_lo: usize,
    k_hi: usize,
    /// (pair, bin) accumulated cross-spectra
    acc: Vec<Complex32>,
    acc_pow: Vec<f32>,
    frames: usize,
    c: Vec<Complex32>,
    w: Vec<f32>,
    // grid
    start_deg: f64,
    span_deg: f64,
    full_circle: bool,
    coarse_step: f64,
    coarse_az: Vec<f64>,
    /// per (grid, pair): rotator r = exp(j dω Δτ) and start z0 = r^k_lo
    rot: Vec<(Complex32, Complex32)>,
    map: Vec<f32>,
    geom: Geometry,
    dw: f64,
    delays: Vec<f64>,
}

impl Doa {
    pub fn new(geom: &Geometry, fs: f64, nfft: usize, f_lo: f64, f_hi: f64, coarse_step: f64) -> Self {
        let m = geom.n_mics();
        let mut pairs = Vec::new();
        for i in 0..m {
            for j in i + 1..m {
                pairs.push((i, j));
            }
        }
        let df = fs / nfft as f64;
        let k_lo = (f_lo / df).ceil() as usize;
        let k_hi = ((f_hi / df).floor() as usize).min(nfft / 2);
        let nbu = k_hi - k_lo + 1;
        let (start_deg, span_deg) = geom.search_range();
        let full_circle = span_deg >= 359.9;
        let n_coarse = if full_circle {
            (360.0 / coarse_step).round() as usize
        } else {
            (span_deg / coarse_step).round() as usize + 1
        };
        let coarse_step = if full_circle { 360.0 / n_coarse as f64 } else { span_deg / (n_coarse - 1) as f64 };
        let coarse_az: Vec<f64> = (0..n_coarse).map(|g| start_deg + g as f64 * coarse_step).collect();
        let dw = 2.0 * std::f64::consts::PI * df;
        let mut s = Self {
            m,
            pairs,
            k_lo,
            k_hi,
            acc: Vec::new(),
            acc_pow: vec![0.0; nbu],
            frames: 0,
            c: Vec::new(),
            w: vec![0.0; nbu],
            start_deg,
            span_deg,
            full_circle,
            coarse_step,
            coarse_az,
            rot: Vec::new(),
            map: vec![0.0; n_coarse],
            geom: geom.clone(),
            dw,
            delays: vec![0.0; m],
        };
        let np = s.pairs.len();
        s.acc = vec![Complex32::new(0.0, 0.0); np * nbu];
        s.c = vec![Complex32::new(0.0, 0.0); np * nbu];
        s.rot = Vec::with_capacity(n_coarse * np);
        for g in 0..n_coarse {
            let az = s.coarse_az[g];
            let mut rows = vec![(Complex32::new(1.0, 0.0), Complex32::new(1.0, 0.0)); np];
            s.rotators(az, &mut rows);
            s.rot.extend(rows);
        }
        s
    }

    fn rotators(&mut self, az: f64, out: &mut [(Complex32, Complex32)]) {
        self.geom.delays(az, 0.0, &mut self.delays);
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            let dt = self.delays[i] - self.delays[j];
            let a = self.dw * dt;
            let r = Complex32::new(a.cos() as f32, a.sin() as f32);
            let a0 = a * self.k_lo as f64;
            let z0 = Complex32::new(a0.cos() as f32, a0.sin() as f32);
            out[p] = (r, z0);
        }
    }

    /// Adds one frame. `x` is the M × nb spectra (channel-major).
    pub fn accumulate(&mut self, x: &[Complex32], nb: usize) {
        let nbu = self.k_hi - self.k_lo + 1;
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            let xi = &x[i * nb + self.k_lo..i * nb + self.k_hi + 1];
            let xj = &x[j * nb + self.k_lo..j * nb + self.k_hi + 1];
            let acc = &mut self.acc[p * nbu..(p + 1) * nbu];
            for b in 0..nbu {
                acc[b] += xi[b] * xj[b].conj();
            }
        }
        for ch in 0..self.m {
            let xs = &x[ch * nb + self.k_lo..ch * nb + self.k_hi + 1];
            for b in 0..nbu {
                self.acc_pow[b] += xs[b].norm_sqr();
            }
        }
        self.frames += 1;
    }

    fn steered(&self, az: f64, delays: &mut [f64]) -> f32 {
        let nbu = self.k_hi - self.k_lo + 1;
        self.geom.delays(az, 0.0, delays);
        let mut s = 0.0f32;
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            let a = self.dw * (delays[i] - delays[j]);
            let r = Complex32::new(a.cos() as f32, a.sin() as f32);
            let a0 = a * self.k_lo as f64;
            let mut z = Complex32::new(a0.cos() as f32, a0.sin() as f32);
            let c = &self.c[p * nbu..(p + 1) * nbu];
            for b in 0..nbu {
                s += c[b].re * z.re - c[b].im * z.im;
                z *= r;
            }
        }
        s
    }

    /// Ends the block: estimates a direction from the accumulated frames (minus the noise
    /// covariance `noise_cov`, nb × M × M) and resets the accumulators. `None` when the block
    /// held no frames or no signal above the noise.
    pub fn evaluate(&mut self, noise_cov: &[Complex32], _nb: usize) -> Option<DoaEstimate> {
        let m = self.m;
        let nbu = self.k_hi - self.k_lo + 1;
        let np = self.pairs.len();
        if self.frames == 0 {
            return None;
        }
        let inv_n = 1.0 / self.frames as f32;
        let mut wsum = 0.0f32;
        for b in 0..nbu {
            let k = b + self.k_lo;
            let cov = &noise_cov[k * m * m..(k + 1) * m * m];
            let mut tr = 0.0f32;
            for ch in 0..m {
                tr += cov[ch * m + ch].re;
            }
            let sig = self.acc_pow[b] * inv_n - tr;
            let snr = (sig / tr.max(1e-20)).max(0.0);
            let w = snr / (1.0 + snr);
            self.w[b] = w;
            wsum += w;
        }
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            for b in 0..nbu {
                let k = b + self.k_lo;
                let r = self.acc[p * nbu + b] * inv_n - noise_cov[k * m * m + i * m + j];
                let mag = r.norm();
                self.c[p * nbu + b] = if mag > 1e-30 { r * (self.w[b] / mag) } else { Complex32::new(0.0, 0.0) };
            }
        }
        self.acc.iter_mut().for_each(|v| *v = Complex32::new(0.0, 0.0));
        self.acc_pow.iter_mut().for_each(|v| *v = 0.0);
        self.frames = 0;
        let activity = wsum / nbu as f32;
        if wsum < 1e-3 {
            return None;
        }
        // coarse scan
        let ng = self.coarse_az.len();
        for g in 0..ng {
            let mut s = 0.0f32;
            let rots = &self.rot[g * np..(g + 1) * np];
            for p in 0..np {
                let (r, mut z) = rots[p];
                let c = &self.c[p * nbu..(p + 1) * nbu];
                for b in 0..nbu {
                    s += c[b].re * z.re - c[b].im * z.im;
                    z *= r;
                }
            }
            self.map[g] = s;
        }
        let gbest = (0..ng).max_by(|&a, &b| self.map[a].total_cmp(&self.map[b])).unwrap();
        // fine scan ±coarse step at 0.5°
        let centre = self.coarse_az[gbest];
        let mut delays = std::mem::take(&mut self.delays);
        let steps = (self.coarse_step / 0.5).ceil() as i32;
        let mut best = (f32::NEG_INFINITY, centre);
        let mut vals = [0.0f32; 3];
        let mut best_i = 0;
        let mut fine = [0.0f32; 64];
        let nfine = (2 * steps + 1) as usize;
        for s in 0..nfine.min(64) {
            let az = centre + (s as i32 - steps) as f64 * 0.5;
            if !self.full_circle && (az < self.start_deg - 1e-9 || az > self.start_deg + self.span_deg + 1e-9) {
                fine[s] = f32::NEG_INFINITY;
                continue;
            }
            let v = self.steered(az, &mut delays);
            fine[s] = v;
            if v > best.0 {
                best = (v, az);
                best_i = s;
            }
        }
        let mut az = best.1;
        if best_i > 0 && best_i + 1 < nfine && fine[best_i - 1].is_finite() && fine[best_i + 1].is_finite() {
            vals[0] = fine[best_i - 1];
            vals[1] = fine[best_i];
            vals[2] = fine[best_i + 1];
            let den = vals[0] - 2.0 * vals[1] + vals[2];
            if den < 0.0 {
                let d = 0.5 * (vals[0] - vals[2]) / den;
                az += d.clamp(-0.5, 0.5) as f64 * 0.5;
            }
        }
        self.delays = delays;
        let coherence = best.0 / (wsum * np as f32);
        Some(DoaEstimate { azimuth_deg: az.rem_euclid(360.0) as f32, coherence, activity })
    }
}

/// Smallest absolute difference of two azimuths in degrees.
pub fn ang_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}
