//! Talker tracker: keeps the current talker's azimuth from confident DOA blocks, with
//! hysteresis (a single stray block never moves it) and fast hand-over (two consistent blocks
//! away from the current talker make a new talker).

use crate::doa::ang_diff;

const HIST: usize = 12;

pub struct TrackerParams {
    /// a block is used when its DOA coherence is at least this
    pub min_coherence: f32,
    /// and its activity (mean Wiener weight) at least this
    pub min_activity: f32,
    /// estimates within this many degrees belong to the current talker
    pub gate_deg: f32,
    /// consistent blocks needed to hand over to a new talker
    pub handover_blocks: usize,
    /// activity a block needs to count towards a new talker (higher than for refining the
    /// current one: a hand-over must not follow a marginal block, e.g. a noise source in a pause)
    pub handover_min_activity: f32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            min_coherence: 0.15,
            min_activity: 0.05,
            gate_deg: 15.0,
            handover_blocks: 2,
            handover_min_activity: 0.15,
        }
    }
}

pub struct Tracker {
    pub params: TrackerParams,
    current: Option<f32>,
    hist: [(f32, f32); HIST],
    n_hist: usize,
    pos_hist: usize,
    cand: [(f32, f32); 4],
    n_cand: usize,
    cand_age: usize,
}

impl Tracker {
    pub fn new(params: TrackerParams) -> Self {
        Self {
            params,
            current: None,
            hist: [(0.0, 0.0); HIST],
            n_hist: 0,
            pos_hist: 0,
            cand: [(0.0, 0.0); 4],
            n_cand: 0,
            cand_age: 0,
        }
    }

    pub fn azimuth(&self) -> Option<f32> {
        self.current
    }

    /// Whether a block estimate is confident enough to count.
    pub fn confident(&self, coherence: f32, activity: f32) -> bool {
        coherence >= self.params.min_coherence && activity >= self.params.min_activity
    }

    /// Feeds one DOA block (None or unconfident = nobody clearly talking). Returns true when the
    /// tracked talker changed.
    /// `est` is (azimuth, weight, activity).
    pub fn update(&mut self, est: Option<(f32, f32, f32)>) -> bool {
        let weak = matches!(est, Some((_, _, a)) if a < self.params.handover_min_activity);
        let Some((az, w, _)) = est else {
            self.cand_age += 1;
            if self.cand_age > 3 {
                self.n_cand = 0;
            }
            return false;
        };
        match self.current {
            None if weak => false,
            None => {
                self.push_cand(az, w);
                if self.n_cand >= self.params.handover_blocks {
                    self.handover();
                    return true;
                }
                false
            }
            Some(cur) if ang_diff(az, cur) <= self.params.gate_deg => {
                self.push_hist(az, w);
                self.current = Some(self.mean_hist());
                self.n_cand = 0;
                false
            }
            Some(_) if weak => false,
            Some(_) => {
                self.push_cand(az, w);
                if self.n_cand >= self.params.handover_blocks {
                    self.handover();
                    return true;
                }
                false
            }
        }
    }

    fn push_cand(&mut self, az: f32, w: f32) {
        if self.n_cand > 0 {
            let c = circ_mean(&self.cand[..self.n_cand]);
            if ang_diff(az, c) > self.params.gate_deg * 0.8 {
                self.n_cand = 0;
            }
        }
        if self.n_cand == self.cand.len() {
            self.cand.copy_within(1.., 0);
            self.n_cand -= 1;
        }
        self.cand[self.n_cand] = (az, w);
        self.n_cand += 1;
        self.cand_age = 0;
    }

    fn handover(&mut self) {
        self.n_hist = 0;
        self.pos_hist = 0;
        for i in 0..self.n_cand {
            let (a, w) = self.cand[i];
            self.push_hist(a, w);
        }
        self.n_cand = 0;
        self.current = Some(self.mean_hist());
    }

    fn push_hist(&mut self, az: f32, w: f32) {
        self.hist[self.pos_hist] = (az, w);
        self.pos_hist = (self.pos_hist + 1) % HIST;
        self.n_hist = (self.n_hist + 1).min(HIST);
    }

    fn mean_hist(&self) -> f32 {
        circ_mean(&self.hist[..self.n_hist])
    }
}

/// Weighted circular mean of (azimuth°, weight).
pub fn circ_mean(v: &[(f32, f32)]) -> f32 {
    let (mut s, mut c) = (0.0f32, 0.0f32);
    for &(a, w) in v {
        let r = a.to_radians();
        s += w * r.sin();
        c += w * r.cos();
    }
    s.atan2(c).to_degrees().rem_euclid(360.0)
}
