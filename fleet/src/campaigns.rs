//! Update campaigns: `huis_fleet_proto::campaign` decides, this runs it. A campaign sends its
//! bundle group by group through each room's retained desired state, follows the rooms' own
//! reports from the database (so it sees reports whichever worker took them), ticks the room
//! timeout, and writes its progress back after every step. It halts by itself when a group's
//! failures pass the threshold; a halted campaign still follows the rooms it started until each
//! has ended (succeeded, rolled back, failed or timed out).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huis_fleet_proto::campaign::{Action, Campaign, Phase, Policy, RoomState};
use huis_fleet_proto::msg::{self, BundleTarget, Desired, UpdateReport};
use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use serde::{Deserialize, Serialize};

use crate::api::App;
use crate::now_ms;

/// How often a running campaign reads the rooms' reports.
const POLL: Duration = Duration::from_millis(250);
/// How long a worker's right to run a campaign lasts without being renewed: another worker
/// takes the campaign up this long after its runner stopped.
const LEASE: Duration = Duration::from_secs(10);
/// How often each worker looks for campaigns that nobody runs.
const KEEP: Duration = Duration::from_secs(2);

/// What an operator asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignRequest {
    #[serde(default)]
    pub id: String,
    pub version: String,
    /// The bundle, https://; each room's RAUC checks its signature against its own keyring.
    pub url: String,
    pub rooms: Vec<String>,
    /// The first group's size; each next group is `growth` times the one before.
    #[serde(default = "default_first")]
    pub first_group: usize,
    #[serde(default = "default_growth")]
    pub growth: usize,
    #[serde(default = "default_success")]
    pub success_share: f64,
    #[serde(default = "default_threshold")]
    pub failure_threshold: f64,
    #[serde(default = "default_timeout")]
    pub room_timeout_s: u64,
}

fn default_first() -> usize {
    10
}
fn default_growth() -> usize {
    4
}
fn default_success() -> f64 {
    0.95
}
fn default_threshold() -> f64 {
    0.05
}
fn default_timeout() -> u64 {
    3600
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignView {
    pub id: String,
    pub version: String,
    pub url: String,
    /// running, halted or completed.
    pub phase: String,
    /// Why it halted.
    pub detail: String,
    /// The group being rolled out (from 0).
    pub group: usize,
    pub groups: Vec<GroupView>,
    /// Each room's state: waiting, updating (its last phase), succeeded, rolled_back, failed,
    /// timed_out.
    pub rooms: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The groups and the policy, from which any worker takes the campaign up.
    #[serde(default)]
    pub plan: Plan,
}

/// What a campaign was asked to do, kept with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub groups: Vec<Vec<String>>,
    pub success_share: f64,
    pub failure_threshold: f64,
    pub room_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupView {
    pub size: usize,
    pub waiting: usize,
    pub updating: usize,
    pub succeeded: usize,
    pub failed: usize,
}

/// A room's state back from its name (`state_name`); a room still updating is timed from `now`.
fn parse_state(s: &str, now: Instant) -> Option<RoomState> {
    let (head, detail) = s.split_once(": ").unwrap_or((s, ""));
    Some(match head {
        "waiting" => RoomState::Waiting,
        "updating" => RoomState::Updating { since: now, phase: serde_json::from_value(detail.into()).ok()? },
        "succeeded" => RoomState::Succeeded,
        "rolled_back" => RoomState::RolledBack(detail.to_owned()),
        "failed" => RoomState::Failed(detail.to_owned()),
        "timed_out" => RoomState::TimedOut,
        _ => return None,
    })
}

fn state_name(s: &RoomState) -> String {
    match s {
        RoomState::Waiting => "waiting".into(),
        RoomState::Updating { phase, .. } => {
            format!(
                "updating: {}",
                serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            )
        }
        RoomState::Succeeded => "succeeded".into(),
        RoomState::RolledBack(d) => format!("rolled_back: {d}"),
        RoomState::Failed(d) => format!("failed: {d}"),
        RoomState::TimedOut => "timed_out".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignStartError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Checks a request as it came (no I/O): its id (made when empty), and the engine and plan it
/// asks for. What passes here reaches every room in its desired state, so it must pass the
/// rooms' own check of that message too (the fuzz target `fleet_requests` holds it to that).
pub fn check(r: &mut CampaignRequest) -> Result<(Campaign, Plan), String> {
    if r.id.is_empty() {
        r.id = format!("c-{}", crate::random_token(6));
    }
    RoomId::new(&r.id).map_err(|_| format!("campaign id '{}' must be a-z, 0-9 and -", crate::excerpt(&r.id)))?;
    if !r.url.starts_with("https://") {
        return Err("url must be https://".into());
    }
    if r.url.len() > msg::MAX_STRING || r.url.chars().any(char::is_control) {
        return Err(format!("url must be at most {} bytes, without control characters", msg::MAX_STRING));
    }
    if r.version.is_empty() || r.version.len() > 64 {
        return Err("version must be 1 to 64 characters".into());
    }
    if r.rooms.len() > 100_000 {
        return Err("at most 100,000 rooms per campaign".into());
    }
    let rooms: Vec<RoomId> =
        r.rooms.iter().map(|id| RoomId::new(id).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let groups = Campaign::split(rooms, r.first_group, r.growth);
    let plan = Plan {
        groups: groups.iter().map(|g| g.iter().map(|r| r.to_string()).collect()).collect(),
        success_share: r.success_share,
        failure_threshold: r.failure_threshold,
        room_timeout_s: r.room_timeout_s.clamp(10, 7 * 86_400),
    };
    let campaign = Campaign::new(&r.id, groups, policy(&plan)).map_err(|e| e.to_string())?;
    Ok((campaign, plan))
}

/// Checks a request, writes the campaign and starts running it.
pub async fn start(app: Arc<App>, mut r: CampaignRequest, by: &str) -> Result<CampaignView, CampaignStartError> {
    let invalid = |m: String| CampaignStartError::Invalid(m);
    let (campaign, plan) = check(&mut r).map_err(invalid)?;
    // A bundle this service hands out must be there before any room is sent for it.
    if let Some(name) = r.url.strip_prefix(&format!("{}/bundles/", app.public_url.trim_end_matches('/'))) {
        let path = crate::api::bundle_path(&app, name).map_err(invalid)?;
        if !path.is_file() {
            return Err(invalid(format!(
                "{} is not in the service's bundles folder ({}): copy it there first",
                crate::excerpt(name),
                app.bundles.display()
            )));
        }
    }
    if app.db.campaign(&r.id).await?.is_some() {
        return Err(invalid(format!("campaign {} exists already", r.id)));
    }
    let now = now_ms();
    let mut view = CampaignView {
        id: r.id.clone(),
        version: r.version.clone(),
        url: r.url.clone(),
        phase: "running".into(),
        detail: String::new(),
        group: 0,
        groups: Vec::new(),
        rooms: BTreeMap::new(),
        created_by: by.to_owned(),
        created_at: now,
        updated_at: now,
        plan,
    };
    fill(&mut view, &campaign);
    app.db.save_campaign(&view).await?;
    app.db
        .audit(
            &crate::random_token(8),
            now,
            by,
            "campaign",
            &r.id,
            &format!("{} to {} rooms", r.version, r.rooms.len()),
        )
        .await?;
    // Written before anyone runs it: a worker that dies from here on leaves it to another.
    if lease(&app, &r.id).await? {
        app.running.lock().expect("not poisoned").insert(r.id.clone());
        tokio::spawn(run(app, campaign, view.clone()));
    }
    Ok(view)
}

/// Takes or renews this worker's right to run campaign `id` for the next [`LEASE`].
async fn lease(app: &App, id: &str) -> Result<bool, crate::db::DbError> {
    let now = now_ms();
    app.db.lease_campaign(id, &app.worker, now, now + LEASE.as_millis() as i64).await
}

fn policy(p: &Plan) -> Policy {
    Policy {
        success_share: p.success_share,
        failure_threshold: p.failure_threshold,
        room_timeout: Duration::from_secs(p.room_timeout_s),
    }
}

/// The engine again from a saved campaign; rooms still updating get their whole timeout anew.
fn resume(view: &CampaignView, now: Instant) -> Result<Campaign, String> {
    let ids = |v: &[String]| v.iter().map(|r| RoomId::new(r).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>();
    let groups = view.plan.groups.iter().map(|g| ids(g)).collect::<Result<Vec<_>, _>>()?;
    if groups.is_empty() {
        return Err("it was saved without its plan (by an older huis-fleet)".into());
    }
    let mut states = BTreeMap::new();
    for (room, s) in &view.rooms {
        let id = RoomId::new(room).map_err(|e| e.to_string())?;
        states.insert(id, parse_state(s, now).ok_or_else(|| format!("room {room}: unknown state '{s}'"))?);
    }
    let started = states.values().any(|s| *s != RoomState::Waiting);
    let phase = match view.phase.as_str() {
        "running" if !started => Phase::NotStarted,
        "running" => Phase::Running(view.group),
        "halted" => Phase::Halted,
        "completed" => Phase::Completed,
        other => return Err(format!("unknown phase '{other}'")),
    };
    Campaign::resume(&view.id, groups, policy(&view.plan), phase, &states).map_err(|e| e.to_string())
}

/// Each worker, all along: takes up the campaigns nobody runs (their runner stopped or died,
/// and its lease ran out), from where the database says they are.
pub async fn keeper(app: Arc<App>) {
    // Campaigns that cannot be taken up, said once.
    let mut unresumable = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(KEEP).await;
        let views = match app.db.open_campaigns(now_ms()).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("cannot read the campaigns: {e}");
                continue;
            }
        };
        for view in views {
            let open = view.rooms.values().any(|s| s.starts_with("updating"));
            if !(view.phase == "running" || open)
                || unresumable.contains(&view.id)
                || app.running.lock().expect("not poisoned").contains(&view.id)
            {
                continue;
            }
            match lease(&app, &view.id).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(campaign = %view.id, "cannot take the campaign up: {e}");
                    continue;
                }
            }
            match resume(&view, Instant::now()) {
                Ok(c) => {
                    tracing::info!(campaign = %view.id, phase = %view.phase, group = view.group, "campaign taken up");
                    app.running.lock().expect("not poisoned").insert(view.id.clone());
                    tokio::spawn(run(app.clone(), c, view));
                }
                Err(e) => {
                    tracing::error!(campaign = %view.id, "cannot take the campaign up: {e}");
                    unresumable.insert(view.id);
                }
            }
        }
    }
}

fn fill(view: &mut CampaignView, c: &Campaign) {
    let (phase, group) = match c.phase() {
        Phase::NotStarted => ("running", 0),
        Phase::Running(g) => ("running", g),
        Phase::Halted => ("halted", view.group),
        Phase::Completed => ("completed", view.group),
    };
    view.phase = phase.into();
    view.group = group;
    view.groups = c
        .progress()
        .into_iter()
        .map(|g| GroupView {
            size: g.size,
            waiting: g.waiting,
            updating: g.updating,
            succeeded: g.succeeded,
            failed: g.failed,
        })
        .collect();
    view.rooms = c.rooms().map(|(id, s)| (id.to_string(), state_name(s))).collect();
    view.updated_at = now_ms();
}

async fn run(app: Arc<App>, c: Campaign, view: CampaignView) {
    let id = view.id.clone();
    drive(&app, c, view).await;
    app.running.lock().expect("not poisoned").remove(&id);
}

async fn drive(app: &App, mut c: Campaign, mut view: CampaignView) {
    let target = BundleTarget { campaign: view.id.clone(), version: view.version.clone(), url: view.url.clone() };
    let actions = c.start(Instant::now());
    apply(app, &target, &mut view, actions).await;
    loop {
        tokio::time::sleep(POLL).await;
        // Renewed at every step; lost (this worker was too slow, another took over), it stops.
        match lease(app, &view.id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(campaign = %view.id, "another worker runs the campaign now");
                return;
            }
            Err(e) => {
                tracing::warn!(campaign = %view.id, "cannot renew the campaign's lease: {e}");
                continue;
            }
        }
        let now = Instant::now();
        let mut actions = Vec::new();
        match app.db.update_reports().await {
            Ok(reports) => {
                for (room, report) in reports {
                    if let Ok(id) = RoomId::new(&room) {
                        actions.extend(c.on_report(&id, &report, now));
                    }
                }
            }
            Err(e) => tracing::warn!(campaign = %view.id, "cannot read the rooms' reports: {e}"),
        }
        actions.extend(c.on_tick(now));
        apply(app, &target, &mut view, actions).await;
        fill(&mut view, &c);
        if let Err(e) = app.db.save_campaign(&view).await {
            tracing::warn!(campaign = %view.id, "cannot save the campaign: {e}");
        }
        let open = c.rooms().any(|(_, s)| matches!(s, RoomState::Updating { .. }));
        if matches!(c.phase(), Phase::Halted | Phase::Completed) && !open {
            tracing::info!(campaign = %view.id, phase = %view.phase, "campaign over");
            if let Err(e) = app.db.retire_campaign(&view.id).await {
                tracing::warn!(campaign = %view.id, "cannot retire the campaign: {e}");
            }
            return;
        }
    }
}

async fn apply(app: &App, target: &BundleTarget, view: &mut CampaignView, actions: Vec<Action>) {
    for a in actions {
        match a {
            Action::Install(room) => {
                let mut d = app.db.desired(room.as_str()).await.ok().flatten().unwrap_or(Desired {
                    config_version: 0,
                    config: BTreeMap::new(),
                    bundle: None,
                });
                d.bundle = Some(target.clone());
                let bytes = msg::encode(&d);
                if let Err(e) = app.db.set_desired(room.as_str(), &String::from_utf8_lossy(&bytes)).await {
                    tracing::warn!(room = %room, "cannot keep the desired state: {e}");
                }
                if let Err(e) = app.broker.desired(&Topic::new(room.clone(), Kind::Desired), bytes).await {
                    tracing::warn!(room = %room, "cannot send the bundle: {e}");
                }
            }
            Action::GroupStarted(g) => tracing::info!(campaign = %view.id, group = g, "group started"),
            Action::Halted(why) => {
                tracing::warn!(campaign = %view.id, "campaign halted: {why}");
                view.detail = why.clone();
                app.alerts.send("campaign_halted", &view.id, &why).await;
            }
            Action::Completed => tracing::info!(campaign = %view.id, "campaign completed"),
        }
    }
}

/// A room's update report from its reported state, if it has one.
pub fn report_of(reported: &serde_json::Value) -> Option<UpdateReport> {
    serde_json::from_value(reported.get("update")?.clone()).ok()
}
