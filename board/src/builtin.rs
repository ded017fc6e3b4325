//! The descriptors compiled into the binary, loading from files, and the
//! choice of board at start-up.

use std::path::Path;

use crate::error::BoardError;
use crate::model::Board;
use crate::parse::parse;

macro_rules! builtin_boards {
    ($($name:literal),* $(,)?) => {
        /// (name, text) of every descriptor in `board/boards/`.
        pub(crate) const BUILTIN: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../boards/", $name, ".toml"))),)*
        ];
    };
}

builtin_boards!(
    "sim",
    "qemu-x86_64",
    "qemu-arm64",
    "pc-x86_64",
    "rpi4-respeaker-4mic",
    "rpi4-respeaker-6mic",
    "rpi5-respeaker-4mic",
    "rpi5-respeaker-6mic",
    "rk3588-uma8",
);

/// The board used when nothing else is said or detected.
pub const DEFAULT_BOARD: &str = "sim";

/// Names of the descriptors compiled in, in a stable order.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _)| *name).collect()
}

/// The compiled-in descriptor `name`, parsed and validated.
pub fn builtin(name: &str) -> Result<Board, BoardError> {
    let (name, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| unknown(name))?;
    parse(name, &format!("board/boards/{name}.toml"), text)
}

/// A descriptor from a file; the board's name is the file stem.
pub fn load_file(path: &Path) -> Result<Board, BoardError> {
    let text = read_bounded(path)?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&name, &path.display().to_string(), &text)
}

/// Reads at most one byte more than a descriptor may hold, so a huge file is refused by
/// [`parse`] without being read whole.
fn read_bounded(path: &Path) -> Result<String, BoardError> {
    use std::io::Read;
    let io = |source| BoardError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(crate::parse::MAX_DESCRIPTOR_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}"))))
}

/// Choose the board: `--board` from the command line, else the configuration
/// file's board, else what [`crate::detect_from`] finds under `root`, else
/// [`DEFAULT_BOARD`]. A value containing `/` or ending in `.toml` is a file
/// path; any other value is a builtin name. Empty values count as unset.
pub fn resolve(cli: Option<&str>, config: Option<&str>, root: &Path) -> Result<Board, BoardError> {
    fn given(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|s| !s.is_empty())
    }
    match given(cli).or(given(config)) {
        Some(value) => by_name_or_path(value),
        None => builtin(crate::detect::detect_from(root).as_deref().unwrap_or(DEFAULT_BOARD)),
    }
}

fn by_name_or_path(value: &str) -> Result<Board, BoardError> {
    if value.contains('/') || value.ends_with(".toml") { load_file(Path::new(value)) } else { builtin(value) }
}

fn unknown(name: &str) -> BoardError {
    BoardError::UnknownBoard { name: name.to_owned(), known: builtin_names().into_iter().map(str::to_owned).collect() }
}
