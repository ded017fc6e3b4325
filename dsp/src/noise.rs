//! Blind noise estimation: minima-controlled recursive averaging (MCRA, after Cohen & Berdugo
//! 2002). A bin is taken as speech-free when its smoothed power stays near the minimum of the
//! last ~1.2 s; the noise PSD and the spatial noise covariance are averaged only then.

pub struct Mcra {
    nb: usize,
    s: Vec<f32>,
    smin: Vec<f32>,
    stmp: Vec<f32>,
    subs: Vec<f32>,
    sub_pos: usize,
    sub_count: usize,
    /// speech presence probability per bin
    pub p: Vec<f32>,
    /// noise PSD per bin
    pub lambda: Vec<f32>,
    /// smoothing factor actually used this frame per bin (for the covariance too)
    pub alpha: Vec<f32>,
    frames: usize,
}

const SUB_LEN: usize = 15;
const N_SUBS: usize = 8;
const DELTA: f32 = 5.0;
const ALPHA_S: f32 = 0.7;
const ALPHA_P: f32 = 0.2;
const ALPHA_D: f32 = 0.95;

impl Mcra {
    pub fn new(nb: usize) -> Self {
        Self {
            nb,
            s: vec![0.0; nb],
            smin: vec![0.0; nb],
            stmp: vec![0.0; nb],
            subs: vec![0.0; nb * N_SUBS],
            sub_pos: 0,
            sub_count: 0,
            p: vec![0.0; nb],
            lambda: vec![0.0; nb],
            alpha: vec![1.0; nb],
            frames: 0,
        }
    }

    /// The smoothing factor used for a certainly speech-free bin this frame.
    pub fn base_alpha(&self) -> f32 {
        if self.frames < 50 { 0.8 } else { ALPHA_D }
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Updates with one frame of power per bin. `extra_noise` bins (e.g. residual echo) are
    /// forced towards "noise" by that weight in [0,1] (1 = certainly not near-end speech).
    pub fn update(&mut self, power: &[f32], not_speech: Option<&[f32]>) {
        let nb = self.nb;
        if self.frames == 0 {
            for k in 0..nb {
                let v = power[k].max(1e-12);
                self.s[k] = v;
                self.smin[k] = v;
                self.stmp[k] = v;
                self.lambda[k] = v;
                for u in 0..N_SUBS {
                    self.subs[u * nb + k] = v;
                }
            }
        }
        self.frames += 1;
        for k in 0..nb {
            let lo = k.saturating_sub(1);
            let hi = (k + 1).min(nb - 1);
            let sf = 0.25 * power[lo] + 0.5 * power[k] + 0.25 * power[hi];
            self.s[k] = ALPHA_S * self.s[k] + (1.0 - ALPHA_S) * sf;
            self.smin[k] = self.smin[k].min(self.s[k]);
            self.stmp[k] = self.stmp[k].min(self.s[k]);
        }
        self.sub_count += 1;
        if self.sub_count == SUB_LEN {
            self.sub_count = 0;
            let pos = self.sub_pos;
            self.subs[pos * nb..(pos + 1) * nb].copy_from_slice(&self.stmp);
            self.sub_pos = (pos + 1) % N_SUBS;
            for k in 0..nb {
                let mut m = self.s[k];
                for u in 0..N_SUBS {
                    m = m.min(self.subs[u * nb + k]);
                }
                self.smin[k] = m;
                self.stmp[k] = self.s[k];
            }
        }
        for k in 0..nb {
            let ind = if self.s[k] > DELTA * self.smin[k].max(1e-12) { 1.0 } else { 0.0 };
            let mut p = ALPHA_P * self.p[k] + (1.0 - ALPHA_P) * ind;
            if let Some(ns) = not_speech {
                p *= 1.0 - ns[k];
            }
            self.p[k] = p;
            // faster learning during the first half second
            let ad = if self.frames < 50 { 0.8 } else { ALPHA_D };
            let a = ad + (1.0 - ad) * p;
            self.alpha[k] = a;
            self.lambda[k] = a * self.lambda[k] + (1.0 - a) * power[k];
            if not_speech.is_none() {
                self.lambda[k] = self.lambda[k].min(self.ceiling(k));
            }
        }
    }

    /// The most noise bin `k` can hold by the detector's own rule: smoothed power above
    /// `DELTA` × its recent minimum counts as speech, so a noise estimate above that is stale.
    pub fn ceiling(&self, k: usize) -> f32 {
        DELTA * self.smin[k].max(1e-12)
    }
}
