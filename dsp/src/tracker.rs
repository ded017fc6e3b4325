//! Talker tracker: keeps the current talker's azimuth from confident DOA blocks, with
//! hysteresis (a single stray block never moves it) and fast hand-over (two consistent blocks
//! away from the current talker make a new talker).

use crate::doa::ang_diff;

const HIST: usize = 12;
/// candidate blocks kept for a hand-over (at least `handover_blocks_less_coherent`)
const CAND: usize = 8;

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
    /// coherence a block needs to count fully towards a new talker, as a fraction of the current
    /// talker's recent coherence: a reflection or the reverberant tail caught in a pause is less
    /// coherent than the direct sound of whoever is talking
    pub handover_rel_coherence: f32,
    /// consistent blocks that hand over even when they are less coherent than that: a talker far
    /// from the array (less direct sound) still takes over from a near one, only later, after
    /// longer than a reverberant tail lasts
    pub handover_blocks_less_coherent: usize,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            min_coherence: 0.15,
            min_activity: 0.05,
            gate_deg: 15.0,
            handover_blocks: 2,
            handover_min_activity: 0.15,
            handover_rel_coherence: 0.6,
            handover_blocks_less_coherent: 6,
        }
    }
}

pub struct Tracker {
    pub params: TrackerParams,
    current: Option<f32>,
    hist: [(f32, f32); HIST],
    n_hist: usize,
    pos_hist: usize,
    cand: [(f32, f32); CAND],
    n_cand: usize,
    cand_age: usize,
    /// coherence per unit activity of the candidate blocks, and whether each was strong,
    /// parallel to `cand`
    cand_coh: [f32; CAND],
    cand_strong: [bool; CAND],
    /// running mean (0.8 per block) of the current talker's coherence per unit activity, kept as
    /// a weighted sum and its total weight so that it is unbiased from the first block
    coh_sum: f32,
    coh_wt: f32,
}

impl Tracker {
    pub fn new(params: TrackerParams) -> Self {
        Self {
            params,
            current: None,
            hist: [(0.0, 0.0); HIST],
            n_hist: 0,
            pos_hist: 0,
            cand: [(0.0, 0.0); CAND],
            n_cand: 0,
            cand_age: 0,
            cand_coh: [0.0; CAND],
            cand_strong: [false; CAND],
            coh_sum: 0.0,
            coh_wt: 0.0,
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
        let cur_coh = if self.coh_wt > 0.0 { self.coh_sum / self.coh_wt } else { 0.0 };
        let rel = self.params.handover_rel_coherence * cur_coh;
        let weak = matches!(est, Some((_, _, a)) if a < self.params.handover_min_activity);
        let Some((az, w, a)) = est else {
            self.cand_age += 1;
            if self.cand_age > 3 {
                self.n_cand = 0;
            }
            return false;
        };
        // the block's coherence: its weight is coherence × activity
        let coh = w / a.max(1e-6);
        match self.current {
            None if weak => false,
            None => {
                self.push_cand(az, w, coh, true);
                self.handover_if_due()
            }
            Some(cur) if ang_diff(az, cur) <= self.params.gate_deg => {
                self.push_hist(az, w);
                self.current = Some(self.mean_hist());
                self.n_cand = 0;
                self.push_coh(coh);
                false
            }
            Some(_) if weak => false,
            Some(_) => {
                self.push_cand(az, w, coh, coh >= rel);
                self.handover_if_due()
            }
        }
    }

    /// Hands over when enough candidate blocks agree: `handover_blocks` as coherent as the
    /// current talker, or `handover_blocks_less_coherent` of any coherence.
    fn handover_if_due(&mut self) -> bool {
        let p = &self.params;
        let strong = self.cand_strong[..self.n_cand].iter().filter(|&&s| s).count();
        if strong >= p.handover_blocks || self.n_cand >= p.handover_blocks_less_coherent {
            self.handover();
            return true;
        }
        false
    }

    fn push_coh(&mut self, coh: f32) {
        self.coh_sum = 0.8 * self.coh_sum + coh;
        self.coh_wt = 0.8 * self.coh_wt + 1.0;
    }

    fn push_cand(&mut self, az: f32, w: f32, coh: f32, strong: bool) {
        if self.n_cand > 0 {
            let c = circ_mean(&self.cand[..self.n_cand]);
            if ang_diff(az, c) > self.params.gate_deg * 0.8 {
                self.n_cand = 0;
            }
        }
        if self.n_cand == CAND {
            self.cand.copy_within(1.., 0);
            self.cand_coh.copy_within(1.., 0);
            self.cand_strong.copy_within(1.., 0);
            self.n_cand -= 1;
        }
        self.cand[self.n_cand] = (az, w);
        self.cand_coh[self.n_cand] = coh;
        self.cand_strong[self.n_cand] = strong;
        self.n_cand += 1;
        self.cand_age = 0;
    }

    fn handover(&mut self) {
        self.n_hist = 0;
        self.pos_hist = 0;
        self.coh_sum = 0.0;
        self.coh_wt = 0.0;
        for i in 0..self.n_cand {
            let (a, w) = self.cand[i];
            self.push_hist(a, w);
            self.push_coh(self.cand_coh[i]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the processor feeds it: (azimuth, coherence × activity, activity).
    fn block(az: f32, coherence: f32, activity: f32) -> Option<(f32, f32, f32)> {
        Some((az, coherence * activity, activity))
    }

    /// A tracker that has followed a talker at 60° for a second.
    fn on_talker_at_60() -> Tracker {
        let mut t = Tracker::new(TrackerParams::default());
        for i in 0..10 {
            t.update(block(60.0 + (i % 3) as f32 - 1.0, 0.7, 0.8));
        }
        assert!(ang_diff(t.azimuth().unwrap(), 60.0) < 1.0);
        t
    }

    #[test]
    fn two_consistent_blocks_hand_over() {
        let mut t = on_talker_at_60();
        assert!(!t.update(block(200.0, 0.65, 0.6)));
        assert!(t.update(block(201.0, 0.65, 0.6)), "the second block elsewhere hands over");
        assert!(ang_diff(t.azimuth().unwrap(), 200.5) < 1.0);
    }

    #[test]
    fn one_stray_block_does_not_move_the_talker() {
        let mut t = on_talker_at_60();
        t.update(block(200.0, 0.7, 0.8));
        t.update(block(61.0, 0.7, 0.8));
        t.update(block(300.0, 0.7, 0.8));
        assert!(ang_diff(t.azimuth().unwrap(), 60.0) < 1.0);
    }

    #[test]
    fn marginal_activity_does_not_hand_over() {
        let mut t = on_talker_at_60();
        for _ in 0..5 {
            assert!(!t.update(block(200.0, 0.7, 0.1)));
        }
        assert!(ang_diff(t.azimuth().unwrap(), 60.0) < 1.0);
    }

    #[test]
    fn a_less_coherent_tail_in_a_pause_does_not_hand_over() {
        // a reverberant tail in a pause: active, consistent, but far less coherent than the
        // talker, and over before it could count as a talker (0.5 s)
        let mut t = on_talker_at_60();
        for _ in 0..5 {
            assert!(!t.update(block(110.0, 0.35, 0.8)));
        }
        for _ in 0..4 {
            assert!(!t.update(None));
        }
        assert!(ang_diff(t.azimuth().unwrap(), 60.0) < 1.0);
        // a new talker as coherent as the last one is taken at once
        assert!(!t.update(block(110.0, 0.6, 0.8)));
        assert!(t.update(block(110.0, 0.6, 0.8)));
    }

    #[test]
    fn a_far_talker_takes_over_later() {
        // less direct sound than the near talker had, but talking on: taken after 0.6 s
        let mut t = on_talker_at_60();
        for i in 0..5 {
            assert!(!t.update(block(250.0, 0.3, 0.8)), "block {i}");
        }
        assert!(t.update(block(250.0, 0.3, 0.8)));
        assert!(ang_diff(t.azimuth().unwrap(), 250.0) < 1.0);
        // the near talker, now the more coherent one, takes it back at once
        assert!(!t.update(block(60.0, 0.7, 0.8)));
        assert!(t.update(block(60.0, 0.7, 0.8)));
    }

    #[test]
    fn first_talker_needs_no_reference_coherence() {
        let mut t = Tracker::new(TrackerParams::default());
        assert_eq!(t.azimuth(), None);
        t.update(block(45.0, 0.3, 0.5));
        t.update(block(46.0, 0.3, 0.5));
        assert!(ang_diff(t.azimuth().expect("a talker"), 45.5) < 1.0);
    }
}
