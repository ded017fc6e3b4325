//! `huis-dsp`: runs the firmware's DSP frame by frame on files, for evaluation, and generates
//! test scenes with the built-in room simulator.

use clap::{Parser, Subcommand};
use huis_dsp::wav::{read_wav, write_wav};
use huis_dsp::{Config, DspError, Geometry, Processor, scene};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "huis-dsp", about = "huis room-audio DSP on files", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// multichannel capture (WAV, 16 kHz, one channel per mic)
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// board name or a scene's manifest.json
    #[arg(long)]
    geometry: Option<String>,
    /// loudspeaker signal (mono WAV, 16 kHz) for echo cancellation
    #[arg(long)]
    farend: Option<PathBuf>,
    /// where to write the talker azimuth per 100 ms block (time_s,azimuth_deg)
    #[arg(long)]
    doa: Option<PathBuf>,
    /// add each block's own DOA estimate before tracking to the --doa file (diagnosis):
    /// block_azimuth_deg,block_coherence,block_activity
    #[arg(long)]
    doa_blocks: bool,
    /// enhanced mono output
    #[arg(long)]
    out: Option<PathBuf>,
    /// stages to run, comma separated from aec,bf,ns,agc (default aec,bf,ns)
    #[arg(long, default_value = "aec,bf,ns")]
    stages: String,
    /// reverberation time assumed by the late-reverberation suppressor (s, 0 = off)
    #[arg(long)]
    rt60: Option<f32>,
    /// linear arrays: steer the DOA for an assumed talker elevation only, without the room
    /// model (bar and ceiling heights, floor and ceiling reflections)
    #[arg(long)]
    no_room_model: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a simulated mic-array scene (same file formats as the shared scenes)
    GenScene {
        #[arg(long)]
        out: PathBuf,
        /// resp4, resp6, uma8, linear4 or a board name
        #[arg(long, default_value = "resp6")]
        array: String,
        /// single or switch
        #[arg(long, default_value = "single")]
        kind: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Generate an echo scene (loudspeaker echo path, delay offset, nonlinearity, path change)
    GenEchoScene {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "resp4")]
        array: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Some(Cmd::GenScene { out, array, kind, seed }) => gen_scene(&out, &array, &kind, seed),
        Some(Cmd::GenEchoScene { out, array, seed }) => gen_echo(&out, &array, seed),
        None => run(&cli.run),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("huis-dsp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn array_by_name(name: &str) -> Result<Geometry, DspError> {
    scene::array_by_name(name).ok_or_else(|| {
        DspError::Geometry(format!(
            "unknown array {name:?}; use resp4, resp6, uma8, linear4 or one of {}",
            Geometry::BOARD_NAMES.join(", ")
        ))
    })
}

fn gen_scene(out: &Path, array: &str, kind: &str, seed: u64) -> Result<(), DspError> {
    let g = array_by_name(array)?;
    let switch = match kind {
        "single" => false,
        "switch" => true,
        k => {
            return Err(DspError::Config(format!("unknown scene kind {k:?}; use single or switch")));
        }
    };
    scene::write_scene(out, &scene::random_scene(&g, array, switch, seed))
}

fn gen_echo(out: &Path, array: &str, seed: u64) -> Result<(), DspError> {
    let g = array_by_name(array)?;
    scene::write_echo_scene(out, &scene::random_echo_scene(&g, array, seed))
}

fn load_geometry(spec: &str) -> Result<Geometry, DspError> {
    if let Some(g) = Geometry::for_board(spec) {
        return Ok(g);
    }
    let p = Path::new(spec);
    if p.exists() {
        let text = std::fs::read_to_string(p).map_err(|e| DspError::Io { path: spec.into(), source: e })?;
        return Geometry::from_manifest_json(&text)
            .map_err(|e| DspError::Input { path: spec.into(), msg: e.to_string() });
    }
    Err(DspError::Geometry(format!(
        "{spec:?} is neither a board ({}) nor a manifest.json file",
        Geometry::BOARD_NAMES.join(", ")
    )))
}

/// What the installer of a bar enters: its height above the floor and the ceiling's, read from
/// a scene manifest (`array.centre_in_room_m`, `room.dims_m`) when it has them; the talkers'
/// positions are never read.
fn install_heights(geom_spec: &str, room: &mut huis_dsp::doa::LinearRoom) {
    let Ok(text) = std::fs::read_to_string(geom_spec) else { return };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return };
    if let Some(h) = v.pointer("/array/centre_in_room_m/2").and_then(|h| h.as_f64()) {
        room.mount_height_m = h;
    }
    if let Some(h) = v.pointer("/room/dims_m/2").and_then(|h| h.as_f64()) {
        room.ceiling_height_m = h;
    }
}

fn run(a: &RunArgs) -> Result<(), DspError> {
    let input = a.input.as_ref().ok_or_else(|| DspError::Config("--in is required (or a subcommand)".into()))?;
    let geom_spec = a.geometry.as_ref().ok_or_else(|| DspError::Config("--geometry is required".into()))?;
    if a.out.is_none() && a.doa.is_none() {
        return Err(DspError::Config("nothing to write: give --out and/or --doa".into()));
    }
    let geometry = load_geometry(geom_spec)?;
    let mut cfg = Config::new(geometry);
    cfg.echo_cancellation = false;
    cfg.beamforming = false;
    cfg.noise_suppression = false;
    cfg.gain_control = false;
    for s in a.stages.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match s {
            "aec" => cfg.echo_cancellation = true,
            "bf" => cfg.beamforming = true,
            "ns" => cfg.noise_suppression = true,
            "agc" => cfg.gain_control = true,
            s => {
                return Err(DspError::Config(format!("unknown stage {s:?}; use aec, bf, ns, agc")));
            }
        }
    }
    if let Some(r) = a.rt60 {
        cfg.assumed_rt60_s = r;
    }
    if let Some(room) = cfg.linear_room.as_mut() {
        install_heights(geom_spec, room);
    }
    if a.no_room_model {
        cfg.linear_room = None;
    }
    let mix = read_wav(input)?;
    let m = cfg.geometry.n_mics();
    let ip = input.display().to_string();
    if mix.channels != m {
        return Err(DspError::Input {
            path: ip,
            msg: format!("{} channels, but the geometry {geom_spec:?} has {m} mics", mix.channels),
        });
    }
    if mix.sample_rate != cfg.sample_rate {
        return Err(DspError::Input {
            path: ip,
            msg: format!("sample rate {} Hz; the DSP runs at {} Hz (resample first)", mix.sample_rate, cfg.sample_rate),
        });
    }
    let farend = match &a.farend {
        Some(p) => {
            let f = read_wav(p)?;
            let fp = p.display().to_string();
            if f.channels != 1 {
                return Err(DspError::Input {
                    path: fp,
                    msg: format!("{} channels; the far end must be mono", f.channels),
                });
            }
            if f.sample_rate != cfg.sample_rate {
                return Err(DspError::Input {
                    path: fp,
                    msg: format!("sample rate {} Hz; expected {} Hz", f.sample_rate, cfg.sample_rate),
                });
            }
            Some(f.samples)
        }
        None => None,
    };
    let mut p = Processor::new(&cfg)?;
    let hop = p.frame_len();
    let frames = mix.frames() / hop;
    let mut out = vec![0.0f32; frames * hop];
    let mut fe_frame = vec![0.0f32; hop];
    let mut doa_rows = Vec::new();
    let block_frames = 10; // score blocks are 100 ms
    for f in 0..frames {
        let mics = &mix.samples[f * hop * m..(f + 1) * hop * m];
        let fe: &[f32] = match &farend {
            Some(x) => {
                for i in 0..hop {
                    fe_frame[i] = x.get(f * hop + i).copied().unwrap_or(0.0);
                }
                &fe_frame
            }
            None => &[],
        };
        let rep = p.process(mics, fe, &mut out[f * hop..(f + 1) * hop]);
        if (f + 1) % block_frames == 0 {
            doa_rows.push((
                (f + 1 - block_frames) as f64 * hop as f64 / cfg.sample_rate as f64,
                rep.talker_azimuth_deg,
                rep.doa_block,
            ));
        }
    }
    if let Some(path) = &a.doa {
        let mut s = String::from("time_s,azimuth_deg");
        s.push_str(if a.doa_blocks { ",block_azimuth_deg,block_coherence,block_activity\n" } else { "\n" });
        for (t, az, blk) in doa_rows {
            match az {
                Some(az) => s.push_str(&format!("{t:.1},{az:.2}")),
                None => s.push_str(&format!("{t:.1},nan")),
            }
            match blk {
                _ if !a.doa_blocks => s.push('\n'),
                Some((ba, bc, bact)) => s.push_str(&format!(",{ba:.2},{bc:.3},{bact:.3}\n")),
                None => s.push_str(",nan,nan,nan\n"),
            }
        }
        let mut f =
            std::fs::File::create(path).map_err(|e| DspError::Io { path: path.display().to_string(), source: e })?;
        f.write_all(s.as_bytes()).map_err(|e| DspError::Io { path: path.display().to_string(), source: e })?;
    }
    if let Some(path) = &a.out {
        write_wav(path, 1, cfg.sample_rate, &out)?;
    }
    Ok(())
}
