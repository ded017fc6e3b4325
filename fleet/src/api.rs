//! The REST API (JSON over HTTPS; `openapi.json` describes it). People and scripts present an
//! API token (`Authorization: Bearer …`) with a role: `readonly` reads, `operator` also
//! commands rooms and makes claim codes, `admin` also manages tokens and configuration. Rooms
//! present their certificate: they enrol with a claim code and upload what a command asked
//! for, to their own room only. Every change is written to the audit log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use huis_fleet_proto::msg;
use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use serde::{Deserialize, Serialize};

use crate::db::{CommandRow, Db};
use crate::mqtt::Broker;
use crate::pki::Ca;
use crate::{hash, now_ms, random_token};

/// Who is at the other end of the TLS connection: the name on its client certificate, if any.
#[derive(Clone, Debug, Default)]
pub struct Peer(pub Option<String>);

pub struct App {
    pub alerts: Arc<crate::alerts::Alerts>,
    pub db: Db,
    pub broker: Broker,
    pub ca: Ca,
    pub public_url: String,
    pub uploads: PathBuf,
    /// Update bundles the service hands out (`/bundles/NAME`), put there by an admin.
    pub bundles: PathBuf,
    pub room_broker: String,
    /// This worker's name: its MQTT client id, and the holder of the campaigns it runs.
    pub worker: String,
    /// The campaigns this worker runs now.
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
}

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        tracing::error!("{e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the database failed; see the service's log".into())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Role {
    ReadOnly,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "readonly" => Some(Role::ReadOnly),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of a request, from its API token, if it has at least `need`.
/// The user and role of the request's API token.
pub(crate) async fn token_owner(app: &App, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "an API token is needed (Authorization: Bearer …)".into()))?;
    app.db
        .token(&hash(token.trim()))
        .await?
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown API token".into()))
}

async fn caller(app: &App, headers: &HeaderMap, need: Role) -> Result<String, ApiError> {
    let (user, role) = token_owner(app, headers).await?;
    let have = Role::parse(&role).unwrap_or(Role::ReadOnly);
    if have < need {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("{user} is {role}; this needs {need:?}").to_lowercase()));
    }
    Ok(user)
}

async fn audit(app: &App, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), ApiError> {
    app.db.audit(&random_token(8), now_ms(), actor, action, target, detail).await?;
    Ok(())
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/enrol", post(enrol))
        .route("/api/v1/claims", post(claim))
        .route("/api/v1/rooms", get(rooms))
        .route("/api/v1/rooms/{id}", get(room))
        .route("/api/v1/rooms/{id}/commands", post(command).get(room_commands))
        .route("/api/v1/rooms/{id}/desired", put(desired))
        .route("/api/v1/rooms/{id}/uploads/{name}", put(upload).get(download))
        .route("/api/v1/commands/{id}", get(command_state))
        .route("/api/v1/templates/org", put(template_org))
        .route("/api/v1/templates/sites/{site}", put(template_site))
        .route("/api/v1/templates/rooms/{id}", put(template_room))
        .route("/api/v1/rooms/{id}/site", put(room_site))
        .route("/api/v1/rooms/{id}/config", get(room_config))
        .route("/api/v1/campaigns", post(new_campaign).get(campaigns))
        .route("/api/v1/campaigns/{id}", get(campaign))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/bundles/{name}", get(bundle))
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(app)
}

#[derive(Deserialize, Serialize)]
struct EnrolRequest {
    room_id: String,
    claim_code: String,
    csr_pem: String,
}

async fn enrol(State(app): State<Arc<App>>, Json(r): Json<EnrolRequest>) -> Result<Json<serde_json::Value>, ApiError> {
    let id = RoomId::new(&r.room_id).map_err(|e| bad(e.to_string()))?;
    if r.claim_code.len() > 64 {
        return Err(bad("claim_code is longer than 64 characters"));
    }
    // The code is checked before the request is signed, and used up at once.
    if !app.db.use_claim(&hash(&normalise_code(&r.claim_code)), id.as_str(), now_ms()).await? {
        tracing::warn!(room = %id, "enrolment refused: unknown, used or expired claim code");
        return Err(ApiError(StatusCode::FORBIDDEN, format!("the claim code is unknown, used or expired for {id}")));
    }
    let cert = app.ca.sign_room(id.as_str(), &r.csr_pem).map_err(|e| bad(e.to_string()))?;
    audit(&app, id.as_str(), "enrol", id.as_str(), "certificate issued").await?;
    tracing::info!(room = %id, "room enrolled");
    Ok(Json(serde_json::json!({ "certificate_pem": cert, "ca_pem": app.ca.cert_pem, "broker": app.room_broker })))
}

/// Claim codes are typed by people: case and dashes do not matter.
fn normalise_code(c: &str) -> String {
    c.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

#[derive(Deserialize)]
struct ClaimRequest {
    room_id: String,
    #[serde(default = "default_claim_hours")]
    valid_hours: u32,
}

fn default_claim_hours() -> u32 {
    72
}

async fn claim(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(r): Json<ClaimRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = caller(&app, &headers, Role::Operator).await?;
    let id = RoomId::new(&r.room_id).map_err(|e| bad(e.to_string()))?;
    if !(1..=24 * 30).contains(&r.valid_hours) {
        return Err(bad("valid_hours must be 1 to 720"));
    }
    // 16 characters of 32 (80 bits), shown in groups of four.
    let raw = crate::random_code(16);
    let shown = raw.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("-");
    let expires = now_ms() + i64::from(r.valid_hours) * 3_600_000;
    app.db.add_claim(&hash(&raw), id.as_str(), expires, &user).await?;
    audit(&app, &user, "claim", id.as_str(), &format!("valid {} h", r.valid_hours)).await?;
    Ok(Json(serde_json::json!({ "room_id": id.as_str(), "claim_code": shown, "expires_at_ms": expires })))
}

async fn rooms(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(f): Query<crate::db::RoomFilter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    let rooms: Vec<_> = app.db.rooms().await?.into_iter().filter(|r| f.matches(r)).collect();
    Ok(Json(serde_json::to_value(rooms).expect("serialises")))
}

async fn room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    let Some(r) = app.db.room(&id).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no room {}", crate::excerpt(&id))));
    };
    let events = app.db.events(&id, 50).await?;
    let commands = app.db.commands(&id, 50).await?;
    Ok(Json(serde_json::json!({ "room": r, "events": events, "commands": commands })))
}

#[derive(Deserialize)]
struct CommandRequest {
    name: String,
    #[serde(default)]
    args: BTreeMap<String, String>,
    /// Seconds the command may still be run after it is sent.
    #[serde(default = "default_ttl")]
    ttl_s: u32,
}

fn default_ttl() -> u32 {
    300
}

async fn command(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(r): Json<CommandRequest>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    let user = caller(&app, &headers, Role::Operator).await?;
    let room = RoomId::new(&id).map_err(|e| bad(e.to_string()))?;
    let topic = Topic::new(room.clone(), Kind::Command(r.name.clone()));
    Topic::parse(&topic.to_string()).map_err(|e| bad(e.to_string()))?;
    if app.db.room(room.as_str()).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no room {room}")));
    }
    let cid = random_token(12);
    let mut args = r.args;
    if matches!(r.name.as_str(), "screenshot" | "logs") && !args.contains_key("upload_url") {
        let ext = if r.name == "screenshot" { "png" } else { "txt" };
        args.insert(
            "upload_url".into(),
            format!("{}/api/v1/rooms/{room}/uploads/{cid}.{ext}", app.public_url.trim_end_matches('/')),
        );
    }
    let now = now_ms();
    let payload =
        msg::Command { id: cid.clone(), expires_at_ms: (now + i64::from(r.ttl_s) * 1000) as u64, args: args.clone() };
    let bytes = msg::encode(&payload);
    msg::decode::<msg::Command>(&bytes).map_err(|e| bad(e.to_string()))?;
    let row = CommandRow {
        id: cid,
        room_id: room.to_string(),
        name: r.name.clone(),
        args,
        created_at: now,
        created_by: user.clone(),
        state: "sent".into(),
        detail: String::new(),
        updated_at: now,
    };
    app.db.add_command(&row).await?;
    audit(&app, &user, "command", room.as_str(), &r.name).await?;
    app.broker.command(&topic, bytes).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

async fn room_commands(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<CommandRow>>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    Ok(Json(app.db.commands(&id, 100).await?))
}

async fn command_state(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CommandRow>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    app.db.command(&id).await?.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such command".into()))
}

async fn desired(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(d): Json<msg::Desired>,
) -> Result<(StatusCode, Json<msg::Desired>), ApiError> {
    let user = caller(&app, &headers, Role::Admin).await?;
    let room = RoomId::new(&id).map_err(|e| bad(e.to_string()))?;
    let mut d = d;
    // A bundle a campaign set stays unless this names another.
    if d.bundle.is_none() {
        d.bundle = app.db.desired(room.as_str()).await?.and_then(|old| old.bundle);
    }
    let bytes = msg::encode(&d);
    msg::decode::<msg::Desired>(&bytes).map_err(|e| bad(e.to_string()))?;
    app.db.set_desired(room.as_str(), &String::from_utf8_lossy(&bytes)).await?;
    audit(&app, &user, "desired", room.as_str(), &format!("config version {}", d.config_version)).await?;
    app.broker
        .desired(&Topic::new(room, Kind::Desired), bytes)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(d)))
}

fn upload_path(app: &App, room: &str, name: &str) -> Result<PathBuf, ApiError> {
    RoomId::new(room).map_err(|e| bad(e.to_string()))?;
    if !file_name_ok(name, 64) || name.contains('+') {
        return Err(bad("an upload's name is 1 to 64 of A-Z, a-z, 0-9, '-', '_' and '.'"));
    }
    Ok(app.uploads.join(room).join(name))
}

/// A room's upload, to its own room only (the name on its certificate).
async fn upload(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Path((id, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    if peer.0.as_deref() != Some(id.as_str()) {
        return Err(ApiError(StatusCode::FORBIDDEN, "uploads come from the room itself, with its certificate".into()));
    }
    let path = upload_path(&app, &id, &name)?;
    let dir = path.parent().expect("in a room's folder").to_owned();
    let n = body.len();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot keep the upload: {e}")))?;
    tracing::info!(room = %id, name = %name, bytes = n, "upload kept");
    Ok(StatusCode::CREATED)
}

async fn download(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    let path = upload_path(&app, &id, &name)?;
    let data = tokio::fs::read(&path).await.map_err(|_| ApiError(StatusCode::NOT_FOUND, "no such upload".into()))?;
    let kind = if name.ends_with(".png") { "image/png" } else { "text/plain; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, kind)], data).into_response())
}

/// A name of a file in one of the service's folders: no path, no hidden file.
fn file_name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

/// Where the bundle `name` is kept; the error says what a good name is.
pub fn bundle_path(app: &App, name: &str) -> Result<PathBuf, String> {
    if !file_name_ok(name, 128) {
        return Err(format!(
            "bundle name '{}': 1 to 128 of A-Z, a-z, 0-9, '-', '_', '+' and '.', not starting with '.'",
            crate::excerpt(name)
        ));
    }
    Ok(app.bundles.join(name))
}

/// An update bundle, streamed: to an enrolled room (its certificate) or to a token holder.
/// Bundles are signed, so this is about who may cost the service the bandwidth, and about
/// keeping an organisation's own builds to itself.
async fn bundle(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let room = match peer.0.as_deref().map(RoomId::new) {
        Some(Ok(id)) => app.db.room(id.as_str()).await?.map(|_| id.to_string()),
        _ => None,
    };
    if room.is_none() {
        caller(&app, &headers, Role::ReadOnly).await?;
    }
    let path = bundle_path(&app, &name).map_err(bad)?;
    let file =
        tokio::fs::File::open(&path).await.map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("no bundle {name}")))?;
    let len = file.metadata().await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?.len();
    tracing::info!(bundle = %name, bytes = len, room = room.as_deref().unwrap_or("-"), "bundle sent");
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream".to_owned()), (header::CONTENT_LENGTH, len.to_string())],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn audit_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(l): Query<Limit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    Ok(Json(serde_json::to_value(app.db.audit_log(l.limit.clamp(1, 1000)).await?).expect("serialises")))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}

async fn new_campaign(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(r): Json<crate::campaigns::CampaignRequest>,
) -> Result<(StatusCode, Json<crate::campaigns::CampaignView>), ApiError> {
    let user = caller(&app, &headers, Role::Operator).await?;
    match crate::campaigns::start(app.clone(), r, &user).await {
        Ok(v) => Ok((StatusCode::CREATED, Json(v))),
        Err(crate::campaigns::CampaignStartError::Invalid(m)) => Err(bad(m)),
        Err(crate::campaigns::CampaignStartError::Db(e)) => Err(e.into()),
    }
}

async fn campaigns(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    Ok(Json(serde_json::to_value(app.db.campaigns().await?).expect("serialises")))
}

async fn campaign(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<crate::campaigns::CampaignView>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    app.db.campaign(&id).await?.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such campaign".into()))
}

#[derive(Deserialize)]
struct TemplateRequest {
    config: BTreeMap<String, String>,
}

/// Replaces a template and sends the rooms it reaches their new effective configuration.
async fn set_template(
    app: &Arc<App>,
    headers: &HeaderMap,
    scope: String,
    config: BTreeMap<String, String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = caller(app, headers, Role::Admin).await?;
    crate::templates::check(&config).map_err(bad)?;
    app.db.set_template(&scope, &config, now_ms()).await?;
    audit(app, &user, "template", &scope, &format!("{} keys", config.len())).await?;
    let rooms = app.db.rooms_of(&scope).await?;
    let changed = crate::templates::push(app, &rooms).await?;
    Ok(Json(serde_json::json!({ "scope": scope, "rooms": rooms.len(), "rooms_changed": changed })))
}

async fn template_org(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(t): Json<TemplateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_template(&app, &headers, "org".into(), t.config).await
}

fn check_name(s: &str) -> Result<(), ApiError> {
    RoomId::new(s).map(|_| ()).map_err(|_| bad(format!("'{}' must be 1 to 64 of a-z, 0-9 and -", crate::excerpt(s))))
}

async fn template_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(site): Path<String>,
    Json(t): Json<TemplateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_name(&site)?;
    set_template(&app, &headers, crate::templates::scope_name("site", &site), t.config).await
}

async fn template_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(t): Json<TemplateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_name(&id)?;
    set_template(&app, &headers, crate::templates::scope_name("room", &id), t.config).await
}

#[derive(Deserialize)]
struct SiteRequest {
    site: String,
}

async fn room_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(s): Json<SiteRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = caller(&app, &headers, Role::Admin).await?;
    check_name(&id)?;
    if !s.site.is_empty() {
        check_name(&s.site)?;
    }
    if app.db.room(&id).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no room {id}")));
    }
    app.db.set_site(&id, &s.site).await?;
    audit(&app, &user, "site", &id, &s.site).await?;
    let changed = crate::templates::push(&app, std::slice::from_ref(&id)).await?;
    Ok(Json(serde_json::json!({ "room_id": id, "site": s.site, "rooms_changed": changed })))
}

/// A room's effective configuration, each key with the layer it came from.
async fn room_config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller(&app, &headers, Role::ReadOnly).await?;
    let eff = crate::templates::room_effective(&app, &id).await?;
    Ok(Json(serde_json::to_value(eff).expect("serialises")))
}

#[cfg(test)]
mod tests {
    /// Every route of the API is in `openapi.json`, so the description never falls behind.
    #[test]
    fn the_openapi_description_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let sources = [include_str!("api.rs"), include_str!("console.rs")];
        let routes: Vec<&str> = sources
            .iter()
            .flat_map(|s| s.lines())
            .filter_map(|l| l.trim().strip_prefix(".route(\"/api/"))
            .map(|r| r.split('"').next().unwrap())
            .collect();
        assert!(routes.len() > 10, "{routes:?}");
        for r in routes {
            let p = format!("/api/{r}");
            assert!(paths.contains_key(&p), "{p} is not described in openapi.json");
        }
    }
}
