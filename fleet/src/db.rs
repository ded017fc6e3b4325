//! The fleet's database, the source of truth: SQLite as the embedded default, PostgreSQL for
//! more than one worker (sqlx's `Any` driver, the same SQL for both). Every write from the
//! broker is idempotent and ordered by the room's own numbers, so workers may take messages
//! more than once and in any order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
}

/// The schema, in SQL both SQLite and PostgreSQL take. Times are milliseconds since the epoch.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS rooms (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL DEFAULT '',
        online BIGINT NOT NULL DEFAULT 0,
        status_at BIGINT NOT NULL DEFAULT 0,
        seen_at BIGINT NOT NULL DEFAULT 0,
        reported TEXT NOT NULL DEFAULT '',
        reported_seq BIGINT NOT NULL DEFAULT 0,
        telemetry TEXT NOT NULL DEFAULT '',
        desired TEXT NOT NULL DEFAULT '',
        enrolled_at BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS claims (
        code_hash TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS events (
        room_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        fields TEXT NOT NULL,
        PRIMARY KEY (room_id, seq)
    )",
    "CREATE TABLE IF NOT EXISTS commands (
        id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS campaigns (
        id TEXT PRIMARY KEY,
        phase TEXT NOT NULL,
        view TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS campaign_leases (
        id TEXT PRIMARY KEY,
        worker TEXT NOT NULL,
        until_ms BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS templates (
        scope TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sessions (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        user_name TEXT NOT NULL,
        role TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS tokens (
        hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password TEXT NOT NULL,
        failures BIGINT NOT NULL,
        locked_until BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
];

/// A person who signs in to the console with a password.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub role: String,
    pub password: String,
    pub failures: i64,
    pub locked_until: i64,
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
}

/// One room in the inventory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomRow {
    pub id: String,
    pub site: String,
    pub online: bool,
    pub status_at: i64,
    pub seen_at: i64,
    pub reported: Option<serde_json::Value>,
    pub telemetry: Option<serde_json::Value>,
    pub enrolled_at: i64,
}

/// Which rooms an inventory shows: `status` (`online`, `offline` or all), `site`, and `q`
/// found in the room's id, name or version (ignoring case). Empty fields do not filter.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomFilter {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub q: String,
}

impl RoomFilter {
    pub fn matches(&self, r: &RoomRow) -> bool {
        let status = match self.status.as_str() {
            "online" => r.online,
            "offline" => !r.online,
            _ => true,
        };
        let site = self.site.is_empty() || r.site == self.site;
        let q = self.q.trim().to_lowercase();
        let text = |path: &[&str]| {
            let mut v = r.reported.as_ref();
            for k in path {
                v = v.and_then(|v| v.get(*k));
            }
            v.and_then(|v| v.as_str()).unwrap_or_default().to_lowercase()
        };
        let found = q.is_empty()
            || r.id.contains(&q)
            || text(&["peripherals", "room_name"]).contains(&q)
            || text(&["version"]).contains(&q);
        status && site && found
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandRow {
    pub id: String,
    pub room_id: String,
    pub name: String,
    pub args: BTreeMap<String, String>,
    pub created_at: i64,
    pub created_by: String,
    pub state: String,
    pub detail: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRow {
    pub room_id: String,
    pub seq: i64,
    pub kind: String,
    pub at_ms: i64,
    pub fields: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRow {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// How far an acknowledgement state is along: a state never goes back.
fn ack_rank(state: &str) -> i64 {
    match state {
        "sent" => 0,
        "accepted" => 1,
        _ => 2,
    }
}

impl Db {
    /// Opens (and creates) the database at `url`: `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let open_err = |e: sqlx::Error| DbError::Open { url: redact(url), reason: e.to_string() };
        let (url, max) = if let Some(path) = url.strip_prefix("sqlite://") {
            // One writer: SQLite serialises writes anyway, and WAL lets readers go on.
            (format!("sqlite://{path}?mode=rwc"), 1)
        } else {
            (url.to_owned(), 8)
        };
        let pool = AnyPoolOptions::new().max_connections(max).connect(&url).await.map_err(open_err)?;
        if url.starts_with("sqlite:") {
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.map_err(open_err)?;
        }
        for s in SCHEMA {
            sqlx::query(s).execute(&pool).await.map_err(open_err)?;
        }
        Ok(Db { pool })
    }

    /// Makes sure a room is in the inventory (a room of the organisation's own PKI appears when
    /// it first reports).
    pub async fn ensure_room(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO rooms (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_status(&self, id: &str, online: bool, at_ms: i64, now: i64) -> Result<(), DbError> {
        self.ensure_room(id).await?;
        sqlx::query("UPDATE rooms SET online = $1, status_at = $2, seen_at = $3 WHERE id = $4")
            .bind(i64::from(online))
            .bind(at_ms)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a reported state if it is newer than the one kept; says whether it was.
    pub async fn set_reported(&self, id: &str, seq: i64, json: &str, now: i64) -> Result<bool, DbError> {
        self.ensure_room(id).await?;
        let r = sqlx::query(
            "UPDATE rooms SET reported = $1, reported_seq = $2, seen_at = $3 WHERE id = $4 AND reported_seq < $2",
        )
        .bind(json)
        .bind(seq)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The room's latest telemetry (periodic, QoS 0: the latest is what counts).
    pub async fn set_telemetry(&self, id: &str, json: &str, now: i64) -> Result<(), DbError> {
        self.ensure_room(id).await?;
        sqlx::query("UPDATE rooms SET telemetry = $1, seen_at = $2 WHERE id = $3")
            .bind(json)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A configuration template (`org`, `site:<name>`, `room:<id>`); empty when there is none.
    pub async fn template(&self, scope: &str) -> Result<BTreeMap<String, String>, DbError> {
        let row =
            sqlx::query("SELECT config FROM templates WHERE scope = $1").bind(scope).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()).unwrap_or_default())
    }

    pub async fn set_template(&self, scope: &str, config: &BTreeMap<String, String>, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO templates (scope, config, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (scope) DO UPDATE SET config = $2, updated_at = $3",
        )
        .bind(scope)
        .bind(serde_json::to_string(config).expect("serialises"))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_site(&self, id: &str, site: &str) -> Result<(), DbError> {
        self.ensure_room(id).await?;
        sqlx::query("UPDATE rooms SET site = $1 WHERE id = $2").bind(site).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// The ids of the rooms a template's change reaches.
    pub async fn rooms_of(&self, scope: &str) -> Result<Vec<String>, DbError> {
        let rows = if scope == "org" {
            sqlx::query("SELECT id FROM rooms ORDER BY id").fetch_all(&self.pool).await?
        } else if let Some(site) = scope.strip_prefix("site:") {
            sqlx::query("SELECT id FROM rooms WHERE site = $1 ORDER BY id").bind(site).fetch_all(&self.pool).await?
        } else {
            let id = scope.strip_prefix("room:").unwrap_or(scope);
            sqlx::query("SELECT id FROM rooms WHERE id = $1").bind(id).fetch_all(&self.pool).await?
        };
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The desired state last sent to a room (configuration and bundle).
    pub async fn desired(&self, id: &str) -> Result<Option<huis_fleet_proto::msg::Desired>, DbError> {
        let row = sqlx::query("SELECT desired FROM rooms WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    pub async fn set_desired(&self, id: &str, json: &str) -> Result<(), DbError> {
        self.ensure_room(id).await?;
        sqlx::query("UPDATE rooms SET desired = $1 WHERE id = $2").bind(json).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Every room's latest update report (from its reported state).
    pub async fn update_reports(&self) -> Result<Vec<(String, huis_fleet_proto::msg::UpdateReport)>, DbError> {
        let rows = sqlx::query("SELECT id, reported FROM rooms WHERE reported <> ''").fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.get::<String, _>(1)).ok()?;
                Some((r.get(0), crate::campaigns::report_of(&v)?))
            })
            .collect())
    }

    pub async fn save_campaign(&self, v: &crate::campaigns::CampaignView) -> Result<(), DbError> {
        let json = serde_json::to_string(v).expect("serialises");
        sqlx::query(
            "INSERT INTO campaigns (id, phase, view, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET phase = $2, view = $3, updated_at = $5",
        )
        .bind(&v.id)
        .bind(&v.phase)
        .bind(json)
        .bind(v.created_at)
        .bind(v.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes or renews the right to run campaign `id` until `until`: granted when nobody holds
    /// it, `worker` holds it already, or the holder's lease ran out (it stopped or died).
    pub async fn lease_campaign(&self, id: &str, worker: &str, now: i64, until: i64) -> Result<bool, DbError> {
        let r = sqlx::query(
            "INSERT INTO campaign_leases (id, worker, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET worker = $2, until_ms = $3
             WHERE campaign_leases.worker = $2 OR campaign_leases.until_ms < $4",
        )
        .bind(id)
        .bind(worker)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn campaign(&self, id: &str) -> Result<Option<crate::campaigns::CampaignView>, DbError> {
        let row = sqlx::query("SELECT view FROM campaigns WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()))
    }

    /// The campaigns that may need a runner: not completed, and nobody's lease on them is
    /// current. Campaigns with nothing left to do hold a lease that never ends ([`Db::retire_campaign`])
    /// and are not read again, however many pile up over the years.
    pub async fn open_campaigns(&self, now: i64) -> Result<Vec<crate::campaigns::CampaignView>, DbError> {
        let rows = sqlx::query(
            "SELECT c.view FROM campaigns c LEFT JOIN campaign_leases l ON l.id = c.id
             WHERE c.phase <> 'completed' AND (l.until_ms IS NULL OR l.until_ms < $1)",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()).collect())
    }

    /// A campaign with nothing left to do (completed, or halted with no room still updating):
    /// its lease goes to nobody, for ever, so no worker takes it up or reads it again.
    pub async fn retire_campaign(&self, id: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO campaign_leases (id, worker, until_ms) VALUES ($1, '', $2)
             ON CONFLICT (id) DO UPDATE SET worker = '', until_ms = $2",
        )
        .bind(id)
        .bind(i64::MAX)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn campaigns(&self) -> Result<Vec<crate::campaigns::CampaignView>, DbError> {
        let rows = sqlx::query("SELECT view FROM campaigns ORDER BY created_at DESC").fetch_all(&self.pool).await?;
        Ok(rows.iter().filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok()).collect())
    }

    /// Keeps an event once, however often it is delivered; says whether it was new.
    pub async fn add_event(&self, id: &str, seq: i64, kind: &str, at_ms: i64, fields: &str) -> Result<bool, DbError> {
        self.ensure_room(id).await?;
        let r = sqlx::query(
            "INSERT INTO events (room_id, seq, kind, at_ms, fields) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (room_id, seq) DO NOTHING",
        )
        .bind(id)
        .bind(seq)
        .bind(kind)
        .bind(at_ms)
        .bind(fields)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn rooms(&self) -> Result<Vec<RoomRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, site, online, status_at, seen_at, reported, enrolled_at, telemetry FROM rooms ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(room_row).collect())
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, site, online, status_at, seen_at, reported, enrolled_at, telemetry FROM rooms WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(room_row))
    }

    pub async fn events(&self, id: &str, limit: i64) -> Result<Vec<EventRow>, DbError> {
        let rows = sqlx::query(
            "SELECT room_id, seq, kind, at_ms, fields FROM events WHERE room_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                room_id: r.get(0),
                seq: r.get(1),
                kind: r.get(2),
                at_ms: r.get(3),
                fields: serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default(),
            })
            .collect())
    }

    /// A new claim code's hash for `room_id`, good until `expires_at`.
    pub async fn add_claim(&self, hash: &str, room_id: &str, expires_at: i64, by: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO claims (code_hash, room_id, expires_at, created_by) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(room_id)
            .bind(expires_at)
            .bind(by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Uses a claim code for `room_id`: true once, if it exists, is for this room and has not
    /// expired. Atomic, so two rooms racing with one code cannot both win.
    pub async fn use_claim(&self, hash: &str, room_id: &str, now: i64) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE claims SET used_at = $1 WHERE code_hash = $2 AND room_id = $3 AND used_at = 0 AND expires_at > $1",
        )
        .bind(now)
        .bind(hash)
        .bind(room_id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 1 {
            self.ensure_room(room_id).await?;
            sqlx::query("UPDATE rooms SET enrolled_at = $1 WHERE id = $2")
                .bind(now)
                .bind(room_id)
                .execute(&self.pool)
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    pub async fn add_command(&self, c: &CommandRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO commands (id, room_id, name, args, created_at, created_by, state, detail, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.id)
        .bind(&c.room_id)
        .bind(&c.name)
        .bind(serde_json::to_string(&c.args).expect("serialises"))
        .bind(c.created_at)
        .bind(&c.created_by)
        .bind(&c.state)
        .bind(&c.detail)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a room's acknowledgement: only for that room's own command, and never moving a
    /// command's state back (a late `accepted` after `done` changes nothing).
    pub async fn ack(&self, room_id: &str, id: &str, state: &str, detail: &str, now: i64) -> Result<bool, DbError> {
        let Some(row) = sqlx::query("SELECT state FROM commands WHERE id = $1 AND room_id = $2")
            .bind(id)
            .bind(room_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(false);
        };
        let current: String = row.get(0);
        if ack_rank(state) <= ack_rank(&current) {
            return Ok(false);
        }
        let r =
            sqlx::query("UPDATE commands SET state = $1, detail = $2, updated_at = $3 WHERE id = $4 AND state = $5")
                .bind(state)
                .bind(detail)
                .bind(now)
                .bind(id)
                .bind(&current)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, room_id, name, args, created_at, created_by, state, detail, updated_at FROM commands WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(command_row))
    }

    pub async fn commands(&self, room_id: &str, limit: i64) -> Result<Vec<CommandRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, room_id, name, args, created_at, created_by, state, detail, updated_at FROM commands
             WHERE room_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(room_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(command_row).collect())
    }

    pub async fn add_token(&self, hash: &str, user: &str, role: &str, now: i64) -> Result<(), DbError> {
        sqlx::query("INSERT INTO tokens (hash, user_name, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(user)
            .bind(role)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A console session or one-time sign-in code (`kind`), until `expires_at`.
    pub async fn add_session(
        &self,
        hash: &str,
        kind: &str,
        user: &str,
        role: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query("INSERT INTO sessions (hash, kind, user_name, role, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(kind)
            .bind(user)
            .bind(role)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user and role of a live session.
    pub async fn session(&self, hash: &str, kind: &str, now: i64) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT user_name, role FROM sessions WHERE hash = $1 AND kind = $2 AND expires_at > $3")
            .bind(hash)
            .bind(kind)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Like [`Db::session`], and used up: a one-time code works once.
    pub async fn take_session(&self, hash: &str, kind: &str, now: i64) -> Result<Option<(String, String)>, DbError> {
        let found = self.session(hash, kind, now).await?;
        if found.is_some() {
            let r = sqlx::query("DELETE FROM sessions WHERE hash = $1").bind(hash).execute(&self.pool).await?;
            if r.rows_affected() != 1 {
                return Ok(None);
            }
        }
        Ok(found)
    }

    /// Adds a person who signs in to the console, or sets a new role and password (and unlocks).
    pub async fn set_user(&self, name: &str, role: &str, password_phc: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO users (name, role, password, failures, locked_until, created_at) VALUES ($1, $2, $3, 0, 0, $4)
             ON CONFLICT (name) DO UPDATE SET role = $2, password = $3, failures = 0, locked_until = 0",
        )
        .bind(name)
        .bind(role)
        .bind(password_phc)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A person's role, password hash (PHC string), failures in a row and lock end.
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query("SELECT role, password, failures, locked_until FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| UserRow { role: r.get(0), password: r.get(1), failures: r.get(2), locked_until: r.get(3) }))
    }

    /// After a sign-in: failures in a row (0 on success) and until when the account is locked.
    pub async fn user_attempt(&self, name: &str, failures: i64, locked_until: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE users SET failures = $2, locked_until = $3 WHERE name = $1")
            .bind(name)
            .bind(failures)
            .bind(locked_until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user and role of an API token's hash.
    pub async fn token(&self, hash: &str) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT user_name, role FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn audit(
        &self,
        id: &str,
        at_ms: i64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), DbError> {
        sqlx::query("INSERT INTO audit (id, at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(at_ms)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, DbError> {
        let rows = sqlx::query("SELECT at_ms, actor, action, target, detail FROM audit ORDER BY at_ms DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                at_ms: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                target: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }
}

fn room_row(r: &sqlx::any::AnyRow) -> RoomRow {
    let reported: String = r.get(5);
    RoomRow {
        id: r.get(0),
        site: r.get(1),
        online: r.get::<i64, _>(2) != 0,
        status_at: r.get(3),
        seen_at: r.get(4),
        reported: serde_json::from_str(&reported).ok(),
        enrolled_at: r.get(6),
        telemetry: serde_json::from_str(&r.get::<String, _>(7)).ok(),
    }
}

fn command_row(r: &sqlx::any::AnyRow) -> CommandRow {
    CommandRow {
        id: r.get(0),
        room_id: r.get(1),
        name: r.get(2),
        args: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
        created_at: r.get(4),
        created_by: r.get(5),
        state: r.get(6),
        detail: r.get(7),
        updated_at: r.get(8),
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && url[s + 3..at].contains(':') => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_and_events_are_kept_once_and_in_order_whatever_the_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("f.db").display())).await.unwrap();
        assert!(db.set_reported("r1", 5, r#"{"seq":5}"#, 1).await.unwrap());
        assert!(!db.set_reported("r1", 4, r#"{"seq":4}"#, 2).await.unwrap(), "older");
        assert!(!db.set_reported("r1", 5, r#"{"seq":5}"#, 3).await.unwrap(), "again");
        assert_eq!(db.room("r1").await.unwrap().unwrap().reported.unwrap()["seq"], 5);
        assert!(db.add_event("r1", 9, "call_ended", 1, "{}").await.unwrap());
        assert!(!db.add_event("r1", 9, "call_ended", 1, "{}").await.unwrap());
        let c = CommandRow {
            id: "c1".into(),
            room_id: "r1".into(),
            name: "mute".into(),
            args: BTreeMap::new(),
            created_at: 1,
            created_by: "admin".into(),
            state: "sent".into(),
            detail: String::new(),
            updated_at: 1,
        };
        db.add_command(&c).await.unwrap();
        assert!(!db.ack("r2", "c1", "done", "", 2).await.unwrap(), "another room's ack");
        assert!(db.ack("r1", "c1", "done", "muted", 2).await.unwrap());
        assert!(!db.ack("r1", "c1", "accepted", "", 3).await.unwrap(), "never back");
        assert_eq!(db.command("c1").await.unwrap().unwrap().state, "done");
        db.add_claim("h", "r3", 100, "admin").await.unwrap();
        assert!(!db.use_claim("h", "r4", 10).await.unwrap(), "another room");
        assert!(!db.use_claim("h", "r3", 200).await.unwrap(), "expired");
        assert!(db.use_claim("h", "r3", 10).await.unwrap());
        assert!(!db.use_claim("h", "r3", 11).await.unwrap(), "used once");
        assert_eq!(redact("postgres://fleet:s3cret@db/fleet"), "postgres://fleet:***@db/fleet");
        assert_eq!(redact("postgres://fleet@db/fleet"), "postgres://fleet@db/fleet");
    }
}
