//! Updates on a room without RAUC (the simulated board, a laptop): Update1
//! is there, bad sources and the missing RAUC are refused with a message
//! that names what and why, and nothing changes. The real installs, A/B
//! switching and rollback are tested on the image (image/tests/run.sh).

use std::process::Command;

use huis_firmware::dbus::client::{Room1Proxy, Update1Proxy};
use huis_tests::{Bus, Huisd, bin_dir, huisctl, stderr, stdout};

#[tokio::test]
async fn updates_without_rauc_are_refused_clearly_and_change_nothing() {
    let bus = Bus::start();
    // huisd looks for RAUC on the system bus: here a private one without it.
    let system = Bus::start();
    let mut cmd = Command::new(bin_dir().join("huisd"));
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &system.address);
    let d = Huisd::wait_ready(Huisd::spawn_cmd(cmd, &bus, None, &[]), &bus).await;
    let conn = bus.connect().await;
    // Uncached: each read asks huisd, so no read races a PropertiesChanged.
    let up = Update1Proxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap();
    let room = Room1Proxy::new(&conn).await.unwrap();
    assert_eq!(up.operation().await.unwrap(), "idle");
    assert_eq!(up.boot_slot().await.unwrap(), "", "no A/B slots without RAUC");
    let config_before = std::fs::read(&d.config).unwrap();

    // A bundle that is not there: huisctl says so and fails.
    let out = huisctl(&bus, &["update", "/nonexistent/room.raucb"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim(), "huisctl: update bundle /nonexistent/room.raucb: no such file");
    assert!(stdout(&out).is_empty());
    // huisd itself refuses it too, for clients that do not check first.
    let e = up.install("/nonexistent/room.raucb").await.unwrap_err().to_string();
    assert!(e.contains("update bundle /nonexistent/room.raucb: no such file"), "{e}");

    // A URL scheme huisd cannot fetch.
    let out = huisctl(&bus, &["update", "ftp://updates.example/room.raucb"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unsupported URL scheme 'ftp'"), "{}", stderr(&out));

    // A file that exists, but no RAUC to install it.
    let bundle = d.state_dir.join("room.raucb");
    std::fs::write(&bundle, b"not really a bundle").unwrap();
    let out = huisctl(&bus, &["update", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("RAUC is not available on this system"), "{}", stderr(&out));
    assert!(up.last_error().await.unwrap().contains("RAUC is not available on this system"));

    // Nothing changed: no operation, same configuration, the room still idle.
    assert_eq!(up.operation().await.unwrap(), "idle");
    assert_eq!(std::fs::read(&d.config).unwrap(), config_before);
    assert_eq!(room.state().await.unwrap(), "idle");
    assert!(std::fs::metadata(&bundle).is_ok());

    // The slots view says there are none, in words and as JSON.
    let out = huisctl(&bus, &["update", "--status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no A/B slots (RAUC is not available)"), "{}", stdout(&out));
    let out = huisctl(&bus, &["--json", "update", "--status"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["operation"], "idle");
    assert_eq!(j["slots"], serde_json::json!([]));
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
}
