//! Alerts to a webhook (`alert_webhook`): a JSON POST per alert (a room went offline, a
//! campaign halted, a room's update failed), best effort and never in the way of the work that
//! raised it.

use crate::api::App;

pub async fn send(app: &App, kind: &str, target: &str, detail: &str) {
    if app.alert_webhook.is_empty() {
        return;
    }
    let body = serde_json::json!({ "kind": kind, "target": target, "detail": detail, "at_ms": crate::now_ms() });
    match app.http.post(&app.alert_webhook).json(&body).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(kind, target, "alert webhook answered {}", r.status()),
        Err(e) => tracing::warn!(kind, target, "alert webhook: {e}"),
    }
}
