//! Configuration in layers: the organisation's template, then the room's site's, then the
//! room's own; a later layer wins key by key. The effective result goes to each room as its
//! desired configuration (a new version when it changed), and the API shows every key with the
//! layer it came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use huis_fleet_proto::msg::{self, Desired};
use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use serde::Serialize;

use crate::api::App;
use crate::db::DbError;

/// A layer: `org`, `site:<name>` or `room:<id>`.
pub fn scope_name(kind: &str, name: &str) -> String {
    if kind == "org" { "org".into() } else { format!("{kind}:{name}") }
}

/// One key of a room's effective configuration.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Effective {
    pub value: String,
    /// The layer it came from: `org`, `site:<name>` or `room:<id>`.
    pub source: String,
}

/// The room's effective configuration from the three layers.
pub fn effective(
    org: &BTreeMap<String, String>,
    site: Option<(&str, &BTreeMap<String, String>)>,
    room: (&str, &BTreeMap<String, String>),
) -> BTreeMap<String, Effective> {
    let mut out = BTreeMap::new();
    let mut layer = |src: String, m: &BTreeMap<String, String>| {
        for (k, v) in m {
            out.insert(k.clone(), Effective { value: v.clone(), source: src.clone() });
        }
    };
    layer("org".into(), org);
    if let Some((name, m)) = site {
        layer(scope_name("site", name), m);
    }
    layer(scope_name("room", room.0), room.1);
    out
}

/// Keys in one template: three layers together stay within what a room takes in one desired state.
pub const MAX_KEYS: usize = msg::MAX_ENTRIES / 3;
/// One template's size as JSON: three layers and a campaign's bundle stay within a room's limit
/// for a desired state ([`huis_fleet_proto::MAX_PAYLOAD`]), with 1 KiB for the rest.
pub const MAX_BYTES: usize = (huis_fleet_proto::MAX_PAYLOAD - 3 * msg::MAX_STRING - 1024) / 3;

/// Checks a template's keys: `section.key`, not the room's own fleet settings, bounded so that
/// whatever the layers, the room accepts the effective configuration the service sends it.
pub fn check(config: &BTreeMap<String, String>) -> Result<(), String> {
    if config.len() > MAX_KEYS {
        return Err(format!("at most {MAX_KEYS} keys in a template"));
    }
    let size = serde_json::to_vec(config).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_BYTES {
        return Err(format!("the template is {size} bytes as JSON; at most {MAX_BYTES}"));
    }
    for (k, v) in config {
        let ok = k.split('.').count() == 2
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b));
        if !ok {
            return Err(format!("'{}' is not a section.key of huis.toml", crate::excerpt(k)));
        }
        if k.starts_with("fleet.") {
            return Err(format!("{k}: the fleet settings are set in the room only"));
        }
        if v.len() > msg::MAX_STRING {
            return Err(format!("{k}: the value is longer than {} bytes", msg::MAX_STRING));
        }
    }
    Ok(())
}

/// A room's effective configuration as it stands in the database.
pub async fn room_effective(app: &App, room: &str) -> Result<BTreeMap<String, Effective>, DbError> {
    let org = app.db.template("org").await?;
    let site = app.db.room(room).await?.map(|r| r.site).unwrap_or_default();
    let site_cfg = if site.is_empty() { None } else { Some(app.db.template(&scope_name("site", &site)).await?) };
    let own = app.db.template(&scope_name("room", room)).await?;
    Ok(effective(&org, site_cfg.as_ref().map(|m| (site.as_str(), m)), (room, &own)))
}

/// Sends every room in `rooms` its effective configuration, as a new version where it changed.
/// Returns how many rooms got a new version.
pub async fn push(app: &Arc<App>, rooms: &[String]) -> Result<usize, DbError> {
    let mut changed = 0;
    for room in rooms {
        let Ok(id) = RoomId::new(room) else { continue };
        let eff: BTreeMap<String, String> =
            room_effective(app, room).await?.into_iter().map(|(k, e)| (k, e.value)).collect();
        let old = app.db.desired(room).await?;
        if old.as_ref().is_some_and(|d| d.config == eff) {
            continue;
        }
        let d = Desired {
            config_version: old.as_ref().map_or(1, |d| d.config_version + 1),
            config: eff,
            bundle: old.and_then(|d| d.bundle),
        };
        let bytes = msg::encode(&d);
        app.db.set_desired(room, &String::from_utf8_lossy(&bytes)).await?;
        if let Err(e) = app.broker.desired(&Topic::new(id, Kind::Desired), bytes).await {
            tracing::warn!(room = %room, "cannot send the configuration: {e}");
        }
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_later_layer_wins_key_by_key_and_says_so() {
        let org = m(&[("audio.output_volume", "60"), ("call.auto_answer", "false")]);
        let site = m(&[("audio.output_volume", "40")]);
        let room = m(&[("room.name", "Salle 4.12")]);
        let e = effective(&org, Some(("paris", &site)), ("r1", &room));
        assert_eq!(e["audio.output_volume"], Effective { value: "40".into(), source: "site:paris".into() });
        assert_eq!(e["call.auto_answer"].source, "org");
        assert_eq!(e["room.name"].source, "room:r1");
        assert!(check(&m(&[("fleet.broker", "x")])).is_err());
        assert!(check(&m(&[("audio", "x")])).is_err());
        assert!(check(&m(&[("audio.output_volume", "55")])).is_ok());
    }
}
