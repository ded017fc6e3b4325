//! huis firmware: the pieces of `huisd` (the room daemon) and `huisctl` (its
//! command-line client). See ARCHITECTURE.md for the map.

/// huisd's version (the image's, where there is one, is shown instead: see `update`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod audio;
pub mod call;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod hardware;
pub mod health;
pub mod logring;
pub mod media;
pub mod proto;
pub mod room;
pub mod status;
pub mod text;
pub mod update;
