//! Alerts to a webhook (`alert_webhook` in huis-fleet.toml): one JSON POST per alert, best
//! effort, never in the way of the work that raised it.
//!
//! - `room_offline`: the broker published a room's Last Will (its connection was gone for longer
//!   than the room's will delay);
//! - `update_failed`: a room reported `failed` or `rolled_back` for an update;
//! - `call_quality`: a room's call is worse than `[call_quality]` in huis-fleet.toml allows
//!   (at most once per room per 10 minutes);
//! - `campaign_halted`: a campaign stopped at its failure threshold.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use huis_fleet_proto::msg::CallQuality;

use crate::config::CallThresholds;

const QUALITY_EVERY: Duration = Duration::from_secs(600);

pub struct Alerts {
    http: reqwest::Client,
    webhook: String,
    limits: CallThresholds,
    last_quality: Mutex<HashMap<String, Instant>>,
}

/// What is poor about a call, by `limits`; empty when nothing is.
pub fn poor(q: &CallQuality, limits: &CallThresholds) -> Vec<String> {
    let mut bad = Vec::new();
    if q.loss_percent > limits.max_loss_percent {
        bad.push(format!("loss {:.1} %", q.loss_percent));
    }
    if q.jitter_ms > limits.max_jitter_ms {
        bad.push(format!("jitter {:.0} ms", q.jitter_ms));
    }
    if q.rtt_ms > limits.max_rtt_ms {
        bad.push(format!("round trip {:.0} ms", q.rtt_ms));
    }
    bad
}

impl Alerts {
    pub fn new(http: reqwest::Client, webhook: String, limits: CallThresholds) -> Alerts {
        Alerts { http, webhook, limits, last_quality: Mutex::new(HashMap::new()) }
    }

    pub async fn send(&self, kind: &str, target: &str, detail: &str) {
        tracing::info!(kind, target, detail, "alert");
        if self.webhook.is_empty() {
            return;
        }
        let body = serde_json::json!({ "kind": kind, "target": target, "detail": detail, "at_ms": crate::now_ms() });
        match self.http.post(&self.webhook).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(kind, target, "alert webhook answered {}", r.status()),
            Err(e) => tracing::warn!(kind, target, "alert webhook: {e}"),
        }
    }

    /// Alerts on a poor call, at most once per room per 10 minutes.
    pub async fn call_quality(&self, room: &str, q: &CallQuality) {
        let bad = poor(q, &self.limits);
        if bad.is_empty() {
            return;
        }
        {
            let mut last = self.last_quality.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(room).is_some_and(|t| t.elapsed() < QUALITY_EVERY) {
                return;
            }
            last.insert(room.to_owned(), Instant::now());
        }
        self.send("call_quality", room, &bad.join(", ")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_poor_beyond_the_configured_limits_only() {
        let q = CallQuality { loss_percent: 3.0, jitter_ms: 30.0, rtt_ms: 250.0, kbps: 1500.0 };
        assert!(poor(&q, &CallThresholds::default()).is_empty());
        let strict = CallThresholds { max_loss_percent: 2.0, max_jitter_ms: 60.0, max_rtt_ms: 200.0 };
        assert_eq!(poor(&q, &strict), ["loss 3.0 %", "round trip 250 ms"]);
    }
}
