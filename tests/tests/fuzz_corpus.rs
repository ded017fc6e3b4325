//! Replays every fuzz seed and every kept crash input (`fuzz/seeds/TARGET`,
//! `fuzz/regressions/TARGET`, and the repository's own board descriptors and configuration)
//! through the entry points of the fuzz targets, so that a crash once fixed stays fixed in the
//! default test run. The fuzzing itself is `bench/fuzz.sh TARGET SECONDS`.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod drivers;

use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

const TARGETS: &[(&str, Entry, &[&str])] = &[
    ("sip_parsers", huis_sip::framing::fuzz_parse, &[]),
    ("sip_dialog", drivers::sip_dialog, &[]),
    ("sdp_negotiation", drivers::sdp_negotiation, &[]),
    ("config", huis_firmware::fuzzing::config, &["rootfs-overlay/etc/huis"]),
    ("destination", huis_firmware::fuzzing::destination, &[]),
    ("board", drivers::board, &["board/boards"]),
    ("wav", drivers::wav, &[]),
    ("rtcp_feedback", huis_firmware::fuzzing::rtcp_feedback, &[]),
    ("webrtc_signalling", huis_firmware::fuzzing::webrtc_signalling, &[]),
    ("bfcp", huis_bfcp::fuzzing::fuzz_bfcp, &[]),
    ("fleet", huis_fleet_proto::fuzz, &[]),
    ("fleet_enrol", huis_fleet::fuzz_enrol, &[]),
    ("fleet_requests", huis_fleet::fuzz_requests, &[]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

#[test]
fn every_fuzz_seed_and_kept_crash_input_runs_clean() {
    let root = root();
    // Every target named in fuzz/Cargo.toml is replayed here, and nothing else.
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    let declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
        .filter(|n| *n != "huis-fuzz")
        .collect();
    let mut ours: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    let mut declared_sorted = declared.clone();
    ours.sort();
    declared_sorted.sort();
    assert_eq!(ours, declared_sorted, "fuzz/Cargo.toml and this replay list disagree");

    for (name, entry, extra) in TARGETS {
        let mut inputs = files(&root.join("fuzz/seeds").join(name));
        assert!(!inputs.is_empty(), "fuzz/seeds/{name} holds no seed");
        inputs.extend(files(&root.join("fuzz/regressions").join(name)));
        for e in *extra {
            inputs.extend(files(&root.join(e)));
        }
        for path in inputs {
            let bytes = std::fs::read(&path).unwrap();
            let shown = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            let r = std::panic::catch_unwind(|| entry(&bytes));
            assert!(
                r.is_ok(),
                "fuzz target {name} panics on {shown}: replay with `cd fuzz && cargo fuzz run -s none -a {name} ../{shown}`"
            );
        }
    }
}
