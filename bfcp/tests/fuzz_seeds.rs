//! The fuzz target's seeds (`fuzz/seeds/bfcp`, encoded by our own encoder) run clean through
//! the fuzz entry point, and so do a few thousand seeded mutations of them: a cheap stand-in for
//! `cargo fuzz run bfcp` in the default test run. (`tests/tests/fuzz_corpus.rs` replays the seeds
//! too, with every other target's.)

use std::path::Path;

use huis_bfcp::fuzzing::fuzz_bfcp;
use huis_bfcp::msg::decode;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/bfcp");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    assert!(v.len() >= 5, "seeds in {}", dir.display());
    v
}

#[test]
fn seeds_are_real_messages_and_run_clean() {
    for (name, bytes) in seeds() {
        if !name.starts_with("session") && !name.starts_with("sdp") {
            decode(&bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        }
        fuzz_bfcp(&bytes);
    }
}

#[test]
fn mutated_seeds_run_clean() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (_, seed) in seeds() {
        for _ in 0..500 {
            let mut b = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let i = (r as usize) % b.len().max(1);
                match r >> 60 {
                    0 if !b.is_empty() => {
                        b.remove(i);
                    }
                    1 => b.insert(i.min(b.len()), (r >> 8) as u8),
                    _ if !b.is_empty() => b[i] = (r >> 16) as u8,
                    _ => {}
                }
            }
            fuzz_bfcp(&b);
        }
    }
}
