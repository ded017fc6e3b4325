//! A staged update campaign, sans I/O: the service feeds it the rooms' update reports and the
//! time, and it says which rooms to send the bundle to, when a group is done, and when the whole
//! campaign halts.
//!
//! Rules (what IT asks of a rollout over hundreds of rooms):
//! - Rooms are updated group by group; a group starts only when the one before reached its
//!   success share (e.g. 95 %).
//! - A room counts as updated only when it reported [`UpdatePhase::Succeeded`], which huisd
//!   sends after the new slot booted and passed its health check, never when the bundle was
//!   merely written. A room that fell back reports `RolledBack`; one that never answers within
//!   the room timeout is `TimedOut`. Every room started ends in one of these, never "unknown".
//! - When the failures of a group (failed, rolled back, timed out) pass the failure threshold
//!   of that group's size, the campaign halts: no further room is sent anything. This holds for
//!   groups already left behind too (a room there may still time out).
//! - Reports are taken as they come, in any order and more than once: an end is final, and a
//!   report that would move a room backwards (an older phase) is ignored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::msg::{UpdatePhase, UpdateReport};
use crate::topic::RoomId;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Share of a group's rooms that must have succeeded before the next group starts (0–1).
    pub success_share: f64,
    /// The campaign halts when a group's failures exceed this share of its size (0–1).
    pub failure_threshold: f64,
    /// A room that has not ended this long after it was sent the bundle has timed out.
    pub room_timeout: Duration,
}

/// Where one room of the campaign is.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomState {
    /// In a group not started yet: never sent anything.
    Waiting,
    /// Sent the bundle at this time; the last phase it reported (Idle until it reports).
    Updating {
        since: Instant,
        phase: UpdatePhase,
    },
    Succeeded,
    RolledBack(String),
    Failed(String),
    TimedOut,
}

impl RoomState {
    fn is_failure(&self) -> bool {
        matches!(self, RoomState::RolledBack(_) | RoomState::Failed(_) | RoomState::TimedOut)
    }
}

/// What the service must do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish the campaign's bundle in this room's desired state.
    Install(RoomId),
    /// Group N (from 0) has started.
    GroupStarted(usize),
    /// The campaign stopped: no room will be sent the bundle any more.
    Halted(String),
    /// Every group reached its success share.
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotStarted,
    Running(usize),
    Halted,
    Completed,
}

/// Counts of one group, for the console's progress bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupProgress {
    pub size: usize,
    pub waiting: usize,
    pub updating: usize,
    pub succeeded: usize,
    pub failed: usize,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    policy: Policy,
    groups: Vec<Vec<RoomId>>,
    rooms: BTreeMap<RoomId, (usize, RoomState)>,
    /// Each group's counts, kept as rooms move, so a report costs no walk over every room.
    counts: Vec<GroupProgress>,
    phase: Phase,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CampaignError {
    #[error("a campaign needs at least one room")]
    Empty,
    #[error("room {0} is in more than one group")]
    Duplicate(String),
    #[error("{0} must be between 0 and 1")]
    Share(&'static str),
    #[error("the campaign has no group {0}")]
    Group(usize),
}

impl Campaign {
    pub fn new(id: &str, groups: Vec<Vec<RoomId>>, policy: Policy) -> Result<Campaign, CampaignError> {
        for (name, v) in [("success_share", policy.success_share), ("failure_threshold", policy.failure_threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(CampaignError::Share(name));
            }
        }
        let groups: Vec<Vec<RoomId>> = groups.into_iter().filter(|g| !g.is_empty()).collect();
        if groups.is_empty() {
            return Err(CampaignError::Empty);
        }
        let mut rooms = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            for r in group {
                if rooms.insert(r.clone(), (g, RoomState::Waiting)).is_some() {
                    return Err(CampaignError::Duplicate(r.to_string()));
                }
            }
        }
        let counts =
            groups.iter().map(|g| GroupProgress { size: g.len(), waiting: g.len(), ..Default::default() }).collect();
        Ok(Campaign { id: id.to_owned(), policy, groups, rooms, counts, phase: Phase::NotStarted })
    }

    /// Takes a campaign up where a saved copy of it left off (the service restarted, or another
    /// worker took it over): its phase and each room's state. A room missing from `states` is
    /// waiting; a room still updating is timed from `since` in its state (the caller's clock).
    pub fn resume(
        id: &str,
        groups: Vec<Vec<RoomId>>,
        policy: Policy,
        phase: Phase,
        states: &BTreeMap<RoomId, RoomState>,
    ) -> Result<Campaign, CampaignError> {
        let mut c = Campaign::new(id, groups, policy)?;
        for (room, (g, state)) in c.rooms.iter_mut() {
            let Some(s) = states.get(room) else { continue };
            let counts = &mut c.counts[*g];
            counts.waiting -= 1;
            match s {
                RoomState::Waiting => counts.waiting += 1,
                RoomState::Updating { .. } => counts.updating += 1,
                RoomState::Succeeded => counts.succeeded += 1,
                _ => counts.failed += 1,
            }
            *state = s.clone();
        }
        if let Phase::Running(g) = phase
            && g >= c.groups.len()
        {
            return Err(CampaignError::Group(g));
        }
        c.phase = phase;
        Ok(c)
    }

    /// Splits `rooms` into groups: the first of `first` rooms, then groups growing by `factor`.
    pub fn split(rooms: Vec<RoomId>, first: usize, factor: usize) -> Vec<Vec<RoomId>> {
        let (mut out, mut size, mut rest) = (Vec::new(), first.max(1), rooms.into_iter());
        loop {
            let g: Vec<RoomId> = rest.by_ref().take(size).collect();
            if g.is_empty() {
                return out;
            }
            out.push(g);
            size = size.saturating_mul(factor.max(1));
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn room(&self, room: &RoomId) -> Option<&RoomState> {
        self.rooms.get(room).map(|(_, s)| s)
    }

    /// Every room of the campaign and where it is.
    pub fn rooms(&self) -> impl Iterator<Item = (&RoomId, &RoomState)> {
        self.rooms.iter().map(|(id, (_, s))| (id, s))
    }

    pub fn progress(&self) -> Vec<GroupProgress> {
        self.counts.clone()
    }

    /// Starts the first group.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::NotStarted {
            return Vec::new();
        }
        self.start_group(0, now)
    }

    fn start_group(&mut self, g: usize, now: Instant) -> Vec<Action> {
        self.phase = Phase::Running(g);
        let mut out = vec![Action::GroupStarted(g)];
        for r in &self.groups[g] {
            if let Some((_, s)) = self.rooms.get_mut(r) {
                *s = RoomState::Updating { since: now, phase: UpdatePhase::Idle };
                self.counts[g].waiting -= 1;
                self.counts[g].updating += 1;
                out.push(Action::Install(r.clone()));
            }
        }
        out
    }

    /// A room's update report (from its reported state or an update event). Reports of other
    /// campaigns, of rooms not in this one or not started, and late or repeated ones change
    /// nothing.
    pub fn on_report(&mut self, room: &RoomId, report: &UpdateReport, now: Instant) -> Vec<Action> {
        if report.campaign.as_deref() != Some(self.id.as_str()) {
            return Vec::new();
        }
        let Some((g, state)) = self.rooms.get_mut(room) else { return Vec::new() };
        let RoomState::Updating { phase, .. } = state else { return Vec::new() };
        if report.phase < *phase && !report.phase.is_final() {
            return Vec::new();
        }
        *state = match report.phase {
            UpdatePhase::Succeeded => RoomState::Succeeded,
            UpdatePhase::RolledBack => RoomState::RolledBack(report.detail.clone()),
            UpdatePhase::Failed => RoomState::Failed(report.detail.clone()),
            p => {
                *phase = p;
                return Vec::new();
            }
        };
        let c = &mut self.counts[*g];
        c.updating -= 1;
        if report.phase == UpdatePhase::Succeeded {
            c.succeeded += 1;
        } else {
            c.failed += 1;
        }
        self.evaluate(now)
    }

    /// The clock: rooms past the room timeout end as timed out.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let timeout = self.policy.room_timeout;
        let mut changed = false;
        for (g, s) in self.rooms.values_mut() {
            if let RoomState::Updating { since, .. } = s
                && now.saturating_duration_since(*since) >= timeout
            {
                *s = RoomState::TimedOut;
                self.counts[*g].updating -= 1;
                self.counts[*g].failed += 1;
                changed = true;
            }
        }
        if changed { self.evaluate(now) } else { Vec::new() }
    }

    /// When the next room of the campaign times out, for the service's timer.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|(_, s)| match s {
                RoomState::Updating { since, .. } => Some(*since + self.policy.room_timeout),
                _ => None,
            })
            .min()
    }

    fn evaluate(&mut self, now: Instant) -> Vec<Action> {
        let Phase::Running(current) = self.phase else { return Vec::new() };
        let progress = &self.counts;
        // A group already left behind may still fail late (a room timing out): it halts too.
        if let Some(g) = (0..=current)
            .find(|g| progress[*g].failed as f64 > self.policy.failure_threshold * progress[*g].size as f64)
        {
            let p = &progress[g];
            self.phase = Phase::Halted;
            let failed: Vec<String> = self.groups[g]
                .iter()
                .filter(|r| self.rooms.get(*r).is_some_and(|(_, s)| s.is_failure()))
                .map(|r| r.to_string())
                .take(5)
                .collect();
            return vec![Action::Halted(format!(
                "group {} of {}: {} of {} rooms failed, over the threshold of {:.0} % (first: {})",
                g + 1,
                self.groups.len(),
                p.failed,
                p.size,
                self.policy.failure_threshold * 100.0,
                failed.join(", ")
            ))];
        }
        let (g, p) = (current, progress[current].clone());
        if p.succeeded as f64 >= self.policy.success_share * p.size as f64 {
            if g + 1 < self.groups.len() {
                return self.start_group(g + 1, now);
            }
            if p.updating == 0 {
                self.phase = Phase::Completed;
                return vec![Action::Completed];
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(n: usize) -> Vec<RoomId> {
        (0..n).map(|i| RoomId::new(&format!("room-{i:05}")).unwrap()).collect()
    }

    fn report(phase: UpdatePhase, campaign: &str) -> UpdateReport {
        UpdateReport { phase, campaign: Some(campaign.into()), target_version: "2".into(), detail: String::new() }
    }

    fn policy() -> Policy {
        Policy { success_share: 0.95, failure_threshold: 0.05, room_timeout: Duration::from_secs(1800) }
    }

    /// The kept counts agree with a walk over every room.
    fn assert_counts(c: &Campaign) {
        let mut walk = vec![GroupProgress::default(); c.groups.len()];
        for (g, s) in c.rooms.values() {
            let p = &mut walk[*g];
            p.size += 1;
            match s {
                RoomState::Waiting => p.waiting += 1,
                RoomState::Updating { .. } => p.updating += 1,
                RoomState::Succeeded => p.succeeded += 1,
                _ => p.failed += 1,
            }
        }
        assert_eq!(c.progress(), walk);
    }

    fn installs(a: &[Action]) -> Vec<RoomId> {
        a.iter().filter_map(|a| if let Action::Install(r) = a { Some(r.clone()) } else { None }).collect()
    }

    #[test]
    fn a_resumed_campaign_goes_on_as_if_it_had_never_stopped() {
        let all = rooms(30);
        let groups = Campaign::split(all.clone(), 10, 2);
        let mut a = Campaign::new("c1", groups.clone(), policy()).unwrap();
        let t0 = Instant::now();
        let first = installs(&a.start(t0));
        for r in &first[..9] {
            a.on_report(r, &report(UpdatePhase::Succeeded, "c1"), t0);
        }
        a.on_report(&first[9], &report(UpdatePhase::Installing, "c1"), t0);
        // What the service saved, read back by another worker.
        let states: BTreeMap<RoomId, RoomState> = a.rooms().map(|(r, s)| (r.clone(), s.clone())).collect();
        let mut b = Campaign::resume("c1", groups.clone(), policy(), a.phase(), &states).unwrap();
        assert_counts(&b);
        assert_eq!(b.progress(), a.progress());
        assert_eq!(b.phase(), Phase::Running(0));
        // The last room of the first group ends: the second group starts, in both alike.
        let next_a = installs(&a.on_report(&first[9], &report(UpdatePhase::Succeeded, "c1"), t0));
        let next_b = installs(&b.on_report(&first[9], &report(UpdatePhase::Succeeded, "c1"), t0));
        assert_eq!(next_b, all[10..30]);
        assert_eq!(next_a, next_b);
        assert_counts(&b);
        let e = Campaign::resume("c1", groups, policy(), Phase::Running(5), &states).unwrap_err();
        assert_eq!(e, CampaignError::Group(5));
    }

    #[test]
    fn ten_percent_failures_in_the_first_group_halt_it_and_touch_no_other_room() {
        let all = rooms(1000);
        let groups = Campaign::split(all.clone(), 50, 4);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [50, 200, 750]);
        let mut c = Campaign::new("c1", groups, policy()).unwrap();
        let t0 = Instant::now();
        let first = installs(&c.start(t0));
        assert_eq!(first, all[..50]);
        // Every tenth room of the first group fails; the others succeed, in any order.
        let mut halted = None;
        for (i, r) in first.iter().enumerate() {
            let phase = if i % 10 == 9 { UpdatePhase::RolledBack } else { UpdatePhase::Succeeded };
            for a in c.on_report(r, &report(phase, "c1"), t0) {
                assert!(!matches!(a, Action::Install(_)), "a room outside the first group was sent the bundle");
                if let Action::Halted(why) = a {
                    halted.get_or_insert((i, why));
                }
            }
        }
        let (at, why) = halted.expect("the campaign halted");
        // 3 failures of 50 are over 5 % (2.5): the halt comes with the third, room index 29.
        assert_eq!(at, 29, "{why}");
        assert!(why.contains("3 of 50 rooms failed") && why.contains("room-00009"), "{why}");
        assert_eq!(c.phase(), Phase::Halted);
        assert!(all[50..].iter().all(|r| c.room(r) == Some(&RoomState::Waiting)));
        assert_counts(&c);
    }

    #[test]
    fn a_room_counts_only_once_its_health_check_passed_and_silent_rooms_time_out() {
        let all = rooms(4);
        let pol = Policy { success_share: 1.0, failure_threshold: 0.5, room_timeout: Duration::from_secs(600) };
        let mut c = Campaign::new("c2", vec![all[..2].to_vec(), all[2..].to_vec()], pol).unwrap();
        let t0 = Instant::now();
        c.start(t0);
        // Written and rebooted is not updated.
        for p in [UpdatePhase::Downloading, UpdatePhase::Installing, UpdatePhase::Installed, UpdatePhase::HealthCheck] {
            assert!(c.on_report(&all[0], &report(p, "c2"), t0).is_empty());
        }
        assert_eq!(c.progress()[0].succeeded, 0);
        assert!(c.on_report(&all[0], &report(UpdatePhase::Succeeded, "c2"), t0).is_empty());
        // The second room never answers: after the room timeout it ends, and 1 of 2 is not over 50 %.
        assert!(c.on_tick(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(c.next_timeout(), Some(t0 + Duration::from_secs(600)));
        assert!(c.on_tick(t0 + Duration::from_secs(600)).is_empty());
        assert_eq!(c.room(&all[1]), Some(&RoomState::TimedOut));
        assert_eq!(c.phase(), Phase::Running(0), "a group short of its success share does not move on");
        assert_counts(&c);
    }

    #[test]
    fn duplicate_late_and_foreign_reports_change_nothing() {
        let all = rooms(2);
        let mut c = Campaign::new("c3", vec![all.clone()], policy()).unwrap();
        let t0 = Instant::now();
        // Before the start, and from another campaign: ignored.
        assert!(c.on_report(&all[0], &report(UpdatePhase::Succeeded, "c3"), t0).is_empty());
        c.start(t0);
        assert!(c.on_report(&all[0], &report(UpdatePhase::Succeeded, "old"), t0).is_empty());
        assert!(c.on_report(&RoomId::new("stranger").unwrap(), &report(UpdatePhase::Failed, "c3"), t0).is_empty());
        c.on_report(&all[0], &report(UpdatePhase::HealthCheck, "c3"), t0);
        // An older phase arriving late does not move the room back.
        c.on_report(&all[0], &report(UpdatePhase::Downloading, "c3"), t0);
        assert_eq!(c.room(&all[0]), Some(&RoomState::Updating { since: t0, phase: UpdatePhase::HealthCheck }));
        c.on_report(&all[0], &report(UpdatePhase::Succeeded, "c3"), t0);
        // An end is final: a repeated or contradicting report after it is ignored.
        c.on_report(&all[0], &report(UpdatePhase::RolledBack, "c3"), t0);
        assert_eq!(c.room(&all[0]), Some(&RoomState::Succeeded));
        let done = c.on_report(&all[1], &report(UpdatePhase::Succeeded, "c3"), t0);
        assert_eq!(done, [Action::Completed]);
        assert_eq!(c.phase(), Phase::Completed);
        assert_counts(&c);
    }

    #[test]
    fn groups_move_on_at_the_success_share() {
        let all = rooms(30);
        let pol = Policy { success_share: 0.9, failure_threshold: 0.1, room_timeout: Duration::from_secs(60) };
        let mut c = Campaign::new("c4", Campaign::split(all.clone(), 10, 2), pol).unwrap();
        let t0 = Instant::now();
        c.start(t0);
        let mut next = Vec::new();
        for r in &all[..9] {
            next = c.on_report(r, &report(UpdatePhase::Succeeded, "c4"), t0);
        }
        assert_eq!(next.first(), Some(&Action::GroupStarted(1)));
        assert_eq!(installs(&next), all[10..30]);
        assert_counts(&c);
        assert!(Campaign::new("x", vec![], policy()).is_err());
        assert_eq!(
            Campaign::new("x", vec![all[..1].to_vec(), all[..1].to_vec()], policy()).unwrap_err(),
            CampaignError::Duplicate("room-00000".into())
        );
    }
}
