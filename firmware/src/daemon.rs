//! huisd's start-up and shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::mpsc;

use crate::VERSION;
use crate::audio::{CallAudioSlot, Controls, Engine};
use crate::call::CallIds;
use crate::config::{self, Config};
use crate::dbus::iface::{Audio1, Config1, Room1, RoomLink, Update1, Video1};
use crate::dbus::{AUDIO_PATH, BUS_NAME, CONFIG_PATH, ROOM_PATH, VIDEO_PATH};
use crate::room::{Command, Room};
use crate::status::{AudioStatus, Feed, RoomStatus, VideoStatus};

/// huisd: the meeting-room appliance daemon.
#[derive(Parser, Debug)]
#[command(name = "huisd", version = VERSION)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Directory for state (recordings on the sim board, call history).
    #[arg(long, default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Board descriptor name or path; overrides the configuration and detection.
    #[arg(long)]
    pub board: Option<String>,
    /// Use the session bus instead of the system bus (development and tests).
    #[arg(long)]
    pub session: bool,
    /// Render the simulated mic array's default room recording into this
    /// state directory for the board (`--board`) and exit. Image builds use
    /// it: under emulation the rendering takes minutes, longer than
    /// systemd waits for huisd to start.
    #[arg(long, value_name = "STATE_DIR")]
    pub render_sim_recording: Option<PathBuf>,
}

/// Exit status for a configuration that cannot be used (sysexits EX_CONFIG);
/// the systemd unit does not restart on it.
pub const EXIT_CONFIG: i32 = 78;

fn init_logging(level: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},zbus=warn")));
    // Under systemd, stderr is already the journal (JOURNAL_STREAM is set);
    // logging natively keeps levels and fields as journal metadata.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(j) = tracing_journald::layer() {
            tracing_subscriber::registry().with(filter).with(crate::logring::LogRing).with(j).init();
            return;
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(crate::logring::LogRing)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

/// Runs huisd to completion; returns the process exit status.
pub fn main() -> i32 {
    crate::media::glib_slices_from_malloc();
    crate::media::tune_malloc();
    let args = Args::parse();
    if let Some(dir) = &args.render_sim_recording {
        let board = match huis_board::resolve(args.board.as_deref(), None, std::path::Path::new("/")) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("huisd: {e}");
                return EXIT_CONFIG;
            }
        };
        return match crate::hardware::render_sim_recording(&board, dir) {
            Ok(p) => {
                println!("{}", p.display());
                0
            }
            Err(e) => {
                eprintln!("huisd: {e}");
                1
            }
        };
    }
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("huisd: configuration refused: {e}");
            return EXIT_CONFIG;
        }
    };
    init_logging(&cfg.log.level);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("huisd: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args, cfg)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("huisd: {e:#}");
            1
        }
    }
}

async fn run(args: Args, cfg: Config) -> anyhow::Result<()> {
    let board_from_cfg = (!cfg.room.board.is_empty()).then_some(cfg.room.board.as_str());
    let board = match huis_board::resolve(args.board.as_deref(), board_from_cfg, std::path::Path::new("/")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("huisd: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    tracing::info!(version = VERSION, board = %board.name, config = %args.config.display(), "huisd starting");
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| anyhow::anyhow!("state directory {}: {e}", args.state_dir.display()))?;

    let mut hw = crate::hardware::open(&board, &cfg, &args.state_dir);
    let (tx, rx) = mpsc::channel::<Command>(64);

    let btx = tx.clone();
    hw.start_buttons(Arc::new(move |p| {
        // Called from a backend thread or from the room task itself; never block.
        let _ = btx.try_send(Command::Button(p));
    }));

    let controls = Arc::new(Controls::new(&cfg.audio));
    let call_audio: CallAudioSlot = Default::default();
    let dsp = match crate::hardware::dsp_for(&board, &cfg) {
        Ok(p) => Some(p),
        Err(e) => {
            hw.problems.push(format!("room audio processing is off: {e}"));
            None
        }
    };
    let mut engine = match (hw.mic.take(), hw.out.take()) {
        (Some(mic), Some(out)) => {
            match Engine::start(mic, out, board.mic_array.channels.clone(), controls.clone(), call_audio.clone(), dsp) {
                Ok(e) => Some(e),
                Err(e) => {
                    hw.problems.push(format!("cannot start the audio thread: {e}"));
                    None
                }
            }
        }
        _ => None,
    };
    for p in &hw.problems {
        tracing::warn!("{p}");
    }

    let probes = huis_hal::encoder::probe(&board.encoders).unwrap_or_else(|e| {
        hw.problems.push(format!("encoder probing: {e}"));
        Vec::new()
    });
    let picked = huis_hal::encoder::pick(&probes).cloned();
    if let Some(p) = &picked {
        tracing::info!(encoder = %p.element, hardware = p.hardware, "H.264 encoder");
    } else {
        hw.problems.push("no usable H.264 encoder (install gstreamer1.0-plugins-ugly for x264enc)".into());
    }
    let camera = match hw.camera.info() {
        Ok(i) => format!("{} ({})", i.card, i.device),
        Err(e) => format!("unavailable: {e}"),
    };

    // The calls' signalling backends start before anything is published, so that a backend that
    // cannot start is the first problem shown.
    let ids = CallIds::default();
    let (events_tx, events_rx) = mpsc::channel::<crate::call::Event>(64);
    // Video in calls needs a camera that answers and an encoder.
    let video_setup = match (&picked, hw.camera.info()) {
        (Some(enc), Ok(_)) if cfg.video.enable => Some(crate::proto::sip::VideoSetup {
            // The sim camera renders at the size we send; a real one captures in its own mode
            // and the call's pipeline scales.
            source: if board.camera.backend == huis_board::Backend::Sim {
                hw.camera.gst_source(cfg.video.width, cfg.video.height, cfg.video.framerate)
            } else {
                hw.camera.gst_source(board.camera.width, board.camera.height, board.camera.framerate)
            },
            encoder: enc.element.clone(),
            width: cfg.video.width,
            height: cfg.video.height,
            framerate: cfg.video.framerate,
            max_kbps: cfg.video.bitrate_kbps,
            min_kbps: cfg.video.min_bitrate_kbps,
            rtcp_feedback: cfg.video.rtcp_feedback,
        }),
        _ => None,
    };
    let webrtc_setup = crate::proto::webrtc::Setup {
        display: cfg.room.name.clone(),
        media: crate::media::webrtc::ConferenceParams {
            video: video_setup.as_ref().map(|v| crate::media::webrtc::ConferenceVideo {
                source: v.source.clone(),
                encoder: v.encoder.clone(),
                width: v.width,
                height: v.height,
                framerate: v.framerate,
                kbps: v.max_kbps * 3 / 4,
                on_capture: None,
            }),
            layout: (cfg.video.width, cfg.video.height),
            opus_bitrate: 32_000,
            stun: Some(cfg.webrtc.stun_server.clone()).filter(|s| !s.is_empty()),
            turn: cfg.webrtc.turn_servers.clone(),
            relay_only: cfg.webrtc.ice_transport_policy == "relay",
            far_channel: crate::media::video::FAR_CHANNEL.into(),
            self_channel: crate::media::video::SELF_CHANNEL.into(),
        },
        ca_file: Some(cfg.webrtc.ca_file.clone()).filter(|s| !s.is_empty()).map(Into::into),
    };
    let sip = crate::proto::sip::start(&cfg, call_audio.clone(), video_setup, ids.clone(), events_tx.clone()).await;
    if let Err(reason) = &sip.commands {
        hw.problems.insert(0, format!("SIP cannot start: {reason}"));
    }
    let webrtc = crate::proto::webrtc::start(webrtc_setup, call_audio.clone(), events_tx.clone());
    let backends = vec![sip, webrtc];

    let feed = Feed::new(
        RoomStatus {
            room_name: cfg.room.name.clone(),
            board: board.name.clone(),
            // The image's version where there is one (it names what a room runs), else huisd's.
            version: crate::update::image_version().unwrap_or_else(|| VERSION.into()),
            last_error: hw.problems.first().cloned().unwrap_or_default(),
            leds: "off".into(),
            registration: if cfg.account.registrar.is_empty() { "none".into() } else { "unregistered".into() },
            ..Default::default()
        },
        AudioStatus {
            talker_azimuth: 0.0,
            talker_active: false,
            input_level: -120.0,
            output_level: -120.0,
            echo_cancellation: cfg.audio.echo_cancellation,
            beamforming: cfg.audio.beamforming,
            noise_suppression: cfg.audio.noise_suppression,
            gain_control: cfg.audio.gain_control,
            output_volume: cfg.audio.output_volume,
        },
        VideoStatus {
            camera,
            encoder: picked.as_ref().map(|p| p.element.clone()).unwrap_or_default(),
            encoder_hardware: picked.as_ref().is_some_and(|p| p.hardware),
            encoders: probes
                .iter()
                .map(|p| (p.element.clone(), p.hardware, p.usable, p.reason.clone().unwrap_or_default()))
                .collect(),
            width: cfg.video.width,
            height: cfg.video.height,
            framerate: cfg.video.framerate,
            self_view: cfg.video.self_view,
            stats: Default::default(),
        },
    );
    let sip_uri = backends.iter().map(|b| b.address.clone()).find(|a| !a.is_empty()).unwrap_or_default();
    let screen = start_screen(&board, &cfg, &sip_uri);
    let health_inputs = crate::health::Inputs {
        board: board.name.clone(),
        meters: engine.as_ref().map(|e| e.meters.clone()),
        video_source: hw.camera.gst_source(cfg.video.width, cfg.video.height, cfg.video.framerate),
        encoder: picked.as_ref().map(|p| p.element.clone()).unwrap_or_default(),
    };
    let fleet_cfg = cfg.fleet.clone();
    let room = Room::new(crate::room::Parts {
        feed: feed.clone(),
        config: cfg,
        config_path: args.config.clone(),
        leds: hw.leds,
        sim_buttons: hw.sim_buttons.take(),
        controls,
        meters: engine.as_ref().map(|e| e.meters.clone()),
        screen,
        backends,
        ids,
        content: hw.content.clone(),
        sim_content: hw.sim_content.clone(),
    });
    if let Some(c) = &hw.content {
        let ctx = tx.clone();
        // Called from the input's thread, or from the room task itself (the sim): never block.
        if let Err(e) = c.watch(Arc::new(move |s| {
            let _ = ctx.try_send(Command::ContentSignal(s));
        })) {
            tracing::warn!("content input: cannot watch its signal: {e}");
        }
    }

    let sub = feed.subscribe();
    let (flush_tx, flush_rx) = mpsc::channel(16);
    let link = RoomLink { commands: tx.clone(), flush: flush_tx };
    let room_iface = Room1 { room: link.clone(), status: sub.room.clone() };
    let audio_iface = Audio1 { room: link.clone(), status: sub.audio.clone() };
    let video_iface = Video1 { room: link.clone(), status: sub.video.clone() };
    let config_iface = Config1 { room: link.clone(), path: args.config.display().to_string() };
    let updater = crate::update::Updater::new(feed.clone());
    let update_iface = Update1 { updater: updater.clone(), status: sub.update.clone() };
    crate::fleet::start(crate::fleet::Setup {
        cfg: fleet_cfg,
        state_dir: args.state_dir.clone(),
        room: tx.clone(),
        feed: feed.subscribe(),
        updater: updater.clone(),
        may_reboot: !args.session,
    });

    let builder = if args.session { zbus::connection::Builder::session() } else { zbus::connection::Builder::system() };
    let conn = builder
        .serve_at(ROOM_PATH, room_iface)
        .serve_at(ROOM_PATH, zbus::fdo::ObjectManager)
        .serve_at(ROOM_PATH, update_iface)
        .serve_at(AUDIO_PATH, audio_iface)
        .serve_at(VIDEO_PATH, video_iface)
        .serve_at(CONFIG_PATH, config_iface)
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot connect to the {} bus: {e}", if args.session { "session" } else { "system" })
        })?;
    tokio::spawn(crate::dbus::publish::run(conn.clone(), sub, link, flush_rx));
    // Ask for the name without queueing: a second huisd must fail, not wait.
    use zbus::fdo::{RequestNameFlags, RequestNameReply};
    match conn.request_name_with_flags(BUS_NAME, RequestNameFlags::DO_NOT_QUEUE).await {
        Ok(RequestNameReply::PrimaryOwner) | Ok(RequestNameReply::AlreadyOwner) => {}
        Ok(_) | Err(zbus::Error::NameTaken) => {
            anyhow::bail!("{BUS_NAME} is already owned: is another huisd running?")
        }
        Err(e) => anyhow::bail!(
            "cannot own {BUS_NAME} (check the D-Bus policy in /etc/dbus-1/system.d/org.huis.Room1.conf): {e}"
        ),
    }

    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("ready on board {}", board.name)),
    ]);
    tracing::info!(bus = if args.session { "session" } else { "system" }, name = BUS_NAME, "ready");

    if args.session {
        // A development or test huisd never marks the machine's slots.
        let u = updater.clone();
        tokio::spawn(async move {
            if let Ok(p) = u.rauc().await {
                u.refresh(&p).await;
            }
        });
    } else {
        tokio::spawn(crate::health::run(conn.clone(), updater.clone(), health_inputs));
    }

    // The room task stops when told to; should it ever be stuck, SIGTERM
    // still ends huisd after a grace period rather than waiting for SIGKILL.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut room_task = tokio::spawn(room.run(rx, events_rx, async move {
        let _ = stop_rx.await;
    }));
    drop(events_tx);
    tokio::select! {
        _ = shutdown_signal() => {
            let _ = stop_tx.send(());
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut room_task).await.is_err() {
                tracing::error!("the room task did not stop within 5 s; exiting anyway");
            }
        }
        r = &mut room_task => {
            if let Err(e) = r {
                tracing::error!(error = %e, "the room task ended unexpectedly");
            }
        }
    }

    tracing::info!("stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(e) = engine.as_mut() {
        e.stop();
    }
    let _ = conn.release_name(BUS_NAME).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// The screen runs from start-up (idle screen) to shutdown. Without it huisd still takes calls.
fn start_screen(board: &huis_board::Board, cfg: &Config, sip_uri: &str) -> Option<Arc<crate::media::screen::Screen>> {
    use huis_board::DisplayKind;
    use huis_hal::display::{BoardDisplay, Display, DisplaySink};
    let d = &board.display;
    let sink = match d.kind {
        DisplayKind::Kms => DisplaySink::Kms { connector: d.connector.clone() },
        DisplayKind::Wayland => DisplaySink::Wayland,
        DisplayKind::Sim => DisplaySink::Sim,
    };
    let disp = BoardDisplay { sink, width: d.width, height: d.height };
    let status = crate::media::screen::ScreenStatus {
        room_name: cfg.room.name.clone(),
        state: "idle".into(),
        sip_uri: sip_uri.to_owned(),
        self_view: cfg.video.self_view,
        ..Default::default()
    };
    let (w, h) = disp.size();
    match crate::media::screen::Screen::start(w, h, cfg.video.framerate, &disp.gst_sink(), status) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!("the screen does not run: {e}");
            None
        }
    }
}
