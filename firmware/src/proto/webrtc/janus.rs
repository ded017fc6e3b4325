//! The Janus gateway's REST API (HTTP long poll), as far as a VideoRoom participant needs it:
//! a session, plugin handles, messages with JSEP, and the session's events.
//!
//! Every request carries a random transaction; asynchronous answers (join, configure, start)
//! come back as events with that transaction, which [`Janus::wait`] picks out while keeping the
//! other events (publishers coming and going) for the caller.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

/// Longest answer or event batch read from the server.
const MAX_BODY: usize = 1024 * 1024;
/// Janus holds a long poll up to 30 s; a little more before we call it lost.
const POLL_TIMEOUT: Duration = Duration::from_secs(35);
/// A plain request's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to Janus, in words for `LastError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JanusError {
    #[error("the conference server at {url} cannot be reached: {why}")]
    Unreachable { url: String, why: String },
    #[error("the conference server answered HTTP {status} at {url}")]
    Http { status: u16, url: String },
    /// Janus itself or its VideoRoom refused (wrong room, wrong PIN, …).
    #[error("the conference server refused: {reason} ({code})")]
    Refused { code: i64, reason: String },
    #[error("the conference server's answer makes no sense: {0}")]
    Protocol(String),
    #[error("the conference server did not answer {what} within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
}

/// One Janus session.
pub struct Janus {
    http: reqwest::Client,
    api: String,
    session: u64,
    /// Events read while waiting for something else.
    pending: VecDeque<Value>,
    /// The session's events, from the poller task (a long poll cut short would lose the
    /// events Janus had handed to it, so it runs apart and never is).
    events: tokio::sync::mpsc::Receiver<Result<Value, JanusError>>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Janus {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}

fn transaction() -> String {
    let mut b = [0u8; 9];
    let _ = getrandom::getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The event readers, on an event from the network (fuzzing).
pub(super) fn fuzz_event(v: &Value) {
    let _ = plugin_data(v);
    let _ = plugin_error(v);
    let _ = janus_error(v);
}

/// The `plugindata.data` of an event, if it has one.
pub fn plugin_data(ev: &Value) -> Option<&Value> {
    ev.get("plugindata").and_then(|p| p.get("data"))
}

/// A VideoRoom error in an event or answer (`error_code`, `error`).
fn plugin_error(ev: &Value) -> Option<JanusError> {
    let d = plugin_data(ev)?;
    let code = d.get("error_code")?.as_i64().unwrap_or(0);
    let reason = d.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
    Some(JanusError::Refused { code, reason })
}

/// A Janus-level error (`"janus": "error"`).
fn janus_error(v: &Value) -> Option<JanusError> {
    if v.get("janus").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let e = v.get("error");
    let code = e.and_then(|e| e.get("code")).and_then(Value::as_i64).unwrap_or(0);
    let reason = e.and_then(|e| e.get("reason")).and_then(Value::as_str).unwrap_or("error").to_owned();
    Some(JanusError::Refused { code, reason })
}

impl Janus {
    /// Creates a session on the server at `api` (`https://host/janus`).
    pub async fn connect(http: reqwest::Client, api: &str) -> Result<Janus, JanusError> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut j = Janus {
            http,
            api: api.trim_end_matches('/').to_owned(),
            session: 0,
            pending: VecDeque::new(),
            events: rx,
            poller: None,
        };
        let url = j.api.clone();
        let v = j.post(&url, json!({"janus": "create"})).await?;
        j.session = v
            .get("data")
            .and_then(|d| d.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol("a new session has no id".into()))?;
        let (http, api, session) = (j.http.clone(), j.api.clone(), j.session);
        j.poller = Some(tokio::spawn(async move {
            let mut alive = tokio::time::Instant::now();
            loop {
                // Janus drops a session after 60 s without a request; a poll returns within 30.
                if alive.elapsed() > Duration::from_secs(20) {
                    alive = tokio::time::Instant::now();
                    let body = json!({"janus": "keepalive", "transaction": transaction()});
                    if let Err(e) = http.post(format!("{api}/{session}")).json(&body).send().await {
                        tracing::debug!("Janus keepalive failed: {e}");
                    }
                }
                match poll(&http, &api, session).await {
                    Ok(batch) => {
                        for ev in batch {
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e @ JanusError::Refused { .. }) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!("Janus event poll failed, again in a second: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
        Ok(j)
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(&mut self) -> Result<u64, JanusError> {
        let url = format!("{}/{}", self.api, self.session);
        let v = self.post(&url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        v.get("data")
            .and_then(|d| d.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol("a new handle has no id".into()))
    }

    pub async fn detach(&mut self, handle: u64) {
        let url = format!("{}/{}/{}", self.api, self.session, handle);
        let _ = self.post(&url, json!({"janus": "detach"})).await;
    }

    /// Sends a plugin message and returns its transaction (answered by an event).
    pub async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Result<String, JanusError> {
        let url = format!("{}/{}/{}", self.api, self.session, handle);
        let tx = transaction();
        let mut msg = json!({"janus": "message", "transaction": tx, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = self.post_raw(&url, msg).await?;
        if let Some(e) = plugin_error(&v) {
            return Err(e);
        }
        self.pending_push_if_event(v, &tx);
        Ok(tx)
    }

    /// This session's id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Destroys a session of ours on this server (this one when we leave, or one we could not
    /// leave earlier); true if the server took it or has no such session any more.
    pub async fn destroy_session(&mut self, session: u64) -> bool {
        let url = format!("{}/{}", self.api, session);
        match self.post(&url, json!({"janus": "destroy"})).await {
            Ok(_) => true,
            // 458: no such session (Janus timed it out already).
            Err(JanusError::Refused { code: 458, .. }) => true,
            Err(e) => {
                tracing::debug!(session, "the session was not destroyed: {e}");
                false
            }
        }
    }

    /// The next events: those kept back first, else one long poll.
    /// The next event: one kept back first, else the next from the poller. Cancel-safe.
    pub async fn next(&mut self) -> Result<Value, JanusError> {
        match self.pending.pop_front() {
            Some(ev) => Ok(ev),
            None => self.next_event().await,
        }
    }

    async fn next_event(&mut self) -> Result<Value, JanusError> {
        self.events.recv().await.unwrap_or_else(|| Err(JanusError::Protocol("the event poll stopped".into())))
    }

    /// Waits up to `limit` for the event answering `tx`; other events are kept for
    /// [`Self::events`]. A VideoRoom error in the answer is returned as the error.
    pub async fn wait(&mut self, tx: &str, limit: Duration, what: &'static str) -> Result<Value, JanusError> {
        let is_answer = |ev: &Value| {
            ev.get("transaction").and_then(Value::as_str) == Some(tx)
                && ev.get("janus").and_then(Value::as_str) != Some("ack")
        };
        if let Some(i) = self.pending.iter().position(is_answer) {
            let ev = self.pending.remove(i).expect("found");
            return plugin_error(&ev).map_or(Ok(ev), Err);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.next_event())
                .await
                .map_err(|_| JanusError::Timeout { what, secs: limit.as_secs() })??;
            if is_answer(&ev) {
                return plugin_error(&ev).map_or(Ok(ev), Err);
            }
            self.pending.push_back(ev);
        }
    }

    fn pending_push_if_event(&mut self, v: Value, tx: &str) {
        // A synchronous plugin answer ("success" with plugindata) answers the transaction.
        if v.get("janus").and_then(Value::as_str) == Some("success") && plugin_data(&v).is_some() {
            let mut v = v;
            v["transaction"] = Value::String(tx.to_owned());
            self.pending.push_back(v);
        }
    }

    async fn post(&mut self, url: &str, mut body: Value) -> Result<Value, JanusError> {
        body["transaction"] = Value::String(transaction());
        self.post_raw(url, body).await
    }

    async fn post_raw(&mut self, url: &str, body: Value) -> Result<Value, JanusError> {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.post(url).json(&body).send())
            .await
            .map_err(|_| JanusError::Timeout { what: "a request", secs: REQUEST_TIMEOUT.as_secs() })?
            .map_err(|e| JanusError::Unreachable { url: self.api.clone(), why: super::http_reason(&e) })?;
        let v = read_json(resp, &self.api).await?;
        if let Some(e) = janus_error(&v) {
            return Err(e);
        }
        Ok(v)
    }
}

/// One long poll of the session's events.
async fn poll(http: &reqwest::Client, api: &str, session: u64) -> Result<Vec<Value>, JanusError> {
    let url = format!("{api}/{session}?maxev=10");
    let resp = tokio::time::timeout(POLL_TIMEOUT, http.get(&url).send())
        .await
        .map_err(|_| JanusError::Timeout { what: "the event poll", secs: POLL_TIMEOUT.as_secs() })?
        .map_err(|e| JanusError::Unreachable { url: api.to_owned(), why: super::http_reason(&e) })?;
    let v = read_json(resp, api).await?;
    if let Some(e) = janus_error(&v) {
        return Err(e);
    }
    Ok(match v {
        Value::Array(a) => a,
        Value::Object(_) if v.get("janus").and_then(Value::as_str) == Some("keepalive") => Vec::new(),
        other => vec![other],
    })
}

/// Reads a bounded JSON body.
async fn read_json(resp: reqwest::Response, api: &str) -> Result<Value, JanusError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(JanusError::Http { status: status.as_u16(), url: api.to_owned() });
    }
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(JanusError::Protocol(format!("an answer of more than {MAX_BODY} bytes")));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| JanusError::Unreachable { url: api.to_owned(), why: super::http_reason(&e) })?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(JanusError::Protocol(format!("an answer of more than {MAX_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| JanusError::Protocol(format!("not JSON: {e}")))
}
