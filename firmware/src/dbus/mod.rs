//! The local management surface: `org.huis.Room1` on D-Bus.
//!
//! Interfaces are thin: methods turn into [`Command`]s for the room task,
//! which owns all state; properties are snapshots the room task keeps up to
//! date (emitting `PropertiesChanged` as it does). Nothing here touches
//! hardware or files directly.

pub mod client;
pub mod iface;

pub const BUS_NAME: &str = "org.huis.Room1";
pub const ROOM_PATH: &str = "/org/huis/Room1";
pub const AUDIO_PATH: &str = "/org/huis/Room1/Audio";
pub const VIDEO_PATH: &str = "/org/huis/Room1/Video";
pub const CONFIG_PATH: &str = "/org/huis/Room1/Config";

/// Errors returned to D-Bus callers. Names are `org.huis.Error.*`; messages
/// say what was wrong and what to do.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.huis.Error")]
pub enum HuisError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument was refused (bad key, bad value, unknown button).
    InvalidArgument(String),
    /// The request does not fit the room's state (hang up while idle).
    InvalidState(String),
    /// The capability is not available on this board or build.
    NotAvailable(String),
    /// Something failed while carrying the request out.
    Failed(String),
}
