//! Bad input over D-Bus: every method and settable property of huisd's objects called with
//! wrong types, empty and 1 MiB strings, out-of-range numbers, unknown destinations, keys and
//! objects. Each gets an error that says what is wrong; huisd keeps running; nothing changes
//! (the room's status, its configuration file).

use std::collections::HashMap;

use huis_tests::{Bus, Huisd, huisctl, stdout};
use zbus::Variant as Value;

const DEST: &str = "org.huis.Room1";
const ROOM: &str = "/org/huis/Room1";
const MIB: usize = 1 << 20;

/// What a person or a client can see of the room: it must not move.
fn status(bus: &Bus) -> serde_json::Value {
    let v = huis_tests::huisctl_json(bus, &["status"]);
    let keep = ["state", "last_error", "leds", "muted", "room_name", "registration", "calls"];
    keep.iter().map(|k| (k.to_string(), v[k].clone())).collect::<serde_json::Map<_, _>>().into()
}

/// Calls `method` with `body` and expects an error with a message; returns "name: message".
async fn refused<B>(conn: &zbus::Connection, path: &str, iface: &str, method: &str, body: &B, what: &str) -> String
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    match conn.call_method(Some(DEST), path, Some(iface), method, body).await {
        Ok(m) => panic!("{what}: {iface}.{method} was accepted ({:?})", m.body().signature()),
        Err(zbus::Error::MethodError(name, msg, _)) => {
            let msg = msg.unwrap_or_default();
            assert!(!msg.trim().is_empty(), "{what}: {iface}.{method} failed with {name} and no message");
            assert!(msg.len() < 4096, "{what}: the error repeats the input ({} bytes)", msg.len());
            format!("{name}: {msg}")
        }
        // The standard errors (wrong signature, unknown method or object) come typed.
        Err(zbus::Error::FDO(e)) => {
            let text = e.to_string();
            assert!(text.contains(':') && text.len() < 4096, "{what}: {iface}.{method}: {text}");
            text
        }
        Err(e) => panic!("{what}: {iface}.{method}: not a D-Bus error: {e}"),
    }
}

async fn set_prop(conn: &zbus::Connection, iface: &str, prop: &str, v: Value<'_>, what: &str) -> String {
    let path = match iface {
        "org.huis.Audio1" => "/org/huis/Room1/Audio",
        "org.huis.Video1" => "/org/huis/Room1/Video",
        _ => ROOM,
    };
    refused(conn, path, "org.freedesktop.DBus.Properties", "Set", &(iface, prop, v), what).await
}

#[tokio::test]
async fn bad_input_over_dbus_is_refused_with_a_reason_and_changes_nothing() {
    let bus = Bus::start();
    let d = Huisd::start(&bus, Some("[room]\nname = \"Room 4.12\"\n")).await;
    let conn = bus.connect().await;
    let config_before = std::fs::read(&d.config).unwrap();
    let before = status(&bus);
    let big = "a".repeat(MIB);
    let big_sip = format!("sip:{big}@example.org");
    let opts: HashMap<&str, Value> = HashMap::new();
    let mut seen = Vec::new();

    // Room1 methods.
    let r1 = "org.huis.Room1";
    for (uri, what) in [
        ("", "an empty destination"),
        (big_sip.as_str(), "a 1 MiB destination"),
        ("sip:nobody@", "a URI without host"),
        ("mailto:someone@example.org", "an unknown scheme"),
        ("janus+http://127.0.0.1:9/janus", "a Janus room without a number"),
        ("whip+ftp://127.0.0.1/x", "a WHIP URL that is not http(s)"),
        ("sip:a@b\r\nVia: x", "control characters"),
    ] {
        seen.push(refused(&conn, ROOM, r1, "Dial", &(uri, &opts), what).await);
    }
    seen.push(refused(&conn, ROOM, r1, "Dial", &(42u32,), "a number for the URI").await);
    seen.push(refused(&conn, ROOM, r1, "Dial", &(), "no arguments").await);
    seen.push(refused(&conn, ROOM, r1, "Answer", &(), "answer with no call").await);
    seen.push(refused(&conn, ROOM, r1, "Hangup", &(), "hang up with no call").await);
    seen.push(refused(&conn, ROOM, r1, "SetMuted", &("yes",), "a string for a boolean").await);
    for (b, what) in [("", "an empty button"), (big.as_str(), "a 1 MiB button"), ("eject", "an unknown button")] {
        seen.push(refused(&conn, ROOM, r1, "PressButton", &(b,), what).await);
    }
    seen.push(refused(&conn, ROOM, r1, "StartPresentation", &(), "present with nothing plugged in").await);
    seen.push(refused(&conn, ROOM, r1, "StopPresentation", &(), "stop with nothing presented").await);
    seen.push(refused(&conn, ROOM, r1, "SimulateContentInput", &("yes",), "a string for plugged").await);
    seen.push(refused(&conn, ROOM, r1, "SimulateContentInput", &(), "plugged missing").await);
    seen.push(refused(&conn, ROOM, r1, "NoSuchMethod", &(), "an unknown method").await);

    // Settable properties: wrong types and out-of-range values.
    let a1 = "org.huis.Audio1";
    seen.push(set_prop(&conn, a1, "OutputVolume", Value::U32(101), "volume 101 %").await);
    seen.push(set_prop(&conn, a1, "OutputVolume", Value::U32(u32::MAX), "volume 2^32-1").await);
    seen.push(set_prop(&conn, a1, "OutputVolume", Value::from("loud"), "a string volume").await);
    seen.push(set_prop(&conn, a1, "OutputVolume", Value::I32(-1), "a negative volume").await);
    for p in ["EchoCancellation", "Beamforming", "NoiseSuppression", "GainControl"] {
        seen.push(set_prop(&conn, a1, p, Value::from("on"), "a string for a boolean").await);
    }
    seen.push(set_prop(&conn, a1, "InputLevel", Value::F64(0.0), "a read-only property").await);
    seen.push(set_prop(&conn, "org.huis.Video1", "SelfView", Value::U32(1), "a number for a boolean").await);
    seen.push(set_prop(&conn, r1, "NoSuchProperty", Value::U32(1), "an unknown property").await);

    // Config1: unknown and malformed keys, bad and huge values.
    let c1 = "org.huis.Config1";
    let cp = "/org/huis/Room1/Config";
    for (k, what) in [("no.such", "an unknown key"), ("nodot", "a key without section"), (big.as_str(), "a 1 MiB key")]
    {
        seen.push(refused(&conn, cp, c1, "Get", &(k,), what).await);
    }
    for (k, v, what) in [
        ("room.name", "", "an empty room name"),
        ("room.name", big.as_str(), "a 1 MiB room name"),
        ("video.width", "-1", "a negative width"),
        ("video.width", "\"wide\"", "a string width"),
        ("audio.output_volume", "1000", "volume 1000"),
        ("call.default_destination", "\"mailto:x\"", "a destination of unknown scheme"),
        ("webrtc.ice_transport_policy", "\"relay\"", "relay without TURN servers"),
        ("account.password", big.as_str(), "a 1 MiB password"),
        ("", "1", "an empty key"),
        ("video.framerate", "[1, 2", "an unfinished array for a number"),
    ] {
        seen.push(refused(&conn, cp, c1, "Set", &(k, v), what).await);
    }
    seen.push(refused(&conn, cp, c1, "Set", &(1u32, 2u32), "numbers for key and value").await);

    // Update1: sources that are not bundles.
    let u1 = "org.huis.Update1";
    for (src, what) in [("", "an empty source"), (big.as_str(), "a 1 MiB source"), ("ftp://example.org/x.raucb", "ftp")]
    {
        seen.push(refused(&conn, ROOM, u1, "Install", &(src,), what).await);
    }

    // Calls that do not exist.
    for path in ["/org/huis/Room1/Calls/999", "/org/huis/Room1/Calls/0"] {
        seen.push(refused(&conn, path, "org.huis.Call1", "Hangup", &(), "a call that does not exist").await);
    }

    // Still running, still the same room, the same file.
    let out = huisctl(&bus, &["status"]);
    assert!(out.status.success(), "huisd no longer answers after bad input:\n{}", d.log_text());
    assert!(stdout(&out).contains("Room 4.12"));
    // Errors quote input bounded and escaped: no raw line breaks into logs and clients.
    assert!(
        !seen.iter().any(|m| m.contains("\r\nVia")),
        "an error repeats control characters raw:\n{}",
        seen.join("\n")
    );
    assert_eq!(status(&bus), before, "bad input changed the room's status\nerrors:\n{}", seen.join("\n"));
    assert_eq!(std::fs::read(&d.config).unwrap(), config_before, "bad input changed the configuration file");
    eprintln!("{} refusals, e.g.:\n{}", seen.len(), seen.iter().take(12).cloned().collect::<Vec<_>>().join("\n"));
}

/// `busctl` arguments for a D-Bus signature: an empty or zero value of each complete type.
fn busctl_args(sig: &str) -> Vec<String> {
    fn one(s: &[u8], at: &mut usize, out: &mut Vec<String>) {
        let c = s[*at];
        *at += 1;
        match c {
            b's' | b'g' => out.push("x".into()),
            b'o' => out.push("/x".into()),
            b'b' => out.push("false".into()),
            b'v' => out.extend(["s".to_string(), "x".to_string()]),
            b'a' => {
                // An empty array: its count, then skip the element type.
                out.push("0".into());
                let mut skip = Vec::new();
                one(s, at, &mut skip);
            }
            b'(' => {
                while s[*at] != b')' {
                    one(s, at, out);
                }
                *at += 1;
            }
            b'{' => {
                while s[*at] != b'}' {
                    one(s, at, out);
                }
                *at += 1;
            }
            _ => out.push("0".into()),
        }
    }
    let (s, mut at, mut out) = (sig.as_bytes(), 0, Vec::new());
    while at < s.len() {
        one(s, &mut at, &mut out);
    }
    out
}

/// What introspection shows of an object: (interface, member, signature) for every method, and
/// (interface, property, type) for every writable property, plus its child nodes.
struct Introspected {
    methods: Vec<(String, String, String)>,
    writable: Vec<(String, String, String)>,
    children: Vec<String>,
}

fn attr(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(line[at..].split('"').next()?.to_owned())
}

async fn introspect(conn: &zbus::Connection, path: &str) -> Introspected {
    let reply = conn
        .call_method(Some(DEST), path, Some("org.freedesktop.DBus.Introspectable"), "Introspect", &())
        .await
        .unwrap();
    let xml: String = reply.body().deserialize().unwrap();
    let mut out = Introspected { methods: Vec::new(), writable: Vec::new(), children: Vec::new() };
    let (mut iface, mut method, mut sig) = (String::new(), None::<String>, String::new());
    // Child nodes may come with their own interfaces inline: only this object's are taken.
    let mut depth = 0;
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<node name=") {
            if depth == 0 {
                out.children.extend(attr(line, "name"));
            }
            if !line.ends_with("/>") {
                depth += 1;
            }
            continue;
        } else if line.starts_with("</node>") && depth > 0 {
            depth -= 1;
            continue;
        } else if depth > 0 {
            continue;
        }
        if line.starts_with("<interface ") {
            iface = attr(line, "name").unwrap_or_default();
        } else if line.starts_with("<method ") {
            method = attr(line, "name");
            sig.clear();
            if line.ends_with("/>") {
                out.methods.push((iface.clone(), method.take().unwrap_or_default(), String::new()));
            }
        } else if line.starts_with("<arg ") && method.is_some() && attr(line, "direction").as_deref() != Some("out") {
            sig += &attr(line, "type").unwrap_or_default();
        } else if line.starts_with("</method>") {
            out.methods.push((iface.clone(), method.take().unwrap_or_default(), sig.clone()));
        } else if line.starts_with("<property ") && attr(line, "access").is_some_and(|a| a.contains("write")) {
            out.writable.push((
                iface.clone(),
                attr(line, "name").unwrap_or_default(),
                attr(line, "type").unwrap_or_default(),
            ));
        }
    }
    out
}

/// The shipped D-Bus policy against an unprivileged caller (uid 65534, through `busctl` under
/// `setpriv`): every method of huisd's own interfaces and every writable property, called with
/// well-typed arguments, is refused by the bus ("Access denied") except the reads the policy
/// grants (Config1.Get and Keys, Get and GetAll of properties), and the room's status and
/// configuration file are unchanged afterwards. (The privileged caller's bad input is the test
/// above.)
#[tokio::test]
async fn an_unprivileged_caller_can_read_but_no_method_or_property_changes_anything() {
    let Some(bus) = Bus::start_with_shipped_policy() else {
        eprintln!("skipped: needs root to call as another user");
        return;
    };
    let d = Huisd::start(&bus, Some("[room]\nname = \"Room 4.12\"\n")).await;
    let conn = bus.connect().await;
    let config_before = std::fs::read(&d.config).unwrap();
    let before = status(&bus);
    let as_nobody = |args: &[String]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl", "--timeout=10"])
            .arg(format!("--address={}", bus.address))
            .args(args)
            .output()
            .expect("setpriv (util-linux) and busctl (systemd)");
        (out.status.success(), format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)))
    };

    let (mut paths, mut refusals, mut reads, mut tried) = (vec![ROOM.to_owned()], 0, 0, Vec::new());
    while let Some(path) = paths.pop() {
        let obj = introspect(&conn, &path).await;
        paths.extend(obj.children.iter().map(|c| format!("{path}/{c}")));
        for (iface, member, sig) in &obj.methods {
            if !iface.starts_with("org.huis.") {
                continue;
            }
            let mut args = vec!["call".to_owned(), DEST.into(), path.clone(), iface.clone(), member.clone()];
            if !sig.is_empty() {
                args.push(sig.clone());
                args.extend(busctl_args(sig));
            }
            let (ok, said) = as_nobody(&args);
            let granted = iface == "org.huis.Config1" && (member == "Get" || member == "Keys");
            if granted {
                reads += 1;
                continue;
            }
            assert!(!ok, "uid 65534 called {iface}.{member} on {path}: {said}");
            assert!(
                said.to_lowercase().contains("access denied"),
                "{iface}.{member} on {path}: not the bus's refusal: {said}"
            );
            refusals += 1;
            tried.push(format!("{iface}.{member}"));
        }
        for (iface, prop, ty) in &obj.writable {
            let mut args =
                vec!["set-property".to_owned(), DEST.into(), path.clone(), iface.clone(), prop.clone(), ty.clone()];
            args.extend(busctl_args(ty));
            let (ok, said) = as_nobody(&args);
            assert!(!ok, "uid 65534 set {iface}.{prop} on {path}: {said}");
            assert!(said.to_lowercase().contains("access denied"), "{iface}.{prop}: {said}");
            refusals += 1;
            tried.push(format!("{iface}.{prop}="));
            let (ok, said) =
                as_nobody(&["get-property".into(), DEST.into(), path.clone(), iface.clone(), prop.clone()]);
            assert!(ok, "uid 65534 cannot read {iface}.{prop} on {path}: {said}");
            reads += 1;
        }
    }
    // Room1's calls and buttons, Config1.Set, Update1.Install, Audio1's and Video1's settings.
    for must in
        ["org.huis.Room1.Dial", "org.huis.Config1.Set", "org.huis.Update1.Install", "org.huis.Audio1.OutputVolume="]
    {
        assert!(tried.iter().any(|t| t == must), "{must} was not tried: introspection is incomplete: {tried:?}");
    }
    assert_eq!(status(&bus), before, "an unprivileged caller changed the room's status");
    assert_eq!(std::fs::read(&d.config).unwrap(), config_before, "an unprivileged caller changed the configuration");
    eprintln!("{refusals} changes refused to uid 65534, {reads} reads allowed: {}", tried.join(" "));
}
