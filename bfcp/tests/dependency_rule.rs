//! The rules of ARCHITECTURE.md for the sans-IO protocol cores that stand alone, checked on their
//! manifests and sources: `huis-bfcp` and `huis-fleet-proto` depend on no other huis crate (they
//! are protocol cores the firmware and the fleet service use, never the other way round), and
//! they do no I/O: no sockets, files, tasks or clock in `src/`.

use std::path::{Path, PathBuf};

/// The crates these rules hold for, by folder.
const CORES: &[&str] = &["bfcp", "fleet-proto"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code lines (comments and unit tests cut) with their file and number.
fn code_lines(dir: &str) -> Vec<(String, usize, String)> {
    let mut files = Vec::new();
    if !root().join(dir).exists() {
        return Vec::new();
    }
    rust_files(&root().join(dir), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        // A file's unit tests (from `#[cfg(test)]` on) may read the clock to drive the core.
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, l) in text.lines().take_while(|l| l.trim() != "#[cfg(test)]").enumerate() {
            let code = l.split("//").next().unwrap_or("").to_owned();
            if !code.trim().is_empty() {
                out.push((rel.clone(), i + 1, code));
            }
        }
    }
    out
}

#[test]
fn the_protocol_cores_depend_on_no_other_huis_crate() {
    for core in CORES {
        depends_on_no_other_huis_crate(core);
    }
}

fn depends_on_no_other_huis_crate(core: &str) {
    let manifest = std::fs::read_to_string(root().join(core).join("Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("[dependencies]"))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.trim_start().starts_with("huis-") || l.contains("path ="))
        .collect();
    assert!(deps.is_empty(), "{core}/Cargo.toml depends on huis crates: {deps:?}");
    // The other crates of the workspace, by their names in Rust paths (`huis_` + folder).
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = workspace.lines().find(|l| l.starts_with("members")).expect("workspace members");
    let others: Vec<String> = members
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != core)
        .map(|m| format!("huis_{}", m.replace('-', "_")))
        .collect();
    assert!(others.len() >= 5, "workspace members not found: {members}");
    let mut broken = Vec::new();
    for dir in ["src", "tests"] {
        for (f, n, code) in code_lines(&format!("{core}/{dir}")) {
            for o in &others {
                let mut rest = code.as_str();
                while let Some(i) = rest.find(o.as_str()) {
                    let after = rest[i + o.len()..].chars().next();
                    if !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        broken.push(format!("{f}:{n}: {} ({o})", code.trim()));
                    }
                    rest = &rest[i + o.len()..];
                }
            }
        }
    }
    assert!(broken.is_empty(), "{core} uses other huis crates:\n{}", broken.join("\n"));
}

#[test]
fn the_protocol_cores_do_no_io() {
    let mut broken = Vec::new();
    for (f, n, code) in CORES.iter().flat_map(|c| code_lines(&format!("{c}/src"))) {
        for bad in ["std::net", "std::fs", "tokio", "std::thread", "SystemTime", "Instant::now"] {
            // The fuzz entry point needs a starting instant; the core itself is given `now`.
            if bad == "Instant::now" && f.ends_with("fuzzing.rs") {
                continue;
            }
            if code.contains(bad) {
                broken.push(format!("{f}:{n}: {} ({bad})", code.trim()));
            }
        }
    }
    assert!(broken.is_empty(), "the sans-IO core does I/O or reads the clock:\n{}", broken.join("\n"));
}
