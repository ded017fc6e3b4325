//! Room audio DSP for huis: echo cancellation, direction of arrival, talker tracking,
//! beamforming, noise and reverberation suppression, gain control — in fixed 10 ms frames with
//! no allocation in the frame loop. See `README.md` beside this crate.
//!
//! The real-time thread drives a [`Processor`]: build it once with [`Processor::new`], then call
//! [`Processor::process`] for every frame. The offline tool `huis-dsp` runs the same code on
//! files, and [`roomsim`] makes rooms, arrays and echo paths for tests and the simulated board.

pub mod aec;
pub mod beamformer;
pub mod doa;
mod error;
pub mod geometry;
pub mod noise;
pub mod processor;
pub mod roomsim;
pub mod scene;
pub mod stft;
pub mod tracker;
pub mod wav;

pub use error::DspError;
pub use geometry::Geometry;
pub use processor::{Config, FrameReport, Processor, Stage};
