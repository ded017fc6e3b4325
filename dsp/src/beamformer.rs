//! MVDR beamformer steered by the tracker, for small arrays.
//!
//! The noise model per bin is a blend of the blind (MCRA-gated) spatial noise covariance,
//! normalised to unit mean diagonal, and the spherically diffuse coherence sinc(ω d_ij / c),
//! plus diagonal loading. The diffuse part and the loading bound the white-noise gain, so the
//! design stays robust to steering and mic mismatch; the blind part lets it null point noise and
//! loudspeaker residue. With no noise learnt yet it is the superdirective beamformer.

use crate::geometry::{Geometry, SPEED_OF_SOUND};
use realfft::num_complex::{Complex32, Complex64};

pub const MAX_MICS: usize = 16;

pub struct BeamParams {
    /// weight of the diffuse coherence model in the blend (0..1). Measured: 1.0 (the
    /// superdirective design; the blind covariance then only feeds the post-filter's noise
    /// estimate) beat blends of 0.3–0.8 on both the shared and our own generated scenes, because
    /// a covariance learnt from short speech pauses is noisy and carries reverberant speech.
    pub diffuse_weight: f32,
    /// diagonal loading relative to the mean diagonal
    pub loading: f32,
    /// elevation assumed for the talker when steering (degrees)
    pub steer_elevation_deg: f64,
}

impl Default for BeamParams {
    fn default() -> Self {
        Self { diffuse_weight: 1.0, loading: 0.001, steer_elevation_deg: 0.0 }
    }
}

pub struct Beamformer {
    m: usize,
    nb: usize,
    pub params: BeamParams,
    gamma: Vec<f32>,
    /// nb × M weights (conjugated on use)
    pub w: Vec<Complex32>,
    /// beam-output noise PSD per bin: wᴴ Φnn w
    pub out_noise: Vec<f32>,
    geom: Geometry,
    df: f64,
    delays: Vec<f64>,
    /// per bin the inverse of the diffuse model with loading, (γ + λI)⁻¹ (real, M × M), for
    /// the superdirective case where it does not depend on the data; `inv_ok[k]` false when
    /// that bin's matrix was not positive definite
    diffuse_inv: Vec<f64>,
    inv_ok: Vec<bool>,
    /// the loading `diffuse_inv` was computed for
    inv_loading: f32,
    /// `w` transposed to M × nb, real and imaginary parts apart
    wt_re: Vec<f32>,
    wt_im: Vec<f32>,
}

impl Beamformer {
    pub fn new(geom: &Geometry, fs: f64, nfft: usize, params: BeamParams) -> Self {
        let m = geom.n_mics();
        let nb = nfft / 2 + 1;
        let df = fs / nfft as f64;
        let mut gamma = vec![0.0f32; nb * m * m];
        for k in 0..nb {
            let w = 2.0 * std::f64::consts::PI * df * k as f64;
            for i in 0..m {
                for j in 0..m {
                    let a = geom.mics[i];
                    let b = geom.mics[j];
                    let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
                    let x = w * d / SPEED_OF_SOUND;
                    gamma[k * m * m + i * m + j] = if x.abs() < 1e-9 { 1.0 } else { (x.sin() / x) as f32 };
                }
            }
        }
        let mut bf = Self {
            m,
            nb,
            params,
            gamma,
            w: vec![Complex32::new(0.0, 0.0); nb * m],
            out_noise: vec![0.0; nb],
            geom: geom.clone(),
            df,
            delays: vec![0.0; m],
            diffuse_inv: vec![0.0; nb * m * m],
            inv_ok: vec![false; nb],
            inv_loading: f32::NAN,
            wt_re: vec![0.0; nb * m],
            wt_im: vec![0.0; nb * m],
        };
        for k in 0..nb {
            for i in 0..m {
                bf.w[k * m + i] = Complex32::new(1.0 / m as f32, 0.0);
            }
        }
        bf.invert_diffuse();
        bf.transpose_weights();
        bf
    }

    /// Computes `diffuse_inv` for the current loading (Cholesky, then one solve per unit
    /// vector). No allocation.
    fn invert_diffuse(&mut self) {
        let m = self.m;
        let load = self.params.loading as f64;
        let mut l = [0.0f64; MAX_MICS * MAX_MICS];
        let mut y = [0.0f64; MAX_MICS];
        for k in 0..self.nb {
            let g = &self.gamma[k * m * m..(k + 1) * m * m];
            let mut ok = true;
            for j in 0..m {
                let mut s = g[j * m + j] as f64 + load;
                for t in 0..j {
                    s -= l[j * MAX_MICS + t] * l[j * MAX_MICS + t];
                }
                if s <= 1e-12 {
                    ok = false;
                    break;
                }
                let ljj = s.sqrt();
                l[j * MAX_MICS + j] = ljj;
                for i in j + 1..m {
                    let mut s = g[i * m + j] as f64;
                    for t in 0..j {
                        s -= l[i * MAX_MICS + t] * l[j * MAX_MICS + t];
                    }
                    l[i * MAX_MICS + j] = s / ljj;
                }
            }
            self.inv_ok[k] = ok;
            if !ok {
                continue;
            }
            let inv = &mut self.diffuse_inv[k * m * m..(k + 1) * m * m];
            for c in 0..m {
                for i in 0..m {
                    let mut s = if i == c { 1.0 } else { 0.0 };
                    for t in 0..i {
                        s -= l[i * MAX_MICS + t] * y[t];
                    }
                    y[i] = s / l[i * MAX_MICS + i];
                }
                for i in (0..m).rev() {
                    let mut s = y[i];
                    for t in i + 1..m {
                        s -= l[t * MAX_MICS + i] * y[t];
                    }
                    y[i] = s / l[i * MAX_MICS + i];
                }
                for i in 0..m {
                    inv[i * m + c] = y[i];
                }
            }
        }
        self.inv_loading = self.params.loading;
    }

    /// Whether the weights depend only on the steering (the pure superdirective design): then
    /// they need recomputing only when the steering moves.
    pub fn data_independent(&self) -> bool {
        self.params.diffuse_weight >= 1.0
    }

    /// Superdirective weights from the precomputed inverse: w = Γ⁻¹d / (dᴴΓ⁻¹d), the steering
    /// vector advanced bin by bin with a phase rotator. No allocation.
    fn update_superdirective(&mut self, az_deg: f64) {
        let m = self.m;
        if self.inv_loading != self.params.loading {
            self.invert_diffuse();
        }
        self.geom.delays(az_deg, self.params.steer_elevation_deg, &mut self.delays);
        let mut d = [Complex64::new(1.0, 0.0); MAX_MICS];
        let mut rot = [Complex64::new(1.0, 0.0); MAX_MICS];
        let dw = 2.0 * std::f64::consts::PI * self.df;
        for (r, &t) in rot.iter_mut().zip(&self.delays) {
            let (s, c) = (-dw * t).sin_cos();
            *r = Complex64::new(c, s);
        }
        for k in 0..self.nb {
            let wk = &mut self.w[k * m..(k + 1) * m];
            if self.inv_ok[k] {
                let inv = &self.diffuse_inv[k * m * m..(k + 1) * m * m];
                let mut y = [Complex64::new(0.0, 0.0); MAX_MICS];
                let mut den = 0.0f64;
                for i in 0..m {
                    let row = &inv[i * m..(i + 1) * m];
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for j in 0..m {
                        re += row[j] * d[j].re;
                        im += row[j] * d[j].im;
                    }
                    y[i] = Complex64::new(re, im);
                    den += d[i].re * re + d[i].im * im;
                }
                let g = 1.0 / den.max(1e-12);
                for i in 0..m {
                    wk[i] = Complex32::new((y[i].re * g) as f32, (y[i].im * g) as f32);
                }
            } else {
                for i in 0..m {
                    wk[i] = Complex32::new((d[i].re / m as f64) as f32, (d[i].im / m as f64) as f32);
                }
            }
            for i in 0..m {
                d[i] *= rot[i];
            }
        }
    }

    /// Recomputes the beam-output noise PSD wᴴ Φnn w per bin for the current weights.
    pub fn update_out_noise(&mut self, phi: &[Complex32]) {
        let m = self.m;
        for k in 0..self.nb {
            let wk = &self.w[k * m..(k + 1) * m];
            let pk = &phi[k * m * m..(k + 1) * m * m];
            let mut s = 0.0f32;
            for i in 0..m {
                let mut t = Complex32::new(0.0, 0.0);
                for j in 0..m {
                    t += pk[i * m + j] * wk[j];
                }
                s += (wk[i].conj() * t).re;
            }
            self.out_noise[k] = s.max(0.0);
        }
    }

    /// Recomputes the weights for azimuth `az_deg` with noise covariance `phi` (nb × M × M,
    /// `None` = not learnt yet) and, given `phi`, the beam-output noise PSD. No allocation.
    pub fn update(&mut self, az_deg: f64, phi: Option<&[Complex32]>) {
        self.update_weights(az_deg, phi);
        if let Some(p) = phi {
            self.update_out_noise(p);
        }
    }

    /// Recomputes the weights only (see [`Beamformer::update`]).
    pub fn update_weights(&mut self, az_deg: f64, phi: Option<&[Complex32]>) {
        match phi {
            Some(p) if !self.data_independent() => self.update_blended(az_deg, p),
            _ => self.update_superdirective(az_deg),
        }
        self.transpose_weights();
    }

    /// MVDR with the diffuse model blended with the blind covariance (Cholesky per bin).
    fn update_blended(&mut self, az_deg: f64, phi: &[Complex32]) {
        let phi = Some(phi);
        let m = self.m;
        let el = self.params.steer_elevation_deg;
        self.geom.delays(az_deg, el, &mut self.delays);
        let mut a = [Complex64::new(0.0, 0.0); MAX_MICS * MAX_MICS];
        let mut d = [Complex64::new(0.0, 0.0); MAX_MICS];
        let mut y = [Complex64::new(0.0, 0.0); MAX_MICS];
        let mu = self.params.diffuse_weight as f64;
        let load = self.params.loading as f64;
        for k in 0..self.nb {
            let om = 2.0 * std::f64::consts::PI * self.df * k as f64;
            for (di, &t) in d.iter_mut().zip(&self.delays) {
                let ph = -om * t;
                *di = Complex64::new(ph.cos(), ph.sin());
            }
            let g = &self.gamma[k * m * m..(k + 1) * m * m];
            let (blind, scale) = match phi {
                Some(p) => {
                    let p = &p[k * m * m..(k + 1) * m * m];
                    let mut tr = 0.0f64;
                    for i in 0..m {
                        tr += p[i * m + i].re as f64;
                    }
                    if tr > 1e-20 { (Some(p), m as f64 / tr) } else { (None, 0.0) }
                }
                None => (None, 0.0),
            };
            for i in 0..m {
                for j in 0..m {
                    let mut v = Complex64::new(g[i * m + j] as f64, 0.0);
                    if let Some(p) = blind {
                        let q = p[i * m + j];
                        v = v * mu + Complex64::new(q.re as f64, q.im as f64) * ((1.0 - mu) * scale);
                    }
                    if i == j {
                        v += load;
                    }
                    a[i * MAX_MICS + j] = v;
                }
            }
            // Cholesky A = L Lᴴ in place (lower triangle)
            let mut ok = true;
            for j in 0..m {
                let mut s = a[j * MAX_MICS + j].re;
                for t in 0..j {
                    s -= a[j * MAX_MICS + t].norm_sqr();
                }
                if s <= 1e-12 {
                    ok = false;
                    break;
                }
                let ljj = s.sqrt();
                a[j * MAX_MICS + j] = Complex64::new(ljj, 0.0);
                for i in j + 1..m {
                    let mut s = a[i * MAX_MICS + j];
                    for t in 0..j {
                        s -= a[i * MAX_MICS + t] * a[j * MAX_MICS + t].conj();
                    }
                    a[i * MAX_MICS + j] = s / ljj;
                }
            }
            let wk = &mut self.w[k * m..(k + 1) * m];
            if !ok {
                for i in 0..m {
                    let v = d[i] / m as f64;
                    wk[i] = Complex32::new(v.re as f32, v.im as f32);
                }
                continue;
            }
            // solve L y = d, Lᴴ x = y
            for i in 0..m {
                let mut s = d[i];
                for t in 0..i {
                    s -= a[i * MAX_MICS + t] * y[t];
                }
                y[i] = s / a[i * MAX_MICS + i].re;
            }
            for i in (0..m).rev() {
                let mut s = y[i];
                for t in i + 1..m {
                    s -= a[t * MAX_MICS + i].conj() * y[t];
                }
                y[i] = s / a[i * MAX_MICS + i].re;
            }
            let mut den = Complex64::new(0.0, 0.0);
            for i in 0..m {
                den += d[i].conj() * y[i];
            }
            let den = den.re.max(1e-12);
            for i in 0..m {
                let v = y[i] / den;
                wk[i] = Complex32::new(v.re as f32, v.im as f32);
            }
        }
    }

    /// Y(k) = wᴴ X(k) for spectra `x` (M × nb, channel-major).
    pub fn apply(&self, x: &[Complex32], out: &mut [Complex32]) {
        let m = self.m;
        let nb = self.nb;
        for k in 0..nb {
            let wk = &self.w[k * m..(k + 1) * m];
            let mut s = Complex32::new(0.0, 0.0);
            for i in 0..m {
                s += wk[i].conj() * x[i * nb + k];
            }
            out[k] = s;
        }
    }

    /// [`Beamformer::apply`] on spectra with real and imaginary parts apart (M × nb each),
    /// vectorised across bins; `out_re`, `out_im` receive nb values.
    pub fn apply_split(&self, x_re: &[f32], x_im: &[f32], out_re: &mut [f32], out_im: &mut [f32]) {
        let nb = self.nb;
        let (out_re, out_im) = (&mut out_re[..nb], &mut out_im[..nb]);
        out_re.iter_mut().for_each(|v| *v = 0.0);
        out_im.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..self.m {
            let (wr, wi) = (&self.wt_re[i * nb..(i + 1) * nb], &self.wt_im[i * nb..(i + 1) * nb]);
            let (xr, xi) = (&x_re[i * nb..(i + 1) * nb], &x_im[i * nb..(i + 1) * nb]);
            for k in 0..nb {
                // conj(w) x
                out_re[k] += wr[k] * xr[k] + wi[k] * xi[k];
                out_im[k] += wr[k] * xi[k] - wi[k] * xr[k];
            }
        }
    }

    /// Copies the weights into the mic-major split layout `apply_split` reads.
    fn transpose_weights(&mut self) {
        let (m, nb) = (self.m, self.nb);
        for k in 0..nb {
            for i in 0..m {
                self.wt_re[i * nb + k] = self.w[k * m + i].re;
                self.wt_im[i * nb + k] = self.w[k * m + i].im;
            }
        }
    }

    /// Beam-output noise PSD wᴴΦw per bin from a packed Hermitian covariance: pairs i ≤ j in
    /// the order (0,0), (0,1), …, (0,M−1), (1,1), …, each nb bins, real and imaginary parts
    /// apart.
    pub fn update_out_noise_packed(&mut self, phi_re: &[f32], phi_im: &[f32]) {
        let (m, nb) = (self.m, self.nb);
        self.out_noise.iter_mut().for_each(|v| *v = 0.0);
        let mut q = 0;
        for i in 0..m {
            for j in i..m {
                let (pr, pi) = (&phi_re[q * nb..(q + 1) * nb], &phi_im[q * nb..(q + 1) * nb]);
                let (ar, ai) = (&self.wt_re[i * nb..(i + 1) * nb], &self.wt_im[i * nb..(i + 1) * nb]);
                let (br, bi) = (&self.wt_re[j * nb..(j + 1) * nb], &self.wt_im[j * nb..(j + 1) * nb]);
                let f = if i == j { 1.0 } else { 2.0 };
                for k in 0..nb {
                    // Re(conj(w_i) Φ_ij w_j)
                    let tr = pr[k] * br[k] - pi[k] * bi[k];
                    let ti = pr[k] * bi[k] + pi[k] * br[k];
                    self.out_noise[k] += f * (ar[k] * tr + ai[k] * ti);
                }
                q += 1;
            }
        }
        self.out_noise.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}
