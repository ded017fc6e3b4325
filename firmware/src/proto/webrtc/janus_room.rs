//! A Janus VideoRoom as a [`Signaller`]: join as a publisher, publish the room, subscribe to
//! every other publisher (one handle and one connection each) as they come and go.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::janus::{self, Janus, JanusError};
use super::{JOIN_TIMEOUT, Signaller};
use crate::call::EndReason;
use crate::media::webrtc::ConferenceMedia;

pub(super) struct JanusRoom {
    http: reqwest::Client,
    api: String,
    room: u64,
    pin: String,
    display: String,
    janus: Option<Janus>,
    /// Our publishing handle.
    publisher: u64,
    /// Far ends received: feed id → their subscriber handle.
    feeds: HashMap<u64, u64>,
    /// The feed ids we published as: after joining again, our old self is no far end.
    own_feeds: Vec<u64>,
    /// Sessions we could not destroy when we left (the network was down): destroyed once we
    /// are back, so the room does not see us twice until Janus times them out.
    stale_sessions: Vec<u64>,
}

/// A refusal by the server is the far end's answer; anything else is a failure.
fn ended(e: JanusError) -> EndReason {
    match e {
        JanusError::Refused { .. } | JanusError::Http { .. } => EndReason::Refused(e.to_string()),
        _ => EndReason::Failed(e.to_string()),
    }
}

impl JanusRoom {
    pub(super) fn new(http: reqwest::Client, api: &str, room: u64, pin: &str, display: &str) -> JanusRoom {
        JanusRoom {
            http,
            api: api.to_owned(),
            room,
            pin: pin.to_owned(),
            display: display.to_owned(),
            janus: None,
            publisher: 0,
            feeds: HashMap::new(),
            own_feeds: Vec::new(),
            stale_sessions: Vec::new(),
        }
    }

    fn with_pin(&self, mut body: Value) -> Value {
        if !self.pin.is_empty() {
            body["pin"] = Value::String(self.pin.clone());
        }
        body
    }

    /// Subscribes to one publisher; a failure costs that far end only.
    async fn subscribe(&mut self, media: &ConferenceMedia, (feed, name): (u64, String)) {
        let body = self.with_pin(
            json!({"request": "join", "ptype": "subscriber", "room": self.room, "streams": [{"feed": feed}]}),
        );
        let Some(j) = self.janus.as_mut() else { return };
        let r: Result<u64, String> = async {
            let handle = j.attach().await.map_err(|e| e.to_string())?;
            let tx = j.message(handle, body, None).await.map_err(|e| e.to_string())?;
            let ev = j.wait(&tx, JOIN_TIMEOUT, "the subscription").await.map_err(|e| e.to_string())?;
            let offer = ev
                .get("jsep")
                .and_then(|js| js.get("sdp"))
                .and_then(Value::as_str)
                .ok_or("the subscription came without an offer")?;
            let answer = media.subscribe(feed, &name, offer).await.map_err(|e| e.to_string())?;
            let tx = j
                .message(handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer})))
                .await
                .map_err(|e| e.to_string())?;
            j.wait(&tx, JOIN_TIMEOUT, "the start of a subscription").await.map_err(|e| e.to_string())?;
            Ok(handle)
        }
        .await;
        match r {
            Ok(h) => {
                tracing::info!(feed, far_end = %name, "receiving a far end");
                self.feeds.insert(feed, h);
            }
            Err(e) => tracing::warn!(feed, far_end = %name, "cannot receive a far end: {e}"),
        }
    }
}

impl Signaller for JanusRoom {
    type Event = Value;

    fn tls(&self) -> bool {
        self.api.starts_with("https://")
    }

    async fn join(&mut self, media: &Arc<ConferenceMedia>) -> Result<(), EndReason> {
        self.feeds.clear();
        let j = self.janus.insert(Janus::connect(self.http.clone(), &self.api).await.map_err(ended)?);
        // Our old self leaves before we come back.
        for session in std::mem::take(&mut self.stale_sessions) {
            if j.destroy_session(session).await {
                tracing::info!(session, "destroyed the session we could not leave");
            }
        }
        self.publisher = j.attach().await.map_err(ended)?;
        let body =
            self.with_pin(json!({"request": "join", "ptype": "publisher", "room": self.room, "display": self.display}));
        let j = self.janus.as_mut().expect("connected");
        let tx = j.message(self.publisher, body, None).await.map_err(ended)?;
        let joined = j.wait(&tx, JOIN_TIMEOUT, "the join").await.map_err(ended)?;
        let data = janus::plugin_data(&joined).cloned().unwrap_or(Value::Null);
        if data.get("videoroom").and_then(Value::as_str) != Some("joined") {
            return Err(ended(JanusError::Protocol(format!("the join was answered with {data}"))));
        }
        tracing::info!(room = self.room, id = ?data.get("id"), "joined the Janus room");
        if let Some(id) = data.get("id").and_then(Value::as_u64) {
            self.own_feeds.push(id);
            let n = self.own_feeds.len();
            self.own_feeds.drain(..n.saturating_sub(8));
        }

        // Far ends first: their pictures appear while ours is still being offered.
        for p in publishers(&data) {
            if !self.own_feeds.contains(&p.0) {
                self.subscribe(media, p).await;
            }
        }
        let offer = media.publish_offer().await.map_err(|e| EndReason::Failed(e.to_string()))?;
        let body = json!({"request": "configure", "audio": true, "video": media.sends_video()});
        let j = self.janus.as_mut().expect("connected");
        let tx = j.message(self.publisher, body, Some(json!({"type": "offer", "sdp": offer}))).await.map_err(ended)?;
        let answer = j.wait(&tx, JOIN_TIMEOUT, "the offer to publish").await.map_err(ended)?;
        let sdp = answer
            .get("jsep")
            .and_then(|js| js.get("sdp"))
            .and_then(Value::as_str)
            .ok_or_else(|| ended(JanusError::Protocol("the offer to publish got no answer SDP".into())))?;
        media
            .publish_answer(sdp)
            .await
            .map_err(|e| EndReason::Failed(format!("the conference server's answer cannot be used: {e}")))?;
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Value, EndReason> {
        let j = self.janus.as_mut().ok_or_else(|| EndReason::Failed("not connected".into()))?;
        j.next().await.map_err(|e| EndReason::Failed(format!("the conference session ended: {e}")))
    }

    async fn handle(&mut self, ev: Value, media: &Arc<ConferenceMedia>) -> Result<(), EndReason> {
        let sender = ev.get("sender").and_then(Value::as_u64).unwrap_or(0);
        if ev.get("janus").and_then(Value::as_str) == Some("hangup") && sender == self.publisher {
            let reason = ev.get("reason").and_then(Value::as_str).unwrap_or("no reason");
            return Err(EndReason::Failed(format!("Janus hung up our connection ({})", crate::text::excerpt(reason))));
        }
        let Some(data) = janus::plugin_data(&ev) else { return Ok(()) };
        if data.get("videoroom").and_then(Value::as_str) == Some("destroyed") {
            return Err(EndReason::RemoteHangup);
        }
        // A moderator removed us (Janus says "leaving": "ok" to the one kicked).
        if sender == self.publisher && data.get("leaving").and_then(Value::as_str) == Some("ok") {
            return Err(EndReason::RemoteHangup);
        }
        for p in publishers(data) {
            if !self.feeds.contains_key(&p.0) && !self.own_feeds.contains(&p.0) {
                self.subscribe(media, p).await;
            }
        }
        for key in ["unpublished", "leaving"] {
            if let Some(feed) = data.get(key).and_then(Value::as_u64)
                && let Some(h) = self.feeds.remove(&feed)
            {
                media.remove_far_end(feed);
                if let Some(j) = self.janus.as_mut() {
                    j.detach(h).await;
                }
            }
        }
        Ok(())
    }

    async fn leave(&mut self) {
        let publisher = self.publisher;
        if let Some(j) = self.janus.as_mut()
            && j.message(publisher, json!({"request": "leave"}), None).await.is_err()
        {
            tracing::debug!("the leave request failed; the session is destroyed anyway");
        }
    }

    async fn close(&mut self) {
        if let Some(mut j) = self.janus.take() {
            // Kept as stale first: the caller may give up waiting for the server.
            let session = j.session();
            self.stale_sessions.push(session);
            if j.destroy_session(session).await {
                self.stale_sessions.retain(|s| *s != session);
            }
            let n = self.stale_sessions.len();
            self.stale_sessions.drain(..n.saturating_sub(8));
        }
    }
}

/// What the room reads of an event (fuzzing).
pub(super) fn fuzz_event(ev: &Value) {
    if let Some(data) = janus::plugin_data(ev) {
        let _ = publishers(data);
        for key in ["unpublished", "leaving"] {
            let _ = data.get(key).and_then(Value::as_u64);
        }
    }
}

/// The publishers (id, display) an event lists.
fn publishers(data: &Value) -> Vec<(u64, String)> {
    data.get("publishers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let id = p.get("id")?.as_u64()?;
                    let display = p.get("display").and_then(Value::as_str).unwrap_or("").chars().take(64).collect();
                    Some((id, display))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_are_read_from_events_and_names_are_bounded() {
        let ev = json!({"videoroom": "event", "publishers": [
            {"id": 7, "display": "Chromium"}, {"id": 8}, {"display": "no id"}, {"id": 9, "display": "x".repeat(500)}
        ]});
        let p = publishers(&ev);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (7, "Chromium".into()));
        assert_eq!(p[1], (8, String::new()));
        assert_eq!(p[2].1.len(), 64);
        assert!(publishers(&json!({"videoroom": "joined"})).is_empty());
    }
}
