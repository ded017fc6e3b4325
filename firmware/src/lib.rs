//! huis firmware library: the pieces of huisd and huisctl.
pub mod media;
