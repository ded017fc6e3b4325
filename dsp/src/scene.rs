//! Scene generators on top of [`crate::roomsim`]: meeting-room mic-array scenes (one talker or
//! turn-taking) and echo scenes, written in the same file formats as the project's shared
//! evaluation scenes so the same scorers apply. Also used in-process by the tests.

use crate::DspError;
use crate::geometry::{self, Geometry, SPEED_OF_SOUND};
use crate::roomsim::{self, Rng, Room};
use crate::wav::write_wav;
use serde_json::json;
use std::path::Path;

pub const FS: f64 = 16000.0;

/// Arrays by short name: resp4, resp6, uma8, linear4 (4 mics, 4 cm, facing +y), or a board.
pub fn array_by_name(name: &str) -> Option<Geometry> {
    match name {
        "linear4" => Some(geometry::linear(4, 0.04, 90.0)),
        n => Geometry::for_board(n),
    }
}

pub struct Talker {
    pub pos: [f64; 3],
    pub azimuth_deg: f64,
    pub elevation_deg: f64,
    pub distance_m: f64,
    pub segments: Vec<(f64, f64)>,
}

pub struct Scene {
    pub name: String,
    pub geometry: Geometry,
    pub array_name: String,
    /// per mic
    pub mix: Vec<Vec<f32>>,
    pub ref_direct: Vec<f32>,
    /// per 100 ms block: (azimuth of the single active talker, talker index) or None
    pub truth: Vec<Option<(f64, usize)>>,
    pub talkers: Vec<Talker>,
    pub room: Room,
    pub centre: [f64; 3],
    pub snr_db: f64,
    pub noise: &'static str,
    pub switch: bool,
}

impl Scene {
    /// The mic signals interleaved (frame-major), as a capture device delivers them.
    pub fn interleaved(&self) -> Vec<f32> {
        roomsim::interleave(&self.mix)
    }
}

/// A room recording for the simulated board's mic array: a random meeting room with one talker
/// (8 s, or two taking turns over 16 s with `switch`), interleaved, 16 kHz, ±1 full scale.
pub fn sim_board_recording(g: &Geometry, switch: bool, seed: u64) -> Vec<f32> {
    random_scene(g, "sim", switch, seed).interleaved()
}

fn place_array(rng: &mut Rng, dims: [f64; 3]) -> [f64; 3] {
    [rng.range(1.3, dims[0] - 1.3), rng.range(1.3, dims[1] - 1.3), 0.75]
}

/// A source at a random azimuth (inside the array's search range), 0.9–2 m away, seated height.
fn place_source(rng: &mut Rng, g: &Geometry, dims: [f64; 3], c: [f64; 3], avoid: Option<f64>) -> [f64; 3] {
    let (start, span) = g.search_range();
    loop {
        let az = if span >= 359.0 { rng.range(0.0, 360.0) } else { start + rng.range(15.0, span - 15.0) };
        if let Some(a) = avoid {
            if crate::doa::ang_diff(az as f32, a as f32) < 40.0 {
                continue;
            }
        }
        let r = rng.range(0.9, 2.0);
        let p = [c[0] + r * az.to_radians().cos(), c[1] + r * az.to_radians().sin(), rng.range(1.1, 1.35)];
        if p[0] > 0.4 && p[0] < dims[0] - 0.4 && p[1] > 0.4 && p[1] < dims[1] - 0.4 {
            return p;
        }
    }
}

/// A random meeting-room scene for array `g`: room 4.5–7 × 4–6.5 × 2.6–3.1 m, RT60 0.2–0.6 s,
/// diffuse and/or point noise at 0–20 dB SNR, one talker (`switch` = false) or two taking turns.
pub fn random_scene(g: &Geometry, array_name: &str, switch: bool, seed: u64) -> Scene {
    let mut rng = Rng::new(seed);
    let dims = [rng.range(4.5, 7.0), rng.range(4.0, 6.5), rng.range(2.6, 3.1)];
    let rt60 = rng.range(0.2, 0.6);
    let room = Room::new(dims, rt60, FS);
    let centre = place_array(&mut rng, dims);
    let mics = roomsim::mics_in_room(g, centre);
    let m = g.n_mics();
    let n_talk = if switch { 2 } else { 1 };
    let mut talkers = Vec::new();
    let mut first_az = None;
    for _ in 0..n_talk {
        let pos = place_source(&mut rng, g, dims, centre, first_az);
        let (az, el, d) = roomsim::direction(centre, pos);
        first_az.get_or_insert(az);
        talkers.push(Talker { pos, azimuth_deg: az, elevation_deg: el, distance_m: d, segments: vec![] });
    }
    let dur = if switch { 16.0 } else { 8.0 };
    let n = (dur * FS) as usize;
    let mut dry: Vec<Vec<f32>> = vec![vec![0.0; n]; n_talk];
    if switch {
        let mut t = 0.5;
        let mut who = 0;
        while t < dur - 1.5 {
            let len = rng.range(1.8, 2.8).min(dur - 0.5 - t);
            let seg = roomsim::speech_like((len * FS) as usize, FS, &mut rng);
            let s0 = (t * FS) as usize;
            dry[who][s0..s0 + seg.len()].copy_from_slice(&seg);
            talkers[who].segments.push((t, t + len));
            t += len + rng.range(0.1, 0.3);
            who = 1 - who;
        }
    } else {
        let seg = roomsim::speech_like(((dur - 1.0) * FS) as usize, FS, &mut rng);
        dry[0][(0.5 * FS) as usize..(0.5 * FS) as usize + seg.len()].copy_from_slice(&seg);
        talkers[0].segments.push((0.5, dur - 0.5));
    }
    let rir_len = (rt60 * 1.2).min(0.8);
    let mut mix = vec![vec![0.0f32; n]; m];
    let mut ref_direct = vec![0.0f32; n];
    for (t, s) in talkers.iter().zip(&dry) {
        let img = room.render(s, t.pos, &mics, rir_len);
        for (o, i) in mix.iter_mut().zip(img) {
            o.iter_mut().zip(i).for_each(|(a, b)| *a += b);
        }
        let d = roomsim::fractional_delays(s, &[t.distance_m / SPEED_OF_SOUND], FS).remove(0);
        let g = 1.0 / (4.0 * std::f64::consts::PI * t.distance_m) as f32;
        ref_direct.iter_mut().zip(d).for_each(|(a, b)| *a += g * b);
    }
    // speech active level at mic 0 over the talk segments
    let mut act = 0.0f64;
    let mut cnt = 0usize;
    for t in &talkers {
        for &(a, b) in &t.segments {
            for i in (a * FS) as usize..((b * FS) as usize).min(n) {
                act += (mix[0][i] as f64).powi(2);
                cnt += 1;
            }
        }
    }
    let speech_pow = act / cnt.max(1) as f64 * 2.0; // segments include pauses
    let snr_db = rng.range(0.0, 20.0).round();
    let kind = (rng.uniform() * 3.0) as usize;
    let noise_name = ["diffuse", "point", "diffuse+point"][kind];
    let mut noise = vec![vec![0.0f32; n]; m];
    if kind != 1 {
        let d = roomsim::diffuse_noise(g, n, FS, 48, &mut rng);
        for (o, i) in noise.iter_mut().zip(d) {
            o.iter_mut().zip(i).for_each(|(a, b)| *a += b);
        }
    }
    if kind != 0 {
        let pos = place_source(&mut rng, g, dims, centre, first_az);
        let mut src = roomsim::pink_noise(n, &mut rng);
        roomsim::normalize_rms(&mut src, 1.0);
        let img = room.render(&src, pos, &mics, rir_len);
        let scale = 1.0 / roomsim::rms(&img[0]).max(1e-9);
        for (o, i) in noise.iter_mut().zip(img) {
            o.iter_mut().zip(i).for_each(|(a, b)| *a += b * scale);
        }
    }
    let np = (roomsim::rms(&noise[0]) as f64).powi(2);
    let ng = ((speech_pow / np) / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    let mut sensor = Rng::new(seed ^ 0xABCD);
    for (o, nz) in mix.iter_mut().zip(&noise) {
        for (a, b) in o.iter_mut().zip(nz) {
            *a += ng * b + (speech_pow.sqrt() * 1e-3 * sensor.normal()) as f32;
        }
    }
    let peak = mix.iter().flatten().fold(0.0f32, |a, v| a.max(v.abs()));
    let s = 0.5 / peak.max(1e-9);
    mix.iter_mut().flatten().for_each(|v| *v *= s);
    ref_direct.iter_mut().for_each(|v| *v *= s);
    // truth per 100 ms block from the dry signals' energy
    let blk = (0.1 * FS) as usize;
    let nblk = n / blk;
    let levels: Vec<f64> = dry
        .iter()
        .zip(&talkers)
        .map(|(d, t)| {
            let mut e = 0.0;
            let mut c = 0;
            for &(a, b) in &t.segments {
                for i in (a * FS) as usize..((b * FS) as usize).min(n) {
                    e += (d[i] as f64).powi(2);
                    c += 1;
                }
            }
            e / c.max(1) as f64
        })
        .collect();
    let truth = (0..nblk)
        .map(|b| {
            let mut active = vec![];
            for (ti, d) in dry.iter().enumerate() {
                let e: f64 = d[b * blk..(b + 1) * blk].iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / blk as f64;
                if e > levels[ti] * 0.03 {
                    active.push(ti);
                }
            }
            if active.len() == 1 { Some((talkers[active[0]].azimuth_deg, active[0])) } else { None }
        })
        .collect();
    Scene {
        name: format!("g{}_{}_{}", if switch { "t" } else { "s" }, array_name, seed),
        geometry: g.clone(),
        array_name: array_name.into(),
        mix,
        ref_direct,
        truth,
        talkers,
        room,
        centre,
        snr_db,
        noise: noise_name,
        switch,
    }
}

fn io<T>(p: &Path, r: std::io::Result<T>) -> Result<T, DspError> {
    r.map_err(|e| DspError::Io { path: p.display().to_string(), source: e })
}

fn array_json(g: &Geometry, name: &str, centre: [f64; 3]) -> serde_json::Value {
    let mut a = json!({
        "name": name,
        "mic_positions_m": g.mics,
        "centre_in_room_m": centre,
        "orientation": "array axes == room axes; azimuth 0 = +x, counter-clockwise",
    });
    if let Some(f) = g.front_azimuth_deg {
        a["front_azimuth_deg"] = json!(f);
    }
    a
}

/// Writes a scene folder: mix.wav, ref_direct.wav, truth_doa.csv, manifest.json.
pub fn write_scene(dir: &Path, s: &Scene) -> Result<(), DspError> {
    io(dir, std::fs::create_dir_all(dir))?;
    write_wav(&dir.join("mix.wav"), s.mix.len(), FS as u32, &roomsim::interleave(&s.mix))?;
    write_wav(&dir.join("ref_direct.wav"), 1, FS as u32, &s.ref_direct)?;
    let mut csv = String::from("block_start_s,azimuth_deg,talker\n");
    for (b, t) in s.truth.iter().enumerate() {
        match t {
            Some((az, k)) => csv.push_str(&format!("{:.1},{:.2},{}\n", b as f64 * 0.1, az, k)),
            None => csv.push_str(&format!("{:.1},nan,-1\n", b as f64 * 0.1)),
        }
    }
    let p = dir.join("truth_doa.csv");
    io(&p, std::fs::write(&p, csv))?;
    let talkers: Vec<_> = s
        .talkers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "azimuth_deg": (t.azimuth_deg * 100.0).round() / 100.0,
                   "elevation_deg": t.elevation_deg, "distance_m": t.distance_m,
                   "position_room_m": t.pos, "segments_s": t.segments.iter().map(|&(a,b)| [a,b]).collect::<Vec<_>>()})
        })
        .collect();
    let man = json!({
        "scene_id": dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| s.name.clone()),
        "kind": if s.switch { "switch" } else { "single" },
        "fs": FS as u32,
        "duration_s": s.mix[0].len() as f64 / FS,
        "n_mics": s.geometry.n_mics(),
        "doa_block_s": 0.1,
        "array": array_json(&s.geometry, &s.array_name, s.centre),
        "room": {"dims_m": s.room.dims, "rt60_target_s": s.room.rt60_s, "rt60_measured_s": s.room.rt60_s,
                 "rt60_measure": "Sabine target (huis-dsp roomsim)"},
        "talkers": talkers,
        "noise": {"type": s.noise, "snr_db": s.snr_db},
        "files": {"mix": "mix.wav", "ref": "ref_direct.wav"},
        "speech_source": "huis-dsp roomsim speech-like synthesis",
        "generator": "huis-dsp gen-scene",
    });
    let p = dir.join("manifest.json");
    io(&p, std::fs::write(&p, serde_json::to_string_pretty(&man).unwrap()))
}

pub struct EchoScene {
    pub geometry: Geometry,
    pub array_name: String,
    pub mics: Vec<Vec<f32>>,
    pub farend: Vec<f32>,
    pub nearend_ref: Vec<f32>,
    pub echo_mic0: Vec<f32>,
    pub delay_samples: usize,
    pub drive: f32,
    pub room: Room,
    pub centre: [f64; 3],
    pub speaker: [[f64; 3]; 2],
    pub nearend_pos: [f64; 3],
}

pub const ECHO_FE1: (f64, f64) = (0.0, 6.0);
pub const ECHO_DT: (f64, f64) = (6.0, 12.0);
pub const ECHO_NE: (f64, f64) = (12.0, 16.0);
pub const ECHO_FE2: (f64, f64) = (16.0, 22.0);
pub const ECHO_CHANGE_S: f64 = 19.0;

/// A random echo scene: loudspeaker under a screen on the y = 0 wall, the array on the table,
/// a near-end talker across it; timeline far end 0–6 s, double talk 6–12 s, near end 12–16 s,
/// far end 16–22 s, the loudspeaker moved 20 cm at 19 s. Pipeline delay 10–60 ms between the
/// reference and the capture; loudspeaker nonlinearity tanh(a x)/a with a random drive (0 on some).
pub fn random_echo_scene(g: &Geometry, array_name: &str, seed: u64) -> EchoScene {
    let mut rng = Rng::new(seed.wrapping_mul(7919) + 17);
    let dims = [rng.range(4.5, 7.0), rng.range(5.0, 7.0), rng.range(2.6, 3.0)];
    let rt60 = rng.range(0.2, 0.5);
    let room = Room::new(dims, rt60, FS);
    let centre = [rng.range(dims[0] / 2.0 - 0.5, dims[0] / 2.0 + 0.5), rng.range(1.3, 2.0), 0.75];
    let mics = roomsim::mics_in_room(g, centre);
    let spk_a = [centre[0] + rng.range(-0.3, 0.3), 0.1, rng.range(0.8, 1.0)];
    let ang = rng.range(0.0, std::f64::consts::PI);
    let spk_b = [spk_a[0] + 0.2 * ang.cos(), spk_a[1] + 0.2 * ang.sin().abs(), spk_a[2]];
    let ne_pos = [centre[0] + rng.range(-1.0, 1.0), centre[1] + rng.range(1.0, 1.6), rng.range(1.1, 1.3)];
    let dur = 22.25;
    let n = (dur * FS) as usize;
    let delay = (rng.range(0.010, 0.060) * FS) as usize;
    let drive = if rng.uniform() < 0.5 { 0.0 } else { rng.range(1.0, 2.0) as f32 };
    // far end talks in fe1, dt, fe2; near end in dt, ne
    let mut far = vec![0.0f32; n];
    let mut fe_src = roomsim::speech_like(n, FS, &mut rng);
    roomsim::normalize_rms(&mut fe_src, 0.12);
    let fs_ = |t: f64| (t * FS) as usize;
    for i in 0..fs_(ECHO_FE2.1).min(n) {
        if i < fs_(ECHO_DT.1) || i >= fs_(ECHO_FE2.0) {
            far[i] = fe_src[i];
        }
    }
    let peak = far.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    far.iter_mut().for_each(|v| *v *= 0.5 / peak.max(1e-9));
    let mut near = vec![0.0f32; n];
    let ne_src = roomsim::speech_like(fs_(ECHO_NE.1 - ECHO_DT.0), FS, &mut rng);
    near[fs_(ECHO_DT.0)..fs_(ECHO_DT.0) + ne_src.len()].copy_from_slice(&ne_src);
    // loudspeaker output, delayed by the pipeline
    let played = roomsim::soft_clip(&far, drive);
    let mut cap = vec![0.0f32; n];
    cap[delay..].copy_from_slice(&played[..n - delay]);
    let rl = (rt60 * 1.2).min(0.6);
    let ea = room.render(&cap, spk_a, &mics, rl);
    let eb = room.render(&cap, spk_b, &mics, rl);
    let ch = fs_(ECHO_CHANGE_S) + delay;
    let xf = fs_(0.02);
    let echo: Vec<Vec<f32>> = ea
        .iter()
        .zip(&eb)
        .map(|(a, b)| {
            (0..n)
                .map(|i| {
                    let w = if i < ch {
                        0.0
                    } else if i >= ch + xf {
                        1.0
                    } else {
                        0.5 - 0.5 * (std::f64::consts::PI * (i - ch) as f64 / xf as f64).cos() as f32 as f64
                    } as f32;
                    a[i] * (1.0 - w) + b[i] * w
                })
                .collect()
        })
        .collect();
    let near_img = room.render(&near, ne_pos, &mics, rl);
    let (_, _, dne) = roomsim::direction(centre, ne_pos);
    let mut nref = roomsim::fractional_delays(&near, &[dne / SPEED_OF_SOUND], FS).remove(0);
    let gne = 1.0 / (4.0 * std::f64::consts::PI * dne) as f32;
    nref.iter_mut().for_each(|v| *v *= gne);
    // levels: near-end to echo ratio -5..-15 dB (echo louder), noise 15-25 dB below near end
    let act = |x: &[f32], a: f64, b: f64| {
        let s = &x[fs_(a)..fs_(b).min(x.len())];
        (roomsim::rms(s) as f64).powi(2) * 2.0
    };
    let ser_db = rng.range(-15.0, -5.0);
    let pe = act(&echo[0], ECHO_FE1.0, ECHO_FE1.1);
    let pn = act(&near_img[0], ECHO_NE.0, ECHO_NE.1);
    let gn = ((pe / pn) * 10f64.powf(ser_db / 10.0)).sqrt() as f32;
    let snr_db = rng.range(15.0, 25.0);
    let noise = roomsim::diffuse_noise(g, n, FS, 48, &mut rng);
    let gnz = ((pn * (gn as f64).powi(2)) / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    let mut out: Vec<Vec<f32>> = (0..mics.len())
        .map(|c| (0..n).map(|i| echo[c][i] + gn * near_img[c][i] + gnz * noise[c][i]).collect())
        .collect();
    let peak = out.iter().flatten().fold(0.0f32, |a, v| a.max(v.abs()));
    let s = 0.8 / peak.max(1e-9);
    out.iter_mut().flatten().for_each(|v| *v *= s);
    nref.iter_mut().for_each(|v| *v *= gn * s);
    let echo0: Vec<f32> = echo[0].iter().map(|v| v * s).collect();
    EchoScene {
        geometry: g.clone(),
        array_name: array_name.into(),
        mics: out,
        farend: far,
        nearend_ref: nref,
        echo_mic0: echo0,
        delay_samples: delay,
        drive,
        room,
        centre,
        speaker: [spk_a, spk_b],
        nearend_pos: ne_pos,
    }
}

/// Writes an echo scene folder in the shared echo-scene format.
pub fn write_echo_scene(dir: &Path, s: &EchoScene) -> Result<(), DspError> {
    io(dir, std::fs::create_dir_all(dir))?;
    let fsu = FS as u32;
    write_wav(&dir.join("mics.wav"), s.mics.len(), fsu, &roomsim::interleave(&s.mics))?;
    write_wav(&dir.join("farend_ref.wav"), 1, fsu, &s.farend)?;
    write_wav(&dir.join("nearend_ref.wav"), 1, fsu, &s.nearend_ref)?;
    write_wav(&dir.join("echo_only_mic0.wav"), 1, fsu, &s.echo_mic0)?;
    let d = s.delay_samples;
    let seg = |name: &str, (a, b): (f64, f64)| {
        let (sa, sb) = ((a * FS) as usize + d, (b * FS) as usize + d);
        json!({"name": name, "start_s": sa as f64 / FS, "end_s": sb as f64 / FS, "start_sample": sa,
               "end_sample": sb, "ref_start_s": a, "ref_end_s": b})
    };
    let ch = (ECHO_CHANGE_S * FS) as usize + d;
    let segs = json!({
        "fs": fsu, "pipeline_delay_samples": d, "pipeline_delay_ms": d as f64 / FS * 1000.0,
        "segments": [seg("fe1", ECHO_FE1), seg("dt", ECHO_DT), seg("ne", ECHO_NE), seg("fe2", ECHO_FE2)],
        "echo_path_change_s": ch as f64 / FS, "echo_path_change_sample": ch, "echo_path_change_ref_s": ECHO_CHANGE_S,
        "duration_s": s.mics[0].len() as f64 / FS,
    });
    let p = dir.join("segments.json");
    io(&p, std::fs::write(&p, serde_json::to_string_pretty(&segs).unwrap()))?;
    let (aza, _, da) = roomsim::direction(s.centre, s.speaker[0]);
    let (azn, _, dn) = roomsim::direction(s.centre, s.nearend_pos);
    let mut nl = json!({"enabled": s.drive > 0.0});
    if s.drive > 0.0 {
        nl["drive"] = json!(s.drive);
    }
    let man = json!({
        "scene_id": dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
        "fs": fsu, "duration_s": s.mics[0].len() as f64 / FS, "n_mics": s.mics.len(),
        "array": array_json(&s.geometry, &s.array_name, s.centre),
        "room": {"dims_m": s.room.dims, "rt60_target_s": s.room.rt60_s, "rt60_measured_s": s.room.rt60_s},
        "loudspeaker": {"position_a_room_m": s.speaker[0], "position_b_room_m": s.speaker[1], "shift_m": 0.2,
                        "a_azimuth_deg": aza, "a_distance_m": da, "nonlinearity": nl},
        "delays": {"pipeline_delay_samples": d, "pipeline_delay_ms": d as f64 / FS * 1000.0},
        "nearend": {"position_room_m": s.nearend_pos, "azimuth_deg": azn, "distance_m": dn},
        "levels": {"ser_db": null, "snr_db": null, "enr_db_measured": null},
        "files": {"mics": "mics.wav", "farend_ref": "farend_ref.wav", "nearend_ref": "nearend_ref.wav",
                  "echo_only_mic0": "echo_only_mic0.wav", "segments": "segments.json"},
        "generator": "huis-dsp gen-echo-scene",
    });
    let p = dir.join("manifest.json");
    io(&p, std::fs::write(&p, serde_json::to_string_pretty(&man).unwrap()))
}
