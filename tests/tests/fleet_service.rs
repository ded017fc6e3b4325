//! The fleet service end to end, as an IT team runs it: `huis-fleet init` and `serve` with
//! SQLite and the shipped mosquitto, two real huisd rooms that enrol by one-time claim codes
//! (their keys made on the room), appear in the inventory with their reported state, and carry
//! out a dial, a mute and a screenshot command sent with the `huis-fleet` client, and take a
//! desired configuration. A used claim code is refused, a read-only token cannot command, and
//! every change is in the audit log.

use std::time::{Duration, Instant};

use huis_tests::peers::fleet::FleetService;
use huis_tests::peers::picture::Picture;
use huis_tests::peers::postgres::Postgres;
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl_json, stdout};
use serde_json::Value;

fn room_config(id: &str, f: &FleetService, code: &str) -> String {
    format!(
        "[room]\nname = \"Room {id}\"\n[call]\nauto_answer = true\n[fleet]\nbroker = \"mqtts://127.0.0.1:{}\"\n\
         room_id = \"{id}\"\nenrol_url = \"{}/api/v1/enrol\"\nclaim_code = \"{code}\"\nca_file = \"{}\"\n\
         telemetry_interval_s = 5\nconnect_spread_s = 0\n",
        f.broker_port,
        f.url(),
        f.ca().display()
    )
}

/// Polls `what` until `ok` holds; on failure the last value and the service's log.
fn wait(f: &FleetService, what: &str, secs: u64, mut get: impl FnMut() -> Value, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s; last: {v}\nservice log:\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends a command with the client and waits for the room's final answer.
fn command(f: &FleetService, room: &str, args: &[&str]) -> Value {
    let mut a = vec!["command", room];
    a.extend_from_slice(args);
    let sent = f.json(&a);
    let id = sent["id"].as_str().unwrap().to_owned();
    wait(
        f,
        &format!("command {args:?}"),
        30,
        || f.json(&["room", room])["commands"].clone(),
        |cs| {
            cs.as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == id && !["sent", "accepted"].contains(&c["state"].as_str().unwrap()))
        },
    )
    .as_array()
    .unwrap()
    .iter()
    .find(|c| c["id"] == id)
    .unwrap()
    .clone()
}

#[test]
fn on_sqlite_rooms_enrol_by_claim_code_and_are_commanded_from_the_service() {
    let _w = watchdog("fleet_service", 180);
    let ns = NetNs::new();
    let f = FleetService::start(&ns).unwrap();
    scenario(&ns, &f);
    // The console, as a person signed in sees it: the inventory and a room's page.
    let dir = tempfile::tempdir().unwrap();
    for (page, must) in [("/console/rooms", "inventory"), ("/console/rooms/room-a", "room")] {
        let png = dir.path().join(format!("{must}.png"));
        f.screenshot(page, &png).unwrap_or_else(|e| panic!("{page}: {e}\n{}", f.log_text()));
        let pic = Picture::load_png(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        // Signed in: the console's dark header, and a table (its grey heading rows), which the
        // sign-in form has not. Kept for people in target/debug/fleet-console-*.png.
        assert_eq!(pic.pixel(5, 5), [0x1d, 0x23, 0x30], "{page}: no console header");
        let table = pic.fraction_near(0, 0, pic.width, pic.height, [0xee, 0xf0, 0xf3], 3);
        assert!(table > 0.01, "{page}: no table ({:.4} of the page), so not signed in?\n{}", table, f.log_text());
        let _ = std::fs::copy(&png, huis_tests::bin_dir().join(format!("fleet-console-{must}.png")));
    }
}

#[test]
fn on_postgresql_rooms_enrol_by_claim_code_and_are_commanded_from_the_service() {
    let _w = watchdog("fleet_service_pg", 180);
    let ns = NetNs::new();
    let pg = Postgres::start(&ns).unwrap();
    let f = FleetService::start_on(&ns, Some(&pg.url())).unwrap();
    assert!(f.log_text().contains("postgres://fleet@127.0.0.1"), "not on PostgreSQL:\n{}", f.log_text());
    scenario(&ns, &f);
    // The rooms, their commands and the audit log are in PostgreSQL's tables.
    let out = ns
        .cmd("psql")
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "fleet", "-d", "postgres", "-tAc"])
        .arg("SELECT count(*) FROM rooms WHERE reported <> ''")
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "2", "psql: {}\npostgres log:\n{}", huis_tests::stderr(&out), pg.log_text());
}

fn scenario(ns: &NetNs, f: &FleetService) {
    let (ns, f) = (ns.clone(), f);
    let code_a = f.json(&["claim", "room-a"])["claim_code"].as_str().unwrap().to_owned();
    let code_b = f.json(&["claim", "room-b"])["claim_code"].as_str().unwrap().to_owned();
    assert_eq!(code_a.len(), 19, "four groups of four: {code_a}");

    let (bus_a, bus_b) = (Bus::start(), Bus::start());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a: Huisd = rt.block_on(huisd::start_in(&ns, &bus_a, Some(&room_config("room-a", f, &code_a))));
    let b: Huisd = rt.block_on(huisd::start_in(&ns, &bus_b, Some(&room_config("room-b", f, &code_b))));
    let logs = || format!("room A's log:\n{}\nroom B's log:\n{}", a.log_text(), b.log_text());

    // Both enrol, connect with their new certificates and report.
    let rooms = wait(
        f,
        "both rooms online and reporting",
        40,
        || f.json(&["rooms"]),
        |rs| {
            let rs = rs.as_array().unwrap();
            rs.len() == 2
                && rs.iter().all(|r| {
                    r["online"] == true && r["reported"]["board"] == "sim" && r["enrolled_at"].as_i64() > Some(0)
                })
        },
    );
    assert_eq!(rooms[0]["id"], "room-a", "{rooms}");
    assert_eq!(rooms[1]["reported"]["peripherals"]["room_name"], "Room room-b", "{rooms}");
    // The inventory's filters: by status, and by text in the id or the room's name.
    let ids = |args: &[&str]| -> Vec<String> {
        let v = f.json(args);
        v.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&["rooms", "--status", "offline"]), Vec::<String>::new());
    assert_eq!(ids(&["rooms", "--status", "online", "--q", "ROOM ROOM-B"]), ["room-b"]);
    assert_eq!(ids(&["rooms", "--q", "a"]), ["room-a"], "'a' is in room-a's id only");
    // The room's key was made on the room and stays there, readable by huisd alone.
    let key = a.state_dir.join("fleet/room.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());

    // A claim code works once.
    let replay = serde_json::json!({ "room_id": "room-a", "claim_code": code_a, "csr_pem": "x" });
    let out = ns
        .cmd("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(f.ca())
        .args(["-H", "content-type: application/json", "-d", &replay.to_string()])
        .arg(format!("{}/api/v1/enrol", f.url()))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "403", "a used claim code must be refused");

    // Update bundles the service hands out: to an enrolled room, by its certificate, and to a
    // token holder; not to anyone else. A campaign for a bundle that is not there is refused.
    let bundle: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(f.dir.path().join("bundles/room-1.2+test.raucb"), &bundle).unwrap();
    let fetch = |extra: &[&str], name: &str| {
        let out = ns
            .cmd("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(f.ca())
            .args(extra)
            .arg(format!("{}/bundles/{name}", f.url()))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout[out.stdout.len().saturating_sub(3)..]).into_owned();
        (code, out.stdout[..out.stdout.len().saturating_sub(4)].to_vec())
    };
    let (cert, key) = (a.state_dir.join("fleet/room.crt"), a.state_dir.join("fleet/room.key"));
    let as_room = ["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()];
    let (code, body) = fetch(&as_room, "room-1.2+test.raucb");
    assert_eq!(code, "200", "room A's certificate must fetch the bundle: {}", String::from_utf8_lossy(&body));
    assert!(body == bundle, "room A got {} bytes, not the {} of the bundle", body.len(), bundle.len());
    assert_eq!(fetch(&[], "room-1.2+test.raucb").0, "401", "a bundle went to a stranger");
    assert_eq!(fetch(&as_room, "nothing.raucb").0, "404");
    assert_eq!(fetch(&as_room, ".hidden").0, "400");
    let out = f.cli(&[
        "campaign",
        "--version",
        "1.3",
        "--bundle-url",
        &format!("{}/bundles/room-1.3.raucb", f.url()),
        "room-a",
    ]);
    assert!(!out.status.success(), "a campaign for a missing bundle was started");
    assert!(
        huis_tests::stderr(&out).contains("room-1.3.raucb is not in the service's bundles folder"),
        "{}",
        huis_tests::stderr(&out)
    );

    // Commands from the service: dial room B, mute, a screenshot uploaded to the service.
    let b_uri = huisctl_json(&bus_b, &["status"])["sip_uri"].as_str().unwrap().to_owned();
    let c = command(f, "room-a", &["dial", &format!("uri={b_uri}")]);
    assert_eq!(c["state"], "done", "{c}\n{}", logs());
    wait(
        f,
        "room B in a call",
        20,
        || f.json(&["room", "room-b"])["room"].clone(),
        |r| r["reported"]["in_call"] == true,
    );
    let c = command(f, "room-a", &["mute", "on=true"]);
    assert_eq!(c["state"], "done", "{c}");
    assert_eq!(huisctl_json(&bus_a, &["status"])["muted"], true);
    let c = command(f, "room-a", &["screenshot"]);
    assert_eq!(c["state"], "done", "{c}\n{}", logs());
    let name = c["args"]["upload_url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let shot = f.dir.path().join("uploads/room-a").join(&name);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}\n{}", shot.display(), f.log_text()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The room's recent log, uploaded the same way.
    let c = command(f, "room-a", &["logs"]);
    assert_eq!(c["state"], "done", "{c}");
    let name = c["args"]["upload_url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let log = std::fs::read_to_string(f.dir.path().join("uploads/room-a").join(&name)).unwrap();
    assert!(
        log.contains("fleet command") && log.contains("dialing"),
        "the uploaded log lacks the room's own lines:\n{log}"
    );
    let c = command(f, "room-a", &["hangup"]);
    assert_eq!(c["state"], "done", "{c}");

    // A desired configuration, through the client.
    f.json(&["desired", "room-b", "2", "audio.output_volume=35"]);
    wait(
        f,
        "room B applied configuration 2",
        20,
        || f.json(&["room", "room-b"])["room"].clone(),
        |r| r["reported"]["config_version"] == 2 && r["reported"]["config_sources"]["audio.output_volume"] == "fleet",
    );

    // Configuration in layers: the organisation, room B's site, and what each room sets.
    f.json(&["site", "room-b", "paris"]);
    f.json(&["template-org", "audio.output_volume=45", "call.auto_answer=true"]);
    f.json(&["template-site", "paris", "audio.output_volume=30"]);
    let eff = f.json(&["config", "room-b"]);
    assert_eq!(eff["audio.output_volume"], serde_json::json!({ "value": "30", "source": "site:paris" }), "{eff}");
    assert_eq!(eff["call.auto_answer"]["source"], "org", "{eff}");
    assert_eq!(f.json(&["config", "room-a"])["audio.output_volume"]["source"], "org");
    wait(
        f,
        "room B took the layered configuration",
        20,
        || huisctl_json(&bus_b, &["config", "get", "audio.output_volume"]),
        |v| v.to_string().contains("30"),
    );
    wait(
        f,
        "room A took the organisation's",
        20,
        || huisctl_json(&bus_a, &["config", "get", "audio.output_volume"]),
        |v| v.to_string().contains("45"),
    );

    // A read-only token reads but cannot command.
    let token = ns
        .cmd(huis_tests::bin_dir().join("huis-fleet"))
        .args(["token", "--config"])
        .arg(f.dir.path().join("huis-fleet.toml"))
        .args(["--user", "auditor", "--role", "readonly"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", huis_tests::stderr(&token));
    let token_file = f.dir.path().join("auditor.token");
    std::fs::write(&token_file, &token.stdout).unwrap();
    assert!(f.cli_as(&token_file, &["rooms"]).status.success());
    let out = f.cli_as(&token_file, &["command", "room-a", "reboot"]);
    assert!(!out.status.success(), "a read-only token commanded a room");
    assert!(huis_tests::stderr(&out).contains("403"), "{}", huis_tests::stderr(&out));

    // People sign in to the console with a name and password; five wrong ones lock the account.
    let mut add = ns
        .cmd(huis_tests::bin_dir().join("huis-fleet"))
        .args(["user", "--config"])
        .arg(f.dir.path().join("huis-fleet.toml"))
        .args(["--user", "alice@example.org", "--role", "operator"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"a long passphrase, 2026\n").unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", huis_tests::stderr(&added));
    let sign_in = |password: &str| -> (String, String) {
        let out = ns
            .cmd("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(f.ca())
            .args(["--data-urlencode", "user=alice@example.org", "--data-urlencode", &format!("password={password}")])
            .arg(format!("{}/console/login", f.url()))
            .output()
            .unwrap();
        let head = stdout(&out);
        let status = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let cookie = head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
            .and_then(|c| c.split(';').next())
            .unwrap_or("")
            .to_owned();
        (status, cookie)
    };
    let (status, cookie) = sign_in("a long passphrase, 2026");
    assert_eq!(status, "303", "the right password must sign in\n{}", f.log_text());
    let page = ns
        .cmd("curl")
        .args(["-s", "--cacert"])
        .arg(f.ca())
        .args(["-H", &format!("cookie: {cookie}")])
        .arg(format!("{}/console/rooms", f.url()))
        .output()
        .unwrap();
    assert!(stdout(&page).contains("room-b"), "the session shows no inventory: {}", stdout(&page));
    for _ in 0..5 {
        assert_eq!(sign_in("a long passphrase, 2025").0, "401");
    }
    let (status, cookie) = sign_in("a long passphrase, 2026");
    assert_eq!((status.as_str(), cookie.as_str()), ("429", ""), "five wrong passwords must lock the account");

    // Every change is in the audit log, by whom.
    let out = ns
        .cmd("curl")
        .args(["-s", "--cacert"])
        .arg(f.ca())
        .args(["-H", &format!("authorization: Bearer {}", String::from_utf8_lossy(&token.stdout).trim())])
        .arg(format!("{}/api/v1/audit", f.url()))
        .output()
        .unwrap();
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap().to_owned(), e["action"].as_str().unwrap().to_owned()))
        .collect();
    for want in [
        ("admin", "claim"),
        ("room-a", "enrol"),
        ("admin", "command"),
        ("admin", "desired"),
        ("huis-fleet user", "user"),
        ("alice@example.org", "login"),
    ] {
        assert!(actions.iter().any(|(a, b)| a == want.0 && b == want.1), "{want:?} not in the audit log: {actions:?}");
    }
    drop((a, b));
}
