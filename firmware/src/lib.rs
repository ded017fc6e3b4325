//! huis firmware: the pieces of `huisd` (the room daemon) and `huisctl` (its
//! command-line client). See ARCHITECTURE.md for the map.

pub mod audio;
pub mod call;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod hardware;
pub mod health;
pub mod media;
pub mod room;
pub mod update;
