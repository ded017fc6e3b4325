//! Unit tests: the builtin descriptors, one test per validation rule,
//! detection on fake root trees, and the precedence of `resolve`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::*;

// ---------------------------------------------------------------------------
// Helpers.

/// A complete, valid descriptor using every kind of section with real
/// devices; each validation test breaks one thing in it.
const BASE: &str = r#"description = "test board"
encoders = ["x264enc"]

[detect]
compatible = ["vendor,board"]

[mic_array]
backend = "linux"
device = "hw:CARD=Test,DEV=0"
capture_channels = 6
sample_rate = 16000
positions = [
    [-0.03, 0.0],
    [0.0, -0.03],
    [0.03, 0.0],
    [0.0, 0.03],
]
channels = [1, 2, 3, 4]

[audio_out]
backend = "linux"
device = "hw:CARD=Test,DEV=0"
sample_rate = 48000
channels = 2

[camera]
backend = "linux"
device = "/dev/video0"
width = 1280
height = 720
framerate = 30

[buttons]
backend = "linux"
call = { chip = "gpiochip0", line = 17, active_low = true }
mute = { chip = "gpiochip0", line = 27 }

[leds]
driver = "apa102"
spidev = "/dev/spidev0.1"
count = 12
power = { chip = "gpiochip0", line = 5 }

[display]
kind = "kms"
connector = "HDMI-A-1"
width = 1920
height = 1080
"#;

const ORIGIN: &str = "test/boards/t.toml";

/// BASE with the first `old` replaced by `new`.
fn with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "BASE has no {old:?}");
    BASE.replacen(old, new, 1)
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line contains {needle:?}")) + 1
}

/// Parse `text`, expect an error about `key` on `line`, whose message says
/// `reason`; return the message.
#[track_caller]
fn expect_err(text: &str, key: &str, line: Option<usize>, reason: &str) -> String {
    let err = match parse("t", ORIGIN, text) {
        Ok(_) => panic!("expected an error about {key}, but the descriptor was accepted"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.key(), Some(key), "wrong key in: {msg}");
    assert_eq!(err.line(), line, "wrong line in: {msg}");
    assert!(msg.starts_with(&format!("{ORIGIN}: ")), "no file in: {msg}");
    assert!(msg.contains(&format!("key '{key}': ")), "no key in: {msg}");
    if let Some(line) = line {
        assert!(msg.contains(&format!("line {line}: ")), "no line in: {msg}");
    }
    assert!(msg.contains(reason), "reason {reason:?} not in: {msg}");
    msg
}

#[test]
fn base_is_valid() {
    let b = parse("t", ORIGIN, BASE).unwrap();
    assert_eq!(b.name, "t");
    assert_eq!(b.mic_array.positions[1], [0.0, -0.03, 0.0]);
    assert_eq!(b.mic_array.channels, vec![1, 2, 3, 4]);
    assert_eq!(b.buttons.call, Some(GpioLine { chip: "gpiochip0".into(), line: 17, active_low: true }));
    assert_eq!(b.buttons.mute.as_ref().map(|l| l.active_low), Some(false));
    assert_eq!(
        b.leds.driver,
        LedDriver::Apa102 {
            spidev: "/dev/spidev0.1".into(),
            count: 12,
            power: Some(GpioLine { chip: "gpiochip0".into(), line: 5, active_low: false }),
        }
    );
    assert_eq!(b.display.kind, DisplayKind::Kms);
    assert!(!b.camera.ptz);
}

// ---------------------------------------------------------------------------
// Builtin descriptors.

#[test]
fn every_builtin_parses_and_is_named_after_its_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    let mut names: Vec<String> = builtin_names().into_iter().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, stems, "every file in boards/ must be compiled in, and only those");

    for name in builtin_names() {
        let b = builtin(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.name, name);
        let from_file = load_file(&dir.join(format!("{name}.toml"))).unwrap();
        assert_eq!(from_file, b);
        assert!(!b.description.is_empty());
    }
}

#[test]
fn builtin_descriptors_say_where_their_facts_come_from() {
    for (name, text) in crate::builtin::BUILTIN {
        let first = text.lines().next().unwrap_or("");
        assert!(first.starts_with(&format!("# {name}: ")), "{name}: header comment missing");
    }
}

#[test]
fn sim_has_the_respeaker_6_mic_geometry() {
    let b = builtin("sim").unwrap();
    let expected = [
        [-0.0232, 0.0401, 0.0],
        [-0.0463, 0.0, 0.0],
        [-0.0232, -0.0401, 0.0],
        [0.0232, -0.0401, 0.0],
        [0.0463, 0.0, 0.0],
        [0.0232, 0.0401, 0.0],
    ];
    assert_eq!(b.mic_array.positions, expected);
    assert_eq!(b.mic_array.channels, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(b.mic_array.capture_channels, 6);
    assert_eq!(b.mic_array.sample_rate, 16000);
    assert_eq!(b.mic_array.backend, Backend::Sim);
    for p in &b.mic_array.positions {
        let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
        assert!((r - 0.0463).abs() < 0.0002, "radius {r}");
    }
    assert_eq!((b.audio_out.sample_rate, b.audio_out.channels), (48000, 2));
    assert_eq!((b.camera.width, b.camera.height, b.camera.framerate), (1280, 720, 30));
    assert_eq!(b.encoders, vec!["x264enc", "openh264enc"]);
    assert_eq!(b.buttons.backend, Backend::Sim);
    assert_eq!(b.leds.driver, LedDriver::Sim);
    assert_eq!((b.display.kind, b.display.width, b.display.height), (DisplayKind::Sim, 1280, 720));
}

#[test]
fn builtin_facts() {
    let pc = builtin("pc-x86_64").unwrap();
    assert_eq!(pc.mic_array.capture_channels, 6);
    assert_eq!(pc.mic_array.channels, vec![1, 2, 3, 4]);
    let rpi5 = builtin("rpi5-respeaker-4mic").unwrap();
    assert!(
        rpi5.encoders.iter().all(|e| e == "x264enc" || e == "openh264enc"),
        "the Pi 5 has no hardware H.264 encoder"
    );
    assert_eq!(builtin("rpi4-respeaker-4mic").unwrap().encoders[0], "v4l2h264enc");
    let six = builtin("rpi4-respeaker-6mic").unwrap();
    assert_eq!(six.mic_array.capture_channels, 8);
    assert_eq!(six.mic_array.channels, vec![0, 1, 2, 3, 4, 5]);
    let uma = builtin("rk3588-uma8").unwrap();
    assert_eq!(uma.mic_array.positions.len(), 7);
    assert_eq!(uma.mic_array.capture_channels, 8);
    assert_eq!(uma.encoders[0], "mpph264enc");
    let four = builtin("rpi4-respeaker-4mic").unwrap();
    match four.leds.driver {
        LedDriver::Apa102 { count, ref power, .. } => {
            assert_eq!(count, 12);
            assert_eq!(power.as_ref().map(|p| p.line), Some(5));
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_builtin_lists_the_known_names() {
    let err = builtin("nope").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown board 'nope'"), "{msg}");
    for name in builtin_names() {
        assert!(msg.contains(name), "{msg}");
    }
}

// ---------------------------------------------------------------------------
// Schema errors.

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = with("framerate = 30\n", "framerate = 30\ncolour = \"red\"\n");
    expect_err(&text, "camera.colour", Some(line_of(&text, "colour")), "unknown key");
    let text = with("encoders", "firmware = 2\nencoders");
    expect_err(&text, "firmware", Some(2), "unknown key");
    let text =
        with("mute = { chip = \"gpiochip0\", line = 27 }", "mute = { chip = \"gpiochip0\", line = 27, pull = \"up\" }");
    expect_err(&text, "buttons.mute.pull", Some(line_of(&text, "pull")), "unknown key");
}

#[test]
fn missing_required_key_names_the_key_and_its_table() {
    let text = with("sample_rate = 16000\n", "");
    expect_err(&text, "mic_array.sample_rate", Some(line_of(&text, "[mic_array]")), "missing");
    let text = with("description = \"test board\"\n", "");
    expect_err(&text, "description", None, "missing");
    let text = BASE.replace("[display]\nkind = \"kms\"\nconnector = \"HDMI-A-1\"\nwidth = 1920\nheight = 1080\n", "");
    expect_err(&text, "display", None, "missing");
}

#[test]
fn wrong_type_says_what_was_expected_and_found() {
    let text = with("sample_rate = 16000", "sample_rate = \"16000\"");
    expect_err(
        &text,
        "mic_array.sample_rate",
        Some(line_of(&text, "\"16000\"")),
        "expected an integer, found a string",
    );
    let text = with("[0.0, -0.03],", "[0.0, \"south\"],");
    expect_err(&text, "mic_array.positions[1][1]", Some(line_of(&text, "south")), "expected a number");
    let text = with("framerate = 30\n", "framerate = 30\nptz = 1\n");
    expect_err(&text, "camera.ptz", Some(line_of(&text, "ptz")), "expected a boolean");
    let text = with("[display]\n", "display = 5\n[display]\n");
    expect_err(&text, "leds.display", Some(line_of(&text, "display = 5")), "unknown key");
    let text = BASE.replace("[display]\nkind", "[display_]\nkind");
    expect_err(&text, "display_", Some(line_of(&text, "[display_]")), "unknown key");
    let text = with("encoders = [\"x264enc\"]", "encoders = \"x264enc\"");
    expect_err(&text, "encoders", Some(2), "expected an array");
}

#[test]
fn toml_syntax_error_has_file_and_line() {
    let text = with("width = 1280", "width = = 1280");
    let err = parse("t", ORIGIN, &text).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.line(), Some(line_of(&text, "= =")), "{msg}");
    assert!(msg.starts_with(&format!("{ORIGIN}: line ")), "{msg}");
    assert!(msg.contains("not valid TOML"), "{msg}");
}

// ---------------------------------------------------------------------------
// Mic array rules.

#[test]
fn at_least_two_mics() {
    let text = with("    [0.0, -0.03],\n    [0.03, 0.0],\n    [0.0, 0.03],\n", "").replace("[1, 2, 3, 4]", "[1]");
    expect_err(&text, "mic_array.positions", Some(line_of(&text, "positions")), "at least 2 mics, found 1");
}

#[test]
fn mic_within_half_a_metre() {
    let text = with("[0.03, 0.0],", "[0.6, 0.0],");
    expect_err(&text, "mic_array.positions[2]", Some(line_of(&text, "0.6")), "0.600 m from the array centre");
}

#[test]
fn two_mics_not_at_the_same_place() {
    let text = with("[0.0, 0.03],", "[0.002, -0.028],");
    expect_err(&text, "mic_array.positions[3]", Some(line_of(&text, "0.002")), "same place");
}

#[test]
fn positions_and_channels_same_length() {
    let text = with("channels = [1, 2, 3, 4]", "channels = [1, 2, 3]");
    expect_err(&text, "mic_array.channels", Some(line_of(&text, "[1, 2, 3]")), "3 channels for 4 positions");
}

#[test]
fn channel_index_below_capture_channels() {
    let text = with("channels = [1, 2, 3, 4]", "channels = [1, 2, 3, 6]");
    expect_err(
        &text,
        "mic_array.channels[3]",
        Some(line_of(&text, "[1, 2, 3, 6]")),
        "channel 6 does not exist (capture_channels = 6, so use 0 to 5)",
    );
}

#[test]
fn channel_used_twice() {
    let text = with("channels = [1, 2, 3, 4]", "channels = [1, 2, 2, 4]");
    expect_err(
        &text,
        "mic_array.channels[2]",
        Some(line_of(&text, "[1, 2, 2, 4]")),
        "mic 2 is on channel 2, which mic 1 already uses",
    );
}

#[test]
fn mic_sample_rate_16k_or_48k() {
    let text = with("sample_rate = 16000", "sample_rate = 44100");
    let line = line_of(&text, "44100");
    let msg = expect_err(&text, "mic_array.sample_rate", Some(line), "44100 is not supported (use 16000 or 48000)");
    assert_eq!(
        msg,
        format!("{ORIGIN}: line {line}: key 'mic_array.sample_rate': 44100 is not supported (use 16000 or 48000)")
    );
}

#[test]
fn output_sample_rate_16k_44k1_or_48k() {
    let text = with("sample_rate = 48000", "sample_rate = 22050");
    expect_err(
        &text,
        "audio_out.sample_rate",
        Some(line_of(&text, "22050")),
        "22050 is not supported (use 16000, 44100 or 48000)",
    );
    let ok = with("sample_rate = 48000", "sample_rate = 44100");
    assert_eq!(parse("t", ORIGIN, &ok).unwrap().audio_out.sample_rate, 44100);
}

#[test]
fn capture_channels_1_to_32() {
    for bad in ["0", "33", "-1"] {
        let text = with("capture_channels = 6", &format!("capture_channels = {bad}"));
        expect_err(&text, "mic_array.capture_channels", Some(line_of(&text, "capture_channels")), "out of range");
    }
}

#[test]
fn front_azimuth_in_range() {
    for bad in ["360.0", "-1", "400"] {
        let text = with("channels = [1, 2, 3, 4]", &format!("channels = [1, 2, 3, 4]\nfront_azimuth_deg = {bad}"));
        expect_err(&text, "mic_array.front_azimuth_deg", Some(line_of(&text, "front_azimuth_deg")), "[0, 360)");
    }
    let ok = with("channels = [1, 2, 3, 4]", "channels = [1, 2, 3, 4]\nfront_azimuth_deg = 0");
    assert_eq!(parse("t", ORIGIN, &ok).unwrap().mic_array.front_azimuth_deg, Some(0.0));
}

#[test]
fn linear_array_needs_front_azimuth() {
    // Four mics on the line y = x (not an axis, so the test is numeric).
    let line = "positions = [\n    [-0.03, -0.03],\n    [-0.01, -0.01],\n    [0.01, 0.01],\n    [0.03, 0.03],\n]\n";
    let base = BASE
        .replace("positions = [\n    [-0.03, 0.0],\n    [0.0, -0.03],\n    [0.03, 0.0],\n    [0.0, 0.03],\n]\n", line);
    assert_ne!(base, BASE);
    expect_err(&base, "mic_array.front_azimuth_deg", Some(line_of(&base, "[mic_array]")), "linear array");

    // A tenth of a millimetre off the line is still a line.
    let nearly = base.replace("[0.01, 0.01]", "[0.01, 0.0101]");
    expect_err(&nearly, "mic_array.front_azimuth_deg", Some(line_of(&nearly, "[mic_array]")), "linear array");

    // With the azimuth it is fine.
    let given = base.replace("channels = [1, 2, 3, 4]", "channels = [1, 2, 3, 4]\nfront_azimuth_deg = 135.0");
    assert_eq!(parse("t", ORIGIN, &given).unwrap().mic_array.front_azimuth_deg, Some(135.0));

    // Two mics always make a line.
    let two = with("    [0.0, -0.03],\n    [0.03, 0.0],\n    [0.0, 0.03],\n", "    [0.03, 0.0],\n")
        .replace("[1, 2, 3, 4]", "[0, 1]");
    expect_err(&two, "mic_array.front_azimuth_deg", Some(line_of(&two, "[mic_array]")), "linear array");

    // A triangle is not a line.
    assert!(!crate::parse::collinear(&[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.025, 0.01, 0.0]]));
    assert!(crate::parse::collinear(&[[0.0, 0.0, 0.0], [0.0, 0.0, 0.05], [0.0, 0.0, 0.1]]));
}

// ---------------------------------------------------------------------------
// Backends and devices.

#[test]
fn linux_backend_must_name_a_device() {
    let text = with("device = \"/dev/video0\"\n", "");
    expect_err(&text, "camera.device", Some(line_of(&text, "[camera]")), "a linux backend must name a device");
    let text = with("device = \"hw:CARD=Test,DEV=0\"", "device = \"\"");
    expect_err(&text, "mic_array.device", Some(line_of(&text, "device = \"\"")), "a linux backend must name a device");
    let text = with("device = \"/dev/video0\"", "device = \"video0\"");
    expect_err(&text, "camera.device", Some(line_of(&text, "\"video0\"")), "not a V4L2 device path");
}

#[test]
fn sim_backend_must_not_name_a_device() {
    let text = with("[audio_out]\nbackend = \"linux\"", "[audio_out]\nbackend = \"sim\"");
    expect_err(
        &text,
        "audio_out.device",
        Some(line_of(&text, "[audio_out]") + 2),
        "a sim backend must not name a device",
    );
    let text = with("[mic_array]\nbackend = \"linux\"", "[mic_array]\nbackend = \"alsa\"");
    expect_err(&text, "mic_array.backend", Some(line_of(&text, "\"alsa\"")), "not a backend");
}

// ---------------------------------------------------------------------------
// Camera and encoders.

#[test]
fn camera_size_and_rate_are_sane() {
    let text = with("width = 1280", "width = 100");
    expect_err(&text, "camera.width", Some(line_of(&text, "width = 100")), "out of range");
    let text = with("height = 720", "height = 10000");
    expect_err(&text, "camera.height", Some(line_of(&text, "height = 10000")), "out of range");
    for bad in ["0", "121"] {
        let text = with("framerate = 30", &format!("framerate = {bad}"));
        expect_err(&text, "camera.framerate", Some(line_of(&text, "framerate")), "out of range");
    }
}

#[test]
fn encoders_non_empty_and_plausible() {
    let text = with("encoders = [\"x264enc\"]", "encoders = []");
    expect_err(&text, "encoders", Some(2), "at least one");
    let text = with("encoders = [\"x264enc\"]", "encoders = [\"x264enc\", \"X264 Enc\"]");
    expect_err(&text, "encoders[1]", Some(2), "not a GStreamer element name");
    let text = with("encoders = [\"x264enc\"]", "encoders = [\"x264enc\", \"x264enc\"]");
    expect_err(&text, "encoders[1]", Some(2), "listed twice");
    let text = with("encoders = [\"x264enc\"]", "encoders = [\"x264enc ! fakesink\"]");
    expect_err(&text, "encoders[0]", Some(2), "not a GStreamer element name");
}

// ---------------------------------------------------------------------------
// GPIO, buttons, LEDs, display.

#[test]
fn gpio_chip_names_look_like_gpiochip_n() {
    for bad in ["gpio0", "gpiochip", "/dev/gpiochip0", "gpiochipA"] {
        let text = with("call = { chip = \"gpiochip0\"", &format!("call = {{ chip = \"{bad}\""));
        expect_err(&text, "buttons.call.chip", Some(line_of(&text, "call =")), "not a GPIO chip name");
    }
}

#[test]
fn gpio_line_used_twice_is_refused() {
    let text = with("power = { chip = \"gpiochip0\", line = 5 }", "power = { chip = \"gpiochip0\", line = 17 }");
    expect_err(&text, "leds.power.line", Some(line_of(&text, "power =")), "already used by 'buttons.call'");
    // The same offset on another chip is another line.
    let ok = with("power = { chip = \"gpiochip0\", line = 5 }", "power = { chip = \"gpiochip1\", line = 17 }");
    parse("t", ORIGIN, &ok).unwrap();
}

#[test]
fn buttons_backend_rules() {
    let text = with("[buttons]\nbackend = \"linux\"", "[buttons]\nbackend = \"sim\"");
    expect_err(&text, "buttons.call", Some(line_of(&text, "call =")), "a sim backend must not name GPIO lines");
    let text = with(
        "call = { chip = \"gpiochip0\", line = 17, active_low = true }\nmute = { chip = \"gpiochip0\", line = 27 }\n",
        "",
    );
    expect_err(&text, "buttons.call", Some(line_of(&text, "[buttons]")), "at least a 'call' or a 'mute'");
}

#[test]
fn led_driver_kinds_and_their_fields() {
    // apa102 needs spidev and count.
    let text = with("spidev = \"/dev/spidev0.1\"\n", "");
    expect_err(&text, "leds.spidev", Some(line_of(&text, "[leds]")), "needs 'spidev'");
    let text = with("count = 12\n", "");
    expect_err(&text, "leds.count", Some(line_of(&text, "[leds]")), "needs 'count'");
    let text = with("spidev = \"/dev/spidev0.1\"", "spidev = \"/dev/spi0\"");
    expect_err(&text, "leds.spidev", Some(line_of(&text, "spi0")), "not a spidev path");
    let text = with("count = 12", "count = 0");
    expect_err(&text, "leds.count", Some(line_of(&text, "count = 0")), "out of range");

    // gpio needs at least one colour, and takes no spidev.
    let leds = "[leds]\ndriver = \"apa102\"\nspidev = \"/dev/spidev0.1\"\ncount = 12\npower = { chip = \"gpiochip0\", line = 5 }\n";
    let text = with(leds, "[leds]\ndriver = \"gpio\"\n");
    expect_err(&text, "leds.red", Some(line_of(&text, "[leds]")), "at least one of 'red', 'green', 'blue'");
    let text = with(
        leds,
        "[leds]\ndriver = \"gpio\"\nspidev = \"/dev/spidev0.1\"\nred = { chip = \"gpiochip0\", line = 6 }\n",
    );
    expect_err(&text, "leds.spidev", Some(line_of(&text, "spidev")), "driver \"gpio\" takes red, green and blue");
    let ok = with(leds, "[leds]\ndriver = \"gpio\"\ngreen = { chip = \"gpiochip0\", line = 6 }\n");
    assert!(matches!(
        parse("t", ORIGIN, &ok).unwrap().leds.driver,
        LedDriver::Gpio { red: None, green: Some(_), blue: None }
    ));

    // sim and none take nothing else.
    let text = with("driver = \"apa102\"", "driver = \"sim\"");
    expect_err(&text, "leds.spidev", Some(line_of(&text, "spidev")), "driver \"sim\" takes no settings");
    let none = with(leds, "[leds]\ndriver = \"none\"\n");
    assert_eq!(parse("t", ORIGIN, &none).unwrap().leds.driver, LedDriver::None);

    // Unknown kinds are named.
    let text = with("driver = \"apa102\"", "driver = \"ws2812\"");
    expect_err(&text, "leds.driver", Some(line_of(&text, "ws2812")), "not an LED driver");
}

#[test]
fn display_kinds_and_their_fields() {
    let text = with("connector = \"HDMI-A-1\"\n", "");
    expect_err(&text, "display.connector", Some(line_of(&text, "[display]")), "needs a DRM connector");
    let text = with("connector = \"HDMI-A-1\"", "connector = \"HDMI A\"");
    expect_err(&text, "display.connector", Some(line_of(&text, "HDMI A")), "not a DRM connector name");
    let text = with("kind = \"kms\"", "kind = \"sim\"");
    expect_err(&text, "display.connector", Some(line_of(&text, "connector")), "only a kms display has a connector");
    let text = with("kind = \"kms\"", "kind = \"x11\"");
    expect_err(&text, "display.kind", Some(line_of(&text, "x11")), "not a display kind");
    let text = with("width = 1920", "width = 20000");
    expect_err(&text, "display.width", Some(line_of(&text, "20000")), "out of range");
    let ok = with("kind = \"kms\"\nconnector = \"HDMI-A-1\"\n", "kind = \"wayland\"\n");
    assert_eq!(parse("t", ORIGIN, &ok).unwrap().display.kind, DisplayKind::Wayland);
    for good in ["DP-1", "eDP-1", "DSI-1", "Virtual-1", "HDMI-A-2"] {
        let ok = with("connector = \"HDMI-A-1\"", &format!("connector = \"{good}\""));
        assert_eq!(parse("t", ORIGIN, &ok).unwrap().display.connector, good);
    }
}

// ---------------------------------------------------------------------------
// Files, detection and resolution on fake root trees.

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "huis-board-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

/// A system root with DMI data (vendor, product name) and the kernel's
/// machine name, as a PC or VM shows them.
fn dmi_machine(vendor: &str, product: &str, arch: &str) -> TempDir {
    let root = TempDir::new();
    root.write("sys/class/dmi/id/sys_vendor", format!("{vendor}\n").as_bytes());
    root.write("sys/class/dmi/id/product_name", format!("{product}\n").as_bytes());
    root.write("proc/sys/kernel/arch", format!("{arch}\n").as_bytes());
    root
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PI4_COMPATIBLE: &[u8] = b"raspberrypi,4-model-b\0brcm,bcm2711\0";
const PI5_COMPATIBLE: &[u8] = b"raspberrypi,5-model-b\0brcm,bcm2712\0";

#[test]
fn detect_rpi4_with_4mic_hat() {
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", PI4_COMPATIBLE);
    root.write("proc/device-tree/hat/product", b"ReSpeaker 4-Mic Array for Raspberry Pi\0");
    assert_eq!(detect_from(root.path()).as_deref(), Some("rpi4-respeaker-4mic"));
}

#[test]
fn detect_rpi5_with_6mic_kit() {
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", PI5_COMPATIBLE);
    root.write("proc/device-tree/hat/product", b"ReSpeaker 6-Mic Circular Array Kit\0");
    assert_eq!(detect_from(root.path()).as_deref(), Some("rpi5-respeaker-6mic"));

    // Without a HAT EEPROM, the sound card of the loaded driver tells.
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", PI5_COMPATIBLE);
    root.write(
        "proc/asound/cards",
        b" 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n                      vc4-hdmi-0\n 1 [seeed8micvoicec]: seeed-8mic-voi - seeed-8mic-voicecard\n                      seeed-8mic-voicecard\n",
    );
    assert_eq!(detect_from(root.path()).as_deref(), Some("rpi5-respeaker-6mic"));
}

#[test]
fn hat_match_beats_a_bare_soc_match() {
    // Only the SoC entry matches, but the HAT names the 6-mic kit.
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", b"some,pi4-clone\0brcm,bcm2711\0");
    root.write("proc/device-tree/hat/product", b"ReSpeaker 6-Mic Circular Array Kit\0");
    assert_eq!(detect_from(root.path()).as_deref(), Some("rpi4-respeaker-6mic"));

    // A bare Pi 4 is still a Pi 4, with a stable answer.
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", PI4_COMPATIBLE);
    assert_eq!(detect_from(root.path()).as_deref(), Some("rpi4-respeaker-4mic"));
}

#[test]
fn detect_rk3588() {
    let root = TempDir::new();
    root.write("proc/device-tree/compatible", b"radxa,rock-5b\0rockchip,rk3588\0");
    assert_eq!(detect_from(root.path()).as_deref(), Some("rk3588-uma8"));
}

#[test]
fn detect_qemu_by_dmi() {
    let root = dmi_machine("QEMU", "Standard PC (Q35 + ICH9, 2009)", "x86_64");
    root.write("sys/class/dmi/id/board_name", b"\n");
    assert_eq!(detect_from(root.path()).as_deref(), Some("qemu-x86_64"));

    let root = dmi_machine("", "Standard PC (i440FX + PIIX, 1996)", "x86_64");
    assert_eq!(detect_from(root.path()).as_deref(), Some("qemu-x86_64"));
}

#[test]
fn detect_qemu_by_architecture() {
    // The arm64 image under QEMU virt + AAVMF: the same vendor string as on
    // x86, so only the architecture tells the two VMs apart.
    let root = dmi_machine("QEMU", "QEMU Virtual Machine", "aarch64");
    assert_eq!(detect_from(root.path()).as_deref(), Some("qemu-arm64"));
    root.write("proc/sys/kernel/arch", b"x86_64\n");
    assert_eq!(detect_from(root.path()).as_deref(), Some("qemu-x86_64"));

    // An arm64 machine with DMI data that no board claims (a server, a
    // workstation) is not taken for an x86 PC.
    let root = dmi_machine("Ampere(R)", "Mt.Jade", "aarch64");
    assert_eq!(detect_from(root.path()), None);
    root.write("proc/sys/kernel/arch", b"x86_64\n");
    assert_eq!(detect_from(root.path()).as_deref(), Some("pc-x86_64"));
}

#[test]
fn arch_is_parsed_and_checked() {
    let b = parse("t", "t", &with("[detect]", "[detect]\narch = [\"aarch64\"]")).unwrap();
    assert_eq!(b.detect.arch, vec!["aarch64"]);
    let msg = parse("t", "t", &with("[detect]", "[detect]\narch = \"aarch64\"")).unwrap_err().to_string();
    assert!(msg.contains("detect.arch"), "{msg}");
}

#[test]
fn detect_generic_pc_by_dmi() {
    let root = dmi_machine("Intel(R) Client Systems", "NUC11PAHi5", "x86_64");
    root.write("sys/class/dmi/id/board_name", b"NUC11PABi5\n");
    assert_eq!(detect_from(root.path()).as_deref(), Some("pc-x86_64"));
}

#[test]
fn detect_nothing() {
    let root = TempDir::new();
    assert_eq!(detect_from(root.path()), None);
    // Empty files are no facts either.
    root.write("proc/device-tree/compatible", b"");
    root.write("sys/class/dmi/id/product_name", b"\n");
    assert_eq!(detect_from(root.path()), None);
    // Unknown device-tree boards are not guessed.
    root.write("proc/device-tree/compatible", b"acme,widget\0acme,soc\0");
    assert_eq!(detect_from(root.path()), None);
}

#[test]
fn load_file_names_the_board_after_the_file() {
    let dir = TempDir::new();
    let path = dir.write("meeting-room-3.toml", BASE.as_bytes());
    let b = load_file(&path).unwrap();
    assert_eq!(b.name, "meeting-room-3");

    let bad = dir.write("broken.toml", with("sample_rate = 16000", "sample_rate = 8000").as_bytes());
    let msg = load_file(&bad).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}: line ", bad.display())), "{msg}");
    assert!(msg.contains("key 'mic_array.sample_rate'"), "{msg}");

    let missing = dir.path().join("absent.toml");
    let err = load_file(&missing).unwrap_err();
    assert!(matches!(err, BoardError::Io { .. }));
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

#[test]
fn resolve_precedence() {
    let qemu = TempDir::new();
    qemu.write("sys/class/dmi/id/sys_vendor", b"QEMU\n");
    qemu.write("proc/sys/kernel/arch", b"x86_64\n");
    let empty = TempDir::new();

    // CLI beats config beats detection beats the default.
    assert_eq!(resolve(Some("rk3588-uma8"), Some("pc-x86_64"), qemu.path()).unwrap().name, "rk3588-uma8");
    assert_eq!(resolve(None, Some("pc-x86_64"), qemu.path()).unwrap().name, "pc-x86_64");
    assert_eq!(resolve(None, None, qemu.path()).unwrap().name, "qemu-x86_64");
    assert_eq!(resolve(None, None, empty.path()).unwrap().name, "sim");
    assert_eq!(DEFAULT_BOARD, "sim");

    // Empty values count as unset.
    assert_eq!(resolve(Some(""), Some(" "), qemu.path()).unwrap().name, "qemu-x86_64");

    // Values with a slash or a .toml suffix are files.
    let dir = TempDir::new();
    let path = dir.write("lab.toml", BASE.as_bytes());
    let p = path.to_str().unwrap();
    assert_eq!(resolve(Some(p), Some("sim"), empty.path()).unwrap().name, "lab");
    assert_eq!(resolve(None, Some(p), empty.path()).unwrap().name, "lab");
    let err = resolve(Some("nowhere.toml"), None, empty.path()).unwrap_err();
    assert!(matches!(err, BoardError::Io { .. }), "{err}");

    // Unknown names are errors that list the known ones; no silent fallback.
    let err = resolve(None, Some("rpi3"), qemu.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown board 'rpi3'"), "{msg}");
    assert!(msg.contains("sim") && msg.contains("rk3588-uma8"), "{msg}");
}

#[test]
fn the_example_in_the_crate_docs_is_valid() {
    let src = include_str!("lib.rs");
    let example: String = src
        .lines()
        .skip_while(|l| *l != "//! ```toml")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| format!("{}\n", l.strip_prefix("//!").unwrap_or(l).strip_prefix(' ').unwrap_or("")))
        .collect();
    assert!(example.contains("[mic_array]"), "example not found");
    let b = parse("example", "lib.rs", &example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.mic_array.front_azimuth_deg, Some(90.0));
}

#[test]
fn more_mics_than_capture_channels_is_refused_before_any_per_mic_check() {
    // 8,000 positions (as many as fit in the size bound), all at the same place: the channel
    // count refuses them before the quadratic spacing check looks at any pair.
    let many: String = (0..8_000).map(|_| "[0,0],").collect();
    let text = with("    [-0.03, 0.0],\n", &many);
    let started = std::time::Instant::now();
    expect_err(&text, "mic_array.positions", Some(line_of(&text, "positions")), "8003 mic positions for 6 capture");
    // Not a timing assertion of the product, a guard that the refusal came before the scan.
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn a_descriptor_larger_than_the_bound_is_refused_whole() {
    let text = format!("{BASE}\n# {}\n", "x".repeat(70_000));
    let err = parse("t", ORIGIN, &text).unwrap_err().to_string();
    assert!(err.contains("a board descriptor is at most 65536 bytes"), "{err}");

    let dir = TempDir::new();
    let path = dir.write("huge.toml", text.as_bytes());
    let err = load_file(&path).unwrap_err().to_string();
    assert!(err.contains("at most 65536 bytes"), "{err}");
}

// ---------------------------------------------------------------------------
// The content input.

/// BASE with a `[content]` table of `body` at its end.
fn with_content(body: &str) -> String {
    format!("{BASE}\n[content]\n{body}")
}

#[test]
fn content_is_optional() {
    assert_eq!(parse("t", ORIGIN, BASE).unwrap().content, None);
}

#[test]
fn content_kinds_and_their_devices() {
    let b = parse(
        "t",
        ORIGIN,
        &with_content("kind = \"v4l2-dv\"\nmatch = \"unicam\"\nmax_width = 1920\nmax_height = 1080\nmax_fps = 30\n"),
    )
    .unwrap();
    assert_eq!(
        b.content,
        Some(Content {
            kind: ContentKind::V4l2Dv,
            device: ContentDevice::Match("unicam".into()),
            max_width: Some(1920),
            max_height: Some(1080),
            max_fps: Some(30),
            page_seconds: None,
        })
    );
    let b =
        parse("t", ORIGIN, &with_content("kind = \"uvc\"\ndevice = \"/dev/v4l/by-id/usb-x-video-index0\"\n")).unwrap();
    let c = b.content.unwrap();
    assert_eq!((c.kind, c.device), (ContentKind::Uvc, ContentDevice::Path("/dev/v4l/by-id/usb-x-video-index0".into())));
    let b = parse("t", ORIGIN, &with_content("kind = \"sim\"\npage_seconds = 3\n")).unwrap();
    let c = b.content.unwrap();
    assert_eq!((c.kind, c.device, c.page_seconds), (ContentKind::Sim, ContentDevice::None, Some(3)));
}

#[test]
fn content_bad_kind_is_named_with_its_line() {
    let t = with_content("kind = \"hdmi\"\n");
    expect_err(&t, "content.kind", Some(line_of(&t, "kind = \"hdmi\"")), "'hdmi' is not a content input kind");
}

#[test]
fn content_device_rules() {
    let t = with_content("kind = \"v4l2-dv\"\n");
    expect_err(&t, "content.device", Some(line_of(&t, "[content]")), "needs 'device' (a /dev path) or 'match'");
    let t = with_content("kind = \"uvc\"\ndevice = \"/dev/video2\"\nmatch = \"USB\"\n");
    expect_err(&t, "content.match", Some(line_of(&t, "match = ")), "not both");
    let t = with_content("kind = \"uvc\"\ndevice = \"video2\"\n");
    expect_err(&t, "content.device", Some(line_of(&t, "device = \"video2\"")), "is not a device path");
    let t = with_content("kind = \"uvc\"\nmatch = \"\"\n");
    expect_err(&t, "content.match", Some(line_of(&t, "match = ")), "must not be empty");
    let t = with_content("kind = \"sim\"\ndevice = \"/dev/video2\"\n");
    expect_err(
        &t,
        "content.device",
        Some(line_of(&t, "device = \"/dev/video2\"")),
        "a sim content input has no device",
    );
    let t = with_content("kind = \"v4l2-dv\"\nmatch = \"unicam\"\npage_seconds = 5\n");
    expect_err(&t, "content.page_seconds", Some(line_of(&t, "page_seconds")), "page_seconds is for the sim only");
}

#[test]
fn content_sizes_are_sane() {
    for (key, value, reason) in [
        ("max_width", "100", "out of range (pixels: 160 to 7680)"),
        ("max_height", "5000", "out of range (pixels: 120 to 4320)"),
        ("max_fps", "0", "out of range (frames per second: 1 to 240)"),
        ("max_fps", "\"30\"", "expected an integer"),
        ("page_seconds", "0", "out of range (seconds a page is shown: 1 to 3600)"),
    ] {
        let t = with_content(&format!("kind = \"sim\"\n{key} = {value}\n"));
        expect_err(&t, &format!("content.{key}"), Some(line_of(&t, &format!("{key} = "))), reason);
    }
}

#[test]
fn content_unknown_key_is_named_with_its_line() {
    let t = with_content("kind = \"uvc\"\ndevice = \"/dev/video2\"\nfps = 30\n");
    expect_err(&t, "content.fps", Some(line_of(&t, "fps = 30")), "unknown key");
}

#[test]
fn builtin_content_inputs() {
    let sim = builtin("sim").unwrap().content.unwrap();
    assert_eq!((sim.kind, sim.page_seconds), (ContentKind::Sim, Some(5)));
    for name in ["rpi4-respeaker-4mic", "rpi4-respeaker-6mic"] {
        let c = builtin(name).unwrap().content.unwrap();
        assert_eq!(c.kind, ContentKind::V4l2Dv, "{name}");
        // Found by the CSI receiver's driver, never by the camera's path.
        assert_eq!(c.device, ContentDevice::Match("unicam".into()), "{name}");
        assert_eq!((c.max_width, c.max_height, c.max_fps), (Some(1920), Some(1080), Some(30)), "{name}");
    }
    for name in ["pc-x86_64", "rpi5-respeaker-4mic", "rpi5-respeaker-6mic", "rk3588-uma8", "qemu-x86_64", "qemu-arm64"]
    {
        assert_eq!(builtin(name).unwrap().content, None, "{name}");
    }
}
