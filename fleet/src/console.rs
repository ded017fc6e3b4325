//! The web console: server-rendered pages (no script) of the inventory, a room and a campaign's
//! progress (which reloads itself while the campaign runs). People sign in on `/console/login`
//! with a name and password (`huis-fleet user`; see `users`) or an API token, or with a one-time
//! link (`huis-fleet login-link`, good for a minute), and get a session cookie (HttpOnly,
//! Secure, SameSite=Strict) for 12 hours.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::{App, Role};
use crate::{hash, now_ms, random_token};

const COOKIE: &str = "huis_fleet_session";
const SESSION_MS: i64 = 12 * 3_600_000;
const ONCE_MS: i64 = 60_000;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/rooms") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/once", get(login_once))
        .route("/console/rooms", get(rooms))
        .route("/console/rooms/{id}", get(room))
        .route("/console/campaigns/{id}", get(campaign))
        .route("/api/v1/login-links", axum::routing::post(login_link))
        .with_state(app)
}

/// Text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, user: &str, body: &str, refresh: bool) -> Html<String> {
    let meta = if refresh { r#"<meta http-equiv="refresh" content="2">"# } else { "" };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{t} · huis fleet</title>
<style>
body{{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}}
header{{background:#1d2330;color:#fff;padding:10px 24px;display:flex;justify-content:space-between}}
header a{{color:#fff;text-decoration:none;font-weight:600}} main{{padding:16px 24px}}
table{{border-collapse:collapse;background:#fff;width:100%}} th,td{{padding:6px 10px;border-bottom:1px solid #e3e6ea;text-align:left}}
th{{background:#eef0f3;font-weight:600}} .on{{color:#16803c}} .off{{color:#b42318}} .muted{{color:#667}}
.bar{{display:flex;height:18px;background:#e3e6ea;border-radius:3px;overflow:hidden;width:420px}}
.ok{{background:#16803c}} .bad{{background:#b42318}} .run{{background:#e0a100}}
section{{background:#fff;padding:12px 16px;margin:12px 0;border:1px solid #e3e6ea}} code{{font-size:13px}}
</style></head><body><header><a href="/console/rooms">huis fleet</a><span>{u}</span></header><main><h1>{t}</h1>{body}</main></body></html>"#,
        t = esc(title),
        u = esc(user),
    ))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_owned())
    })
}

/// The signed-in person, or the way to the login page.
async fn session(app: &App, headers: &HeaderMap) -> Result<(String, Role), Response> {
    let to_login = || Redirect::to("/console/login").into_response();
    let Some(t) = cookie_token(headers) else { return Err(to_login()) };
    match app.db.session(&hash(&t), "session", now_ms()).await {
        Ok(Some((user, role))) => Ok((user, Role::parse(&role).unwrap_or(Role::ReadOnly))),
        Ok(None) => Err(to_login()),
        Err(e) => {
            tracing::error!("{e}");
            Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

async fn new_session(app: &App, user: &str, role: &str, next: &str) -> Response {
    let t = random_token(24);
    if let Err(e) = app.db.add_session(&hash(&t), "session", user, role, now_ms() + SESSION_MS).await {
        tracing::error!("{e}");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let _ = app.db.audit(&random_token(8), now_ms(), user, "login", "console", "").await;
    let next = if next.starts_with("/console/") { next } else { "/console/rooms" };
    let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", SESSION_MS / 1000);
    ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
}

async fn login_page() -> Html<String> {
    login_form("")
}

fn login_form(problem: &str) -> Html<String> {
    let problem = if problem.is_empty() { String::new() } else { format!("<p class=off>{}</p>", esc(problem)) };
    page(
        "Sign in",
        "",
        &format!(
            r#"{problem}<form method="post" action="/console/login"><p><label>Name <input name="user" autocomplete="username" size="30" autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" size="30"></label></p>
<p><button>Sign in</button></p></form>
<form method="post" action="/console/login"><p class="muted"><label>Or an API token <input name="token" type="password" size="40"></label> <button>Sign in</button></p></form>
<p class="muted">Or open a one-time link from <code>huis-fleet login-link</code>.</p>"#
        ),
        false,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

async fn login(State(app): State<Arc<App>>, Form(f): Form<LoginForm>) -> Response {
    let refused = |status, why: &str| (status, login_form(why)).into_response();
    if !f.token.trim().is_empty() {
        return match app.db.token(&hash(f.token.trim())).await {
            Ok(Some((user, role))) => new_session(&app, &user, &role, "/console/rooms").await,
            Ok(None) => refused(StatusCode::UNAUTHORIZED, "Unknown token."),
            Err(e) => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    let user = f.user.trim();
    match crate::users::sign_in(&app.db, user, &f.password, now_ms()).await {
        Ok(role) => {
            if let Err(e) = app.db.audit(&random_token(8), now_ms(), user, "login", user, "password").await {
                tracing::error!("{e}");
            }
            new_session(&app, user, &role, "/console/rooms").await
        }
        Err(e @ crate::users::SignInError::Wrong) => {
            tracing::warn!(user = %crate::excerpt(user), "console sign-in refused: {e}");
            refused(StatusCode::UNAUTHORIZED, "Wrong name or password.")
        }
        Err(e @ crate::users::SignInError::Locked(_)) => {
            tracing::warn!(user = %crate::excerpt(user), "console sign-in refused: {e}");
            refused(StatusCode::TOO_MANY_REQUESTS, &format!("{}.", capitalised(&e.to_string())))
        }
        Err(crate::users::SignInError::Db(e)) => {
            tracing::error!("{e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[derive(Deserialize)]
struct Once {
    code: String,
    #[serde(default)]
    next: String,
}

async fn login_once(State(app): State<Arc<App>>, Query(q): Query<Once>) -> Response {
    match app.db.take_session(&hash(&q.code), "once", now_ms()).await {
        Ok(Some((user, role))) => new_session(&app, &user, &role, &q.next).await,
        Ok(None) => {
            (StatusCode::UNAUTHORIZED, page("Sign in", "", "<p class=off>This link is used or expired.</p>", false))
                .into_response()
        }
        Err(e) => {
            tracing::error!("{e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Deserialize)]
struct LinkRequest {
    #[serde(default)]
    next: String,
}

/// A one-time sign-in link for the caller (their own user and role), good for a minute.
async fn login_link(State(app): State<Arc<App>>, headers: HeaderMap, Json(r): Json<LinkRequest>) -> Response {
    let (user, role) = match crate::api::token_owner(&app, &headers).await {
        Ok(owner) => owner,
        Err(e) => return e.into_response(),
    };
    let code = random_token(16);
    if app.db.add_session(&hash(&code), "once", &user, &role, now_ms() + ONCE_MS).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let next: String = r.next.chars().filter(|c| c.is_ascii_alphanumeric() || "/-_".contains(*c)).collect();
    let url = format!("{}/console/login/once?code={code}&next={next}", app.public_url.trim_end_matches('/'));
    Json(serde_json::json!({ "url": url, "expires_in_s": ONCE_MS / 1000 })).into_response()
}

fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn text(v: &serde_json::Value, path: &[&str]) -> String {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Most rooms one inventory page lists; a filter narrows a larger fleet down.
const MAX_ROWS: usize = 500;

async fn rooms(State(app): State<Arc<App>>, headers: HeaderMap, Query(f): Query<crate::db::RoomFilter>) -> Response {
    let (user, _) = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(all) = app.db.rooms().await else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let online = all.iter().filter(|r| r.online).count();
    let total = all.len();
    let rooms: Vec<_> = all.into_iter().filter(|r| f.matches(r)).collect();
    let opt = |v: &str, label: &str| {
        format!("<option value=\"{v}\"{}>{label}</option>", if f.status == v { " selected" } else { "" })
    };
    let form = format!(
        "<form method=get action=/console/rooms>Show <select name=status>{}{}{}</select> \
         site <input name=site size=12 value=\"{}\"> containing <input name=q size=16 value=\"{}\"> \
         <button>Filter</button></form>",
        opt("", "all rooms"),
        opt("offline", "offline rooms"),
        opt("online", "online rooms"),
        esc(&f.site),
        esc(&f.q),
    );
    let shown = rooms.len().min(MAX_ROWS);
    let more = if rooms.len() > shown {
        format!("<p>{} more rooms match; narrow the filter to see them.</p>", rooms.len() - shown)
    } else {
        String::new()
    };
    let mut rows = String::new();
    for r in rooms.iter().take(shown) {
        let rep = r.reported.clone().unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td><a href=\"/console/rooms/{id}\">{id}</a></td><td class={c}>{on}</td><td>{name}</td><td>{ver}</td><td>{slot}</td><td>{board}</td><td>{call}</td><td>{cfg}</td><td>{upd}</td><td class=muted>{seen}</td></tr>",
            id = esc(&r.id),
            c = if r.online { "on" } else { "off" },
            on = if r.online { "● online" } else { "○ offline" },
            name = esc(&text(&rep, &["peripherals", "room_name"])),
            ver = esc(&text(&rep, &["version"])),
            slot = esc(&text(&rep, &["slot"])),
            board = esc(&text(&rep, &["board"])),
            call = if rep["in_call"] == true { "in a call" } else { "" },
            cfg = esc(&text(&rep, &["config_version"])),
            upd = esc(&text(&rep, &["update", "phase"])),
            seen = esc(&ago(r.seen_at)),
        ));
    }
    let body = format!(
        "<p>{online} of {total} rooms online; {} match.</p>{form}<table><tr><th>Room</th><th>Status</th><th>Name</th><th>Version</th><th>Slot</th><th>Board</th><th>Call</th><th>Config</th><th>Update</th><th>Last seen</th></tr>{rows}</table>{more}",
        rooms.len()
    );
    page("Rooms", &user, &body, false).into_response()
}

async fn room(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, _) = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Some(r)) = app.db.room(&id).await else {
        return (StatusCode::NOT_FOUND, page("No such room", &user, "", false)).into_response();
    };
    let rep = r.reported.clone().unwrap_or_default();
    let tel = r.telemetry.clone().unwrap_or_default();
    let mut facts = String::new();
    for (k, v) in [
        ("Status", if r.online { "online".to_owned() } else { "offline".to_owned() }),
        ("Version", text(&rep, &["version"])),
        ("Slot", text(&rep, &["slot"])),
        ("Board", text(&rep, &["board"])),
        ("In a call", text(&rep, &["in_call"])),
        ("Configuration version", text(&rep, &["config_version"])),
        ("Update", format!("{} {}", text(&rep, &["update", "phase"]), text(&rep, &["update", "detail"]))),
        (
            "CPU",
            if tel.is_null() { String::new() } else { format!("{:.0} %", tel["cpu_percent"].as_f64().unwrap_or(0.0)) },
        ),
        ("Temperature", text(&tel, &["temperature_c"])),
        ("Last seen", ago(r.seen_at)),
    ] {
        facts.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v)));
    }
    if let Some(p) = rep["peripherals"].as_object() {
        for (k, v) in p {
            facts.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v.as_str().unwrap_or_default())));
        }
    }
    let mut cmds = String::new();
    for c in app.db.commands(&id, 20).await.unwrap_or_default() {
        cmds.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=muted>{}</td></tr>",
            esc(&c.name),
            esc(&c.state),
            esc(&c.detail),
            esc(&c.created_by),
            esc(&ago(c.created_at))
        ));
    }
    let mut evs = String::new();
    for e in app.db.events(&id, 20).await.unwrap_or_default() {
        evs.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td class=muted>{}</td></tr>",
            esc(&e.kind),
            esc(&e.fields.to_string()),
            esc(&ago(e.at_ms))
        ));
    }
    let body = format!(
        "<section><table>{facts}</table></section><h2>Commands</h2><table><tr><th>Command</th><th>State</th><th>Detail</th><th>By</th><th>When</th></tr>{cmds}</table>\
         <h2>Events</h2><table><tr><th>Event</th><th>Fields</th><th>When</th></tr>{evs}</table>"
    );
    page(&format!("Room {id}"), &user, &body, false).into_response()
}

async fn campaign(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, _) = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Some(c)) = app.db.campaign(&id).await else {
        return (StatusCode::NOT_FOUND, page("No such campaign", &user, "", false)).into_response();
    };
    let mut groups = String::new();
    for (i, g) in c.groups.iter().enumerate() {
        let pct = |n: usize| if g.size == 0 { 0.0 } else { n as f64 * 100.0 / g.size as f64 };
        groups.push_str(&format!(
            "<tr><td>Group {}</td><td>{}</td><td><div class=bar><div class=ok style=\"width:{:.1}%\"></div><div class=bad style=\"width:{:.1}%\"></div><div class=run style=\"width:{:.1}%\"></div></div></td><td>{} succeeded, {} failed, {} updating, {} waiting</td></tr>",
            i + 1,
            g.size,
            pct(g.succeeded),
            pct(g.failed),
            pct(g.updating),
            g.succeeded,
            g.failed,
            g.updating,
            g.waiting
        ));
    }
    let body = format!(
        "<section><p><b>{}</b> to version {} — <span class={}>{}</span> {}</p></section><table><tr><th>Group</th><th>Rooms</th><th>Progress</th><th></th></tr>{groups}</table>",
        esc(&c.id),
        esc(&c.version),
        if c.phase == "halted" { "off" } else { "on" },
        esc(&c.phase),
        esc(&c.detail)
    );
    page(&format!("Campaign {id}"), &user, &body, c.phase == "running").into_response()
}
