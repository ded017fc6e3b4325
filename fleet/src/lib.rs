//! The huis fleet service: enrolment, inventory, configuration, commands and update campaigns
//! for rooms over MQTT. `huis-fleet` (main.rs) is its command line; the fuzz targets drive its
//! parsers of outside input from here.

pub mod alerts;
pub mod api;
pub mod campaigns;
pub mod config;
pub mod console;
pub mod db;
pub mod mqtt;
pub mod pki;
pub mod server;
pub mod templates;
pub mod users;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// SHA-256, hex: how claim codes and API tokens are kept (never the codes themselves).
pub fn hash(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the OS random source");
    b
}

/// `n` random bytes, hex.
pub fn random_token(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` characters from 32 that people do not confuse (no I, L, O, U).
pub fn random_code(n: usize) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    random_bytes(n).iter().map(|b| ALPHABET[(*b & 31) as usize] as char).collect()
}

/// Outside text quoted in messages: at most 80 characters, control characters escaped.
pub fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// The fuzz target `fleet_enrol`: an enrolment's room id (the first line) and certificate
/// request (the rest), as `POST /api/v1/enrol` hands them to the CA. Whatever the bytes, it
/// must not panic, and a certificate it signs names the room asked for and nothing else.
pub fn fuzz_enrol(data: &[u8]) {
    use std::sync::OnceLock;
    static CA: OnceLock<pki::Ca> = OnceLock::new();
    let ca = CA.get_or_init(|| pki::Ca::in_memory("Fuzz").expect("a CA"));
    let text = String::from_utf8_lossy(data);
    let (room, csr) = text.split_once('\n').unwrap_or(("room-1", &text));
    let Ok(pem) = ca.sign_room(room, csr) else { return };
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
        .expect("the CA's own PEM");
    assert_eq!(pki::common_name(&der).as_deref(), Some(room), "a certificate names the room it was asked for");
}

/// The fuzz target `fleet_requests`: what people and scripts send the API, as JSON after a
/// first byte that picks the kind: a campaign request, or three configuration templates (org,
/// site, room; one JSON array). Whatever the bytes, no panic; and whatever the service accepts
/// must reach the rooms: the desired state it makes of it passes the rooms' own decoder.
pub fn fuzz_requests(data: &[u8]) {
    use huis_fleet_proto::msg::{self, BundleTarget, Desired};
    use std::collections::BTreeMap;
    let Some((&kind, json)) = data.split_first() else { return };
    let room_accepts = |d: &Desired| {
        let bytes = msg::encode(d);
        if let Err(e) = msg::decode::<Desired>(&bytes) {
            panic!("the service accepted what rooms refuse: {e}");
        }
    };
    if kind % 2 == 0 {
        let Ok(mut r) = serde_json::from_slice::<campaigns::CampaignRequest>(json) else { return };
        let Ok((campaign, plan)) = campaigns::check(&mut r) else { return };
        let planned: Vec<&String> = plan.groups.iter().flatten().collect();
        assert_eq!(planned.len(), r.rooms.len(), "every room asked for is in one group");
        assert!(plan.groups.iter().all(|g| !g.is_empty()), "no empty group");
        assert_eq!(campaign.rooms().count(), r.rooms.len());
        // The largest configuration three templates may make, with this campaign's bundle.
        let big: BTreeMap<String, String> = (0..templates::MAX_KEYS * 3)
            .map(|i| (format!("s.k{i}"), "v".repeat(templates::MAX_BYTES / templates::MAX_KEYS / 2)))
            .collect();
        let bundle = Some(BundleTarget { campaign: r.id.clone(), version: r.version.clone(), url: r.url.clone() });
        room_accepts(&Desired { config_version: u64::MAX, config: big, bundle });
    } else {
        let Ok(layers) = serde_json::from_slice::<Vec<BTreeMap<String, String>>>(json) else { return };
        if layers.len() != 3 || layers.iter().any(|l| templates::check(l).is_err()) {
            return;
        }
        let eff = templates::effective(&layers[0], Some(("site-1", &layers[1])), ("room-1", &layers[2]));
        let config = eff.into_iter().map(|(k, e)| (k, e.value)).collect();
        let url = format!("https://{}", "u".repeat(msg::MAX_STRING - 8));
        let bundle = Some(BundleTarget { campaign: "c".repeat(64), version: "v".repeat(64), url });
        room_accepts(&Desired { config_version: u64::MAX, config, bundle });
    }
}
