//! Acoustic echo cancellation: a partitioned-block frequency-domain adaptive filter per mic
//! (overlap-save, block = one 10 ms frame, FFT of two frames, gradient constraint), with its
//! step size set per bin and partition by a diagonalised state-space (Kalman) model of the echo
//! path, after Enzner & Vary (2006) and Kuech et al. (2014):
//!
//! - each partition's coefficients carry an uncertainty P_q(k); the step is
//!   P_q / (Σ_r |X_r|² P_r + Ψ_s), so the filter moves fast while it is uncertain (start, after an
//!   echo-path change) and barely at all once converged;
//! - Ψ_s is the power of what the filter cannot explain (near-end speech, noise): in double talk
//!   it grows and the step shrinks by itself, with no separate double-talk detector;
//! - a small process noise (1 − A²)|W|² keeps the uncertainty from collapsing, so a changed echo
//!   path is tracked again within a second or so.
//!
//! The far-end spectra are shared by all mics; only the filters are per mic.

use crate::stft::Fft;
use realfft::num_complex::Complex32;

pub struct AecParams {
    /// number of partitions (one frame each): the echo tail covered, including the delay
    /// between the reference and the capture
    pub partitions: usize,
    /// scale of the Kalman step (1 = nominal; the zero-padded error carries half the energy)
    pub mu: f32,
    /// state transition A² per frame of the main filter (closer to 1 = slower tracking, less
    /// misadjustment)
    pub a2: f32,
    /// the same for the shadow filter
    pub shadow_a2: f32,
    /// weight of the unexplained power in the shadow filter's step (small: it re-converges at
    /// nearly the full normalised step after an echo-path change, and is reset from the main
    /// filter when double talk throws it off)
    pub shadow_psi_weight: f32,
    /// regularisation of weak bins relative to the mean step denominator
    pub reg: f32,
    /// the most power an echo path can add in one bin, over its whole length (Σ_q |W_q(k)|²).
    /// A loudspeaker heard through air does not amplify by more than this; a filter that would
    /// needs the near end to explain the mic, which it must not learn.
    pub max_gain: f32,
}

impl Default for AecParams {
    fn default() -> Self {
        Self {
            partitions: 32,
            mu: 1.0,
            a2: 0.9995,
            shadow_a2: 0.99,
            shadow_psi_weight: 0.05,
            reg: 1.0,
            max_gain: MAX_GAIN,
        }
    }
}

/// The default bound of an echo path's power gain per bin: +30 dB.
const MAX_GAIN: f32 = 1000.0;

/// One adaptive filter with its Kalman state.
struct Kf {
    w: Vec<Complex32>,
    /// uncertainty per (partition, bin)
    pu: Vec<f32>,
    /// smoothed unexplained power per bin
    psi: Vec<f32>,
    a2: f32,
    /// weight of the unexplained power in the step denominator (1 = Kalman; smaller = closer to
    /// a plain normalised step, faster but not protected against double talk)
    psi_weight: f32,
}

impl Kf {
    fn new(p: usize, nb: usize, a2: f32, psi_weight: f32) -> Self {
        Self { w: vec![Complex32::new(0.0, 0.0); p * nb], pu: vec![0.2; p * nb], psi: vec![0.0; nb], a2, psi_weight }
    }
}

/// Main filter (its output is used) and shadow filter (tracks faster, copied into the main one
/// when it has clearly cancelled better for a while: an echo-path change).
struct MicFilter {
    main: Kf,
    shadow: Kf,
    s_main: f32,
    s_shadow: f32,
    better: u32,
    worse: u32,
    se: f32,
    sd: f32,
    /// echo-path change detection: smoothed mic, error and phase-blind echo powers, the usual
    /// mic / phase-blind ratio in converged far-end single talk, frames in a row that look like
    /// a changed path
    cd_d: f32,
    cd_e: f32,
    cd_pb: f32,
    cd_ratio: f32,
    cd_n: u32,
    cd_frames: u32,
    /// the usual error / mic ratio in converged far-end single talk (the linear stage's ERLE)
    cd_conv: f32,
}

struct Work {
    tmp_t: Vec<f32>,
    tmp_f: Vec<Complex32>,
    yf: Vec<Complex32>,
    ef: Vec<Complex32>,
    den: Vec<f32>,
}

/// Filters the current far-end history with `kf`: writes the echo estimate (time domain, L).
fn filter(kf: &Kf, xr: &[Complex32], pos: usize, p: usize, nb: usize, fft: &mut Fft, wk: &mut Work, y: &mut [f32]) {
    let l = nb - 1;
    for k in 0..nb {
        let mut s = Complex32::new(0.0, 0.0);
        for q in 0..p {
            s += kf.w[q * nb + k] * xr[((pos + q) % p) * nb + k];
        }
        wk.yf[k] = s;
    }
    fft.inverse(&mut wk.yf, &mut wk.tmp_t);
    let g = 1.0 / (2 * l) as f32;
    for i in 0..l {
        y[i] = wk.tmp_t[l + i] * g;
    }
}

/// One Kalman-stepped, gradient-constrained update of `kf` from its error `e` (L samples).
fn adapt(
    kf: &mut Kf,
    xr: &[Complex32],
    pos: usize,
    p: usize,
    nb: usize,
    e: &[f32],
    mu: f32,
    reg: f32,
    max_gain: f32,
    fft: &mut Fft,
    wk: &mut Work,
) {
    let l = nb - 1;
    let g = 1.0 / (2 * l) as f32;
    wk.tmp_t[..l].iter_mut().for_each(|v| *v = 0.0);
    wk.tmp_t[l..].copy_from_slice(e);
    fft.forward(&mut wk.tmp_t, &mut wk.ef);
    for k in 0..nb {
        let e2 = wk.ef[k].norm_sqr();
        let mut xpx = 0.0f32;
        for q in 0..p {
            xpx += xr[((pos + q) % p) * nb + k].norm_sqr() * kf.pu[q * nb + k];
        }
        // the zero-padded error sees the echo through half the window: factor 1/2 in amplitude
        let unexpl = (e2 - 0.25 * xpx).max(0.1 * e2);
        kf.psi[k] = 0.5 * kf.psi[k] + 0.5 * unexpl;
        wk.den[k] = 0.25 * xpx + kf.psi_weight * kf.psi[k];
    }
    // regularise weak bins: the gradient constraint spreads each bin's update over its
    // neighbours, so a huge step in a near-empty bin would disturb the strong ones
    let mean_den = wk.den.iter().sum::<f32>() / nb as f32;
    for v in wk.den.iter_mut() {
        *v += reg * mean_den + 1e-12;
    }
    for q in 0..p {
        let xo = ((pos + q) % p) * nb;
        let pq = &mut kf.pu[q * nb..(q + 1) * nb];
        for k in 0..nb {
            let x = xr[xo + k];
            let step = pq[k] / wk.den[k];
            wk.tmp_f[k] = x.conj() * wk.ef[k] * (0.5 * mu * step);
            pq[k] *= (1.0 - 0.25 * step * x.norm_sqr()).max(0.0);
        }
        fft.inverse(&mut wk.tmp_f, &mut wk.tmp_t);
        for i in 0..l {
            wk.tmp_t[i] *= g;
        }
        wk.tmp_t[l..].iter_mut().for_each(|v| *v = 0.0);
        fft.forward(&mut wk.tmp_t, &mut wk.tmp_f);
        let w = &mut kf.w[q * nb..(q + 1) * nb];
        for k in 0..nb {
            w[k] += wk.tmp_f[k];
            pq[k] = kf.a2 * pq[k] + (1.0 - kf.a2) * w[k].norm_sqr();
        }
    }
    bound_gain(kf, p, nb, max_gain);
}

/// Scales down every bin whose echo path, summed over all partitions, gains more power than
/// `max_gain`. Without the bound, a near end that is coherent with a faint line of the far end
/// (a tone over a tone's quantisation harmonics, hum over hum) is learnt as echo, with a gain no
/// room has, and cancelled: the room falls silent for the far end while both talk.
fn bound_gain(kf: &mut Kf, p: usize, nb: usize, max_gain: f32) {
    for k in 0..nb {
        let g: f32 = (0..p).map(|q| kf.w[q * nb + k].norm_sqr()).sum();
        if g > max_gain {
            let s = (max_gain / g).sqrt();
            (0..p).for_each(|q| kf.w[q * nb + k] *= s);
        }
    }
}

pub struct Aec {
    l: usize,
    nb: usize,
    p: usize,
    m: usize,
    mu: f32,
    reg: f32,
    max_gain: f32,
    /// ring of far-end spectra, newest at `pos`
    xr: Vec<Complex32>,
    pos: usize,
    xbuf: Vec<f32>,
    mics: Vec<MicFilter>,
    wk: Work,
    ys: Vec<f32>,
    es: Vec<f32>,
    pub farend_active: bool,
    farend_level: f32,
    sd: f32,
    se: f32,
    /// mics whose filters look like the echo path changed under them in this frame
    path_changed_mics: usize,
    /// mics whose filters cancel about as well as they usually do in this frame
    converged_mics: usize,
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
            reg: params.reg,
            max_gain: params.max_gain,
            xr: vec![z; p * nb],
            pos: 0,
            xbuf: vec![0.0; 2 * l],
            mics: (0..n_mics)
                .map(|_| MicFilter {
                    main: Kf::new(p, nb, params.a2, 1.0),
                    shadow: Kf::new(p, nb, params.shadow_a2, params.shadow_psi_weight),
                    s_main: 0.0,
                    s_shadow: 0.0,
                    better: 0,
                    worse: 0,
                    se: 0.0,
                    sd: 0.0,
                    cd_d: 0.0,
                    cd_e: 0.0,
                    cd_pb: 0.0,
                    cd_ratio: 0.0,
                    cd_n: 0,
                    cd_frames: 0,
                    cd_conv: 0.0,
                })
                .collect(),
            wk: Work {
                tmp_t: vec![0.0; 2 * l],
                tmp_f: vec![z; nb],
                yf: vec![z; nb],
                ef: vec![z; nb],
                den: vec![0.0; nb],
            },
            ys: vec![0.0; l],
            es: vec![0.0; l],
            farend_active: false,
            farend_level: 0.0,
            sd: 0.0,
            se: 0.0,
            path_changed_mics: 0,
            converged_mics: 0,
        }
    }

    /// The echo path changed under most mics' filters (this frame): their error is as loud as the
    /// mic although the mic is no louder than the echo their magnitudes predict — a moved
    /// loudspeaker or array, not near-end speech (which would make the mic louder).
    pub fn path_changed(&self) -> bool {
        2 * self.path_changed_mics > self.m
    }

    /// Most mics' filters cancel within 3 dB of their usual depth in this frame (far end active):
    /// after a detected change, the path has been learnt again — or it had not changed at all.
    pub fn path_reconverged(&self) -> bool {
        2 * self.converged_mics > self.m
    }

    /// Smoothed (mic, error) powers of mic 0 (diagnostics).
    pub fn filter_errors(&self) -> (f32, f32) {
        (self.mics[0].sd, self.mics[0].se)
    }

    /// Power-domain echo estimate per bin, mean over mics: Σ_q |W_q(k)|² |X_{n−q}(k)|² with the
    /// main filters' coefficients. Phase-blind, so it stays a fair estimate of the echo's power
    /// right after an echo-path change, when the filters' phases (and so the linear estimate and
    /// the cancellation) are wrong.
    pub fn echo_power(&self, out: &mut [f32]) {
        let (nb, p) = (self.nb, self.p);
        out[..nb].iter_mut().for_each(|v| *v = 0.0);
        for mf in &self.mics {
            for q in 0..p {
                let xo = ((self.pos + q) % p) * nb;
                let w = &mf.main.w[q * nb..(q + 1) * nb];
                let x = &self.xr[xo..xo + nb];
                for k in 0..nb {
                    out[k] += w[k].norm_sqr() * x[k].norm_sqr();
                }
            }
        }
        let g = 1.0 / self.m as f32;
        out[..nb].iter_mut().for_each(|v| *v *= g);
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
        self.xbuf.copy_within(l.., 0);
        self.xbuf[l..].copy_from_slice(farend);
        self.pos = (self.pos + p - 1) % p;
        self.wk.tmp_t.copy_from_slice(&self.xbuf);
        {
            let dst = &mut self.xr[self.pos * nb..(self.pos + 1) * nb];
            fft.forward(&mut self.wk.tmp_t, dst);
        }
        let fe: f32 = farend.iter().map(|v| v * v).sum::<f32>() / l as f32;
        self.farend_level = 0.9 * self.farend_level + 0.1 * fe;
        self.farend_active = fe > 1e-7 || self.farend_level > 1e-7;
        let mut sd_frame = 0.0f32;
        let mut se_frame = 0.0f32;
        let (pos, mu, reg, gmax, active) = (self.pos, self.mu, self.reg, self.max_gain, self.farend_active);
        let (mut changed, mut conv) = (0usize, 0usize);
        for ch in 0..self.m {
            let d = &mut mics[ch * l..(ch + 1) * l];
            let mf = &mut self.mics[ch];
            let ech = &mut echo[ch * l..(ch + 1) * l];
            filter(&mf.main, &self.xr, pos, p, nb, fft, &mut self.wk, ech);
            filter(&mf.shadow, &self.xr, pos, p, nb, fft, &mut self.wk, &mut self.ys);
            let (mut d_pow, mut e_pow, mut es_pow) = (0.0f32, 0.0f32, 0.0f32);
            for i in 0..l {
                d_pow += d[i] * d[i];
                self.es[i] = d[i] - self.ys[i];
                es_pow += self.es[i] * self.es[i];
                d[i] -= ech[i];
                e_pow += d[i] * d[i];
            }
            mf.sd = 0.9 * mf.sd + 0.1 * d_pow;
            mf.se = 0.9 * mf.se + 0.1 * e_pow;
            if ch == 0 && active {
                sd_frame = d_pow;
                se_frame = e_pow;
            }
            if !active {
                mf.cd_frames = 0;
                continue;
            }
            // Echo-path change or double talk? Both make the error as loud as the mic. But
            // near-end speech also makes the mic louder than the echo the filter's magnitudes
            // predict (Σ|W|²|X|², phase-blind), while a moved loudspeaker leaves the echo's power
            // as it was and only scrambles the phases the filter relies on.
            let mut pb = 0.0f32;
            for q in 0..p {
                let xo = ((pos + q) % p) * nb;
                let w = &mf.main.w[q * nb..(q + 1) * nb];
                for k in 0..nb {
                    pb += w[k].norm_sqr() * self.xr[xo + k].norm_sqr();
                }
            }
            mf.cd_d = 0.7 * mf.cd_d + 0.3 * d_pow;
            mf.cd_e = 0.7 * mf.cd_e + 0.3 * e_pow;
            mf.cd_pb = 0.7 * mf.cd_pb + 0.3 * pb;
            if mf.cd_e < 0.1 * mf.cd_d && mf.cd_pb > 0.0 {
                // converged, no near end to speak of: learn the usual mic / predicted ratio
                mf.cd_ratio = 0.98 * mf.cd_ratio + 0.02 * mf.cd_d / mf.cd_pb;
                mf.cd_conv = 0.98 * mf.cd_conv + 0.02 * mf.cd_e / mf.cd_d;
                mf.cd_n += 1;
            }
            if mf.cd_n >= 50 && mf.cd_e < 2.0 * mf.cd_conv * mf.cd_d {
                conv += 1;
            }
            // error at least as loud as the mic, mic within 4 dB of the predicted echo (a loudspeaker
            // moved 20 cm closer raised the echo by 3 dB in the tests' room), 30 ms
            let looks_moved = mf.cd_n >= 50 && mf.cd_e > mf.cd_d && mf.cd_d < 2.5 * mf.cd_ratio * mf.cd_pb;
            mf.cd_frames = if looks_moved { mf.cd_frames + 1 } else { 0 };
            if mf.cd_frames >= 3 {
                changed += 1;
            }
            adapt(&mut mf.main, &self.xr, pos, p, nb, d, mu, reg, gmax, fft, &mut self.wk);
            adapt(&mut mf.shadow, &self.xr, pos, p, nb, &self.es, mu, reg, gmax, fft, &mut self.wk);
            mf.s_main = 0.8 * mf.s_main + 0.2 * e_pow;
            mf.s_shadow = 0.8 * mf.s_shadow + 0.2 * es_pow;
            mf.better = if mf.s_shadow < 0.5 * mf.s_main { mf.better + 1 } else { 0 };
            mf.worse = if mf.s_shadow > 4.0 * mf.s_main { mf.worse + 1 } else { 0 };
            if mf.better >= 5 {
                mf.main.w.copy_from_slice(&mf.shadow.w);
                mf.main.pu.copy_from_slice(&mf.shadow.pu);
                mf.s_main = mf.s_shadow;
                mf.better = 0;
            }
            if mf.worse >= 10 {
                mf.shadow.w.copy_from_slice(&mf.main.w);
                mf.shadow.pu.copy_from_slice(&mf.main.pu);
                mf.s_shadow = mf.s_main;
                mf.worse = 0;
            }
        }
        self.path_changed_mics = changed;
        self.converged_mics = conv;
        if self.farend_active {
            self.sd = 0.95 * self.sd + 0.05 * sd_frame;
            self.se = 0.95 * self.se + 0.05 * se_frame;
        }
    }
}
