//! huisctl: the room's command-line client. A thin D-Bus client of huisd,
//! never a second way into its insides.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use huis_firmware::dbus::BUS_NAME;
use huis_firmware::dbus::client::{Audio1Proxy, Call1Proxy, Config1Proxy, Room1Proxy, Update1Proxy, Video1Proxy};
use serde_json::{Value as Json, json};

#[derive(Parser)]
#[command(name = "huisctl", version, about = "Control and inspect the huis room daemon")]
struct Cli {
    /// Talk to huisd on the session bus (development, tests) instead of the system bus.
    #[arg(long, global = true)]
    session: bool,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the room's state, audio and video.
    Status,
    /// Read or change the configuration (validated by huisd).
    Config {
        #[command(subcommand)]
        op: ConfigOp,
    },
    /// Mute or unmute the microphones.
    Mute { state: OnOff },
    /// Press a room button as a person would.
    PressButton { button: ButtonName },
    /// Dial a destination (sip:user@host).
    Dial { uri: String },
    /// Answer the incoming call.
    Answer,
    /// Send DTMF digits in the current call (0-9 * # A-D; `,` pauses a second).
    Dtmf { digits: String },
    /// Put the current call on hold.
    Hold,
    /// Take the current call off hold.
    Resume,
    /// Start or stop video in the current call (`on` / `off`): a new offer to the far end.
    CallVideo { state: OnOff },
    /// List the calls in progress.
    Calls,
    /// End the call.
    Hangup,
    /// Print state changes as they happen (Ctrl-C to stop).
    Watch,
    /// Show the video of the current (or last) call: encoder, sizes, frames, keyframes, bitrate.
    Video,
    /// The presentation: share the laptop on the HDMI input, stop, or (simulated board) plug
    /// and unplug it; `status` shows who holds the floor and the content's mode.
    Share { op: ShareOp },
    /// Save what the screen shows now as a PNG file.
    Screenshot { file: std::path::PathBuf },
    /// Install an update bundle (a path or an http(s) URL) into the other
    /// slot, printing progress until it is done; or show the slots.
    Update {
        /// The .raucb bundle: a local path or an http:// or https:// URL.
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        source: Option<String>,
        /// Show the running slot, each slot's version and state instead.
        #[arg(long)]
        status: bool,
    },
}

#[derive(Subcommand)]
enum ConfigOp {
    /// Print one key (section.key), a section, or everything.
    Get { key: Option<String> },
    /// Set one key; the value is TOML (true, 42, "text", ["opus","pcmu"]) or a bare word.
    Set { key: String, value: String },
    /// List the settable keys.
    Keys,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShareOp {
    Start,
    Stop,
    Plug,
    Unplug,
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
enum ButtonName {
    Call,
    Mute,
}

/// Exit status when huisd cannot be reached.
const EXIT_NOT_RUNNING: u8 = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Behave like other Unix tools when piped into `head`: end quietly.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let bus = if cli.session { "session" } else { "system" };
    let conn = match if cli.session { zbus::Connection::session().await } else { zbus::Connection::system().await } {
        Ok(c) => c,
        Err(e) => {
            eprintln!("huisctl: cannot reach the {bus} bus: {e}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    match running(&conn).await {
        Ok(true) => {}
        Ok(false) => {
            let hint =
                if cli.session { "start it with `huisd --session`" } else { "start it with `systemctl start huisd`" };
            eprintln!("huisctl: huisd is not running (nobody owns {BUS_NAME} on the {bus} bus); {hint}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
        Err(e) => {
            eprintln!("huisctl: cannot ask the {bus} bus whether huisd runs: {e}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    }
    match run(&cli, &conn).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("huisctl: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn running(conn: &zbus::Connection) -> zbus::Result<bool> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    Ok(dbus.name_has_owner(BUS_NAME.try_into().expect("valid bus name")).await?)
}

/// A D-Bus error, as a person should read it: huisd's own message, not the
/// error plumbing around it.
fn explain(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            let msg = msg.as_deref().unwrap_or("");
            match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied" => {
                    "permission denied: changing the room needs root or membership of the group huis-admin".into()
                }
                "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    "huisd stopped while the request was on its way".into()
                }
                _ if !msg.is_empty() => msg.to_owned(),
                other => other.to_owned(),
            }
        }
        zbus::Error::FDO(fdo) => match &**fdo {
            zbus::fdo::Error::InvalidArgs(m) | zbus::fdo::Error::Failed(m) => m.clone(),
            zbus::fdo::Error::AccessDenied(_) => {
                "permission denied: changing the room needs root or membership of the group huis-admin".into()
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

async fn run(cli: &Cli, conn: &zbus::Connection) -> zbus::Result<()> {
    // One-shot commands read a property at most once: caching them all
    // first (GetAll plus a match rule) would only add round trips.
    let room = Room1Proxy::builder(conn).cache_properties(zbus::proxy::CacheProperties::No).build().await?;
    match &cli.cmd {
        Cmd::Status => status(cli.json, conn).await,
        Cmd::Config { op } => {
            let cfg = Config1Proxy::new(conn).await?;
            match op {
                ConfigOp::Get { key } => {
                    let v = cfg.get(key.as_deref().unwrap_or("")).await?;
                    if cli.json {
                        let parsed: Result<toml::Value, _> = match key {
                            Some(k) if !v.contains('\n') => {
                                format!("v = {v}").parse::<toml::Table>().map(|t| t["v"].clone()).map_err(drop).map(
                                    |v| {
                                        let _ = k;
                                        v
                                    },
                                )
                            }
                            _ => v.parse::<toml::Table>().map(toml::Value::Table).map_err(drop),
                        };
                        let j = parsed.ok().and_then(|t| serde_json::to_value(t).ok()).unwrap_or(Json::String(v));
                        println!("{}", serde_json::to_string_pretty(&j).unwrap());
                    } else {
                        println!("{}", v.trim_end());
                    }
                    Ok(())
                }
                ConfigOp::Set { key, value } => {
                    cfg.set(key, value).await?;
                    let now = cfg.get(key).await?;
                    if cli.json {
                        println!("{}", json!({"key": key, "value": now}));
                    } else {
                        println!("{key} = {now}");
                    }
                    Ok(())
                }
                ConfigOp::Keys => {
                    let keys = cfg.keys().await?;
                    if cli.json {
                        println!("{}", serde_json::to_string_pretty(&keys).unwrap());
                    } else {
                        keys.iter().for_each(|k| println!("{k}"));
                    }
                    Ok(())
                }
            }
        }
        Cmd::Mute { state } => {
            let m = matches!(state, OnOff::On);
            room.set_muted(m).await?;
            print_done(cli.json, json!({"muted": room.muted().await?}), if m { "muted" } else { "unmuted" });
            Ok(())
        }
        Cmd::PressButton { button } => {
            let b = match button {
                ButtonName::Call => "call",
                ButtonName::Mute => "mute",
            };
            room.press_button(b).await?;
            print_done(cli.json, json!({"pressed": b}), &format!("pressed {b}"));
            Ok(())
        }
        Cmd::Share { op } => {
            match op {
                ShareOp::Start => room.start_presentation().await?,
                ShareOp::Stop => room.stop_presentation().await?,
                ShareOp::Plug => room.simulate_content_input(true).await?,
                ShareOp::Unplug => room.simulate_content_input(false).await?,
                ShareOp::Status => {}
            }
            let input = room.content_input().await?;
            let presentation = room.presentation().await?;
            let holder = room.presentation_holder().await?;
            let (w, h, fps) = room.content_mode().await?;
            if cli.json {
                println!(
                    "{}",
                    json!({"input": input, "presentation": presentation, "holder": holder,
                           "width": w, "height": h, "framerate": fps})
                );
            } else {
                println!("input:        {input}");
                println!("presentation: {presentation}");
                println!("floor holder: {}", if holder.is_empty() { "nobody" } else { holder.as_str() });
                if w > 0 {
                    println!("content:      {w}x{h} at {fps} fps");
                }
            }
            Ok(())
        }
        Cmd::Dial { uri } => {
            room.dial(uri, Default::default()).await?;
            print_done(cli.json, json!({"dialing": uri}), &format!("dialing {uri}"));
            Ok(())
        }
        Cmd::Answer => {
            room.answer().await?;
            print_done(cli.json, json!({"answered": true}), "answered");
            Ok(())
        }
        Cmd::Hangup => {
            room.hangup().await?;
            print_done(cli.json, json!({"hung_up": true}), "hung up");
            Ok(())
        }
        Cmd::Dtmf { digits } => {
            current_call(conn).await?.send_dtmf(digits).await?;
            print_done(cli.json, json!({"dtmf": digits}), &format!("sent {digits}"));
            Ok(())
        }
        Cmd::Hold => {
            current_call(conn).await?.hold().await?;
            print_done(cli.json, json!({"held": true}), "on hold");
            Ok(())
        }
        Cmd::CallVideo { state } => {
            let call = current_call(conn).await?;
            match state {
                OnOff::On => call.start_video().await?,
                OnOff::Off => call.stop_video().await?,
            }
            let on = matches!(state, OnOff::On);
            print_done(cli.json, json!({"video": on}), if on { "video on" } else { "video off" });
            Ok(())
        }
        Cmd::Resume => {
            current_call(conn).await?.resume().await?;
            print_done(cli.json, json!({"held": false}), "resumed");
            Ok(())
        }
        Cmd::Calls => calls(cli.json, conn).await,
        Cmd::Watch => watch(cli.json, conn).await,
        Cmd::Video => {
            let v = Video1Proxy::new(conn).await?;
            let stats = v.stats().await?;
            let mut keys: Vec<_> = stats.keys().cloned().collect();
            keys.sort();
            if cli.json {
                let m: serde_json::Map<String, Json> = keys.iter().map(|k| (k.clone(), json!(stats[k]))).collect();
                println!("{}", json!({"encoder": v.encoder().await?, "camera": v.camera().await?, "stats": m}));
            } else {
                println!("encoder: {}  camera: {}", v.encoder().await?, v.camera().await?);
                for k in keys {
                    println!("{k}: {}", stats[&k]);
                }
            }
            Ok(())
        }
        Cmd::Screenshot { file } => {
            let png = Video1Proxy::new(conn).await?.screenshot().await?;
            if let Err(e) = std::fs::write(file.as_path(), &png) {
                eprintln!("huisctl: cannot write {}: {e}", file.display());
                std::process::exit(1);
            }
            print_done(
                cli.json,
                json!({"file": file.display().to_string(), "bytes": png.len()}),
                &format!("saved {}", file.display()),
            );
            Ok(())
        }
        Cmd::Update { status: true, .. } => update_status(cli.json, conn).await,
        Cmd::Update { source, .. } => update(cli.json, conn, source.as_deref().unwrap_or("")).await,
    }
}

fn failed(msg: String) -> zbus::Error {
    zbus::Error::FDO(Box::new(zbus::fdo::Error::Failed(msg)))
}

/// The source as huisd must see it: URLs as given, paths absolute and checked
/// here first, in the caller's view of the file system.
fn update_source(source: &str) -> zbus::Result<String> {
    if source.contains("://") {
        return Ok(source.to_owned());
    }
    let p = std::path::Path::new(source);
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().map_err(|e| failed(format!("update bundle {source}: {e}")))?.join(p)
    };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_file() => Ok(abs.to_string_lossy().into_owned()),
        Ok(_) => Err(failed(format!("update bundle {}: not a regular file", abs.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(failed(format!("update bundle {}: no such file", abs.display())))
        }
        Err(e) => Err(failed(format!("update bundle {}: {e}", abs.display()))),
    }
}

async fn update(json: bool, conn: &zbus::Connection, source: &str) -> zbus::Result<()> {
    let source = update_source(source)?;
    let up = Update1Proxy::new(conn).await?;
    // Listen before asking, so neither progress nor the end can be missed.
    let mut progress = up.receive_progress_changed().await;
    let mut completed = up.receive_completed().await?;
    let mut owner = zbus::fdo::DBusProxy::new(conn).await?.receive_name_owner_changed().await?;
    // A property stream starts with the current value: the last install's.
    let mut last = up.progress().await.unwrap_or_default();
    up.install(&source).await?;
    if !json {
        println!("installing {source}");
    }
    loop {
        tokio::select! {
            Some(p) = progress.next() => {
                if let Ok((pct, msg)) = p.get().await {
                    if (pct, msg.as_str()) != (last.0, last.1.as_str()) && !msg.is_empty() {
                        if json {
                            println!("{}", json!({"progress": pct, "message": msg}));
                        } else {
                            println!("{pct:>3}% {msg}");
                        }
                        last = (pct, msg);
                    }
                }
            }
            Some(c) = completed.next() => {
                let a = c.args()?;
                let (result, message) = (a.result, a.message.to_string());
                if json {
                    println!("{}", json!({"result": result, "message": message}));
                } else if result == 0 {
                    println!("{message}");
                }
                return if result == 0 { Ok(()) } else { Err(failed(format!("update failed: {}", message))) };
            }
            Some(o) = owner.next() => {
                if let Ok(a) = o.args() {
                    if a.name.as_str() == BUS_NAME && a.new_owner.is_none() {
                        return Err(failed("huisd stopped before the update completed".into()));
                    }
                }
            }
        }
    }
}

async fn update_status(json: bool, conn: &zbus::Connection) -> zbus::Result<()> {
    let up = Update1Proxy::new(conn).await?;
    let room = Room1Proxy::new(conn).await?;
    let slots = up.slots().await?;
    let (pct, msg) = up.progress().await?;
    let s = json!({
        "version": room.version().await?,
        "boot_slot": up.boot_slot().await?,
        "compatible": up.compatible().await?,
        "operation": up.operation().await?,
        "progress": {"percent": pct, "message": msg},
        "last_error": up.last_error().await?,
        "slots": slots.iter().map(|(b, st, bs, v)| json!({"slot": b, "state": st, "boot_status": bs, "version": v})).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
        return Ok(());
    }
    let boot = s["boot_slot"].as_str().unwrap_or("");
    println!("Version     {}", s["version"].as_str().unwrap_or(""));
    println!("Running     {}", if boot.is_empty() { "no A/B slots (RAUC is not available)" } else { boot });
    if !slots.is_empty() {
        println!("Compatible  {}", s["compatible"].as_str().unwrap_or(""));
    }
    for (b, st, bs, v) in &slots {
        println!("Slot {b}      {}, {bs}, {st}", if v.is_empty() { "version unknown" } else { v });
    }
    println!("Update      {}", s["operation"].as_str().unwrap_or(""));
    let err = s["last_error"].as_str().unwrap_or("");
    println!("Last error  {}", if err.is_empty() { "none" } else { err });
    Ok(())
}

/// Paths of the calls in progress, oldest first.
async fn call_paths(conn: &zbus::Connection) -> zbus::Result<Vec<zbus::OwnedObjectPath>> {
    let om = zbus::fdo::ObjectManagerProxy::builder(conn).destination(BUS_NAME).path("/org/huis/Room1").build().await?;
    let mut paths: Vec<_> = om
        .get_managed_objects()
        .await?
        .into_iter()
        .filter(|(_, ifaces)| ifaces.keys().any(|i| i.as_str() == "org.huis.Call1"))
        .map(|(p, _)| p)
        .collect();
    paths.sort_by_key(|p| p.as_str().rsplit('/').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0));
    Ok(paths)
}

async fn current_call(conn: &zbus::Connection) -> zbus::Result<Call1Proxy<'static>> {
    let paths = call_paths(conn).await?;
    let p = paths
        .into_iter()
        .next()
        .ok_or_else(|| zbus::Error::FDO(Box::new(zbus::fdo::Error::Failed("the room is not in a call".into()))))?;
    Call1Proxy::builder(conn).path(p).build().await
}

async fn calls(json: bool, conn: &zbus::Connection) -> zbus::Result<()> {
    let mut out = Vec::new();
    for p in call_paths(conn).await? {
        let c = Call1Proxy::builder(conn).path(p.clone()).build().await?;
        let stats: serde_json::Map<String, Json> =
            c.stats().await?.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
        out.push(json!({
            "path": p.as_str(),
            "remote_uri": c.remote_uri().await?,
            "direction": c.direction().await?,
            "state": c.state().await?,
            "protocol": c.protocol().await?,
            "encrypted": c.encrypted().await?,
            "media_encryption": c.media_encryption().await?,
            "audio_codec": c.audio_codec().await?,
            "video_codec": c.video_codec().await?,
            "presentation": c.presentation().await?,
            "content_mode": c.content_mode().await?,
            "stats": stats,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    } else if out.is_empty() {
        println!("no calls");
    } else {
        for c in &out {
            println!(
                "{}  {} {} ({}), {} {} (media: {}), {}  sent {} received {} lost {}, presentation {}",
                c["path"].as_str().unwrap_or(""),
                c["direction"].as_str().unwrap_or(""),
                c["remote_uri"].as_str().unwrap_or(""),
                c["state"].as_str().unwrap_or(""),
                c["protocol"].as_str().unwrap_or(""),
                if c["encrypted"].as_bool() == Some(true) { "encrypted" } else { "not encrypted" },
                c["media_encryption"].as_str().unwrap_or(""),
                c["audio_codec"].as_str().unwrap_or(""),
                c["stats"]["packets_sent"],
                c["stats"]["packets_received"],
                c["stats"]["packets_lost"],
                c["presentation"].as_str().unwrap_or(""),
            );
        }
    }
    Ok(())
}

fn print_done(json: bool, j: Json, text: &str) {
    if json {
        println!("{j}");
    } else {
        println!("{text}");
    }
}

async fn status(json: bool, conn: &zbus::Connection) -> zbus::Result<()> {
    let room = Room1Proxy::new(conn).await?;
    let audio = Audio1Proxy::new(conn).await?;
    let video = Video1Proxy::new(conn).await?;
    let update = Update1Proxy::new(conn).await?;
    let s = json!({
        "update": {
            "boot_slot": update.boot_slot().await.unwrap_or_default(),
            "operation": update.operation().await.unwrap_or_default(),
        },
        "room": room.room_name().await?,
        "state": room.state().await?,
        "board": room.board().await?,
        "version": room.version().await?,
        "muted": room.muted().await?,
        "leds": room.leds().await?,
        "last_error": room.last_error().await?,
        "sip_uri": room.sip_uri().await?,
        "registration": room.registration().await?,
        "audio": {
            "input_level_dbfs": audio.input_level().await?,
            "output_level_dbfs": audio.output_level().await?,
            "talker_active": audio.talker_active().await?,
            "talker_azimuth_deg": audio.talker_azimuth().await?,
            "echo_cancellation": audio.echo_cancellation().await?,
            "beamforming": audio.beamforming().await?,
            "noise_suppression": audio.noise_suppression().await?,
            "gain_control": audio.gain_control().await?,
            "output_volume": audio.output_volume().await?,
        },
        "video": {
            "camera": video.camera().await?,
            "encoder": video.encoder().await?,
            "encoder_hardware": video.encoder_hardware().await?,
            "width": video.width().await?,
            "height": video.height().await?,
            "framerate": video.framerate().await?,
            "self_view": video.self_view().await?,
        },
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap());
        return Ok(());
    }
    let yes = |b: &Json| {
        if b.as_bool() == Some(true) { "on" } else { "off" }
    };
    let a = &s["audio"];
    let v = &s["video"];
    let talker = if a["talker_active"].as_bool() == Some(true) {
        format!("{:.0}°", a["talker_azimuth_deg"].as_f64().unwrap_or(0.0))
    } else {
        "nobody talking".into()
    };
    println!("Room        {}", s["room"].as_str().unwrap_or(""));
    println!("State       {}", s["state"].as_str().unwrap_or(""));
    println!("Muted       {}", if s["muted"].as_bool() == Some(true) { "yes" } else { "no" });
    println!("LEDs        {}", s["leds"].as_str().unwrap_or(""));
    println!("Call me at  {}", s["sip_uri"].as_str().unwrap_or(""));
    println!("Registered  {}", s["registration"].as_str().unwrap_or(""));
    println!("Board       {}", s["board"].as_str().unwrap_or(""));
    println!("Version     {}", s["version"].as_str().unwrap_or(""));
    if let Some(slot) = s["update"]["boot_slot"].as_str().filter(|b| !b.is_empty()) {
        println!("Slot        {slot} (huisctl update --status shows both)");
    }
    let err = s["last_error"].as_str().unwrap_or("");
    println!("Last error  {}", if err.is_empty() { "none" } else { err });
    println!(
        "Audio       in {:.1} dBFS, out {:.1} dBFS, talker {talker}, volume {}%",
        a["input_level_dbfs"].as_f64().unwrap_or(-120.0),
        a["output_level_dbfs"].as_f64().unwrap_or(-120.0),
        a["output_volume"]
    );
    println!(
        "            echo cancellation {}, beamforming {}, noise suppression {}, gain control {}",
        yes(&a["echo_cancellation"]),
        yes(&a["beamforming"]),
        yes(&a["noise_suppression"]),
        yes(&a["gain_control"])
    );
    let enc = v["encoder"].as_str().unwrap_or("");
    println!(
        "Video       {}x{}@{} from {}, encoder {}",
        v["width"],
        v["height"],
        v["framerate"],
        v["camera"].as_str().unwrap_or(""),
        if enc.is_empty() {
            "none usable".to_string()
        } else {
            format!("{enc} ({})", if v["encoder_hardware"].as_bool() == Some(true) { "hardware" } else { "software" })
        }
    );
    Ok(())
}

/// Converts a D-Bus value to JSON for `watch --json`.
fn to_json(v: &zbus::Variant<'_>) -> Json {
    use zbus::Variant as V;
    match v {
        V::Bool(b) => json!(b),
        V::U8(n) => json!(n),
        V::I16(n) => json!(n),
        V::U16(n) => json!(n),
        V::I32(n) => json!(n),
        V::U32(n) => json!(n),
        V::I64(n) => json!(n),
        V::U64(n) => json!(n),
        V::F64(n) => json!(n),
        V::Str(s) => json!(s.as_str()),
        V::ObjectPath(p) => json!(p.as_str()),
        V::Variant(inner) => to_json(inner),
        V::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        V::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        V::Dict(d) => {
            let mut m = serde_json::Map::new();
            for (k, v) in d.iter() {
                let key = match k {
                    V::Str(s) => s.as_str().to_owned(),
                    other => format!("{other}"),
                };
                m.insert(key, to_json(v));
            }
            Json::Object(m)
        }
        other => json!(format!("{other}")),
    }
}

async fn watch(json: bool, conn: &zbus::Connection) -> zbus::Result<()> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(BUS_NAME)
        .path_namespace("/org/huis")
        .build()?;
    let mut stream = zbus::MessageStream::for_match_rule(rule, conn, std::num::NonZeroUsize::new(64)).await?;
    if !json {
        eprintln!("watching {BUS_NAME}; Ctrl-C to stop");
    }
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        let h = msg.header();
        let path = h.path().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let member = h.member().map(|m| m.as_str().to_owned()).unwrap_or_default();
        let object = path.rsplit('/').next().unwrap_or("").to_owned();
        if member == "PropertiesChanged" {
            let body = msg.body();
            let Ok((iface, changed, _inv)) =
                body.deserialize::<(String, std::collections::HashMap<String, zbus::Variant<'_>>, Vec<String>)>()
            else {
                continue;
            };
            let short = iface.trim_start_matches("org.huis.").to_owned();
            let mut keys: Vec<_> = changed.keys().cloned().collect();
            keys.sort();
            for k in keys {
                let v = to_json(&changed[&k]);
                if json {
                    println!("{}", json!({"path": path, "interface": iface, "property": k, "value": v}));
                } else {
                    println!("{short}.{k} = {v}");
                }
            }
        } else {
            let iface = h.interface().map(|i| i.as_str().to_owned()).unwrap_or_default();
            let body = msg.body();
            let args: Json = body
                .deserialize::<zbus::Structure<'_>>()
                .map(|s| Json::Array(s.fields().iter().map(to_json).collect()))
                .unwrap_or(Json::Array(vec![]));
            if json {
                println!("{}", json!({"path": path, "interface": iface, "signal": member, "args": args}));
            } else {
                println!("{object}: {member} {args}");
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
