//! What the fleet agent keeps across restarts, in `<state dir>/fleet/agent.json`: where its
//! report numbering may go on from, which desired configuration it applied, which keys the
//! fleet set and which the room changed since.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use huis_fleet_proto::msg::UpdatePhase;
use serde::{Deserialize, Serialize};

/// Sequence numbers are reserved this many at a time, so a report does not cost a write.
pub const SEQ_BLOCK: u64 = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    /// Reports after a restart are numbered from here on.
    pub seq_reserved: u64,
    /// The version of the desired configuration last applied.
    pub config_version: u64,
    /// Keys the fleet set, with the value it gave.
    pub fleet_keys: BTreeMap<String, String>,
    /// Keys changed in the room after the fleet set them (kept under `local` precedence).
    pub local_keys: BTreeSet<String>,
    /// The fleet's last update, from its arrival to its end, across the reboot into it.
    pub update: Option<PendingUpdate>,
}

/// An update the fleet asked for (a campaign's bundle in the desired state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub campaign: String,
    pub version: String,
    pub url: String,
    pub phase: UpdatePhase,
    #[serde(default)]
    pub detail: String,
    /// The kernel's boot id when the room rebooted into the new slot (a huisd restarted in the
    /// same boot is not yet the new slot), then the boot the new slot's health check runs in
    /// (a restart before its verdict is told from a huisd restart).
    #[serde(default)]
    pub boot_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SavedError {
    path: String,
    reason: String,
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store { path: super::identity::dir(state_dir).join("agent.json") }
    }

    /// What was saved; a missing file is a first start, and an unreadable one is set aside
    /// (renamed `.bad`) and started over, with its reason, rather than stopping the agent.
    pub fn load(&self) -> (Saved, Option<SavedError>) {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Saved::default(), None),
            Err(e) => return (Saved::default(), Some(self.err(e))),
        };
        match serde_json::from_slice::<Saved>(&text) {
            Ok(s) => (s, None),
            Err(e) => {
                let _ = std::fs::rename(&self.path, self.path.with_extension("json.bad"));
                (Saved::default(), Some(self.err(format!("unreadable, set aside as agent.json.bad: {e}"))))
            }
        }
    }

    /// Writes atomically (temporary file, fsync, rename).
    pub fn save(&self, s: &Saved) -> Result<(), SavedError> {
        use std::io::Write;
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d).map_err(|e| self.err(e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.err(e))?;
        f.write_all(&serde_json::to_vec_pretty(s).expect("serialises"))
            .and_then(|_| f.sync_all())
            .map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> SavedError {
        SavedError { path: self.path.display().to_string(), reason: e.to_string() }
    }
}

/// Report numbers that only grow, across restarts, for a write every [`SEQ_BLOCK`] reports.
pub struct Sequence {
    next: u64,
    reserved: u64,
}

impl Sequence {
    /// Starts above everything a previous run may have used.
    pub fn resume(saved: &Saved) -> Sequence {
        Sequence { next: saved.seq_reserved + 1, reserved: saved.seq_reserved }
    }

    /// The next number; `Some(new reservation)` when it must be saved before the number is used.
    pub fn take(&mut self) -> (u64, Option<u64>) {
        let n = self.next;
        self.next += 1;
        if n > self.reserved {
            self.reserved = n + SEQ_BLOCK;
            return (n, Some(self.reserved));
        }
        (n, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_grow_across_restarts_with_one_write_per_block() {
        let mut saved = Saved::default();
        let mut last = 0;
        for _run in 0..3 {
            let mut seq = Sequence::resume(&saved);
            let mut writes = 0;
            for _ in 0..(SEQ_BLOCK * 2 + 5) {
                let (n, reserve) = seq.take();
                assert!(n > last, "{n} after {last}");
                last = n;
                if let Some(r) = reserve {
                    saved.seq_reserved = r;
                    writes += 1;
                }
            }
            assert_eq!(writes, 3, "a write per block of {SEQ_BLOCK}");
        }
    }

    #[test]
    fn an_unreadable_file_is_set_aside_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let s = Saved { config_version: 4, ..Default::default() };
        store.save(&s).unwrap();
        assert_eq!(store.load().0, s);
        std::fs::write(dir.path().join("fleet/agent.json"), "{not json").unwrap();
        let (loaded, err) = store.load();
        assert_eq!(loaded, Saved::default());
        assert!(err.unwrap().to_string().contains("set aside"));
        assert!(dir.path().join("fleet/agent.json.bad").exists());
    }
}
