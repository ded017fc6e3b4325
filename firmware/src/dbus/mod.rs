//! The local management surface: `org.huis.Room1` on D-Bus. The only zbus server code.
//!
//! Interfaces are thin: methods turn into [`crate::room::Command`]s for the room task (or calls
//! into the updater), properties read the status feed, and [`publish`] turns the feed's changes
//! into `PropertiesChanged` and the signals. Nothing here touches hardware or files directly.

pub mod call;
pub mod client;
pub mod iface;
pub mod publish;

use crate::call::CallError;
use crate::room::RoomError;
use crate::update::UpdateError;

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

impl From<CallError> for HuisError {
    fn from(e: CallError) -> Self {
        let m = e.to_string();
        match e {
            CallError::InvalidDestination(_) | CallError::InvalidDtmf(_) | CallError::NoSuchCall(_) => {
                HuisError::InvalidArgument(m)
            }
            CallError::Busy
            | CallError::NotInCall
            | CallError::NothingToAnswer
            | CallError::NotEstablished
            | CallError::Protocol(_)
            | CallError::Cancelled => HuisError::InvalidState(m),
            CallError::Unsupported(_) | CallError::BackendDown { .. } => HuisError::NotAvailable(m),
            CallError::Unreachable(_) | CallError::Unusable(_) | CallError::Local(_) | CallError::ShuttingDown => {
                HuisError::Failed(m)
            }
        }
    }
}

impl From<RoomError> for HuisError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::Call(c) => c.into(),
            RoomError::InvalidArgument(m) => HuisError::InvalidArgument(m),
            RoomError::NotAvailable(m) => HuisError::NotAvailable(m),
            RoomError::InvalidState(m) => HuisError::InvalidState(m),
            RoomError::Failed(m) => HuisError::Failed(m),
        }
    }
}

impl From<UpdateError> for HuisError {
    fn from(e: UpdateError) -> Self {
        let m = e.to_string();
        match e {
            UpdateError::InvalidSource(_) => HuisError::InvalidArgument(m),
            UpdateError::Busy(_) => HuisError::InvalidState(m),
            UpdateError::NotAvailable(_) => HuisError::NotAvailable(m),
            UpdateError::Failed(_) => HuisError::Failed(m),
        }
    }
}
