//! Parsing and validation of descriptor text.
//!
//! The text is parsed with `toml`'s span-keeping document parser
//! ([`toml::de::DeTable`]) and then walked by hand, so that every error —
//! an unknown key, a missing key, a wrong type or a broken rule — can name
//! the dotted key path and the line it is on.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::BoardError;
use crate::model::*;

type Res<T> = Result<T, BoardError>;
type Span = Range<usize>;

/// Mics closer than this (metres) are taken to be at the same place.
const MIN_MIC_SPACING: f64 = 0.005;
/// No mic may be farther than this (metres) from the array centre.
const MAX_MIC_RADIUS: f64 = 0.5;
/// Mics within this distance (metres) of one line make a linear array.
const COLLINEAR_TOLERANCE: f64 = 0.0005;

const MIC_RATES: &[u32] = &[16000, 48000];
const OUT_RATES: &[u32] = &[16000, 44100, 48000];
/// Largest descriptor accepted: the builtin ones are about 2 KB; the bound keeps a wrong or
/// hostile file from costing more than a glance.
pub const MAX_DESCRIPTOR_BYTES: usize = 64 * 1024;

/// Parse and validate one descriptor. `name` becomes [`Board::name`];
/// `origin` (a file path) is used in error messages only.
pub fn parse(name: &str, origin: &str, text: &str) -> Result<Board, BoardError> {
    let ctx = Ctx { origin, text };
    if text.len() > MAX_DESCRIPTOR_BYTES {
        return Err(BoardError::Invalid {
            origin: origin.to_owned(),
            line: None,
            key: None,
            reason: format!(
                "the file is {} bytes; a board descriptor is at most {MAX_DESCRIPTOR_BYTES} bytes",
                text.len()
            ),
        });
    }
    let doc = DeTable::parse(text).map_err(|e| BoardError::Invalid {
        origin: origin.to_owned(),
        line: e.span().map(|s| ctx.line_of(s.start)),
        key: None,
        reason: format!("not valid TOML: {}", e.message().trim()),
    })?;
    let root = Tbl { ctx: &ctx, path: String::new(), t: doc.get_ref(), span: None };
    root.deny_unknown(&[
        "description",
        "encoders",
        "detect",
        "mic_array",
        "audio_out",
        "camera",
        "buttons",
        "leds",
        "display",
        "content",
    ])?;

    let description = root.req("description")?.nonempty_str()?.to_owned();
    let detect = match root.get("detect") {
        Some(v) => detect(&v.table()?)?,
        None => Detect::default(),
    };
    let mic_array = mic_array(&root.req("mic_array")?.table()?)?;
    let audio_out = audio_out(&root.req("audio_out")?.table()?)?;
    let camera = camera(&root.req("camera")?.table()?)?;
    let encoders = encoders(&root.req("encoders")?)?;

    let mut gpio = GpioUse::default();
    let buttons = buttons(&root.req("buttons")?.table()?, &mut gpio)?;
    let leds = leds(&root.req("leds")?.table()?, &mut gpio)?;
    let display = display(&root.req("display")?.table()?)?;
    let content = root.get("content").map(|v| content(&v.table()?)).transpose()?;

    Ok(Board {
        name: name.to_owned(),
        description,
        detect,
        mic_array,
        audio_out,
        camera,
        encoders,
        buttons,
        leds,
        display,
        content,
    })
}

// ---------------------------------------------------------------------------
// A small typed walker over the span-keeping TOML tree.

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err(&self, key: &str, span: Option<&Span>, reason: impl Into<String>) -> BoardError {
        BoardError::Invalid {
            origin: self.origin.to_owned(),
            line: span.map(|s| self.line_of(s.start)),
            key: Some(key.to_owned()),
            reason: reason.into(),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// One TOML table, with its dotted path.
struct Tbl<'a> {
    ctx: &'a Ctx<'a>,
    path: String,
    t: &'a DeTable<'a>,
    /// Where the table starts; `None` for the document root.
    span: Option<Span>,
}

impl<'a> Tbl<'a> {
    /// Refuse keys not in `known`, naming the first one in the file.
    fn deny_unknown(&self, known: &[&str]) -> Res<()> {
        self.deny_unknown_because(known, None)
    }

    fn deny_unknown_because(&self, known: &[&str], why: Option<&str>) -> Res<()> {
        let mut unknown: Vec<_> = self.t.iter().filter(|(k, _)| !known.contains(&k.get_ref().as_ref())).collect();
        unknown.sort_by_key(|(k, _)| k.span().start);
        if let Some((k, _)) = unknown.first() {
            let reason = match why {
                Some(why) => format!("unknown key ({why}; allowed here: {})", known.join(", ")),
                None => format!("unknown key (allowed here: {})", known.join(", ")),
            };
            return Err(self.ctx.err(&join(&self.path, k.get_ref()), Some(&k.span()), reason));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<Val<'a>> {
        self.t.get(key).map(|v| Val { ctx: self.ctx, path: join(&self.path, key), v })
    }

    fn req(&self, key: &str) -> Res<Val<'a>> {
        self.get(key).ok_or_else(|| self.missing(key, "required key is missing"))
    }

    fn missing(&self, key: &str, reason: &str) -> BoardError {
        self.ctx.err(&join(&self.path, key), self.span.as_ref(), reason)
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> BoardError {
        match self.get(key) {
            Some(v) => v.err(reason),
            None => self.missing(key, &reason.into()),
        }
    }
}

/// One TOML value, with its dotted path.
struct Val<'a> {
    ctx: &'a Ctx<'a>,
    path: String,
    v: &'a Spanned<DeValue<'a>>,
}

impl<'a> Val<'a> {
    fn err(&self, reason: impl Into<String>) -> BoardError {
        self.ctx.err(&self.path, Some(&self.v.span()), reason)
    }

    fn wrong_type(&self, expected: &str) -> BoardError {
        self.err(format!("expected {expected}, found {}", describe(self.v.get_ref())))
    }

    fn table(&self) -> Res<Tbl<'a>> {
        match self.v.get_ref() {
            DeValue::Table(t) => Ok(Tbl { ctx: self.ctx, path: self.path.clone(), t, span: Some(self.v.span()) }),
            _ => Err(self.wrong_type("a table")),
        }
    }

    fn array(&self) -> Res<Vec<Val<'a>>> {
        match self.v.get_ref() {
            DeValue::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Val { ctx: self.ctx, path: format!("{}[{i}]", self.path), v })
                .collect()),
            _ => Err(self.wrong_type("an array")),
        }
    }

    fn str(&self) -> Res<&'a str> {
        match self.v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn nonempty_str(&self) -> Res<&'a str> {
        let s = self.str()?;
        if s.trim().is_empty() {
            return Err(self.err("must not be empty"));
        }
        Ok(s)
    }

    fn bool(&self) -> Res<bool> {
        match self.v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type("a boolean (true or false)")),
        }
    }

    fn int(&self) -> Res<i64> {
        match self.v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| self.err(format!("{i} does not fit in a 64-bit integer"))),
            _ => Err(self.wrong_type("an integer")),
        }
    }

    /// An integer within `lo..=hi`; `what` explains the range to people.
    fn int_in(&self, lo: i64, hi: i64, what: &str) -> Res<i64> {
        let n = self.int()?;
        if n < lo || n > hi {
            return Err(self.err(format!("{n} is out of range ({what}: {lo} to {hi})")));
        }
        Ok(n)
    }

    /// A finite number; integers are accepted too (`0` for `0.0`).
    fn float(&self) -> Res<f64> {
        let f = match self.v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().map_err(|_| self.err(format!("{f} is not a number")))?,
            DeValue::Integer(_) => self.int()? as f64,
            _ => return Err(self.wrong_type("a number")),
        };
        if !f.is_finite() {
            return Err(self.err(format!("{f} is not a finite number")));
        }
        Ok(f)
    }

    fn str_list(&self) -> Res<Vec<String>> {
        self.array()?.iter().map(|v| v.nonempty_str().map(str::to_owned)).collect()
    }
}

fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("a string (\"{}\")", s.escape_debug()),
        DeValue::Integer(i) => format!("an integer ({i})"),
        DeValue::Float(f) => format!("a float ({f})"),
        DeValue::Boolean(b) => format!("a boolean ({b})"),
        DeValue::Datetime(d) => format!("a date-time ({d})"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Sections.

fn detect(t: &Tbl<'_>) -> Res<Detect> {
    t.deny_unknown(&["compatible", "dmi", "hat", "alsa_cards", "arch"])?;
    let list =
        |key: &str| -> Res<Vec<String>> { t.get(key).map(|v| v.str_list()).transpose().map(Option::unwrap_or_default) };
    Ok(Detect {
        compatible: list("compatible")?,
        dmi: list("dmi")?,
        hat: list("hat")?,
        alsa_cards: list("alsa_cards")?,
        arch: list("arch")?,
    })
}

fn backend(t: &Tbl<'_>) -> Res<Backend> {
    let v = t.req("backend")?;
    match v.str()? {
        "linux" => Ok(Backend::Linux),
        "sim" => Ok(Backend::Sim),
        other => Err(v.err(format!("'{other}' is not a backend (use \"linux\" or \"sim\")"))),
    }
}

/// The `device` key: required and non-empty for linux, absent for sim.
fn device(t: &Tbl<'_>, backend: Backend, example: &str) -> Res<String> {
    match (backend, t.get("device")) {
        (Backend::Linux, None) => {
            Err(t.missing("device", &format!("a linux backend must name a device (e.g. \"{example}\")")))
        }
        (Backend::Linux, Some(v)) => {
            let s = v.str()?;
            if s.trim().is_empty() {
                return Err(v.err(format!("a linux backend must name a device (e.g. \"{example}\")")));
            }
            Ok(s.to_owned())
        }
        (Backend::Sim, Some(v)) => {
            Err(v.err("a sim backend must not name a device (remove the key, or use backend = \"linux\")"))
        }
        (Backend::Sim, None) => Ok(String::new()),
    }
}

fn rate(v: &Val<'_>, allowed: &[u32]) -> Res<u32> {
    let n = v.int()?;
    match u32::try_from(n) {
        Ok(r) if allowed.contains(&r) => Ok(r),
        _ => {
            let names: Vec<String> = allowed.iter().map(u32::to_string).collect();
            let list = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => names.join(""),
            };
            Err(v.err(format!("{n} is not supported (use {list})")))
        }
    }
}

fn mic_array(t: &Tbl<'_>) -> Res<MicArray> {
    t.deny_unknown(&[
        "backend",
        "device",
        "capture_channels",
        "sample_rate",
        "positions",
        "channels",
        "front_azimuth_deg",
    ])?;
    let backend = backend(t)?;
    let device = device(t, backend, "hw:CARD=ArrayUAC10,DEV=0")?;
    let capture_channels = t.req("capture_channels")?.int_in(1, 32, "capture channels per frame")? as u16;
    let sample_rate = rate(&t.req("sample_rate")?, MIC_RATES)?;

    // Positions: [x, y] or [x, y, z] in metres.
    let pos_val = t.req("positions")?;
    let pos_items = pos_val.array()?;
    // Each mic needs its own capture channel: refuse more mics than channels before any
    // per-mic work (the spacing check below is quadratic in the number of mics).
    if pos_items.len() > usize::from(capture_channels) {
        return Err(pos_val.err(format!(
            "{} mic positions for {capture_channels} capture channels (each mic needs its own channel)",
            pos_items.len()
        )));
    }
    let mut positions = Vec::with_capacity(pos_items.len());
    for item in &pos_items {
        let comps = item.array()?;
        if !(2..=3).contains(&comps.len()) {
            return Err(item.err(format!("a position is [x, y] or [x, y, z] in metres, found {} numbers", comps.len())));
        }
        let mut p = [0.0; 3];
        for (slot, c) in p.iter_mut().zip(&comps) {
            *slot = c.float()?;
        }
        let r = norm(p);
        if r > MAX_MIC_RADIUS {
            return Err(item.err(format!(
                "mic is {r:.3} m from the array centre (at most {MAX_MIC_RADIUS} m; positions are in metres)"
            )));
        }
        positions.push(p);
    }
    if positions.len() < 2 {
        return Err(pos_val.err(format!("a mic array needs at least 2 mics, found {}", positions.len())));
    }
    for j in 1..positions.len() {
        for i in 0..j {
            let d = norm(sub(positions[j], positions[i]));
            if d < MIN_MIC_SPACING {
                return Err(pos_items[j].err(format!(
                    "mic {j} is {:.1} mm from mic {i}; two mics cannot be at the same place (at least {} mm apart)",
                    d * 1000.0,
                    MIN_MIC_SPACING * 1000.0
                )));
            }
        }
    }

    // Channels: one capture channel index per mic, same order.
    let ch_val = t.req("channels")?;
    let ch_items = ch_val.array()?;
    if ch_items.len() != positions.len() {
        return Err(ch_val.err(format!(
            "{} channels for {} positions (give one capture channel per mic, in the same order)",
            ch_items.len(),
            positions.len()
        )));
    }
    let mut channels: Vec<u16> = Vec::with_capacity(ch_items.len());
    for (m, item) in ch_items.iter().enumerate() {
        let c = item.int()?;
        if c < 0 || c >= i64::from(capture_channels) {
            return Err(item.err(format!(
                "channel {c} does not exist (capture_channels = {capture_channels}, so use 0 to {})",
                capture_channels - 1
            )));
        }
        let c = c as u16;
        if let Some(other) = channels.iter().position(|&x| x == c) {
            return Err(item.err(format!(
                "mic {m} is on channel {c}, which mic {other} already uses; each mic needs its own channel"
            )));
        }
        channels.push(c);
    }

    let front_azimuth_deg = match t.get("front_azimuth_deg") {
        Some(v) => {
            let a = v.float()?;
            if !(0.0..360.0).contains(&a) {
                return Err(v.err(format!("{a} is out of range (degrees in [0, 360))")));
            }
            Some(a)
        }
        None => None,
    };
    if front_azimuth_deg.is_none() && collinear(&positions) {
        return Err(t.missing(
            "front_azimuth_deg",
            "required for a linear array: mics on one line cannot tell front from back; give the azimuth \
             (degrees, 0 = +x, counter-clockwise) of the side the talkers are on",
        ));
    }

    Ok(MicArray { backend, device, capture_channels, sample_rate, positions, channels, front_azimuth_deg })
}

fn audio_out(t: &Tbl<'_>) -> Res<AudioOut> {
    t.deny_unknown(&["backend", "device", "sample_rate", "channels"])?;
    let backend = backend(t)?;
    let device = device(t, backend, "hw:CARD=Headphones,DEV=0")?;
    let sample_rate = rate(&t.req("sample_rate")?, OUT_RATES)?;
    let channels = t.req("channels")?.int_in(1, 8, "output channels")? as u16;
    Ok(AudioOut { backend, device, sample_rate, channels })
}

fn camera(t: &Tbl<'_>) -> Res<Camera> {
    t.deny_unknown(&["backend", "device", "width", "height", "framerate", "ptz"])?;
    let backend = backend(t)?;
    let device = device(t, backend, "/dev/video0")?;
    if backend == Backend::Linux && !device.starts_with("/dev/") {
        return Err(t.err(
            "device",
            format!("'{device}' is not a V4L2 device path (use /dev/video0 or a /dev/v4l/by-id/... path)"),
        ));
    }
    let width = t.req("width")?.int_in(160, 7680, "pixels")? as u32;
    let height = t.req("height")?.int_in(120, 4320, "pixels")? as u32;
    let framerate = t.req("framerate")?.int_in(1, 120, "frames per second")? as u32;
    let ptz = t.get("ptz").map(|v| v.bool()).transpose()?.unwrap_or(false);
    Ok(Camera { backend, device, width, height, framerate, ptz })
}

fn encoders(v: &Val<'_>) -> Res<Vec<String>> {
    let items = v.array()?;
    if items.is_empty() {
        return Err(v.err("give at least one H.264 encoder element (e.g. [\"x264enc\"])"));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in &items {
        let name = item.str()?;
        if !is_element_name(name) {
            return Err(item.err(format!(
                "'{name}' is not a GStreamer element name (lowercase letters, digits, '-' and '_', starting with a letter, e.g. x264enc)"
            )));
        }
        if out.iter().any(|e| e == name) {
            return Err(item.err(format!("'{name}' is listed twice")));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

fn is_element_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && (2..=64).contains(&s.len())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// GPIO lines already given a function, to refuse a line used twice.
#[derive(Default)]
struct GpioUse {
    used: HashMap<(String, u32), String>,
}

fn gpio_line(v: &Val<'_>, used: &mut GpioUse) -> Res<GpioLine> {
    let t = v.table()?;
    t.deny_unknown(&["chip", "line", "active_low"])?;
    let chip_v = t.req("chip")?;
    let chip = chip_v.str()?;
    let digits = chip.strip_prefix("gpiochip").unwrap_or("");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 4 {
        return Err(chip_v.err(format!("'{chip}' is not a GPIO chip name (use gpiochipN, as under /dev)")));
    }
    let line_v = t.req("line")?;
    let line = line_v.int_in(0, 1023, "line offset on the chip")? as u32;
    let active_low = t.get("active_low").map(|v| v.bool()).transpose()?.unwrap_or(false);
    if let Some(other) = used.used.get(&(chip.to_owned(), line)) {
        return Err(
            line_v.err(format!("{chip} line {line} is already used by '{other}'; one line cannot serve two functions"))
        );
    }
    used.used.insert((chip.to_owned(), line), v.path.clone());
    Ok(GpioLine { chip: chip.to_owned(), line, active_low })
}

fn buttons(t: &Tbl<'_>, used: &mut GpioUse) -> Res<Buttons> {
    t.deny_unknown(&["backend", "call", "mute"])?;
    let backend = backend(t)?;
    match backend {
        Backend::Sim => {
            for key in ["call", "mute"] {
                if let Some(v) = t.get(key) {
                    return Err(v.err("a sim backend must not name GPIO lines (remove it, or use backend = \"linux\")"));
                }
            }
            Ok(Buttons { backend, call: None, mute: None })
        }
        Backend::Linux => {
            let call = t.get("call").map(|v| gpio_line(&v, used)).transpose()?;
            let mute = t.get("mute").map(|v| gpio_line(&v, used)).transpose()?;
            if call.is_none() && mute.is_none() {
                return Err(t.missing("call", "a linux buttons backend needs at least a 'call' or a 'mute' GPIO line"));
            }
            Ok(Buttons { backend, call, mute })
        }
    }
}

fn leds(t: &Tbl<'_>, used: &mut GpioUse) -> Res<Leds> {
    let kind_v = t.req("driver")?;
    let kind = kind_v.str()?;
    let driver = match kind {
        "sim" | "none" => {
            t.deny_unknown_because(&["driver"], Some(&format!("driver \"{kind}\" takes no settings")))?;
            if kind == "sim" { LedDriver::Sim } else { LedDriver::None }
        }
        "gpio" => {
            t.deny_unknown_because(
                &["driver", "red", "green", "blue"],
                Some("driver \"gpio\" takes red, green and blue lines"),
            )?;
            let red = t.get("red").map(|v| gpio_line(&v, used)).transpose()?;
            let green = t.get("green").map(|v| gpio_line(&v, used)).transpose()?;
            let blue = t.get("blue").map(|v| gpio_line(&v, used)).transpose()?;
            if red.is_none() && green.is_none() && blue.is_none() {
                return Err(t.missing("red", "driver \"gpio\" needs at least one of 'red', 'green', 'blue'"));
            }
            LedDriver::Gpio { red, green, blue }
        }
        "apa102" => {
            t.deny_unknown_because(
                &["driver", "spidev", "count", "power"],
                Some("driver \"apa102\" takes spidev, count and power"),
            )?;
            let spi_v = t
                .get("spidev")
                .ok_or_else(|| t.missing("spidev", "driver \"apa102\" needs 'spidev' (e.g. \"/dev/spidev0.1\")"))?;
            let spidev = spi_v.str()?;
            if !is_spidev(spidev) {
                return Err(
                    spi_v.err(format!("'{spidev}' is not a spidev path (use /dev/spidevB.C, e.g. /dev/spidev0.1)"))
                );
            }
            let count = t
                .get("count")
                .ok_or_else(|| t.missing("count", "driver \"apa102\" needs 'count', the number of LEDs"))?
                .int_in(1, 1024, "LEDs on the chain")? as u16;
            let power = t.get("power").map(|v| gpio_line(&v, used)).transpose()?;
            LedDriver::Apa102 { spidev: spidev.to_owned(), count, power }
        }
        other => {
            return Err(
                kind_v.err(format!("'{other}' is not an LED driver (use \"sim\", \"none\", \"gpio\" or \"apa102\")"))
            );
        }
    };
    Ok(Leds { driver })
}

fn is_spidev(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("/dev/spidev") else {
        return false;
    };
    let Some((bus, cs)) = rest.split_once('.') else {
        return false;
    };
    let num = |x: &str| !x.is_empty() && x.len() <= 3 && x.chars().all(|c| c.is_ascii_digit());
    num(bus) && num(cs)
}

fn display(t: &Tbl<'_>) -> Res<Display> {
    t.deny_unknown(&["kind", "connector", "width", "height"])?;
    let kind_v = t.req("kind")?;
    let kind = match kind_v.str()? {
        "kms" => DisplayKind::Kms,
        "wayland" => DisplayKind::Wayland,
        "sim" => DisplayKind::Sim,
        other => {
            return Err(kind_v.err(format!("'{other}' is not a display kind (use \"kms\", \"wayland\" or \"sim\")")));
        }
    };
    let connector = match (kind, t.get("connector")) {
        (DisplayKind::Kms, None) => {
            return Err(t.missing("connector", "a kms display needs a DRM connector (e.g. \"HDMI-A-1\")"));
        }
        (DisplayKind::Kms, Some(v)) => {
            let c = v.str()?;
            if !is_connector(c) {
                return Err(v.err(format!("'{c}' is not a DRM connector name (e.g. HDMI-A-1, DP-1, DSI-1, eDP-1)")));
            }
            c.to_owned()
        }
        (_, Some(v)) => return Err(v.err("only a kms display has a connector (remove the key)")),
        (_, None) => String::new(),
    };
    let width = t.req("width")?.int_in(160, 7680, "pixels")? as u32;
    let height = t.req("height")?.int_in(120, 4320, "pixels")? as u32;
    Ok(Display { kind, connector, width, height })
}

fn content(t: &Tbl<'_>) -> Res<Content> {
    let kind_v = t.req("kind")?;
    let kind = match kind_v.str()? {
        "v4l2-dv" => ContentKind::V4l2Dv,
        "uvc" => ContentKind::Uvc,
        "sim" => ContentKind::Sim,
        other => {
            return Err(kind_v.err(format!(
                "'{other}' is not a content input kind (use \"v4l2-dv\" for an HDMI-to-CSI bridge such as the TC358743, \"uvc\" for a USB capture dongle, or \"sim\")"
            )));
        }
    };
    let limits = ["max_width", "max_height", "max_fps"];
    let device = if kind == ContentKind::Sim {
        let mut known = vec!["kind", "page_seconds"];
        known.extend(limits);
        t.deny_unknown_because(&known, Some("a sim content input has no device"))?;
        ContentDevice::None
    } else {
        let mut known = vec!["kind", "device", "match"];
        known.extend(limits);
        t.deny_unknown_because(&known, Some("page_seconds is for the sim only"))?;
        match (t.get("device"), t.get("match")) {
            (Some(_), Some(m)) => return Err(m.err("give 'device' or 'match', not both")),
            (None, None) => {
                return Err(t.missing(
                    "device",
                    "a content input needs 'device' (a /dev path) or 'match' (a V4L2 driver or card name, e.g. \"unicam\")",
                ));
            }
            (Some(d), None) => {
                let p = d.str()?;
                if !p.starts_with("/dev/") || p.len() <= "/dev/".len() || p.chars().any(char::is_whitespace) {
                    return Err(
                        d.err(format!("'{p}' is not a device path (use /dev/videoN or a /dev/v4l/by-id/... link)"))
                    );
                }
                ContentDevice::Path(p.to_owned())
            }
            (None, Some(m)) => {
                let name = m.nonempty_str()?;
                if name.len() > 32 || name.chars().any(char::is_control) {
                    return Err(m.err("a V4L2 driver or card name is at most 32 printable characters"));
                }
                ContentDevice::Match(name.to_owned())
            }
        }
    };
    let max_width = t.get("max_width").map(|v| v.int_in(160, 7680, "pixels")).transpose()?.map(|n| n as u32);
    let max_height = t.get("max_height").map(|v| v.int_in(120, 4320, "pixels")).transpose()?.map(|n| n as u32);
    let max_fps = t.get("max_fps").map(|v| v.int_in(1, 240, "frames per second")).transpose()?.map(|n| n as u32);
    let page_seconds =
        t.get("page_seconds").map(|v| v.int_in(1, 3600, "seconds a page is shown")).transpose()?.map(|n| n as u32);
    Ok(Content { kind, device, max_width, max_height, max_fps, page_seconds })
}

/// DRM connector names look like `HDMI-A-1`, `DP-2`, `eDP-1`, `Virtual-1`.
fn is_connector(s: &str) -> bool {
    let Some((name, index)) = s.rsplit_once('-') else {
        return false;
    };
    !index.is_empty()
        && index.chars().all(|c| c.is_ascii_digit())
        && !name.is_empty()
        && name.split('-').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

// ---------------------------------------------------------------------------
// Geometry.

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// Whether all points lie within [`COLLINEAR_TOLERANCE`] of one line. The
/// line runs through the first point and the point farthest from it.
pub(crate) fn collinear(points: &[[f64; 3]]) -> bool {
    let Some(&p0) = points.first() else {
        return true;
    };
    let far = points.iter().copied().max_by(|a, b| norm(sub(*a, p0)).total_cmp(&norm(sub(*b, p0)))).unwrap_or(p0);
    let span = norm(sub(far, p0));
    if span == 0.0 {
        return true;
    }
    let d = sub(far, p0).map(|x| x / span);
    points.iter().all(|&p| {
        let v = sub(p, p0);
        let along = dot(v, d);
        let perp = sub(v, d.map(|x| x * along));
        norm(perp) <= COLLINEAR_TOLERANCE
    })
}
