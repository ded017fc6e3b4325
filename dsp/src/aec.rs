//! Acoustic echo cancellation: a partitioned-block frequency-domain adaptive filter per mic
//! (overlap-save, block = one frame, FFT of two frames, gradient-constrained NLMS), run as a
//! two-path pair: a background filter adapts all the time with a large normalised step; the
//! foreground filter, whose output is used, only takes the background's coefficients when they
//! have cancelled clearly better for a few frames. Double talk makes the background worse, so
//! the foreground is kept through it; an echo-path change makes the background better within a
//! fraction of a second, so the foreground follows quickly. A background that has drifted far
//! (after double talk) is reset from the foreground.
//!
//! The far-end spectra are shared by all mics; only the filters are per mic.

use crate::stft::Fft;
use realfft::num_complex::Complex32;

pub struct AecParams {
    /// number of partitions (one frame each): the echo tail covered, including the delay
    /// between the reference and the capture
    pub partitions: usize,
    /// normalised step of the background filter
    pub mu: f32,
}

impl Default for AecParams {
    fn default() -> Self {
        Self { partitions: 32, mu: 0.5 }
    }
}

struct MicFilter {
    wf: Vec<Complex32>,
    wb: Vec<Complex32>,
    sf: f32,
    sb: f32,
    better: u32,
    worse: u32,
}

pub struct Aec {
    l: usize,
    nb: usize,
    p: usize,
    m: usize,
    mu: f32,
    /// ring of far-end spectra, newest at `pos`
    xr: Vec<Complex32>,
    pos: usize,
    xbuf: Vec<f32>,
    xpow: Vec<f32>,
    mics: Vec<MicFilter>,
    tmp_t: Vec<f32>,
    tmp_f: Vec<Complex32>,
    yf: Vec<Complex32>,
    yb: Vec<Complex32>,
    eb_f: Vec<Complex32>,
    e_b: Vec<f32>,
    frames: u64,
    pub farend_active: bool,
    farend_level: f32,
    /// smoothed mic / output power (for an ERLE figure)
    sd: f32,
    se: f32,
}

impl Aec {
    pub fn new(n_mics: usize, frame: usize, params: &AecParams) -> Self {
        let l = frame;
        let nb = l + 1;
        let p = params.partitions.max(1);
        let z = Complex32::new(0.0, 0.0);
        Self {
            l,
            nb,
            p,
            m: n_mics,
            mu: params.mu,
            xr: vec![z; p * nb],
            pos: 0,
            xbuf: vec![0.0; 2 * l],
            xpow: vec![0.0; nb],
            mics: (0..n_mics)
                .map(|_| MicFilter {
                    wf: vec![z; p * nb],
                    wb: vec![z; p * nb],
                    sf: 0.0,
                    sb: 0.0,
                    better: 0,
                    worse: 0,
                })
                .collect(),
            tmp_t: vec![0.0; 2 * l],
            tmp_f: vec![z; nb],
            yf: vec![z; nb],
            yb: vec![z; nb],
            eb_f: vec![z; nb],
            e_b: vec![0.0; l],
            frames: 0,
            farend_active: false,
            farend_level: 0.0,
            sd: 0.0,
            se: 0.0,
        }
    }

    /// ERLE estimate of the linear stage in dB (mic power / output power, smoothed over
    /// far-end-active frames).
    pub fn erle_db(&self) -> f32 {
        10.0 * ((self.sd + 1e-12) / (self.se + 1e-12)).log10()
    }

    /// Processes one frame: `farend` (L samples), `mics` (M × L, channel-major, replaced by the
    /// echo-cancelled signal), `echo` (M × L, receives the echo estimate).
    pub fn process(&mut self, fft: &mut Fft, farend: &[f32], mics: &mut [f32], echo: &mut [f32]) {
        let (l, nb, p) = (self.l, self.nb, self.p);
        self.frames += 1;
        // far-end spectrum of the last two blocks
        self.xbuf.copy_within(l.., 0);
        self.xbuf[l..].copy_from_slice(farend);
        self.pos = (self.pos + p - 1) % p;
        self.tmp_t.copy_from_slice(&self.xbuf);
        {
            let dst = &mut self.xr[self.pos * nb..(self.pos + 1) * nb];
            fft.forward(&mut self.tmp_t, dst);
        }
        let fe: f32 = farend.iter().map(|v| v * v).sum::<f32>() / l as f32;
        self.farend_level = 0.9 * self.farend_level + 0.1 * fe;
        self.farend_active = fe > 1e-7 || self.farend_level > 1e-7;
        // per-bin input energy over the whole filter span
        for k in 0..nb {
            let mut s = 0.0f32;
            for q in 0..p {
                s += self.xr[q * nb + k].norm_sqr();
            }
            self.xpow[k] = s;
        }
        let maxpow = self.xpow.iter().cloned().fold(0.0f32, f32::max);
        let delta = 1e-4 * maxpow + 1e-10 * (2 * l * l) as f32;
        let mut sd_frame = 0.0f32;
        let mut se_frame = 0.0f32;
        for ch in 0..self.m {
            let d = &mut mics[ch * l..(ch + 1) * l];
            let mf = &mut self.mics[ch];
            // outputs of both filters
            for k in 0..nb {
                let mut sf = Complex32::new(0.0, 0.0);
                let mut sb = Complex32::new(0.0, 0.0);
                for q in 0..p {
                    let xi = ((self.pos + q) % p) * nb + k;
                    let x = self.xr[xi];
                    sf += mf.wf[q * nb + k] * x;
                    sb += mf.wb[q * nb + k] * x;
                }
                self.yf[k] = sf;
                self.yb[k] = sb;
            }
            let g = 1.0 / (2 * l) as f32;
            fft.inverse(&mut self.yb, &mut self.tmp_t);
            let mut eb_pow = 0.0f32;
            for i in 0..l {
                let e = d[i] - self.tmp_t[l + i] * g;
                self.e_b[i] = e;
                eb_pow += e * e;
            }
            fft.inverse(&mut self.yf, &mut self.tmp_t);
            let ech = &mut echo[ch * l..(ch + 1) * l];
            let mut ef_pow = 0.0f32;
            let mut d_pow = 0.0f32;
            for i in 0..l {
                let y = self.tmp_t[l + i] * g;
                ech[i] = y;
                d_pow += d[i] * d[i];
                d[i] -= y;
                ef_pow += d[i] * d[i];
            }
            if ch == 0 && self.farend_active {
                sd_frame = d_pow;
                se_frame = ef_pow;
            }
            // background adaptation: gradient of the (zero-padded) error, normalised per bin
            if self.farend_active {
                self.tmp_t[..l].iter_mut().for_each(|v| *v = 0.0);
                self.tmp_t[l..].copy_from_slice(&self.e_b);
                fft.forward(&mut self.tmp_t, &mut self.eb_f);
                for k in 0..nb {
                    let s = self.mu / (self.xpow[k] + delta);
                    self.eb_f[k] *= s;
                }
                for q in 0..p {
                    let xo = ((self.pos + q) % p) * nb;
                    for k in 0..nb {
                        self.tmp_f[k] = self.xr[xo + k].conj() * self.eb_f[k];
                    }
                    // constrain to a causal L-tap block
                    fft.inverse(&mut self.tmp_f, &mut self.tmp_t);
                    for i in 0..l {
                        self.tmp_t[i] *= g;
                    }
                    self.tmp_t[l..].iter_mut().for_each(|v| *v = 0.0);
                    fft.forward(&mut self.tmp_t, &mut self.tmp_f);
                    let w = &mut mf.wb[q * nb..(q + 1) * nb];
                    for k in 0..nb {
                        w[k] += self.tmp_f[k];
                    }
                }
                // foreground / background decision
                mf.sf = 0.7 * mf.sf + 0.3 * ef_pow;
                mf.sb = 0.7 * mf.sb + 0.3 * eb_pow;
                if mf.sb < 0.5 * mf.sf && mf.sf > 1e-9 {
                    mf.better += 1;
                } else {
                    mf.better = 0;
                }
                if mf.sb > 4.0 * mf.sf && mf.sb > 1e-9 {
                    mf.worse += 1;
                } else {
                    mf.worse = 0;
                }
                if mf.better >= 3 {
                    mf.wf.copy_from_slice(&mf.wb);
                    mf.sf = mf.sb;
                    mf.better = 0;
                }
                if mf.worse >= 8 {
                    mf.wb.copy_from_slice(&mf.wf);
                    mf.sb = mf.sf;
                    mf.worse = 0;
                }
            }
        }
        if self.farend_active {
            self.sd = 0.95 * self.sd + 0.05 * sd_frame;
            self.se = 0.95 * self.se + 0.05 * se_frame;
        }
    }
}
