//! Typed errors of the DSP library and the offline tool.

use thiserror::Error;

/// Everything that can go wrong when building a processor or reading its inputs.
#[derive(Debug, Error)]
pub enum DspError {
    #[error("invalid geometry: {0}")]
    Geometry(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path}: {msg}")]
    Input { path: String, msg: String },
    #[error("frame size mismatch: {what} has {got} samples, expected {expected}")]
    FrameSize { what: &'static str, got: usize, expected: usize },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}
