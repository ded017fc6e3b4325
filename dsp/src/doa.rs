//! Direction of arrival: SRP-PHAT over an azimuth grid on noise-compensated, SNR-weighted
//! cross-spectra accumulated over a block of frames.
//!
//! Per bin the block covariance minus the blind noise covariance leaves (mostly) the
//! directional speech part; each pair's cross-spectrum is then phase-normalised (PHAT) and
//! weighted by the bin's Wiener weight snr/(1+snr), so noise-only and reverberant-tail bins count
//! little. The steered response is scanned on a coarse grid with a phase recurrence over bins
//! (one complex multiply per pair, bin and direction, all directions of a pair advanced together
//! in split real/imaginary arrays so the compiler vectorises across directions), refined on a 1°
//! grid ± one coarse step around the best peak and interpolated parabolically.

use crate::geometry::{Geometry, SPEED_OF_SOUND};
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
    /// (pair, bin) accumulated cross-spectra, real and imaginary parts
    acc_re: Vec<f32>,
    acc_im: Vec<f32>,
    /// (channel, bin) accumulated auto-spectra
    acc_pow: Vec<f32>,
    frames: usize,
    /// (pair, bin) coherence of a spherically diffuse field, sinc(2 f d / c)
    gamma: Vec<f32>,
    /// remove the diffuse part of each pair's coherence before the phase transform (on by
    /// default for linear arrays only: there a diffuse field's real coherence looks like a
    /// source at broadside to every pair at once and pulls estimates towards it; on the
    /// circular arrays measured it cost 0.2–1.4° of median error, see BENCHMARKS.md)
    pub diffuse_removal: bool,
    /// (pair, bin) weighted PHAT cross-spectra, real and imaginary parts apart
    c_re: Vec<f32>,
    c_im: Vec<f32>,
    w: Vec<f32>,
    // grid
    start_deg: f64,
    span_deg: f64,
    full_circle: bool,
    coarse_az: Vec<f64>,
    coarse: Rotators,
    fine: Rotators,
    /// directions the fine scan holds (odd)
    fine_cap: usize,
    map: Vec<f32>,
    fine_map: Vec<f32>,
    geom: Geometry,
    dw: f64,
    delays: Vec<f64>,
    elevation_deg: f64,
    /// linear arrays with a room model: the steered response on a 1° grid of cone angles and
    /// the candidate talker positions scored on it (see [`LinearRoom`])
    cones: Option<ConeModel>,
}

/// What a room box knows of where its bar sits, for the DOA of a linear array.
///
/// A bar measures only the cone angle to its axis. In a room, the floor and ceiling
/// reflections of a talker arrive inside the same frame from steep elevations, that is on cones
/// nearer broadside, and the measured cone is a power-weighted blend of the three: estimates
/// are pulled towards broadside, by 5–12° in the rooms measured (BENCHMARKS.md). Knowing the
/// bar's height above the floor, the ceiling height and a seated talker's mouth height, each
/// candidate (azimuth, distance) predicts the three cones and their weights (image sources:
/// spherical spreading × a reflection factor), and the candidate whose predicted blend matches
/// the measured response best wins. The values are configuration, not fitted to any scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearRoom {
    /// the bar's height above the floor (m)
    pub mount_height_m: f64,
    /// typical mouth height of the talkers (m; seated adults ~1.2); the model also tries
    /// 10 cm below and 15 cm above
    pub talker_height_m: f64,
    /// the ceiling's height above the floor (m); 0 = not modelled
    pub ceiling_height_m: f64,
    /// amplitude reflection factor of the floor and of the ceiling, 0..1
    pub floor_reflection: f64,
    pub ceiling_reflection: f64,
}

impl Default for LinearRoom {
    /// A bar under a screen on a credenza, seated talkers, a 2.7 m ceiling; reflection factors of
    /// a hard floor under a table (0.8) and an office ceiling (0.7).
    fn default() -> Self {
        Self {
            mount_height_m: 0.9,
            talker_height_m: 1.2,
            ceiling_height_m: 2.7,
            floor_reflection: 0.8,
            ceiling_reflection: 0.7,
        }
    }
}

/// Mouth heights a bar's room model tries around `LinearRoom::talker_height_m` (m): seated
/// adults differ by about this much, and near end-fire a few centimetres of height move the
/// cone by degrees.
const SEATED_SPREAD_M: [f64; 3] = [-0.10, 0.0, 0.15];
/// Horizontal talker distances a bar's room model tries (m).
const MODEL_DISTANCES: [f64; 10] = [0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 2.8, 3.6, 4.6, 6.0];

struct ConeModel {
    /// steered response at elevation 0 over the search range, 1° apart
    rot: Rotators,
    map: Vec<f32>,
    /// per (azimuth, distance) candidate, the steered response its three arrivals would give,
    /// zero-mean and of unit norm over the grid
    templates: Vec<f32>,
    n_az: usize,
    /// candidates per azimuth
    nd: usize,
    score: Vec<f32>,
}

impl ConeModel {
    /// `pair_delays[θ]` holds each pair's delay difference for the elevation-0 direction θ°
    /// from the start of the search range; `band` the DOA's bins (first, last) and bin spacing.
    fn new(room: &LinearRoom, np: usize, pair_delays: &[Vec<f64>], band: (usize, usize, f64)) -> Self {
        let n_az = 181;
        let cands: Vec<(f64, f64)> = MODEL_DISTANCES
            .iter()
            .flat_map(|&d| SEATED_SPREAD_M.iter().map(move |&dh| (d, room.talker_height_m + dh)))
            .collect();
        let nd = cands.len();
        // point spread: the response at grid angle `row` to one plane wave from grid angle `c`,
        // every bin weighted alike: Σ_pair Σ_bin cos(ω_bin (Δτ(row) − Δτ(c))), the bin sum in
        // closed form (a Dirichlet kernel over the band's bins)
        let (k_lo, k_hi, dw) = band;
        let dirichlet = |a: f64| -> f64 {
            let s = (0.5 * a).sin();
            if s.abs() < 1e-9 {
                (k_hi - k_lo + 1) as f64
            } else {
                (((k_hi as f64 + 0.5) * a).sin() - ((k_lo as f64 - 0.5) * a).sin()) / (2.0 * s)
            }
        };
        let table: Vec<f64> = (0..n_az * n_az)
            .map(|o| {
                let (row, c) = (o / n_az, o % n_az);
                (0..np).map(|p| dirichlet(dw * (pair_delays[row][p] - pair_delays[c][p]))).sum()
            })
            .collect();
        let psf = |row: usize, cone: f64| -> f64 {
            let i = (cone.floor() as usize).min(n_az - 2);
            let f = cone - i as f64;
            table[row * n_az + i] * (1.0 - f) + table[row * n_az + i + 1] * f
        };
        let mut templates = vec![0.0f32; n_az * nd * n_az];
        let mut t = vec![0.0f64; n_az];
        for a in 0..n_az {
            let az = (a as f64).to_radians();
            for (di, &(d, talker_h)) in cands.iter().enumerate() {
                let dz_direct = talker_h - room.mount_height_m;
                let dz_floor = -(talker_h + room.mount_height_m);
                let dz_ceil = 2.0 * room.ceiling_height_m - talker_h - room.mount_height_m;
                let r0 = (d * d + dz_direct * dz_direct).sqrt();
                let arrivals = [
                    (dz_direct, 1.0),
                    (dz_floor, room.floor_reflection),
                    (dz_ceil, if room.ceiling_height_m > 0.0 { room.ceiling_reflection } else { 0.0 }),
                ];
                t.iter_mut().for_each(|v| *v = 0.0);
                for (dz, refl) in arrivals {
                    let w = (refl * r0 / (d * d + dz * dz).sqrt()).powi(2);
                    if w < 1e-4 {
                        continue;
                    }
                    let el = dz.atan2(d);
                    // the cone angle to the axis (the search range starts on it)
                    let cone = (az.cos() * el.cos()).clamp(-1.0, 1.0).acos().to_degrees();
                    for (row, v) in t.iter_mut().enumerate() {
                        *v += w * psf(row, cone);
                    }
                }
                let mean = t.iter().sum::<f64>() / n_az as f64;
                let norm = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt().max(1e-12);
                let o = (a * nd + di) * n_az;
                for (row, v) in t.iter().enumerate() {
                    templates[o + row] = ((v - mean) / norm) as f32;
                }
            }
        }
        Self { rot: Rotators::new(n_az, np, 1), map: vec![0.0; n_az], templates, n_az, nd, score: vec![0.0; n_az] }
    }

    /// Scores every candidate against the cone map; returns the best azimuth as an offset from
    /// the range's start in degrees, refined parabolically, and the map's value there.
    fn best(&mut self) -> (f64, f32) {
        let nd = self.nd;
        let n = self.n_az;
        let mean = self.map.iter().sum::<f32>() / n as f32;
        let (mut best, mut best_a, mut best_d) = (f32::MIN, 0, 0);
        for a in 0..n {
            for di in 0..nd {
                let t = &self.templates[(a * nd + di) * n..(a * nd + di + 1) * n];
                let s: f32 = t.iter().zip(&self.map).map(|(t, m)| t * (m - mean)).sum();
                if s > best {
                    (best, best_a, best_d) = (s, a, di);
                }
            }
        }
        for a in 0..n {
            let t = &self.templates[(a * nd + best_d) * n..(a * nd + best_d + 1) * n];
            self.score[a] = t.iter().zip(&self.map).map(|(t, m)| t * (m - mean)).sum();
        }
        let mut az = best_a as f64;
        if best_a > 0 && best_a + 1 < n {
            let (l, c, r) = (self.score[best_a - 1], self.score[best_a], self.score[best_a + 1]);
            let den = l - 2.0 * c + r;
            if den < 0.0 {
                az += (0.5 * (l - r) / den).clamp(-0.5, 0.5) as f64;
            }
        }
        let peak = self.map.iter().copied().fold(f32::MIN, f32::max);
        (az, peak)
    }
}

/// Step of the fine scan around the best coarse direction (degrees).
const FINE_STEP: f64 = 1.0;
/// The coarse scan reads every 2nd bin (100 Hz apart at 16 kHz / 320): sampling the
/// cross-spectra that coarsely aliases the correlation only at lags of 10 ms, far beyond any
/// array's delays, so the coarse map keeps its shape at half the cost; the fine scan reads all.
const COARSE_BIN_STRIDE: usize = 2;
/// Most directions a fine scan holds.
const MAX_FINE: usize = 32;

/// Per (pair, direction) the phase rotator r = exp(j dω Δτ) and its start z0 = r^k_lo, stored
/// pair-major with the directions contiguous and real/imaginary parts apart, so the steered
/// response of all directions advances bin by bin in lanes the compiler vectorises.
struct Rotators {
    /// directions per pair (the stride)
    g: usize,
    /// bin stride of the scan (1 = every bin; the rotators are r^stride)
    bin_stride: usize,
    /// directions in use (≤ g)
    n: usize,
    r_re: Vec<f32>,
    r_im: Vec<f32>,
    z0_re: Vec<f32>,
    z0_im: Vec<f32>,
}

/// Directions scanned together (two SSE / one AVX / two NEON registers per quantity).
const LANES: usize = 8;

impl Rotators {
    fn new(n: usize, np: usize, bin_stride: usize) -> Self {
        let g = n.div_ceil(LANES) * LANES;
        Self {
            g,
            bin_stride,
            n,
            r_re: vec![1.0; g * np],
            r_im: vec![0.0; g * np],
            z0_re: vec![0.0; g * np],
            z0_im: vec![0.0; g * np],
        }
    }

    /// Sets direction `d` to azimuth `az`, elevation `el`.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        d: usize,
        az: f64,
        el: f64,
        geom: &Geometry,
        pairs: &[(usize, usize)],
        dw: f64,
        k_lo: usize,
        delays: &mut [f64],
    ) {
        geom.delays(az, el, delays);
        for (p, &(i, j)) in pairs.iter().enumerate() {
            let a = dw * (delays[i] - delays[j]);
            let a0 = a * k_lo as f64;
            let o = p * self.g + d;
            let (s, c) = (a * self.bin_stride as f64).sin_cos();
            self.r_re[o] = c as f32;
            self.r_im[o] = s as f32;
            let (s0, c0) = a0.sin_cos();
            self.z0_re[o] = c0 as f32;
            self.z0_im[o] = s0 as f32;
        }
    }

    /// Steered response Σ_pair Σ_bin Re(c · z) for the first `n` directions into `out` (every
    /// `bin_stride`-th bin). Directions go in blocks of `LANES` held in registers across the bin
    /// loop; `g` is a multiple of `LANES` and unused lanes carry zero phasors.
    fn scan(&mut self, c_re: &[f32], c_im: &[f32], nbu: usize, np: usize, out: &mut [f32]) {
        let nblk = self.n.div_ceil(LANES);
        for blk in 0..nblk {
            let mut s = [0.0f32; LANES];
            for p in 0..np {
                let o = p * self.g + blk * LANES;
                let mut zr: [f32; LANES] = self.z0_re[o..o + LANES].try_into().unwrap();
                let mut zi: [f32; LANES] = self.z0_im[o..o + LANES].try_into().unwrap();
                let rr: [f32; LANES] = self.r_re[o..o + LANES].try_into().unwrap();
                let ri: [f32; LANES] = self.r_im[o..o + LANES].try_into().unwrap();
                let (cr, ci) = (&c_re[p * nbu..(p + 1) * nbu], &c_im[p * nbu..(p + 1) * nbu]);
                for b in (0..nbu).step_by(self.bin_stride) {
                    let (a, bb) = (cr[b], ci[b]);
                    for l in 0..LANES {
                        s[l] += a * zr[l] - bb * zi[l];
                        let nr = zr[l] * rr[l] - zi[l] * ri[l];
                        zi[l] = zr[l] * ri[l] + zi[l] * rr[l];
                        zr[l] = nr;
                    }
                }
            }
            let k = (self.n - blk * LANES).min(LANES);
            out[blk * LANES..blk * LANES + k].copy_from_slice(&s[..k]);
        }
    }
}

impl Doa {
    /// `elevation_deg` is the talker elevation assumed when steering: it matters only for
    /// linear arrays, which measure the cone angle to their axis (cos cone = cos az · cos el), so
    /// an azimuth is found only up to an assumed elevation.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        geom: &Geometry,
        fs: f64,
        nfft: usize,
        f_lo: f64,
        f_hi: f64,
        coarse_step: f64,
        elevation_deg: f64,
        linear_room: Option<&LinearRoom>,
    ) -> Self {
        let m = geom.n_mics();
        let mut pairs = Vec::new();
        for i in 0..m {
            for j in i + 1..m {
                pairs.push((i, j));
            }
        }
        let np = pairs.len();
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
        let mut gamma = vec![0.0f32; np * nbu];
        for (p, &(i, j)) in pairs.iter().enumerate() {
            let d = dist(geom.mics[i], geom.mics[j]);
            for b in 0..nbu {
                let x = dw * (b + k_lo) as f64 * d / SPEED_OF_SOUND;
                gamma[p * nbu + b] = if x < 1e-9 { 1.0 } else { (x.sin() / x) as f32 };
            }
        }
        let n_fine = (2.0 * (coarse_step / FINE_STEP).ceil()) as usize + 1;
        let mut s = Self {
            m,
            pairs,
            k_lo,
            k_hi,
            acc_re: vec![0.0; np * nbu],
            acc_im: vec![0.0; np * nbu],
            acc_pow: vec![0.0; m * nbu],
            frames: 0,
            gamma,
            diffuse_removal: geom.is_linear(),
            c_re: vec![0.0; np * nbu],
            c_im: vec![0.0; np * nbu],
            w: vec![0.0; nbu],
            start_deg,
            span_deg,
            full_circle,
            coarse_az,
            coarse: Rotators::new(n_coarse, np, COARSE_BIN_STRIDE),
            fine: Rotators::new(n_fine.min(MAX_FINE), np, 1),
            fine_cap: n_fine.min(MAX_FINE),
            map: vec![0.0; n_coarse],
            fine_map: vec![0.0; MAX_FINE],
            geom: geom.clone(),
            dw,
            delays: vec![0.0; m],
            elevation_deg,
            cones: None,
        };
        if let Some(room) = linear_room.filter(|_| geom.is_linear() && !full_circle) {
            let pair_delays: Vec<Vec<f64>> = (0..181)
                .map(|a| {
                    geom.delays(start_deg + a as f64, 0.0, &mut s.delays);
                    s.pairs.iter().map(|&(i, j)| s.delays[i] - s.delays[j]).collect()
                })
                .collect();
            let mut c = ConeModel::new(room, np, &pair_delays, (k_lo, k_hi, dw));
            for a in 0..c.n_az {
                c.rot.set(a, start_deg + a as f64, 0.0, &s.geom, &s.pairs, dw, k_lo, &mut s.delays);
            }
            s.cones = Some(c);
        }
        for g in 0..n_coarse {
            let az = s.coarse_az[g];
            s.coarse.set(g, az, elevation_deg, &s.geom, &s.pairs, dw, k_lo, &mut s.delays);
        }
        s
    }

    /// Adds one frame. `x_re`, `x_im` are the M × nb spectra (channel-major), real and
    /// imaginary parts apart.
    pub fn accumulate(&mut self, x_re: &[f32], x_im: &[f32], nb: usize) {
        let nbu = self.k_hi - self.k_lo + 1;
        let (lo, hi) = (self.k_lo, self.k_hi + 1);
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            let (ar, ai) = (&x_re[i * nb + lo..i * nb + hi], &x_im[i * nb + lo..i * nb + hi]);
            let (br, bi) = (&x_re[j * nb + lo..j * nb + hi], &x_im[j * nb + lo..j * nb + hi]);
            let (cr, ci) = (&mut self.acc_re[p * nbu..(p + 1) * nbu], &mut self.acc_im[p * nbu..(p + 1) * nbu]);
            for b in 0..nbu {
                cr[b] += ar[b] * br[b] + ai[b] * bi[b];
                ci[b] += ai[b] * br[b] - ar[b] * bi[b];
            }
        }
        for ch in 0..self.m {
            let (xr, xi) = (&x_re[ch * nb + lo..ch * nb + hi], &x_im[ch * nb + lo..ch * nb + hi]);
            let acc = &mut self.acc_pow[ch * nbu..(ch + 1) * nbu];
            for b in 0..nbu {
                acc[b] += xr[b] * xr[b] + xi[b] * xi[b];
            }
        }
        self.frames += 1;
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
            let mut pow = 0.0f32;
            for ch in 0..m {
                tr += cov[ch * m + ch].re;
                pow += self.acc_pow[ch * nbu + b];
            }
            let sig = pow * inv_n - tr;
            let snr = (sig / tr.max(1e-20)).max(0.0);
            let w = snr / (1.0 + snr);
            self.w[b] = w;
            wsum += w;
        }
        for (p, &(i, j)) in self.pairs.iter().enumerate() {
            for b in 0..nbu {
                let k = b + self.k_lo;
                let acc = Complex32::new(self.acc_re[p * nbu + b], self.acc_im[p * nbu + b]);
                let r = acc * inv_n - noise_cov[k * m * m + i * m + j];
                let mag2 = r.norm_sqr();
                if mag2 <= 1e-60 {
                    self.c_re[p * nbu + b] = 0.0;
                    self.c_im[p * nbu + b] = 0.0;
                    continue;
                }
                let (mut u, mut frac) = (r / mag2.sqrt(), 1.0f32);
                if self.diffuse_removal {
                    let pi = self.acc_pow[i * nbu + b] * inv_n - noise_cov[k * m * m + i * m + i].re;
                    let pj = self.acc_pow[j * nbu + b] * inv_n - noise_cov[k * m * m + j * m + j].re;
                    if pi > 0.0 && pj > 0.0 {
                        (u, frac) = direct_part(r / (pi * pj).sqrt(), self.gamma[p * nbu + b]);
                    }
                }
                let g = self.w[b] * frac;
                self.c_re[p * nbu + b] = u.re * g;
                self.c_im[p * nbu + b] = u.im * g;
            }
        }
        self.acc_re.iter_mut().for_each(|v| *v = 0.0);
        self.acc_im.iter_mut().for_each(|v| *v = 0.0);
        self.acc_pow.iter_mut().for_each(|v| *v = 0.0);
        self.frames = 0;
        let activity = wsum / nbu as f32;
        if wsum < 1e-3 {
            return None;
        }
        if let Some(c) = self.cones.as_mut() {
            c.rot.scan(&self.c_re, &self.c_im, nbu, np, &mut c.map);
            let (off, best) = c.best();
            let az = self.start_deg + off;
            let coherence = best / (wsum * np as f32);
            return Some(DoaEstimate { azimuth_deg: az.rem_euclid(360.0) as f32, coherence, activity });
        }
        // coarse scan
        self.coarse.scan(&self.c_re, &self.c_im, nbu, np, &mut self.map);
        let ng = self.coarse_az.len();
        let gbest = (0..ng).max_by(|&a, &b| self.map[a].total_cmp(&self.map[b])).unwrap();
        // fine scan ± one coarse step around it, then a parabola through the best three
        let centre = self.coarse_az[gbest];
        let steps = ((self.fine_cap - 1) / 2) as i32;
        let mut nf = 0;
        let mut first_az = f64::NAN;
        for s in -steps..=steps {
            let az = centre + s as f64 * FINE_STEP;
            if !self.full_circle && (az < self.start_deg - 1e-9 || az > self.start_deg + self.span_deg + 1e-9) {
                continue;
            }
            if nf == 0 {
                first_az = az;
            }
            self.fine.set(nf, az, self.elevation_deg, &self.geom, &self.pairs, self.dw, self.k_lo, &mut self.delays);
            nf += 1;
        }
        self.fine.n = nf;
        self.fine.scan(&self.c_re, &self.c_im, nbu, np, &mut self.fine_map);
        let fine = &self.fine_map[..nf];
        let best_i = (0..nf).max_by(|&a, &b| fine[a].total_cmp(&fine[b])).unwrap();
        let best = fine[best_i];
        let mut az = first_az + best_i as f64 * FINE_STEP;
        if best_i > 0 && best_i + 1 < nf {
            let den = fine[best_i - 1] - 2.0 * fine[best_i] + fine[best_i + 1];
            if den < 0.0 {
                let d = 0.5 * (fine[best_i - 1] - fine[best_i + 1]) / den;
                az += d.clamp(-0.5, 0.5) as f64 * FINE_STEP;
            }
        }
        let coherence = best / (wsum * np as f32);
        Some(DoaEstimate { azimuth_deg: az.rem_euclid(360.0) as f32, coherence, activity })
    }
}

/// Splits a pair's complex coherence `cx` into a direct (plane-wave) part and a diffuse part of
/// known real coherence `gd`: under the model cx = f·e^{jθ} + (1 − f)·gd, cx lies on the chord
/// from gd to the unit-circle point e^{jθ}, so e^{jθ} is where the ray from gd through cx leaves
/// the unit circle. Returns (e^{jθ}, f), f the direct fraction in 0..1. A coherence on or
/// outside the unit circle (estimation noise) is taken as all direct.
fn direct_part(cx: Complex32, gd: f32) -> (Complex32, f32) {
    let a2 = cx.norm_sqr();
    if a2 >= 1.0 {
        return (cx / a2.sqrt(), 1.0);
    }
    let v = cx - Complex32::new(gd, 0.0);
    let v2 = v.norm_sqr();
    if v2 < 1e-12 {
        return (Complex32::new(1.0, 0.0), 0.0);
    }
    // |gd + t v| = 1, t ≥ 1
    let h = gd * v.re;
    let t = (-h + (h * h - v2 * (gd * gd - 1.0)).max(0.0).sqrt()) / v2;
    let e = Complex32::new(gd, 0.0) + v * t;
    (e / e.norm().max(1e-12), (1.0 / t).min(1.0))
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Smallest absolute difference of two azimuths in degrees.
pub fn ang_diff(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}
