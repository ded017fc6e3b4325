//! The offline tool refuses bad input files with a clear error, and runs on a good one.

use huis_dsp::wav::write_wav;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("huis-dsp-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_huis-dsp")).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
}

fn noise(ch: usize, n: usize) -> Vec<f32> {
    (0..n * ch).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[test]
fn wrong_channel_count_is_refused() {
    let d = tmpdir("chan");
    let f = d.join("mix.wav");
    write_wav(&f, 4, 16000, &noise(4, 3200)).unwrap();
    let (ok, err) = run(&["--in", p(&f), "--geometry", "sim", "--out", p(&d.join("o.wav"))]);
    assert!(!ok);
    assert!(err.contains("4 channels") && err.contains("6 mics"), "{err}");
}

#[test]
fn wrong_sample_rate_is_refused() {
    let d = tmpdir("rate");
    let f = d.join("mix.wav");
    write_wav(&f, 6, 48000, &noise(6, 4800)).unwrap();
    let (ok, err) = run(&["--in", p(&f), "--geometry", "sim", "--out", p(&d.join("o.wav"))]);
    assert!(!ok);
    assert!(err.contains("48000") && err.contains("16000"), "{err}");
}

#[test]
fn truncated_wav_is_refused() {
    let d = tmpdir("trunc");
    let f = d.join("mix.wav");
    write_wav(&f, 6, 16000, &noise(6, 3200)).unwrap();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let (ok, err) = run(&["--in", p(&f), "--geometry", "sim", "--out", p(&d.join("o.wav"))]);
    assert!(!ok);
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&f, &bytes[..30]).unwrap();
    let (ok, err) = run(&["--in", p(&f), "--geometry", "sim", "--out", p(&d.join("o.wav"))]);
    assert!(!ok);
    assert!(err.contains("mix.wav"), "{err}");
}

#[test]
fn unknown_geometry_is_refused() {
    let d = tmpdir("geom");
    let f = d.join("mix.wav");
    write_wav(&f, 6, 16000, &noise(6, 3200)).unwrap();
    let (ok, err) = run(&["--in", p(&f), "--geometry", "nosuchboard", "--out", p(&d.join("o.wav"))]);
    assert!(!ok);
    assert!(err.contains("neither a board"), "{err}");
}

#[test]
fn good_file_with_manifest_and_farend_runs() {
    let d = tmpdir("good");
    let f = d.join("mix.wav");
    let fe = d.join("far.wav");
    write_wav(&f, 4, 16000, &noise(4, 8000)).unwrap();
    write_wav(&fe, 1, 16000, &noise(1, 8000)).unwrap();
    let man = d.join("manifest.json");
    std::fs::write(&man, r#"{"array": {"mic_positions_m": [[-0.032,0,0],[0,-0.032,0],[0.032,0,0],[0,0.032,0]]}}"#)
        .unwrap();
    let (o, c) = (d.join("o.wav"), d.join("doa.csv"));
    let (ok, err) = run(&["--in", p(&f), "--geometry", p(&man), "--farend", p(&fe), "--out", p(&o), "--doa", p(&c)]);
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(&c).unwrap();
    assert!(csv.starts_with("time_s,azimuth_deg\n"));
    assert_eq!(csv.lines().count(), 1 + 5);
    let out = huis_dsp::wav::read_wav(&o).unwrap();
    assert_eq!((out.channels, out.sample_rate, out.frames()), (1, 16000, 8000));
}
