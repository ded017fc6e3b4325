//! WHIP (RFC 9725) to publish the room and, optionally, WHEP to receive one stream, as a
//! [`Signaller`]: `whip+https://host/path[#whep=<percent-encoded URL>]`.
//!
//! The bearer token is never part of the dial string (which shows in `huisctl calls` and logs);
//! it comes from a named destination, and `huisctl config get` shows it as `(hidden)`:
//!
//! ```toml
//! [[destination]]
//! name = "stream"
//! uri = "whip+https://sfu.example.org/whip/room1#whep=https%3A%2F%2Fsfu.example.org%2Fwhep%2Froom1"
//! token = "…"
//! ```
//!
//! Joining is one HTTP exchange per direction: we POST our complete offer (ICE candidates
//! gathered first, no trickle) as `application/sdp`, with `Authorization: Bearer <token>` when
//! the `[[destination]]` has a token; the server answers `201 Created` with its SDP answer and
//! a `Location` header naming the session's resource (relative URLs are resolved against the
//! endpoint's). WHEP is the same with our receive-only offer (Opus, and H.264/VP8/VP9 video)
//! and the server's media coming back; it shows as one far end. Leaving DELETEs each resource.
//! A refusal (4xx/5xx, 401/403 for the token) ends the call as refused; an unreachable server,
//! a missing `Location`, an oversized body (over 64 KiB) or an SDP answer that does not parse
//! ends it as failed, saying which. Every request has a timeout.
//!
//! Not done: trickle ICE and ICE restarts (the optional `PATCH` of RFC 9725 §4.3), and
//! re-POSTing after a lost connection: while we are in the conference the server has nothing
//! to tell us, so [`Signaller::next_event`] never returns, and a publishing connection that
//! stays down ends the call as any conference's does (after 30 s, see `mod.rs`). Nor are the
//! server's `Link` headers (its STUN/TURN servers) read: the room's own `stun`/`turn` apply.
//! The WHEP stream costs the call when it fails to set up, as the WHIP one does: a person who
//! configured both wants to know.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};

use super::Signaller;
use crate::call::EndReason;
use crate::media::webrtc::ConferenceMedia;

/// Longest answer read from a WHIP or WHEP server.
const MAX_BODY: usize = 64 * 1024;
/// How long one POST (with its answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one DELETE may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// The far end id the WHEP stream has in the conference media.
const WHEP_FAR_END: u64 = 1;

/// What went wrong with a WHIP or WHEP server, in words for `LastError`. `what` is "WHIP" or
/// "WHEP".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipError {
    #[error("the {what} server refused the token ({status} {reason})")]
    Token { what: &'static str, status: u16, reason: String },
    #[error("the {what} server refused the session ({status} {reason}{detail})")]
    Refused { what: &'static str, status: u16, reason: String, detail: String },
    #[error("the {what} server at {url} cannot be reached: {why}")]
    Unreachable { what: &'static str, url: String, why: String },
    #[error("the {what} server did not answer within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    #[error("the {what} server answered {status} {reason}, not 201 Created")]
    NotCreated { what: &'static str, status: u16, reason: String },
    #[error("the {what} server's answer has no usable Location header: {why}")]
    Location { what: &'static str, why: String },
    #[error("the {what} server's answer is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("the {what} server's SDP answer is malformed: {why}")]
    Malformed { what: &'static str, why: String },
}

impl WhipError {
    /// A refusal is the far end's answer; anything else is a failure.
    fn ended(self) -> EndReason {
        match self {
            WhipError::Token { .. } | WhipError::Refused { .. } => EndReason::Refused(self.to_string()),
            _ => EndReason::Failed(self.to_string()),
        }
    }
}

/// A session on a WHIP endpoint, and on a WHEP one when given.
pub(super) struct Whip {
    http: reqwest::Client,
    whip: String,
    whep: Option<String>,
    token: String,
    /// The resources the servers created (absolute `Location` URLs), deleted when we leave.
    resources: Vec<(&'static str, String)>,
    /// Resources we could not delete when we left (the network was down): deleted once we
    /// are back in, so the server does not carry us twice.
    stale: Vec<(&'static str, String)>,
}

impl Whip {
    pub(super) fn new(http: reqwest::Client, whip: &str, whep: Option<&str>, token: &str) -> Whip {
        Whip {
            http,
            whip: whip.to_owned(),
            whep: whep.map(str::to_owned),
            token: token.to_owned(),
            resources: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// POSTs `offer` to `url`; keeps the created resource for [`Self::close`] and returns the
    /// SDP answer, checked for form.
    async fn post(&mut self, what: &'static str, url: &str, offer: String) -> Result<String, WhipError> {
        let mut req = self.http.post(url).header(CONTENT_TYPE, "application/sdp").body(offer);
        if let Some(auth) = bearer(&self.token) {
            req = req.header(AUTHORIZATION, auth);
        }
        let timeout = WhipError::Timeout { what, secs: REQUEST_TIMEOUT.as_secs() };
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let resp = tokio::time::timeout_at(deadline, req.send())
            .await
            .map_err(|_| timeout.clone())?
            .map_err(|e| WhipError::Unreachable { what, url: url.to_owned(), why: super::http_reason(&e) })?;
        let status = resp.status();
        let reason = status.canonical_reason().unwrap_or("").to_owned();
        let location = resp.headers().get(LOCATION).map(|l| l.to_str().map(str::to_owned));
        let final_url = resp.url().clone();
        let body = tokio::time::timeout_at(deadline, read_body(resp, what)).await.map_err(|_| timeout)??;
        match status.as_u16() {
            201 => {}
            401 | 403 => return Err(WhipError::Token { what, status: status.as_u16(), reason }),
            s if s >= 400 => {
                return Err(WhipError::Refused { what, status: s, reason, detail: detail(&body) });
            }
            s => return Err(WhipError::NotCreated { what, status: s, reason }),
        }
        // The resource exists from here on: keep it for DELETE whatever follows.
        let location = match location {
            None => return Err(WhipError::Location { what, why: "there is none".into() }),
            Some(Err(_)) => return Err(WhipError::Location { what, why: "it is not text".into() }),
            Some(Ok(l)) => final_url
                .join(&l)
                .map_err(|e| WhipError::Location { what, why: format!("'{}' is not a URL: {e}", bounded(&l)) })?,
        };
        if !matches!(location.scheme(), "http" | "https") {
            return Err(WhipError::Location { what, why: format!("'{location}' is not http(s)") });
        }
        self.resources.push((what, location.to_string()));
        tracing::info!(what, resource = %location, "{what} session created");
        let sdp = String::from_utf8(body).map_err(|_| WhipError::Malformed { what, why: "it is not UTF-8".into() })?;
        check_sdp(&sdp).map_err(|why| WhipError::Malformed { what, why })?;
        Ok(sdp)
    }

    /// DELETEs a resource; gives it back if the server could not be reached (to try again).
    async fn delete(
        http: reqwest::Client,
        token: String,
        what: &'static str,
        url: String,
    ) -> Option<(&'static str, String)> {
        let mut req = http.delete(&url);
        if let Some(auth) = bearer(&token) {
            req = req.header(AUTHORIZATION, auth);
        }
        match tokio::time::timeout(DELETE_TIMEOUT, req.send()).await {
            Ok(Ok(r)) if r.status().is_success() => tracing::info!(what, resource = %url, "{what} session deleted"),
            Ok(Ok(r)) => tracing::warn!(what, resource = %url, status = %r.status(), "{what} session not deleted"),
            Ok(Err(e)) => {
                tracing::warn!(what, resource = %url, "{what} session not deleted: {}", super::http_reason(&e));
                return Some((what, url));
            }
            Err(_) => {
                tracing::warn!(what, resource = %url, "{what} session not deleted within {DELETE_TIMEOUT:?}");
                return Some((what, url));
            }
        }
        None
    }

    /// DELETEs `resources` at once; keeps those the servers could not be asked about.
    async fn delete_all(&mut self, resources: Vec<(&'static str, String)>) {
        let deletes: Vec<_> = resources
            .into_iter()
            .map(|(what, url)| tokio::spawn(Self::delete(self.http.clone(), self.token.clone(), what, url)))
            .collect();
        for d in deletes {
            if let Ok(Some(kept)) = d.await {
                self.stale.push(kept);
            }
        }
        self.stale.truncate(8);
    }
}

impl Signaller for Whip {
    /// The servers say nothing once the sessions are up.
    type Event = std::convert::Infallible;

    fn tls(&self) -> bool {
        self.whip.starts_with("https://") && self.whep.as_deref().is_none_or(|u| u.starts_with("https://"))
    }

    async fn join(&mut self, media: &Arc<ConferenceMedia>) -> Result<(), EndReason> {
        let offer = media.publish_offer().await.map_err(|e| EndReason::Failed(e.to_string()))?;
        let url = self.whip.clone();
        let answer = self.post("WHIP", &url, offer).await.map_err(WhipError::ended)?;
        media
            .publish_answer(&answer)
            .await
            .map_err(|e| WhipError::Malformed { what: "WHIP", why: e.to_string() }.ended())?;
        tracing::info!(endpoint = %self.whip, "publishing over WHIP");
        if let Some(url) = self.whep.clone() {
            let offer =
                media.receive_offer(WHEP_FAR_END, "WHEP", true).await.map_err(|e| EndReason::Failed(e.to_string()))?;
            let answer = self.post("WHEP", &url, offer).await.map_err(WhipError::ended)?;
            media
                .receive_answer(WHEP_FAR_END, &answer)
                .await
                .map_err(|e| WhipError::Malformed { what: "WHEP", why: e.to_string() }.ended())?;
            tracing::info!(endpoint = %url, "receiving over WHEP");
        }
        // Back in after a lost connection: our old sessions go now.
        let stale = std::mem::take(&mut self.stale);
        self.delete_all(stale).await;
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Self::Event, EndReason> {
        std::future::pending().await
    }

    async fn handle(&mut self, ev: Self::Event, _media: &Arc<ConferenceMedia>) -> Result<(), EndReason> {
        match ev {}
    }

    async fn leave(&mut self) {
        // Deleting the resources (in `close`) is the leaving.
    }

    async fn close(&mut self) {
        let resources = std::mem::take(&mut self.resources);
        self.delete_all(resources).await;
    }
}

/// `Bearer <token>`, marked sensitive (never in a header's Debug output), if there is a token
/// that fits in a header (the configuration checks it is printable ASCII).
fn bearer(token: &str) -> Option<reqwest::header::HeaderValue> {
    if token.is_empty() {
        return None;
    }
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Reads a body of at most [`MAX_BODY`] bytes.
async fn read_body(mut resp: reqwest::Response, what: &'static str) -> Result<Vec<u8>, WhipError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(WhipError::TooLong { what, max: MAX_BODY });
    }
    let url = resp.url().to_string();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| WhipError::Unreachable {
        what,
        url: url.clone(),
        why: super::http_reason(&e),
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(WhipError::TooLong { what, max: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The answer's form check on any text (fuzzing).
pub(super) fn fuzz_answer(text: &str) {
    let _ = check_sdp(text);
    let _ = detail(text.as_bytes());
}

/// The form of an SDP answer: `v=0` first, `x=value` lines, at least one `m=` section.
fn check_sdp(sdp: &str) -> Result<(), String> {
    if !sdp.starts_with("v=0") {
        return Err("it does not start with v=0".into());
    }
    let mut media = 0;
    for (n, line) in sdp.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(format!("line {} is not type=value: '{}'", n + 1, bounded(line)));
        }
        if b[0] == b'm' {
            media += 1;
        }
    }
    if media == 0 {
        return Err("it has no m= line".into());
    }
    Ok(())
}

/// The first line of an error body, bounded, for the message (servers often say why).
fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.is_empty() { String::new() } else { format!(": {}", bounded(line)) }
}

/// At most 120 characters of outside text, without control characters.
fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_answers_are_checked_for_form() {
        assert!(
            check_sdp("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").is_ok()
        );
        assert!(check_sdp("hello").unwrap_err().contains("v=0"));
        assert!(check_sdp("v=0\r\ns=-\r\n").unwrap_err().contains("no m= line"));
        assert!(check_sdp("v=0\r\nthis is not sdp\r\nm=audio 9 X 0\r\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn refusals_say_why_and_hide_nothing_useful() {
        let e = WhipError::Token { what: "WHIP", status: 401, reason: "Unauthorized".into() };
        assert_eq!(e.to_string(), "the WHIP server refused the token (401 Unauthorized)");
        assert!(matches!(e.ended(), EndReason::Refused(_)));
        let e = WhipError::Refused {
            what: "WHEP",
            status: 503,
            reason: "Service Unavailable".into(),
            detail: detail(b"\n busy \n"),
        };
        assert_eq!(e.to_string(), "the WHEP server refused the session (503 Service Unavailable: busy)");
        let e = WhipError::Malformed { what: "WHIP", why: "it does not start with v=0".into() };
        assert!(matches!(e.ended(), EndReason::Failed(_)));
        assert_eq!(bounded(&"x\u{7}".repeat(500)).len(), 120);
        let auth = bearer("s3cret").unwrap();
        assert!(auth.is_sensitive() && !format!("{auth:?}").contains("s3cret"));
        assert!(bearer("").is_none());
    }
}
