//! Errors of this crate. Each says which file, which key, which line (when
//! known) and why, so a person can fix the descriptor without guessing.

use std::fmt;
use std::path::PathBuf;

/// Why a board descriptor could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The descriptor text is not valid TOML, or breaks a rule of the schema.
    #[error("{}", Located { origin, line: *line, key: key.as_deref(), reason })]
    Invalid {
        /// The file the text came from (`board/boards/sim.toml` for builtins).
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted key path (`mic_array.positions[2]`); `None` for TOML syntax
        /// errors that are not about one key.
        key: Option<String>,
        /// What is wrong and, where it helps, what would be right.
        reason: String,
    },
    /// A descriptor file could not be read.
    #[error("{}: cannot read board descriptor: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A board name that is neither compiled in nor a file path.
    #[error(
        "unknown board '{name}' (known boards: {}); give one of these names or a path to a .toml descriptor",
        known.join(", ")
    )]
    UnknownBoard { name: String, known: Vec<String> },
}

impl BoardError {
    /// The dotted key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            BoardError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// The 1-based line the error is about, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            BoardError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

struct Located<'a> {
    origin: &'a str,
    line: Option<usize>,
    key: Option<&'a str>,
    reason: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = self.key {
            write!(f, "key '{key}': ")?;
        }
        f.write_str(self.reason)
    }
}
