//! The dependency rules of ARCHITECTURE.md, checked on the sources: a forbidden `use` fails here
//! with the file, the line and the rule it breaks.
//!
//! Modules are the top-level folders and files of `firmware/src` (`room`, `call`, `proto`, …).
//! A reference is any `crate::<module>` path outside comments; `huis_sip`, `zbus` and zbus's
//! server items are looked for by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

struct Source {
    /// Path from `src/`, e.g. `room/mod.rs`.
    rel: String,
    /// The top-level module it belongs to (`room`), or "" for lib.rs.
    module: String,
    /// Code lines (comments removed), with their numbers.
    lines: Vec<(usize, String)>,
}

fn load() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    sources(&src)
        .into_iter()
        .filter(|p| !p.starts_with(src.join("bin")))
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let module = match rel.split_once('/') {
                Some((dir, _)) => dir.to_owned(),
                None if rel == "lib.rs" => String::new(),
                None => rel.trim_end_matches(".rs").to_owned(),
            };
            let text = std::fs::read_to_string(&p).unwrap();
            let lines = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_owned()))
                .filter(|(_, l)| !l.trim().is_empty())
                .collect();
            Source { rel, module, lines }
        })
        .collect()
}

/// The firmware modules the first `crate::` path in `code` refers to (several for a group).
fn crate_refs(code: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = code.find("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            // The items at the group's top level: `{call::{self, CallId}, media}` → call, media.
            let (mut depth, mut start, mut items) = (0usize, 0usize, Vec::new());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        items.push(&group[start..j]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&group[start..j]);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            items.into_iter().map(|s| s.trim().split("::").next().unwrap_or("").trim()).collect()
        } else {
            vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("")]
        };
        out.extend(names.into_iter().filter(|n| modules.contains(*n)).map(str::to_owned));
    }
    out
}

#[test]
fn the_dependency_rules_hold() {
    let files = load();
    let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).filter(|m| !m.is_empty()).collect();
    for m in ["room", "call", "proto", "dbus", "media", "status", "audio", "update", "fleet"] {
        assert!(modules.contains(m), "module {m} not found: the rules below would check nothing");
    }
    // (module, the firmware modules it may use; None = any)
    let allowed: BTreeMap<&str, &[&str]> = [
        ("text", &[][..]),
        ("call", &["text"][..]),
        ("status", &["call"][..]),
        ("config", &["call", "text"][..]),
        ("media", &["text"][..]),
        ("audio", &["media", "config"][..]),
        ("hardware", &["config"][..]),
        ("room", &["audio", "call", "config", "media", "status", "text"][..]),
        ("proto", &["audio", "call", "config", "media", "text"][..]),
        ("update", &["status", "text"][..]),
        ("dbus", &["call", "config", "room", "status", "update", "text"][..]),
        ("fleet", &["call", "config", "logring", "room", "status", "update", "text"][..]),
        ("logring", &[][..]),
        ("health", &["audio", "dbus", "update"][..]),
    ]
    .into_iter()
    .collect();
    let mut broken = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        // The code as one text, so that `use crate::{…}` groups over several lines are read whole.
        let mut text = String::new();
        let mut starts = Vec::new();
        for (n, line) in &f.lines {
            starts.push((text.len(), *n, line.trim()));
            text.push_str(line);
            text.push('\n');
        }
        let line_at = |offset: usize| starts.iter().rev().find(|(o, _, _)| *o <= offset).copied().unwrap_or((0, 0, ""));
        for (i, _) in text.match_indices("crate::") {
            let (_, n, line) = line_at(i);
            let at = format!("{}:{n}: {line}", f.rel);
            for r in crate_refs(&text[i..], &modules) {
                if r == f.module {
                    continue;
                }
                if r == "daemon" {
                    broken.push(format!("{at}\n    nothing may use daemon (it wires everything; it is the top)"));
                }
                if let Some(ok) = allowed.get(f.module.as_str())
                    && !ok.contains(&r.as_str())
                {
                    broken.push(format!("{at}\n    {} may use only {ok:?} of the firmware, not {r}", f.module));
                }
                graph.entry(f.module.clone()).or_default().insert(r);
            }
        }
        for (n, line) in &f.lines {
            let at = format!("{}:{n}: {}", f.rel, line.trim());
            let code = line.as_str();
            if f.module != "proto" && code.contains("huis_sip") {
                broken.push(format!("{at}\n    the SIP core (huis_sip) is used only in proto/sip/"));
            }
            if !["dbus", "daemon"].contains(&f.module.as_str())
                && ["#[interface", "object_server", "SignalEmitter", "serve_at", "zbus::DBusError"]
                    .iter()
                    .any(|s| code.contains(s))
            {
                broken.push(format!("{at}\n    zbus server code lives only in dbus/ (daemon only registers it)"));
            }
            if ["room", "call", "status", "media", "proto", "audio", "fleet"].contains(&f.module.as_str())
                && code.contains("zbus")
            {
                broken.push(format!("{at}\n    {} knows no D-Bus", f.module));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rules broken (see ARCHITECTURE.md):\n{}", broken.join("\n"));

    // No cycle between modules (daemon, the top, is left out: nothing uses it).
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys().filter(|m| *m != "daemon") {
        if let Some(c) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("the firmware's modules use each other in a circle: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_what_it_must() {
    let modules: BTreeSet<String> = ["room", "call", "dbus", "media"].iter().map(|s| s.to_string()).collect();
    assert_eq!(crate_refs("use crate::dbus::HuisError;", &modules), ["dbus"]);
    assert_eq!(crate_refs("use crate::{call::{self, CallId}, media};", &modules), ["call", "media"]);
    assert_eq!(
        crate_refs("use crate::{\n    call::{\n        self,\n        CallId,\n    },\n    room,\n};", &modules),
        ["call", "room"]
    );
    assert_eq!(crate_refs("let x = crate::room::Room::new(p);", &modules), ["room"]);
    assert!(crate_refs("use crate::VERSION;", &modules).is_empty());
}
