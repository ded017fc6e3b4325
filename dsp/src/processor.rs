//! The frame processor: one 10 ms frame in, one out, nothing allocated in between.
//!
//! Chain: per-mic echo cancellation (linear, [`crate::aec`]) → filterbank → blind noise
//! estimation ([`crate::noise`]) → DOA ([`crate::doa`]) and tracking ([`crate::tracker`]) →
//! MVDR beam ([`crate::beamformer`]) → post-filter (residual echo + noise + late reverberation
//! suppression) → synthesis → gain control.

use crate::DspError;
use crate::aec::{Aec, AecParams};
use crate::beamformer::{BeamParams, Beamformer};
use crate::doa::{Doa, ang_diff};
use crate::geometry::Geometry;
use crate::noise::Mcra;
use crate::stft::{Fft, Wola};
use crate::tracker::{Tracker, TrackerParams};
use realfft::num_complex::Complex32;

/// Processing stages that can be switched at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    EchoCancellation,
    Beamforming,
    NoiseSuppression,
    GainControl,
}

/// Processor configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub geometry: Geometry,
    /// 16000 (48000 not yet supported)
    pub sample_rate: u32,
    /// echo tail covered by the canceller, reference-to-capture delay included (ms)
    pub echo_tail_ms: u32,
    /// reverberation time assumed by the late-reverberation suppressor (s); 0 disables it
    pub assumed_rt60_s: f32,
    /// frames per DOA block (10 = 100 ms)
    pub doa_block_frames: usize,
    pub echo_cancellation: bool,
    pub beamforming: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
    /// lowest post-filter gain for noise (dB)
    pub noise_floor_db: f32,
    /// talker elevation above the array plane assumed by linear arrays (degrees): they measure
    /// the cone angle to their axis, cos cone = cos az · cos el, so they report the azimuth in
    /// their front half-plane for this elevation (15°: seated talkers 1–3 m from a table or
    /// screen-mounted bar). Planar arrays measure azimuth directly and ignore it.
    pub linear_talker_elevation_deg: f64,
    /// linear arrays: where the bar sits in the room, for a DOA that accounts for the floor and
    /// ceiling reflections ([`crate::doa::LinearRoom`]); `None` steers for
    /// `linear_talker_elevation_deg` alone. Planar arrays ignore it.
    pub linear_room: Option<crate::doa::LinearRoom>,
}

impl Config {
    pub fn new(geometry: Geometry) -> Self {
        Self {
            geometry,
            sample_rate: 16000,
            echo_tail_ms: 320,
            assumed_rt60_s: 0.4,
            doa_block_frames: 10,
            echo_cancellation: true,
            beamforming: true,
            noise_suppression: true,
            gain_control: false,
            noise_floor_db: -15.0,
            linear_talker_elevation_deg: 15.0,
            linear_room: Some(crate::doa::LinearRoom::default()),
        }
    }
}

/// What one frame produced, for status (D-Bus) and evaluation.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameReport {
    /// tracked talker azimuth (degrees, 0 = +x, counter-clockwise), once a talker was found
    pub talker_azimuth_deg: Option<f32>,
    /// near-end speech present in this frame
    pub speech: bool,
    /// the tracker handed over to a new talker in this frame
    pub talker_changed: bool,
    /// a DOA block ended in this frame (talker azimuth freshly evaluated)
    pub doa_updated: bool,
    /// that block's own estimate before tracking: (azimuth°, coherence, activity)
    pub doa_block: Option<(f32, f32, f32)>,
    /// mic 0 level before processing (dBFS, full scale sine = 0 dB)
    pub input_level_dbfs: f32,
    /// output level (dBFS)
    pub output_level_dbfs: f32,
    /// far-end (loudspeaker) level (dBFS)
    pub farend_level_dbfs: f32,
    /// linear echo canceller's smoothed ERLE on mic 0 (dB), when the far end is active
    pub erle_db: Option<f32>,
}

pub struct Processor {
    m: usize,
    hop: usize,
    nb: usize,
    fft: Fft,
    wola: Vec<Wola>,
    echo_wola: Wola,
    out_wola: Wola,
    mics: Vec<f32>,
    echo: Vec<f32>,
    echo_mean: Vec<f32>,
    x: Vec<Complex32>,
    /// `x` with real and imaginary parts apart (for the vectorised covariance and DOA loops)
    x_re: Vec<f32>,
    x_im: Vec<f32>,
    yecho: Vec<Complex32>,
    y: Vec<Complex32>,
    y_re: Vec<f32>,
    y_im: Vec<f32>,
    pow: Vec<f32>,
    not_speech: Vec<f32>,
    mcra: Mcra,
    /// full noise covariance nb × M × M, unpacked from the packed one on demand
    phi: Vec<Complex32>,
    phi_ready: bool,
    /// packed noise covariance: (i ≤ j pair, bin), real and imaginary parts
    phi_re: Vec<f32>,
    phi_im: Vec<f32>,
    phi_pairs: Vec<(usize, usize)>,
    phi_a: Vec<f32>,
    /// per bin, the total weight the recursive average has given to frames so far (1 − Π a):
    /// the packed covariance is divided by it when unpacked, so the estimate is unbiased from
    /// the first frames instead of rising from zero with the averaging's 1 s time constant
    phi_w: Vec<f32>,
    phi_dirty: bool,
    doa: Doa,
    doa_frames: usize,
    doa_block: usize,
    tracker: Tracker,
    bf: Beamformer,
    steer: Option<f32>,
    frames_since_bf: usize,
    aec: Aec,
    // post-filter state
    g_prev: Vec<f32>,
    ypow_prev: Vec<f32>,
    ysm: Vec<f32>,
    rev_ring: Vec<f32>,
    rev_pos: usize,
    rev_frames: usize,
    rev_gain: f32,
    leak_ey: Vec<f32>,
    leak_yy: Vec<f32>,
    mean_e: Vec<f32>,
    mean_y: Vec<f32>,
    leak: f32,
    /// phase-blind echo power per bin (Σ_q |W_q|²|X_q|², mean over mics) and the regression of
    /// the beam output's power on it, like `leak` for the linear estimate
    echo_pow: Vec<f32>,
    mean_p: Vec<f32>,
    leak_ep: Vec<f32>,
    leak_pp: Vec<f32>,
    leak_pow: f32,
    /// frames left in which the post-filter treats the echo path as freshly changed
    path_change_hold: u32,
    /// noise reference of the post-filter's floor (see `process`)
    noise_floor_ref: Vec<f32>,
    agc_gain: f32,
    /// Output power of the speech frames before the gain, smoothed over about half a second.
    agc_speech_pow: f32,
    stages: [bool; 4],
    cfg_floor: f32,
    frame_out: Vec<f32>,
    aec_seen_farend: bool,
    echo_os: f32,
    leak_alpha: f32,
    phi_alpha: f32,
    /// frames in a row, early in a hold, in which the canceller was back at its usual depth
    reconv_frames: u32,
    /// frames since the current hold began
    hold_age: u32,
    /// frames since the canceller last saw the far end active
    farend_quiet_frames: u32,
}

/// The level gain control steers speech frames to, dBFS.
const AGC_TARGET_DBFS: f32 = -26.0;
/// Smoothing of the speech level that decides a fast step (per speech frame: ~0.5 s).
const AGC_SMOOTH: f32 = 0.98;
/// While smoothed speech is this far above the target, the gain comes down fast: a room far
/// louder than expected (a near talker, a loud array) is level within a second or two, not
/// over the first 15 s of a call. Single loud frames never trigger it, the smoothed level does.
const AGC_FAST_ABOVE_DB: f32 = 3.0;
/// The fast step, dB per speech frame (10 dB/s); the slow ones are −0.02 and +0.01.
const AGC_FAST_DOWN_DB: f32 = -0.1;

/// After a detected echo-path change, for this many frames (2 s: the linear filters need about
/// as long to re-converge on speech)...
const PATH_CHANGE_HOLD: u32 = 200;
/// ...the phase-blind residual-echo estimate is taken this much larger (the residual right after
/// a change is up to twice the echo, and its regressed scale lags a few frames behind)...
const PATH_CHANGE_OVERSUB: f32 = 4.0;
/// ...the residual echo at the beam output is at least this multiple of the phase-blind echo
/// power's share of the mics' power after cancellation (see `process`)...
const PATH_CHANGE_SHARE_OS: f32 = 4.0;
/// ...and the floor's noise reference rises by at most this factor per frame (3 dB/s).
const NOISE_FLOOR_RISE: f32 = 1.0069;
/// The noise covariance is held under the noise estimator's ceiling only when the far end has
/// been quiet this long (1 s): while it plays, residual echo belongs in the covariance.
const FAREND_QUIET_FRAMES: u32 = 100;
/// A hold ends early if, within this many frames of the detection (0.5 s, less than any
/// re-convergence on speech takes)...
const FALSE_CHANGE_WINDOW: u32 = 50;
/// ...the canceller has been back at its usual depth this many frames in a row: the path had not
/// changed (a filter's brief swing while it converges).
const FALSE_CHANGE_FRAMES: u32 = 10;

fn db(p: f32) -> f32 {
    10.0 * (p + 1e-12).log10()
}

impl Processor {
    pub fn new(cfg: &Config) -> Result<Self, DspError> {
        if cfg.sample_rate != 16000 {
            return Err(DspError::Config(format!("sample rate {} Hz is not supported; use 16000 Hz", cfg.sample_rate)));
        }
        if cfg.geometry.n_mics() > crate::beamformer::MAX_MICS {
            return Err(DspError::Config("more than 16 mics".into()));
        }
        if !(1..=100).contains(&cfg.doa_block_frames) {
            return Err(DspError::Config("doa_block_frames must be 1..=100".into()));
        }
        if !(10..=2000).contains(&cfg.echo_tail_ms) {
            return Err(DspError::Config("echo_tail_ms must be 10..=2000".into()));
        }
        if let Some(r) = &cfg.linear_room {
            let heights = [r.mount_height_m, r.talker_height_m, r.ceiling_height_m];
            if heights.iter().any(|h| !(0.0..=20.0).contains(h)) {
                return Err(DspError::Config(format!(
                    "linear_room: heights must be 0 to 20 m (bar {} m, talker {} m, ceiling {} m)",
                    r.mount_height_m, r.talker_height_m, r.ceiling_height_m
                )));
            }
            if ![r.floor_reflection, r.ceiling_reflection].iter().all(|v| (0.0..=1.0).contains(v)) {
                return Err(DspError::Config("linear_room: reflection factors must be 0 to 1".into()));
            }
        }
        let fs = cfg.sample_rate as f64;
        let hop = (cfg.sample_rate / 100) as usize;
        let n = 2 * hop;
        let nb = hop + 1;
        let m = cfg.geometry.n_mics();
        let z = Complex32::new(0.0, 0.0);
        let talker_el = if cfg.geometry.is_linear() { cfg.linear_talker_elevation_deg } else { 0.0 };
        let rev_frames = 5; // 50 ms: late reverberation starts here
        let rev_gain = if cfg.assumed_rt60_s > 0.0 {
            let delta = 3.0 * std::f32::consts::LN_10 / cfg.assumed_rt60_s;
            (-2.0 * delta * rev_frames as f32 * hop as f32 / fs as f32).exp()
        } else {
            0.0
        };
        Ok(Self {
            m,
            hop,
            nb,
            fft: Fft::new(n),
            wola: (0..m).map(|_| Wola::new(hop)).collect(),
            echo_wola: Wola::new(hop),
            out_wola: Wola::new(hop),
            mics: vec![0.0; m * hop],
            echo: vec![0.0; m * hop],
            echo_mean: vec![0.0; hop],
            x: vec![z; m * nb],
            x_re: vec![0.0; m * nb],
            x_im: vec![0.0; m * nb],
            yecho: vec![z; nb],
            y: vec![z; nb],
            y_re: vec![0.0; nb],
            y_im: vec![0.0; nb],
            pow: vec![0.0; nb],
            not_speech: vec![0.0; nb],
            mcra: Mcra::new(nb),
            phi: vec![z; nb * m * m],
            phi_ready: false,
            phi_re: vec![0.0; nb * m * (m + 1) / 2],
            phi_im: vec![0.0; nb * m * (m + 1) / 2],
            phi_pairs: (0..m).flat_map(|i| (i..m).map(move |j| (i, j))).collect(),
            phi_a: vec![0.0; nb],
            phi_w: vec![0.0; nb],
            phi_dirty: false,
            doa: Doa::new(&cfg.geometry, fs, n, 200.0, 5000.0, 5.0, talker_el, cfg.linear_room.as_ref()),
            doa_frames: cfg.doa_block_frames,
            doa_block: cfg.doa_block_frames,
            tracker: Tracker::new(TrackerParams::default()),
            bf: Beamformer::new(
                &cfg.geometry,
                fs,
                n,
                BeamParams { steer_elevation_deg: talker_el, ..Default::default() },
            ),
            steer: None,
            frames_since_bf: 0,
            aec: Aec::new(
                m,
                hop,
                &AecParams { partitions: (cfg.echo_tail_ms as usize).div_ceil(10), ..Default::default() },
            ),
            g_prev: vec![1.0; nb],
            ypow_prev: vec![0.0; nb],
            ysm: vec![0.0; nb],
            rev_ring: vec![0.0; rev_frames * nb],
            rev_pos: 0,
            rev_frames,
            rev_gain,
            leak_ey: vec![0.0; nb],
            leak_yy: vec![0.0; nb],
            mean_e: vec![0.0; nb],
            mean_y: vec![0.0; nb],
            leak: 1.0,
            echo_pow: vec![0.0; nb],
            mean_p: vec![0.0; nb],
            leak_ep: vec![0.0; nb],
            leak_pp: vec![0.0; nb],
            leak_pow: 1.0,
            path_change_hold: 0,
            noise_floor_ref: vec![0.0; nb],
            agc_gain: 1.0,
            agc_speech_pow: 0.0,
            stages: [cfg.echo_cancellation, cfg.beamforming, cfg.noise_suppression, cfg.gain_control],
            cfg_floor: 10f32.powf(cfg.noise_floor_db / 20.0),
            frame_out: vec![0.0; hop],
            aec_seen_farend: false,
            echo_os: 4.0,
            leak_alpha: 0.8,
            reconv_frames: 0,
            hold_age: u32::MAX,
            farend_quiet_frames: u32::MAX,
            phi_alpha: 0.99,
        })
    }

    /// Samples per channel in one frame.
    pub fn frame_len(&self) -> usize {
        self.hop
    }

    pub fn n_mics(&self) -> usize {
        self.m
    }

    /// Algorithmic latency in samples (frame buffering + filterbank).
    pub fn latency_samples(&self) -> usize {
        2 * self.hop
    }

    pub fn set_stage(&mut self, stage: Stage, on: bool) {
        self.stages[stage as usize] = on;
    }

    pub fn stage(&self, stage: Stage) -> bool {
        self.stages[stage as usize]
    }

    /// Processes one frame: `mics_interleaved` holds frame_len × n_mics samples (interleaved,
    /// channel k = mic k, full scale ±1), `farend` frame_len samples of what the loudspeaker
    /// plays in this frame (or an empty slice: no far end), `out` receives frame_len samples.
    /// Panics on wrong slice lengths (a programming error of the caller).
    pub fn process(&mut self, mics_interleaved: &[f32], farend: &[f32], out: &mut [f32]) -> FrameReport {
        let (m, hop, nb) = (self.m, self.hop, self.nb);
        assert_eq!(mics_interleaved.len(), m * hop, "mic frame size");
        assert_eq!(out.len(), hop, "output frame size");
        assert!(farend.is_empty() || farend.len() == hop, "far-end frame size");
        let mut rep = FrameReport::default();
        let mut in_pow = 0.0f32;
        for i in 0..hop {
            for ch in 0..m {
                self.mics[ch * hop + i] = mics_interleaved[i * m + ch];
            }
            in_pow += self.mics[i] * self.mics[i];
        }
        rep.input_level_dbfs = db(2.0 * in_pow / hop as f32);
        let fe_pow = farend.iter().map(|v| v * v).sum::<f32>();
        rep.farend_level_dbfs = db(2.0 * fe_pow / hop as f32);
        if fe_pow > 0.0 {
            self.aec_seen_farend = true;
        }
        self.farend_quiet_frames = if self.aec.farend_active { 0 } else { self.farend_quiet_frames.saturating_add(1) };
        let aec_on = self.stages[0] && self.aec_seen_farend;
        if aec_on {
            // an empty far-end slice is silence
            if farend.is_empty() {
                self.frame_out.iter_mut().for_each(|v| *v = 0.0);
                self.aec.process(&mut self.fft, &self.frame_out, &mut self.mics, &mut self.echo);
            } else {
                self.aec.process(&mut self.fft, farend, &mut self.mics, &mut self.echo);
            }
            if self.aec.farend_active {
                rep.erle_db = Some(self.aec.erle_db());
            }
            for i in 0..hop {
                let mut s = 0.0;
                for ch in 0..m {
                    s += self.echo[ch * hop + i];
                }
                self.echo_mean[i] = s / m as f32;
            }
            self.echo_wola.analyze(&mut self.fft, &self.echo_mean, &mut self.yecho);
            self.aec.echo_power(&mut self.echo_pow);
            if self.aec.path_changed() {
                if self.path_change_hold == 0 {
                    self.hold_age = 0;
                    self.reconv_frames = 0;
                }
                // detections go on for a while after a change: each extends the hold
                self.path_change_hold = PATH_CHANGE_HOLD;
            } else {
                self.path_change_hold = self.path_change_hold.saturating_sub(1);
            }
            self.hold_age = self.hold_age.saturating_add(1);
            // a false alarm (a filter's brief swing while it converges) releases the hold at once,
            // instead of taking 2 s of near-end speech with it
            let early = self.hold_age <= FALSE_CHANGE_WINDOW;
            if self.path_change_hold > 0 && early && self.aec.farend_active {
                self.reconv_frames = if self.aec.path_reconverged() { self.reconv_frames + 1 } else { 0 };
                if self.reconv_frames >= FALSE_CHANGE_FRAMES {
                    self.path_change_hold = 0;
                }
            }
        }
        // analysis
        for ch in 0..m {
            let (xs, ms) = (&mut self.x[ch * nb..(ch + 1) * nb], &self.mics[ch * hop..(ch + 1) * hop]);
            self.wola[ch].analyze(&mut self.fft, ms, xs);
        }
        for k in 0..nb {
            let mut s = 0.0;
            for ch in 0..m {
                s += self.x[ch * nb + k].norm_sqr();
            }
            self.pow[k] = s / m as f32;
        }
        // residual echo share per bin (from the previous frame's leak estimate)
        let res_echo_known = aec_on && self.aec.farend_active;
        if res_echo_known {
            for k in 0..nb {
                let re = self.residual_echo(k);
                self.not_speech[k] = (re / (self.pow[k] + 1e-20)).min(1.0);
            }
        }
        self.mcra.update(&self.pow, if res_echo_known { Some(&self.not_speech) } else { None });
        // spatial noise covariance, gated like the noise PSD, with a slower averaging (a
        // covariance needs more frames). Kept packed (upper triangle, pair-major, bins
        // contiguous, re/im apart) so the update vectorises across bins; the full nb × M × M
        // matrix is unpacked only when the DOA or the beam reads it.
        for k in 0..nb {
            let presence = (self.mcra.alpha[k] - self.mcra.base_alpha()) / (1.0 - self.mcra.base_alpha());
            let a = self.phi_alpha + (1.0 - self.phi_alpha) * presence.clamp(0.0, 1.0);
            self.phi_a[k] = a;
            self.phi_w[k] = a * self.phi_w[k] + (1.0 - a);
        }
        for (v, (r, i)) in self.x.iter().zip(self.x_re.iter_mut().zip(self.x_im.iter_mut())) {
            *r = v.re;
            *i = v.im;
        }
        for (q, &(i, j)) in self.phi_pairs.iter().enumerate() {
            let (ar, ai) = (&self.x_re[i * nb..(i + 1) * nb], &self.x_im[i * nb..(i + 1) * nb]);
            let (br, bi) = (&self.x_re[j * nb..(j + 1) * nb], &self.x_im[j * nb..(j + 1) * nb]);
            let re = &mut self.phi_re[q * nb..(q + 1) * nb];
            let im = &mut self.phi_im[q * nb..(q + 1) * nb];
            let a = &self.phi_a[..nb];
            for k in 0..nb {
                let b = 1.0 - a[k];
                re[k] = a[k] * re[k] + b * (ar[k] * br[k] + ai[k] * bi[k]);
                im[k] = a[k] * im[k] + b * (ai[k] * br[k] - ar[k] * bi[k]);
            }
        }
        if self.farend_quiet_frames >= FAREND_QUIET_FRAMES {
            self.cap_covariance();
        }
        self.phi_dirty = true;
        if self.mcra.frames() > 30 {
            self.phi_ready = true;
        }
        let band = (nb / 16)..(nb / 2);
        let sp: f32 = self.mcra.p[band.clone()].iter().sum::<f32>() / band.len() as f32;
        rep.speech = sp > 0.3;
        // DOA
        self.doa.accumulate(&self.x_re, &self.x_im, nb);
        self.doa_frames -= 1;
        if self.doa_frames == 0 {
            self.doa_frames = self.doa_block_len();
            rep.doa_updated = true;
            self.unpack_phi();
            let est = self.doa.evaluate(&self.phi, nb);
            rep.doa_block = est.as_ref().map(|e| (e.azimuth_deg, e.coherence, e.activity));
            let conf = est.and_then(|e| {
                if self.tracker.confident(e.coherence, e.activity) {
                    Some((e.azimuth_deg, e.coherence * e.activity, e.activity))
                } else {
                    None
                }
            });
            rep.talker_changed = self.tracker.update(conf);
        }
        rep.talker_azimuth_deg = self.tracker.azimuth();
        // beam
        let bf_on = self.stages[1];
        if bf_on {
            self.frames_since_bf += 1;
            let az = self.tracker.azimuth().unwrap_or(0.0);
            let moved = match self.steer {
                None => true,
                Some(s) => ang_diff(s, az) > 0.25,
            };
            // while the loudspeaker plays, the blind covariance holds its residual echo: let
            // it into the beam's noise model so the beam also turns away from the loudspeaker
            let dw = if res_echo_known { 0.5 } else { 1.0 };
            let mut moved = moved;
            if dw != self.bf.params.diffuse_weight {
                self.bf.params.diffuse_weight = dw;
                moved = true;
            }
            // superdirective weights depend on the steering alone: recompute them on a move
            // only; blended with the blind covariance, every 50 ms as well. The beam-output noise
            // (wᴴΦw, for the post-filter) follows the covariance every 50 ms.
            let refresh = self.frames_since_bf >= 5;
            if moved || (refresh && !self.bf.data_independent()) {
                if !self.bf.data_independent() {
                    self.unpack_phi();
                }
                let phi = if self.phi_ready { Some(&self.phi[..]) } else { None };
                self.bf.update_weights(az as f64, phi);
                self.steer = Some(az);
            }
            if moved || refresh {
                if self.phi_ready {
                    self.bf.update_out_noise_packed(&self.phi_re, &self.phi_im);
                }
                self.frames_since_bf = 0;
            }
            self.bf.apply_split(&self.x_re, &self.x_im, &mut self.y_re, &mut self.y_im);
            for ((y, &re), &im) in self.y.iter_mut().zip(&self.y_re).zip(&self.y_im) {
                *y = Complex32::new(re, im);
            }
        } else {
            self.y.copy_from_slice(&self.x[..nb]);
        }
        // residual echo leak estimate: regression of |Y|² on |Ŷecho|² across time per bin
        if res_echo_known {
            let (mut num, mut den) = (0.0f32, 0.0f32);
            let (mut num_p, mut den_p) = (0.0f32, 0.0f32);
            for k in 0..nb {
                let e2 = self.y[k].norm_sqr();
                let y2 = self.yecho[k].norm_sqr();
                let a = self.leak_alpha;
                self.mean_e[k] = a * self.mean_e[k] + (1.0 - a) * e2;
                self.mean_y[k] = a * self.mean_y[k] + (1.0 - a) * y2;
                let de = e2 - self.mean_e[k];
                let dy = y2 - self.mean_y[k];
                self.leak_ey[k] = a * self.leak_ey[k] + (1.0 - a) * de * dy;
                self.leak_yy[k] = a * self.leak_yy[k] + (1.0 - a) * dy * dy;
                num += self.leak_ey[k];
                den += self.leak_yy[k];
                let p2 = self.echo_pow[k];
                self.mean_p[k] = a * self.mean_p[k] + (1.0 - a) * p2;
                let dp = p2 - self.mean_p[k];
                self.leak_ep[k] = a * self.leak_ep[k] + (1.0 - a) * de * dp;
                self.leak_pp[k] = a * self.leak_pp[k] + (1.0 - a) * dp * dp;
                num_p += self.leak_ep[k];
                den_p += self.leak_pp[k];
            }
            if den > 1e-20 {
                self.leak = (num / den).clamp(0.005, 1.0);
            }
            if den_p > 1e-30 {
                self.leak_pow = (num_p / den_p).clamp(1e-4, 100.0);
            }
        }
        // post-filter
        let ns_on = self.stages[2];
        if ns_on || aec_on {
            let floor = if ns_on { self.cfg_floor } else { 1.0 };
            for k in 0..nb {
                let y2 = self.y[k].norm_sqr();
                let noise = if ns_on {
                    let n = if bf_on && self.phi_ready { self.bf.out_noise[k] } else { self.mcra.lambda[k] };
                    n + self.rev_gain * self.rev_ring[self.rev_pos * nb + k]
                } else {
                    0.0
                };
                let echo = if res_echo_known { self.echo_os * self.residual_echo(k) } else { 0.0 };
                let changed = res_echo_known && self.path_change_hold > 0;
                let echo = if changed {
                    // Right after a change the regressions behind `residual_echo` lag, and the
                    // beam output may hold far more echo than they say. What does not lag: the
                    // old path's phase-blind echo power against the mics' power after
                    // cancellation, frame by frame. The residual there is the new echo plus the
                    // stale estimate (about twice the echo, phases unrelated); this share of the
                    // mics' power is taken as the share of the beam output's.
                    let share = (PATH_CHANGE_SHARE_OS * self.echo_pow[k] / (self.pow[k] + 1e-20)).min(1.0);
                    let pb = self.echo_os * PATH_CHANGE_OVERSUB * self.leak_pow * self.echo_pow[k];
                    echo.max(pb).max(share * y2)
                } else {
                    echo
                };
                let lam = (noise + echo).max(1e-20);
                let gamma = y2 / lam;
                let xi =
                    0.98 * self.g_prev[k] * self.g_prev[k] * self.ypow_prev[k] / lam + 0.02 * (gamma - 1.0).max(0.0);
                let g = xi / (1.0 + xi);
                // floor: the noise floor where noise dominates, deeper where echo does. While the
                // far end plays the noise estimate takes in residual echo (on purpose: the beam
                // turns from it); after an echo-path change that lifts it, and the floor with it,
                // by as much as the residual rose. So for the frames after a change the floor
                // follows a reference that rises by 3 dB/s at most (outside them it is the noise).
                let nr = &mut self.noise_floor_ref[k];
                *nr = if changed && *nr > 0.0 { (*nr * NOISE_FLOOR_RISE).min(noise) } else { noise };
                let fl = floor * (*nr / lam).sqrt();
                let g = g.max(fl).min(1.0);
                self.g_prev[k] = g;
                self.ypow_prev[k] = y2;
                self.y[k] *= g;
            }
        }
        // late reverberation memory: smoothed beam PSD from rev_frames ago
        for k in 0..nb {
            self.ysm[k] = 0.5 * self.ysm[k] + 0.5 * self.ypow_prev[k];
        }
        self.rev_ring[self.rev_pos * nb..(self.rev_pos + 1) * nb].copy_from_slice(&self.ysm);
        self.rev_pos = (self.rev_pos + 1) % self.rev_frames;
        self.out_wola.synthesize(&mut self.fft, &mut self.y, out);
        // gain control: slow level tracking towards -26 dBFS during speech (fast down while the
        // speech is far too loud), soft limit
        let out_pow = out.iter().map(|v| v * v).sum::<f32>() / hop as f32;
        if self.stages[3] {
            if rep.speech {
                let g2 = self.agc_gain * self.agc_gain;
                let lvl = db(2.0 * out_pow * g2);
                self.agc_speech_pow = AGC_SMOOTH * self.agc_speech_pow + (1.0 - AGC_SMOOTH) * out_pow;
                let step = if db(2.0 * self.agc_speech_pow * g2) > AGC_TARGET_DBFS + AGC_FAST_ABOVE_DB {
                    AGC_FAST_DOWN_DB
                } else if lvl > AGC_TARGET_DBFS {
                    -0.02
                } else {
                    0.01
                };
                let gdb = (db(g2) + step).clamp(-12.0, 24.0);
                self.agc_gain = 10f32.powf(gdb / 20.0);
            }
            for v in out.iter_mut() {
                let s = *v * self.agc_gain;
                *v = if s.abs() < 0.9 { s } else { s.signum() * (0.9 + 0.1 * ((s.abs() - 0.9) / 0.1).tanh()) };
            }
        }
        let op = out.iter().map(|v| v * v).sum::<f32>() / hop as f32;
        rep.output_level_dbfs = db(2.0 * op);
        rep
    }

    /// Residual echo power at the beam output in bin `k`: the larger of the linear echo estimate
    /// and the phase-blind echo power, each scaled by its regression on the output. After an
    /// echo-path change the linear estimate is stale (its phases are wrong, and the filters swing
    /// while they re-adapt), so its regression on the output falls apart; the phase-blind one
    /// still has the echo's power, and its scale rises with the residual within a few frames.
    fn residual_echo(&self, k: usize) -> f32 {
        (self.leak * self.yecho[k].norm_sqr()).max(self.leak_pow * self.echo_pow[k])
    }

    /// Scales down the noise covariance of every bin whose noise power (mean of the diagonal)
    /// is above what the noise estimator allows ([`Mcra::ceiling`]).
    fn cap_covariance(&mut self) {
        let (m, nb) = (self.m, self.nb);
        for k in 0..nb {
            let mut diag = 0.0;
            let mut q = 0;
            for i in 0..m {
                diag += self.phi_re[q * nb + k];
                q += m - i;
            }
            let power = diag / m as f32 / self.phi_w[k].max(1e-6);
            let ceiling = self.mcra.ceiling(k);
            if power > ceiling {
                let c = ceiling / power;
                for q in 0..self.phi_pairs.len() {
                    self.phi_re[q * nb + k] *= c;
                    self.phi_im[q * nb + k] *= c;
                }
            }
        }
    }

    /// Refreshes the full covariance `phi` (nb × M × M) from the packed one.
    fn unpack_phi(&mut self) {
        if !self.phi_dirty {
            return;
        }
        let (m, nb) = (self.m, self.nb);
        for (q, &(i, j)) in self.phi_pairs.iter().enumerate() {
            for k in 0..nb {
                let v = Complex32::new(self.phi_re[q * nb + k], self.phi_im[q * nb + k]) / self.phi_w[k].max(1e-6);
                self.phi[k * m * m + i * m + j] = v;
                self.phi[k * m * m + j * m + i] = v.conj();
            }
        }
        self.phi_dirty = false;
    }

    fn doa_block_len(&self) -> usize {
        self.doa_block
    }
}
