//! huisd's configuration: `/etc/huis/huis.toml`, typed and validated.
//!
//! Every problem is reported with the file, the key (dotted path), the line
//! when it is known, and the reason. Unknown keys are errors: a typo must not
//! silently fall back to a default. Changes made over D-Bus go through the
//! same parser and validation before anything is written, and the file is
//! replaced atomically (temp file, fsync, rename) with its comments kept.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/huis/huis.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/huis";

/// The whole configuration. Every section and key is optional in the file;
/// what is missing takes the default shown in `rootfs-overlay/etc/huis/huis.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub room: Room,
    pub audio: Audio,
    pub video: Video,
    pub call: Call,
    pub sip: Sip,
    pub account: Account,
    pub webrtc: Webrtc,
    /// Named destinations (`[[destination]]` tables).
    #[serde(rename = "destination")]
    pub destinations: Vec<Destination>,
    pub visio: Visio,
    pub fleet: Fleet,
    pub log: Log,
}

/// The fleet agent: the room managed from a fleet service over MQTT 5 with mutual TLS. With
/// `broker` empty there is none. The room's identity is either got by enrolment (a one-time
/// `claim_code` exchanged at `enrol_url` for a certificate of a key made here) or the
/// organisation's own (`cert_file`, `key_file`, `ca_file`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fleet {
    /// `mqtts://host:port` (8883 when the port is left out); empty: no fleet agent.
    pub broker: String,
    /// The room's id in the fleet and its certificate's name: 1–64 of `a-z`, `0-9`, `-`.
    pub room_id: String,
    /// The fleet service's enrolment address (`https://fleet.example.org/api/v1/enrol`).
    pub enrol_url: String,
    /// The one-time code an administrator gave for this room; used once, then not needed.
    pub claim_code: String,
    /// The organisation's own PKI instead of enrolment: the room's certificate and key (PEM).
    pub cert_file: String,
    pub key_file: String,
    /// The CA (PEM) that signed the broker's and the fleet service's certificates; with
    /// enrolment, the service gives it and this may stay empty.
    pub ca_file: String,
    /// Whose change wins for a key both set: `fleet`, or `local` (a key changed in the room,
    /// over D-Bus or huisctl, keeps the room's value until it is changed back by the fleet's
    /// precedence being set to `fleet`).
    pub config_precedence: String,
    /// Updates from the fleet install only inside this daily window, local time, `HH:MM-HH:MM`
    /// (it may pass midnight); empty: at any time. Never during a call in any case.
    pub maintenance_window: String,
    /// Seconds between telemetry messages.
    pub telemetry_interval_s: u32,
    /// Seconds a lost connection may last before the broker says the room is offline.
    pub will_delay_s: u32,
    /// The agent's first connection, and its first attempt after losing the broker, wait a
    /// random time up to this many seconds, so a fleet that lost its broker together (or booted
    /// together) comes back spread out instead of all at once. Keep it under `will_delay_s`.
    pub connect_spread_s: u32,
}

/// Visio (La Suite Meet) meetings through their SIP video gateway: `visio:<PIN>` dials
/// `gateway` and gives it the meeting's PIN (an `X-PIN` header, and DTMF when it prompts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Visio {
    /// The gateway's SIP URI (`sip:visio@sip.example.gouv.fr`); empty: `visio:` cannot be dialled.
    pub gateway: String,
    /// Milliseconds from the answer to the first PIN digit (the gateway's prompt plays first).
    pub pin_delay_ms: u32,
    /// Send the PIN by DTMF (RFC 4733, `#` at the end): `auto` (after the wait, since nothing in
    /// the gateway's answer says it took the `X-PIN` header), `always`, or `never` (header only).
    pub pin_dtmf: String,
    /// Session timer we ask for, as refresher (RFC 4028), seconds; 0: none asked. Values under
    /// 90 are for tests only (a gateway answers them 422 and the call goes on with its minimum).
    pub session_expires: u32,
}

/// Web conferences (Janus, WHIP/WHEP). ICE uses the room's own addresses unless servers are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webrtc {
    /// `stun://host:port`, for rooms behind NAT; empty: none (nothing is asked of the Internet).
    pub stun_server: String,
    /// `turn://user:password@host:port` or `turns://…` (TURN over TLS) relays.
    pub turn_servers: Vec<String>,
    /// Extra CA certificates (PEM) trusted for `https` signalling, besides the system's.
    pub ca_file: String,
    /// `all` (direct paths first, relays when needed) or `relay` (media only through the TURN
    /// servers: for networks that allow nothing else, or to hide the room's addresses).
    pub ice_transport_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sip {
    /// Address and port for SIP over UDP and TCP.
    pub listen: String,
    /// The address written into Via, Contact and SDP; empty: the listen
    /// address, or the first non-loopback interface when listening on all.
    pub public_address: String,
    /// User part of our SIP address when no account is configured.
    pub user: String,
    /// Lowest and highest UDP port for RTP (an even port and the next for RTCP).
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Address and port of the TLS listener for incoming calls (needs `tls_certificate` and
    /// `tls_key`); empty: none (incoming TLS then only arrives over connections we opened).
    pub tls_listen: String,
    /// Our certificate chain (PEM): served by the TLS listener, and shown to servers that ask
    /// for a client certificate. Empty: none.
    pub tls_certificate: String,
    /// The private key of `tls_certificate` (PEM).
    pub tls_key: String,
    /// Extra trusted CA certificates (PEM), beside the system's (`/etc/ssl/certs`).
    pub tls_ca_file: String,
    /// Seconds between RFC 5626 CRLF keep-alive pings on TCP and TLS connections we opened;
    /// 0: none.
    pub keepalive_interval: u32,
    /// Seconds: the longest first wait after a failed registration. Later waits double (up
    /// to 15 min) and each is a random time between half and all of its ceiling.
    pub register_retry_base: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Account {
    /// Registrar, e.g. `sip:pbx.example.org`; empty: no registration, calls go
    /// straight to the destination's host.
    pub registrar: String,
    /// Outbound proxy `host:port` (an IP address for now); empty: the registrar's host
    /// (RFC 3263: NAPTR, SRV, A/AAAA).
    pub proxy: String,
    /// `udp`, `tcp` or `tls` (`sips:` registrars are always TLS).
    pub transport: String,
    /// Address of record user part and digest user name.
    pub user: String,
    pub password: String,
    /// Requested registration lifetime, seconds.
    pub expires: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Destination {
    /// What people call it (`huisctl dial weekly`).
    pub name: String,
    /// `sip:` URI.
    pub uri: String,
    /// Digits sent once the call is up (a meeting PIN: `1234567890#`; `,` waits a second).
    pub dtmf: String,
    /// A Visio meeting's PIN: `uri` is then the Visio gateway (`sip:`/`sips:`), given the PIN as
    /// `visio:<PIN>` would (see [`Visio`]). Never shown: [`Config::get`] masks it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pin: String,
    /// Bearer token for a `whip+https://` destination (WHIP and WHEP requests). Never shown:
    /// [`Config::get`] masks it, and it is not part of the destination's text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Room {
    /// Shown on the screen and in the status bar.
    pub name: String,
    /// Board descriptor name or path; empty means detect.
    pub board: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audio {
    /// Sim board: the room recording the simulated mic array plays (a
    /// multichannel WAV matching the board's array, or mono: then one talker
    /// in front of the array, each mic hearing it with its own delay). Empty:
    /// a room scene generated at first start into the state directory.
    pub sim_recording: String,
    /// Sim board: where the simulated loudspeaker writes what it plays.
    /// Empty: `speaker.wav` in the state directory.
    pub sim_output: String,
    pub echo_cancellation: bool,
    pub beamforming: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
    /// Loudspeaker volume, percent.
    pub output_volume: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub self_view: bool,
    /// Offer and accept video in calls (needs a camera and an H.264 encoder).
    pub enable: bool,
    /// Highest send bitrate, kbit/s (`b=AS` in our SDP; the adaptation never goes above it).
    pub bitrate_kbps: u32,
    /// Lowest send bitrate the adaptation goes down to, kbit/s.
    pub min_bitrate_kbps: u32,
    /// Offer and accept RTCP feedback for video (NACK with RTX, PLI, FIR, TMMBR, REMB). Off for
    /// endpoints whose feedback handling is broken: keyframes are then asked for by SIP INFO.
    pub rtcp_feedback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Call {
    /// What the call button dials when the room is idle (`sip:…`, `sips:…`).
    pub default_destination: String,
    /// Answer incoming calls without a button press.
    pub auto_answer: bool,
    /// Audio codecs in order of preference.
    pub audio_codecs: Vec<String>,
    /// Media encryption: `best-effort` (offer SRTP, take plain RTP only when the far end
    /// refuses it), `required` (no call without encrypted media), `off` (plain RTP).
    pub media_encryption: String,
    /// SIP signalling over TLS: `best-effort` (TLS when the account, the URI or DNS says so)
    /// or `required` (nothing is registered or called over anything but TLS).
    pub sip_tls: String,
    /// Seconds without any RTP or RTCP from the far end after which a call ends ("no media
    /// from the far end for 30 s (RTP timeout)"); 0: never.
    pub media_timeout: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// error, warn, info, debug or trace (RUST_LOG overrides it).
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            room: Room::default(),
            audio: Audio::default(),
            video: Video::default(),
            call: Call::default(),
            sip: Sip::default(),
            account: Account::default(),
            webrtc: Webrtc::default(),
            destinations: Vec::new(),
            visio: Visio::default(),
            fleet: Fleet::default(),
            log: Log::default(),
        }
    }
}

impl Default for Sip {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:5060".into(),
            public_address: String::new(),
            user: "room".into(),
            rtp_port_min: 16384,
            rtp_port_max: 16482,
            tls_listen: String::new(),
            tls_certificate: String::new(),
            tls_key: String::new(),
            tls_ca_file: String::new(),
            keepalive_interval: 30,
            register_retry_base: 30,
        }
    }
}

impl Default for Account {
    fn default() -> Self {
        Self {
            registrar: String::new(),
            proxy: String::new(),
            transport: "udp".into(),
            user: String::new(),
            password: String::new(),
            expires: 600,
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Destination {
    fn default() -> Self {
        Self { name: String::new(), uri: String::new(), dtmf: String::new(), pin: String::new(), token: String::new() }
    }
}

impl Default for Visio {
    fn default() -> Self {
        Self { gateway: String::new(), pin_delay_ms: 2000, pin_dtmf: "auto".into(), session_expires: 1800 }
    }
}

impl Fleet {
    /// Checks the section; returns the key (without `fleet.`) and why.
    fn check(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [("cert_file", &self.cert_file), ("key_file", &self.key_file), ("ca_file", &self.ca_file)] {
            if !v.is_empty() && !Path::new(v).is_absolute() {
                return Err((k, format!("'{v}' must be an absolute path (or empty)")));
            }
        }
        if !self.enrol_url.is_empty() && !self.enrol_url.starts_with("https://") {
            return Err((
                "enrol_url",
                format!("'{}' is not an https:// address", crate::text::excerpt(&self.enrol_url)),
            ));
        }
        if !matches!(self.config_precedence.as_str(), "fleet" | "local") {
            return Err(("config_precedence", format!("'{}' is not \"fleet\" or \"local\"", self.config_precedence)));
        }
        parse_window(&self.maintenance_window).map_err(|e| ("maintenance_window", e))?;
        if !(5..=3600).contains(&self.telemetry_interval_s) {
            return Err((
                "telemetry_interval_s",
                format!("{} is out of range (5 to 3600 seconds)", self.telemetry_interval_s),
            ));
        }
        if self.will_delay_s > 3600 {
            return Err(("will_delay_s", format!("{} is out of range (0 to 3600 seconds)", self.will_delay_s)));
        }
        if self.connect_spread_s > 600 {
            return Err(("connect_spread_s", format!("{} is out of range (0 to 600 seconds)", self.connect_spread_s)));
        }
        if self.broker.is_empty() {
            return Ok(());
        }
        self.broker_address().map_err(|e| ("broker", e))?;
        if let Err(e) = huis_fleet_proto::topic::RoomId::new(&self.room_id) {
            return Err(("room_id", format!("{e} (1 to 64 of a-z, 0-9 and -, as the fleet named the room)")));
        }
        let own = [&self.cert_file, &self.key_file].iter().filter(|v| !v.is_empty()).count();
        match (own, self.enrol_url.is_empty()) {
            (0, true) => {
                Err(("enrol_url", "the fleet needs enrol_url (and a claim_code) or cert_file and key_file".into()))
            }
            (2, true) if self.ca_file.is_empty() => {
                Err(("ca_file", "must name the CA of the broker with cert_file and key_file".into()))
            }
            (2, true) | (0, false) => Ok(()),
            (1, _) => Err(("key_file", "cert_file and key_file go together".into())),
            _ => Err(("enrol_url", "set either enrol_url or cert_file and key_file, not both".into())),
        }
    }

    /// The broker's host and port from `mqtts://host[:port]`.
    pub fn broker_address(&self) -> Result<(String, u16), String> {
        let b = crate::text::excerpt(&self.broker);
        let rest = self
            .broker
            .strip_prefix("mqtts://")
            .ok_or_else(|| format!("'{b}' is not mqtts://host:port (the fleet is reached over TLS only)"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return Err(format!("'{b}': the port is not a number from 1 to 65535")),
            },
            _ => (rest, 8883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!("'{b}' has no usable host name"));
        }
        Ok((host.to_owned(), port))
    }
}

/// A daily window `HH:MM-HH:MM` as minutes of the day (start, end); `None` for "" (always).
/// The end may be before the start: the window passes midnight.
pub fn parse_window(s: &str) -> Result<Option<(u16, u16)>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let minute = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
    };
    match s.split_once('-').and_then(|(a, b)| Some((minute(a)?, minute(b)?))) {
        Some((a, b)) if a != b => Ok(Some((a, b))),
        _ => Err(format!("'{}' is not a daily window HH:MM-HH:MM (e.g. 02:00-05:00)", crate::text::excerpt(s))),
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Self {
            broker: String::new(),
            room_id: String::new(),
            enrol_url: String::new(),
            claim_code: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: String::new(),
            config_precedence: "fleet".into(),
            maintenance_window: String::new(),
            telemetry_interval_s: 60,
            will_delay_s: 30,
            connect_spread_s: 30,
        }
    }
}

impl Default for Room {
    fn default() -> Self {
        Self { name: "Meeting room".into(), board: String::new() }
    }
}

impl Default for Audio {
    fn default() -> Self {
        Self {
            sim_recording: String::new(),
            sim_output: String::new(),
            echo_cancellation: true,
            beamforming: true,
            noise_suppression: true,
            gain_control: true,
            output_volume: 80,
        }
    }
}

impl Default for Webrtc {
    fn default() -> Self {
        Self {
            stun_server: String::new(),
            turn_servers: Vec::new(),
            ca_file: String::new(),
            ice_transport_policy: "all".into(),
        }
    }
}

impl Default for Video {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            framerate: 30,
            self_view: true,
            enable: true,
            bitrate_kbps: 2000,
            min_bitrate_kbps: 150,
            rtcp_feedback: true,
        }
    }
}

impl Default for Call {
    fn default() -> Self {
        Self {
            default_destination: String::new(),
            auto_answer: false,
            audio_codecs: ["opus", "g722", "pcmu", "pcma"].map(String::from).into(),
            media_encryption: "best-effort".into(),
            sip_tls: "best-effort".into(),
            media_timeout: 30,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self { level: "info".into() }
    }
}

pub const AUDIO_CODECS: &[&str] = &["opus", "g722", "pcmu", "pcma"];
/// The values of `visio.pin_dtmf`.
pub const VISIO_PIN_DTMF: &[&str] = &["auto", "always", "never"];
/// The values of `call.media_encryption`.
pub const MEDIA_ENCRYPTION: &[&str] = &["best-effort", "required", "off"];
/// The picture sizes huis sends, smallest first.
pub const VIDEO_SIZES: &[(u32, u32)] = &[(640, 360), (960, 540), (1280, 720), (1920, 1080)];

/// A configuration problem, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `D-Bus` for a change requested over the bus.
    pub origin: String,
    pub key: Option<String>,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A change requested over D-Bus has no file to name.
        let mut sep = "";
        if self.origin != "D-Bus" {
            write!(f, "{}", self.origin)?;
            sep = ": ";
        }
        if let Some(l) = self.line {
            write!(f, "{sep}line {l}")?;
            sep = ": ";
        }
        if let Some(k) = &self.key {
            write!(f, "{sep}key '{}'", crate::text::excerpt(k))?;
            sep = ": ";
        }
        write!(f, "{sep}{}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates configuration text. `origin` names the file in messages.
    pub fn parse(origin: &str, text: &str) -> Result<Config, ConfigError> {
        let err = |key: Option<String>, line: Option<usize>, reason: String| ConfigError {
            origin: origin.to_owned(),
            key,
            line,
            reason,
        };
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(None, line, format!("not valid TOML: {}", first_line(e.message())))
        })?;
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (key, line) = match e.span() {
                Some(s) => {
                    let key = key_at(doc.as_table(), s.start, "");
                    (key, Some(line_of(text, s.start)))
                }
                None => (None, None),
            };
            err(key, line, first_line(e.message()).replace("unknown field", "unknown key"))
        })?;
        if let Err((key, reason)) = cfg.validate() {
            let line = span_of_key(doc.as_table(), &key).map(|s| line_of(text, s));
            return Err(err(Some(key), line, reason));
        }
        Ok(cfg)
    }

    /// Loads the file at `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError {
                origin: path.display().to_string(),
                key: None,
                line: None,
                reason: format!("cannot be read: {e}"),
            }),
        }
    }

    /// Checks values beyond their types. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((k.to_owned(), r));
        // No value of ours needs more than 4096 characters (a URI, a path, a password); a
        // megabyte is a mistake or an attack, refused before it reaches the file.
        if let Some((key, n)) = longest_string(&toml::Value::try_from(self).expect("the configuration serialises"), "")
            && n > MAX_VALUE_CHARS
        {
            return bad(&key, format!("a value of {n} characters is too long (at most {MAX_VALUE_CHARS})"));
        }
        let n = self.room.name.trim();
        if n.is_empty() || self.room.name.chars().count() > 64 || self.room.name.chars().any(char::is_control) {
            return bad("room.name", "must be 1 to 64 printable characters".into());
        }
        for (k, v) in [("audio.sim_recording", &self.audio.sim_recording), ("audio.sim_output", &self.audio.sim_output)]
        {
            if !v.is_empty() && !Path::new(v).is_absolute() {
                return bad(k, format!("'{v}' must be an absolute path (or empty for the default)"));
            }
        }
        if self.audio.output_volume > 100 {
            return bad(
                "audio.output_volume",
                format!("{} is out of range (0 to 100 percent)", self.audio.output_volume),
            );
        }
        let w = &self.webrtc;
        if !w.stun_server.is_empty() && (!w.stun_server.starts_with("stun://") || w.stun_server.len() <= 7) {
            return bad("webrtc.stun_server", format!("'{}' is not stun://host:port", w.stun_server));
        }
        for t in &w.turn_servers {
            let rest = t.strip_prefix("turn://").or_else(|| t.strip_prefix("turns://"));
            if !rest.is_some_and(|r| r.contains('@') && !r.ends_with('@')) {
                // The entry holds a password: the message names the server only.
                let host = t.rsplit('@').next().unwrap_or("");
                return bad(
                    "webrtc.turn_servers",
                    format!("an entry for '{host}' is not turn(s)://user:password@host:port"),
                );
            }
        }
        match w.ice_transport_policy.as_str() {
            "all" => {}
            "relay" if !w.turn_servers.is_empty() => {}
            "relay" => return bad("webrtc.ice_transport_policy", "\"relay\" needs webrtc.turn_servers".into()),
            other => return bad("webrtc.ice_transport_policy", format!("'{other}' is not \"all\" or \"relay\"")),
        }
        if !w.ca_file.is_empty() && !Path::new(&w.ca_file).is_absolute() {
            return bad("webrtc.ca_file", format!("'{}' must be an absolute path (or empty)", w.ca_file));
        }
        self.fleet.check().map_err(|(k, r)| (format!("fleet.{k}"), r))?;
        if !VIDEO_SIZES.contains(&(self.video.width, self.video.height)) {
            let sizes: Vec<String> = VIDEO_SIZES.iter().map(|(w, h)| format!("{w}x{h}")).collect();
            return bad(
                "video.width",
                format!(
                    "{}x{} is not a supported size (use one of {})",
                    self.video.width,
                    self.video.height,
                    sizes.join(", ")
                ),
            );
        }
        if !(1..=60).contains(&self.video.framerate) {
            return bad(
                "video.framerate",
                format!("{} is out of range (1 to 60 frames per second)", self.video.framerate),
            );
        }
        if !(100..=20_000).contains(&self.video.bitrate_kbps) {
            return bad(
                "video.bitrate_kbps",
                format!("{} is out of range (100 to 20000 kbit/s)", self.video.bitrate_kbps),
            );
        }
        if !(50..=self.video.bitrate_kbps).contains(&self.video.min_bitrate_kbps) {
            return bad(
                "video.min_bitrate_kbps",
                format!("{} is out of range (50 kbit/s to video.bitrate_kbps)", self.video.min_bitrate_kbps),
            );
        }
        let d = &self.call.default_destination;
        if !d.is_empty()
            && let Err(e) = crate::call::Destination::parse(d)
        {
            return bad("call.default_destination", e.to_string());
        }
        if self.call.audio_codecs.is_empty() {
            return bad("call.audio_codecs", "must name at least one codec".into());
        }
        for (i, c) in self.call.audio_codecs.iter().enumerate() {
            if !AUDIO_CODECS.contains(&c.as_str()) {
                return bad(
                    "call.audio_codecs",
                    format!("'{c}' is not a supported codec (use {})", AUDIO_CODECS.join(", ")),
                );
            }
            if self.call.audio_codecs[..i].contains(c) {
                return bad("call.audio_codecs", format!("'{c}' is listed twice"));
            }
        }
        if !MEDIA_ENCRYPTION.contains(&self.call.media_encryption.as_str()) {
            return bad(
                "call.media_encryption",
                format!("'{}' is not one of {}", self.call.media_encryption, MEDIA_ENCRYPTION.join(", ")),
            );
        }
        if self.sip.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("sip.listen", format!("'{}' is not an address:port (e.g. 0.0.0.0:5060)", self.sip.listen));
        }
        if !self.sip.public_address.is_empty() && self.sip.public_address.parse::<std::net::IpAddr>().is_err() {
            return bad("sip.public_address", format!("'{}' is not an IP address", self.sip.public_address));
        }
        if self.sip.user.is_empty()
            || !self.sip.user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.!~*'+".contains(c))
        {
            return bad("sip.user", format!("'{}' is not a SIP user name", self.sip.user));
        }
        if self.sip.rtp_port_min < 1024 || self.sip.rtp_port_max <= self.sip.rtp_port_min {
            return bad(
                "sip.rtp_port_min",
                format!(
                    "the range {}..{} is not usable (ports above 1023, min below max)",
                    self.sip.rtp_port_min, self.sip.rtp_port_max
                ),
            );
        }
        let a = &self.account;
        if !a.registrar.is_empty() {
            let scheme = if a.registrar.starts_with("sips:") { 5 } else { 4 };
            if !(a.registrar.starts_with("sip") && a.registrar.len() > scheme && a.registrar[..scheme].ends_with(':')) {
                return bad("account.registrar", format!("'{}' is not a sip: or sips: URI", a.registrar));
            }
            if self.call.sip_tls == "required" && a.transport != "tls" && !a.registrar.starts_with("sips:") {
                return bad(
                    "account.transport",
                    format!("'{}' with call.sip_tls = \"required\": use tls (or a sips: registrar)", a.transport),
                );
            }
            if a.user.is_empty() {
                return bad("account.user", "must be set when account.registrar is".into());
            }
            if !(60..=86400).contains(&a.expires) {
                return bad("account.expires", format!("{} is out of range (60 to 86400 seconds)", a.expires));
            }
        }
        if !a.proxy.is_empty() && a.proxy.parse::<std::net::SocketAddr>().is_err() {
            return bad("account.proxy", format!("'{}' is not an IP address:port", a.proxy));
        }
        if !["udp", "tcp", "tls"].contains(&a.transport.as_str()) {
            return bad("account.transport", format!("'{}' is not a transport (use udp, tcp or tls)", a.transport));
        }
        if !["best-effort", "required"].contains(&self.call.sip_tls.as_str()) {
            return bad(
                "call.sip_tls",
                format!("'{}' is not a policy (use best-effort or required)", self.call.sip_tls),
            );
        }
        if !self.sip.tls_listen.is_empty() {
            if self.sip.tls_listen.parse::<std::net::SocketAddr>().is_err() {
                return bad(
                    "sip.tls_listen",
                    format!("'{}' is not an address:port (e.g. 0.0.0.0:5061)", self.sip.tls_listen),
                );
            }
            if self.sip.tls_certificate.is_empty() || self.sip.tls_key.is_empty() {
                return bad("sip.tls_listen", "needs sip.tls_certificate and sip.tls_key".into());
            }
        }
        if self.sip.tls_certificate.is_empty() != self.sip.tls_key.is_empty() {
            return bad("sip.tls_key", "sip.tls_certificate and sip.tls_key go together".into());
        }
        if self.sip.keepalive_interval != 0 && !(10..=3600).contains(&self.sip.keepalive_interval) {
            return bad(
                "sip.keepalive_interval",
                format!("{} is out of range (0 for none, or 10 to 3600 seconds)", self.sip.keepalive_interval),
            );
        }
        if !(1..=900).contains(&self.sip.register_retry_base) {
            return bad(
                "sip.register_retry_base",
                format!("{} is out of range (1 to 900 seconds)", self.sip.register_retry_base),
            );
        }
        if self.call.media_timeout != 0 && !(5..=3600).contains(&self.call.media_timeout) {
            return bad(
                "call.media_timeout",
                format!("{} is out of range (0 for never, or 5 to 3600 seconds)", self.call.media_timeout),
            );
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if d.name.is_empty() {
                return bad(&format!("destination[{i}].name"), "must be set".into());
            }
            if let Err(e) = crate::call::Destination::parse(&d.uri) {
                return bad(&format!("destination[{i}].uri"), e.to_string());
            }
            if !d.token.is_empty() {
                if !d.uri.to_ascii_lowercase().starts_with("whip+") {
                    return bad(&format!("destination[{i}].token"), "only whip+ destinations take a token".into());
                }
                if d.token.len() > 4096 || !d.token.chars().all(|c| c.is_ascii_graphic()) {
                    return bad(
                        &format!("destination[{i}].token"),
                        "a bearer token is at most 4096 printable ASCII characters, without spaces".into(),
                    );
                }
            }
            if !d.pin.is_empty() {
                let lower = d.uri.to_ascii_lowercase();
                if lower.starts_with("visio:") {
                    return bad(&format!("destination[{i}].pin"), "the visio: URI already holds the PIN".into());
                }
                if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
                    return bad(&format!("destination[{i}].pin"), "a PIN goes with a sip: or sips: gateway URI".into());
                }
                if let Err(why) = crate::call::check_pin(&d.pin) {
                    return bad(&format!("destination[{i}].pin"), why);
                }
            }
            if !d.dtmf.chars().all(|c| c.is_ascii_digit() || "*#ABCD,".contains(c)) {
                return bad(
                    &format!("destination[{i}].dtmf"),
                    format!("'{}' may hold only 0-9 * # A-D and , (a pause)", d.dtmf),
                );
            }
        }
        let g = &self.visio.gateway;
        if !g.is_empty() {
            let lower = g.to_ascii_lowercase();
            let sip = crate::call::Destination::parse(g)
                .ok()
                .filter(|_| lower.starts_with("sip:") || lower.starts_with("sips:"));
            if sip.is_none() || g.contains(";dtmf=") {
                return bad(
                    "visio.gateway",
                    format!("'{}' is not a gateway URI (expected sip:user@host)", crate::text::excerpt(g)),
                );
            }
        }
        if self.visio.pin_delay_ms > 30_000 {
            return bad(
                "visio.pin_delay_ms",
                format!("{} is out of range (0 to 30000 milliseconds)", self.visio.pin_delay_ms),
            );
        }
        if !VISIO_PIN_DTMF.contains(&self.visio.pin_dtmf.as_str()) {
            return bad(
                "visio.pin_dtmf",
                format!("'{}' is not one of {}", crate::text::excerpt(&self.visio.pin_dtmf), VISIO_PIN_DTMF.join(", ")),
            );
        }
        let se = self.visio.session_expires;
        if se != 0 && !(10..=86_400).contains(&se) {
            return bad(
                "visio.session_expires",
                format!("{se} is out of range (0 for none, or 90 to 86400 seconds; 10 to 89 for tests only)"),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return bad(
                "log.level",
                format!("'{}' is not a level (use error, warn, info, debug or trace)", self.log.level),
            );
        }
        Ok(())
    }

    /// One key's value (or everything, for ""), as TOML, with secrets masked: passwords, tokens
    /// and the passwords inside TURN URIs read as `(hidden)` (they can be set, never read back).
    pub fn get(&self, key: &str) -> Result<String, ConfigError> {
        let mut value = toml::Value::try_from(self).expect("the configuration serialises");
        mask_secrets(&mut value);
        if key.is_empty() {
            return Ok(toml::to_string(&value).expect("a table serialises"));
        }
        let mut v = &value;
        for part in key.split('.') {
            v = v.get(part).ok_or_else(|| ConfigError {
                origin: "D-Bus".into(),
                key: Some(key.to_owned()),
                line: None,
                reason: format!("no such key (known keys: {})", known_keys().join(", ")),
            })?;
        }
        Ok(match v {
            toml::Value::Table(_) => toml::to_string(v).expect("a table serialises"),
            other => other.to_string(),
        })
    }
}

/// The longest string value a configuration may hold.
const MAX_VALUE_CHARS: usize = 4096;

/// The dotted key and length of the longest string in a configuration tree.
fn longest_string(v: &toml::Value, at: &str) -> Option<(String, usize)> {
    let join = |k: &str| if at.is_empty() { k.to_owned() } else { format!("{at}.{k}") };
    match v {
        toml::Value::String(s) => Some((at.to_owned(), s.chars().count())),
        toml::Value::Table(t) => t.iter().filter_map(|(k, v)| longest_string(v, &join(k))).max_by_key(|(_, n)| *n),
        // Arrays of tables (`[[destination]]`) name the table; arrays of strings the key.
        toml::Value::Array(a) => a.iter().filter_map(|v| longest_string(v, at)).max_by_key(|(_, n)| *n),
        _ => None,
    }
}

/// What [`Config::get`] shows instead of a secret.
pub const HIDDEN: &str = "(hidden)";

/// Replaces every secret in a configuration tree (see [`Config::get`]).
fn mask_secrets(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                match (k.as_str(), &mut *v) {
                    ("password" | "token" | "pin" | "claim_code", toml::Value::String(s)) if !s.is_empty() => {
                        *s = HIDDEN.into()
                    }
                    // A Visio meeting's PIN in its dial string.
                    ("uri" | "default_destination", toml::Value::String(s))
                        if s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("visio:")) =>
                    {
                        *s = format!("visio:{HIDDEN}");
                    }
                    ("turn_servers", toml::Value::Array(a)) => {
                        for e in a.iter_mut() {
                            if let toml::Value::String(s) = e
                                && let Some((scheme, rest)) = s.split_once("://")
                                && let Some((cred, host)) = rest.rsplit_once('@')
                            {
                                let user = cred.split(':').next().unwrap_or("");
                                *s = format!("{scheme}://{user}:{HIDDEN}@{host}");
                            }
                        }
                    }
                    _ => mask_secrets(v),
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

/// Every settable key, dotted.
pub fn known_keys() -> Vec<String> {
    let value = toml::Value::try_from(Config::default()).expect("the configuration serialises");
    let mut out = Vec::new();
    if let toml::Value::Table(t) = value {
        for (section, v) in t {
            if let toml::Value::Table(inner) = v {
                out.extend(inner.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    out
}

pub fn is_destination(s: &str) -> bool {
    crate::call::Destination::parse(s).is_ok()
}

/// A request to change one key, as it arrives over D-Bus.
///
/// `value` is TOML (`true`, `42`, `["opus", "pcmu"]`, `"text"`); a bare word
/// that is not valid TOML is taken as a string, so `room.name` can be set to
/// `Board room` without quotes.
pub fn apply_set(current_text: &str, key: &str, value: &str) -> Result<(String, Config), ConfigError> {
    let err = |reason: String| ConfigError { origin: "D-Bus".into(), key: Some(key.to_owned()), line: None, reason };
    let parts: Vec<&str> = key.split('.').collect();
    let [section, name] = parts[..] else {
        return Err(err(format!("must be written section.key (known keys: {})", known_keys().join(", "))));
    };
    if !known_keys().iter().any(|k| k == key) {
        return Err(err(format!("no such key (known keys: {})", known_keys().join(", "))));
    }
    let parsed: toml_edit::Value = match value.trim().parse::<toml_edit::Value>() {
        Ok(v) => v,
        Err(_) => toml_edit::Value::from(value),
    };
    let mut doc: toml_edit::DocumentMut = current_text.parse().map_err(|e: toml_edit::TomlError| {
        err(format!("the current file is not valid TOML: {}", first_line(e.message())))
    })?;
    if !doc.contains_key(section) {
        doc[section] = toml_edit::table();
    }
    let table = doc[section]
        .as_table_like_mut()
        .ok_or_else(|| err(format!("'{section}' in the current file is not a table")))?;
    let mut parsed = parsed;
    // Keep the comment after the old value (`key = 1 # why`).
    if let Some(old) = table.get(name).and_then(|i| i.as_value()) {
        *parsed.decor_mut() = old.decor().clone();
    }
    table.insert(name, toml_edit::Item::Value(parsed));
    let text = doc.to_string();
    let cfg = Config::parse("D-Bus", &text).map_err(|e| {
        let reason = e.reason.trim_start_matches(&format!("{} ", value.trim())).to_owned();
        err(format!(
            "{} refused: {}; nothing was changed",
            crate::text::excerpt(value.trim()),
            crate::text::excerpt_long(&reason)
        ))
    })?;
    Ok((text, cfg))
}

/// Writes `text` to `path` atomically: a temp file beside it, fsync, rename,
/// fsync of the directory. Readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("huis"), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The dotted path of the deepest key whose key or value span covers `offset`.
fn key_at(table: &dyn toml_edit::TableLike, offset: usize, prefix: &str) -> Option<String> {
    for (k, item) in table.iter() {
        let path = if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
        let key_span = table.key(k).and_then(|key| key.span());
        if let Some(inner) = item.as_table_like() {
            if let Some(found) = key_at(inner, offset, &path) {
                return Some(found);
            }
        }
        let covers = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.contains(&offset));
        if covers(key_span) || (item.as_table_like().is_none() && covers(item.span())) {
            return Some(path);
        }
    }
    None
}

/// Start offset of the key (dotted path) in the document, or of its table.
fn span_of_key(table: &dyn toml_edit::TableLike, key: &str) -> Option<usize> {
    let mut t = table;
    let mut last = None;
    for part in key.split('.') {
        let k = t.key(part)?;
        last = k.span().map(|s| s.start).or(last);
        match t.get(part)?.as_table_like() {
            Some(inner) => t = inner,
            None => return last,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_checked() {
        let p = |t: &str| Config::parse("t.toml", t);
        let cfg = p("[account]\nregistrar = \"sips:pbx.example.org\"\nuser = \"r\"\n[call]\nsip_tls = \"required\"\n")
            .unwrap();
        assert_eq!(cfg.call.sip_tls, "required");
        let e = p("[account]\nregistrar = \"sip:pbx.example.org\"\nuser = \"r\"\n[call]\nsip_tls = \"required\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("account.transport"), "{e}");
        assert!(e.to_string().contains("required"), "{e}");
        assert!(p("[account]\nregistrar = \"sip:x\"\nuser = \"r\"\ntransport = \"tls\"\n").is_ok());
        assert!(p("[call]\nsip_tls = \"maybe\"\n").is_err());
        assert!(p("[sip]\ntls_listen = \"0.0.0.0:5061\"\n").is_err(), "a listener needs a certificate");
        assert!(p("[sip]\ntls_certificate = \"/c.pem\"\n").is_err(), "certificate and key go together");
        assert!(p("[sip]\nkeepalive_interval = 5\n").is_err());
        assert!(p("[sip]\nkeepalive_interval = 0\n").is_ok());
        assert!(p("[sip]\nregister_retry_base = 0\n").is_err());
        assert!(p("[sip]\nregister_retry_base = 2\n").is_ok());
        assert!(p("[call]\nmedia_timeout = 2\n").is_err());
        assert!(p("[call]\nmedia_timeout = 0\n").is_ok());
    }

    #[test]
    fn fleet_settings_are_checked_and_refusals_name_the_key() {
        let p = |t: &str| Config::parse("f", &format!("[fleet]\n{t}\n"));
        let ok = "broker = \"mqtts://fleet.example.org\"\nroom_id = \"paris-4-12\"\nenrol_url = \"https://fleet.example.org/api/v1/enrol\"";
        let cfg = p(ok).unwrap();
        assert_eq!(cfg.fleet.broker_address().unwrap(), ("fleet.example.org".into(), 8883));
        let cfg = p("broker = \"mqtts://[2001:db8::1]:8884\"\nroom_id = \"r1\"\ncert_file = \"/c\"\nkey_file = \"/k\"\nca_file = \"/ca\"").unwrap();
        assert_eq!(cfg.fleet.broker_address().unwrap(), ("2001:db8::1".into(), 8884));
        for (text, key, why) in [
            (
                "broker = \"mqtt://fleet.example.org\"\nroom_id = \"r\"\nenrol_url = \"https://f/e\"",
                "fleet.broker",
                "over TLS only",
            ),
            ("broker = \"mqtts://f:99999\"\nroom_id = \"r\"\nenrol_url = \"https://f/e\"", "fleet.broker", "port"),
            ("broker = \"mqtts://f\"\nroom_id = \"Room 1\"\nenrol_url = \"https://f/e\"", "fleet.room_id", "a-z"),
            ("broker = \"mqtts://f\"\nroom_id = \"r\"", "fleet.enrol_url", "enrol_url"),
            ("broker = \"mqtts://f\"\nroom_id = \"r\"\ncert_file = \"/c\"", "fleet.key_file", "together"),
            ("broker = \"mqtts://f\"\nroom_id = \"r\"\ncert_file = \"/c\"\nkey_file = \"/k\"", "fleet.ca_file", "CA"),
            ("enrol_url = \"http://f/e\"", "fleet.enrol_url", "https"),
            ("cert_file = \"room.crt\"", "fleet.cert_file", "absolute"),
            ("config_precedence = \"room\"", "fleet.config_precedence", "\"local\""),
            ("maintenance_window = \"2-5\"", "fleet.maintenance_window", "HH:MM-HH:MM"),
            ("maintenance_window = \"24:00-05:00\"", "fleet.maintenance_window", "HH:MM-HH:MM"),
            ("telemetry_interval_s = 1", "fleet.telemetry_interval_s", "5 to 3600"),
            ("connect_spread_s = 601", "fleet.connect_spread_s", "0 to 600"),
        ] {
            let e = p(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.reason.contains(why), "{text}: {e}");
        }
        assert_eq!(parse_window("22:30-04:00"), Ok(Some((22 * 60 + 30, 4 * 60))));
        assert_eq!(parse_window(""), Ok(None));
        // The claim code is a secret: never shown by Config.Get.
        let cfg = p("claim_code = \"K7Q2-9XWM\"").unwrap();
        assert!(!cfg.get("fleet.claim_code").unwrap().contains("K7Q2"));
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("x.toml", "").unwrap(), Config::default());
    }

    #[test]
    fn shipped_default_file_parses_to_the_defaults() {
        let text = include_str!("../../../rootfs-overlay/etc/huis/huis.toml");
        let cfg = Config::parse("huis.toml", text).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::parse("/etc/huis/huis.toml", "[room]\nname = \"A\"\n\n[audio]\necho_cancelation = true\n")
            .unwrap_err();
        let s = e.to_string();
        assert_eq!(e.line, Some(5), "{s}");
        assert_eq!(e.key.as_deref(), Some("audio.echo_cancelation"), "{s}");
        assert!(s.starts_with("/etc/huis/huis.toml: line 5: key 'audio.echo_cancelation': unknown key"), "{s}");
    }

    #[test]
    fn unknown_section_is_refused() {
        let e = Config::parse("f", "[rooom]\nname = \"A\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rooom"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = Config::parse("f", "[audio]\n\noutput_volume = \"loud\"\n").unwrap_err();
        assert_eq!((e.key.as_deref(), e.line), (Some("audio.output_volume"), Some(3)), "{e}");
    }

    #[test]
    fn out_of_range_names_key_and_line() {
        let e = Config::parse("f", "[audio]\noutput_volume = 150\n").unwrap_err();
        assert_eq!((e.key.as_deref(), e.line), (Some("audio.output_volume"), Some(2)), "{e}");
        assert!(e.reason.contains("0 to 100"), "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let e = Config::parse("f", "[room]\nname = \"unterminated\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.reason.contains("not valid TOML"));
    }

    #[test]
    fn visio_section_and_pins() {
        let c = Config::parse("f", "[visio]\ngateway = \"sip:visio@gw.example.org\"\n").unwrap();
        assert_eq!((c.visio.pin_delay_ms, c.visio.pin_dtmf.as_str(), c.visio.session_expires), (2000, "auto", 1800));
        for (text, key) in [
            ("[visio]\ngateway = \"https://meet.example.org\"", "visio.gateway"),
            ("[visio]\ngateway = \"sip:gw.example.org;dtmf=1\"", "visio.gateway"),
            ("[visio]\npin_delay_ms = 60000", "visio.pin_delay_ms"),
            ("[visio]\npin_dtmf = \"sometimes\"", "visio.pin_dtmf"),
            ("[visio]\nsession_expires = 5", "visio.session_expires"),
            ("[[destination]]\nname = \"a\"\nuri = \"visio:12x4\"", "destination[0].uri"),
            ("[[destination]]\nname = \"a\"\nuri = \"sip:gw@h\"\npin = \"12\"", "destination[0].pin"),
            ("[[destination]]\nname = \"a\"\nuri = \"visio:12345\"\npin = \"1234\"", "destination[0].pin"),
            ("[[destination]]\nname = \"a\"\nuri = \"tel:+331\"\npin = \"1234\"", "destination[0].pin"),
        ] {
            let e = Config::parse("f", text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(!e.reason.contains("12x4"), "no PIN quoted back: {e}");
        }
        let text = "[call]\ndefault_destination = \"visio:99998888\"\n[[destination]]\nname = \"weekly\"\n\
uri = \"sip:visio@gw.example.org\"\npin = \"1234567890\"\n[[destination]]\nname = \"board\"\nuri = \"visio:5556667778\"\n";
        let c = Config::parse("f", text).unwrap();
        assert_eq!(c.destinations[0].pin, "1234567890", "the running configuration keeps the PIN");
        for key in ["", "destination", "call", "call.default_destination"] {
            let shown = c.get(key).unwrap();
            for pin in ["1234567890", "5556667778", "99998888"] {
                assert!(!shown.contains(pin), "{key}: {shown}");
            }
        }
    }

    #[test]
    fn each_value_check() {
        let cases = [
            ("[room]\nname = \"\"", "room.name"),
            ("[audio]\nsim_recording = \"relative.wav\"", "audio.sim_recording"),
            ("[video]\nwidth = 1000", "video.width"),
            ("[video]\nframerate = 0", "video.framerate"),
            ("[video]\nbitrate_kbps = 5", "video.bitrate_kbps"),
            ("[video]\nmin_bitrate_kbps = 3000", "video.min_bitrate_kbps"),
            ("[call]\ndefault_destination = \"bob\"", "call.default_destination"),
            ("[call]\naudio_codecs = []", "call.audio_codecs"),
            ("[call]\naudio_codecs = [\"opus\", \"gsm\"]", "call.audio_codecs"),
            ("[call]\naudio_codecs = [\"opus\", \"opus\"]", "call.audio_codecs"),
            ("[call]\nmedia_encryption = \"maybe\"", "call.media_encryption"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("[webrtc]\nstun_server = \"stun.example.org\"", "webrtc.stun_server"),
            ("[webrtc]\nturn_servers = [\"turn://relay.example.org\"]", "webrtc.turn_servers"),
            ("[webrtc]\nca_file = \"ca.pem\"", "webrtc.ca_file"),
            ("[webrtc]\nice_transport_policy = \"relay\"", "webrtc.ice_transport_policy"),
            ("[webrtc]\nice_transport_policy = \"direct\"", "webrtc.ice_transport_policy"),
            ("[account]\npassword = \"LONG\"", "account.password"),
        ];
        for (text, key) in cases {
            let text = text.replace("LONG", &"p".repeat(5000));
            let e = Config::parse("f", &text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert_eq!(e.line, Some(2), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_are_never_read_back() {
        let text = "[account]\nregistrar = \"sip:pbx.example.org\"\nuser = \"room\"\npassword = \"hunter2\"\n\
                    [webrtc]\nturn_servers = [\"turns://alice:s3cret@relay.example.org:5349\"]\n";
        let cfg = Config::parse("f", text).unwrap();
        for key in ["", "account", "account.password", "webrtc", "webrtc.turn_servers"] {
            let v = cfg.get(key).unwrap();
            assert!(!v.contains("hunter2") && !v.contains("s3cret"), "{key}: {v}");
        }
        assert!(cfg.get("webrtc.turn_servers").unwrap().contains("turns://alice:(hidden)@relay.example.org:5349"));
        assert_eq!(cfg.account.password, "hunter2", "the running configuration keeps the secret");
    }

    #[test]
    fn a_bad_turn_entry_is_refused_without_its_password() {
        let e = Config::parse("f", "[webrtc]\nturn_servers = [\"turn:/alice:s3cret@relay.example.org\"]").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("webrtc.turn_servers"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("relay.example.org"), "{e}");
    }

    #[test]
    fn destination_tokens_are_never_shown() {
        let text = "[[destination]]\nname = \"stream\"\nuri = \"whip+https://sfu.example.org/whip/room\"\n\
                    token = \"s3cret-token\"\n";
        let c = Config::parse("f", text).unwrap();
        assert_eq!(c.destinations[0].token, "s3cret-token");
        for key in ["", "destination"] {
            let shown = c.get(key).unwrap();
            assert!(!shown.contains("s3cret"), "{key:?}: {shown}");
            assert!(shown.contains(HIDDEN), "{key:?}: {shown}");
        }
        let e = Config::parse("f", "[[destination]]\nname = \"a\"\nuri = \"sip:a@b\"\ntoken = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("only whip+"), "{e}");
        let e = Config::parse("f", "[[destination]]\nname = \"a\"\nuri = \"whip+https://h/w\"\ntoken = \"a b\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("printable"), "{e}");
    }

    #[test]
    fn destinations() {
        for ok in [
            "sip:room@example.org",
            "sips:meet@gw.example;dtmf=1234%23",
            "sip:10.0.0.1:5062",
            "https://meet.example/whip/x",
            "tel:+33123456789",
        ] {
            assert!(is_destination(ok), "{ok}");
        }
        for bad in ["", "bob", "sip:", "sip:@", "http://x", "sip:a b@c"] {
            assert!(!is_destination(bad), "{bad}");
        }
    }

    #[test]
    fn set_keeps_comments_and_validates() {
        let text = "# Room 4.12\n[room]\nname = \"Old\" # shown on screen\n";
        let (new, cfg) = apply_set(text, "room.name", "Board room").unwrap();
        assert_eq!(cfg.room.name, "Board room");
        assert!(new.contains("# Room 4.12") && new.contains("# shown on screen"), "{new}");
        let (_, cfg) = apply_set(&new, "audio.output_volume", "35").unwrap();
        assert_eq!(cfg.audio.output_volume, 35);
        let (_, cfg) = apply_set("", "call.audio_codecs", "[\"pcmu\"]").unwrap();
        assert_eq!(cfg.call.audio_codecs, vec!["pcmu"]);
    }

    #[test]
    fn set_refuses_bad_values_and_unknown_keys() {
        let e = apply_set("", "audio.output_volume", "150").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("audio.output_volume"));
        assert!(e.to_string().contains("0 to 100"), "{e}");
        let e = apply_set("", "audio.echo", "true").unwrap_err();
        assert!(e.to_string().contains("no such key"), "{e}");
        let e = apply_set("", "room", "x").unwrap_err();
        assert!(e.to_string().contains("section.key"), "{e}");
        let e = apply_set("", "audio.beamforming", "maybe").unwrap_err();
        assert!(e.to_string().contains("audio.beamforming"), "{e}");
    }

    #[test]
    fn get_reads_values_and_sections() {
        let c = Config::default();
        assert_eq!(c.get("audio.output_volume").unwrap(), "80");
        assert_eq!(c.get("room.name").unwrap(), "\"Meeting room\"");
        assert!(c.get("call").unwrap().contains("audio_codecs"));
        assert!(c.get("nope.x").is_err());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huis.toml");
        write_atomic(&p, "a = 1\n").unwrap();
        write_atomic(&p, "b = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b = 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }
}
