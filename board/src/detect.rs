//! Which builtin board are we running on?
//!
//! Facts are read from files under a root directory (`/` on a device, a
//! temporary tree in tests):
//!
//! - `proc/device-tree/compatible`: NUL-separated strings, most specific
//!   first (`raspberrypi,4-model-b`, `brcm,bcm2711`);
//! - `proc/device-tree/hat/product`: the product string of a Raspberry Pi
//!   HAT EEPROM, when the HAT has one;
//! - `sys/class/dmi/id/{product_name,board_name,sys_vendor}` on PCs and VMs;
//! - `proc/asound/cards`: ALSA card ids, which name the audio HATs and USB
//!   arrays whose drivers are loaded;
//! - `proc/sys/kernel/arch`: the kernel's machine name (`uname -m`); where
//!   the kernel lacks it, the architecture this binary was built for.
//!
//! A board is a candidate only when its `compatible` or `dmi` list matches
//! (sound cards and HATs alone never make a candidate) and, if it names
//! architectures, the machine is one of them. Candidates are
//! ranked: a HAT product match or a sound card match adds much more than any
//! platform match, so "Pi 4 with this HAT" beats "some Pi 4"; among platform
//! matches an earlier (more specific) compatible entry ranks higher, a named
//! DMI match ranks above the `"*"` wildcard (any machine with DMI data). Ties
//! go to the name that sorts first, so the answer is always the same.

use std::path::Path;

use crate::builtin::BUILTIN;
use crate::model::Detect;
use crate::parse::parse;

/// Score added for a matching HAT product string or ALSA card.
const CONFIRMED: u32 = 100;
/// Score of a named DMI match or of the least specific compatible match.
const PLATFORM: u32 = 10;
/// Score of the DMI wildcard `"*"`.
const ANY_DMI: u32 = 1;

/// [`detect_from`] on the running system.
pub fn detect() -> Option<String> {
    detect_from(Path::new("/"))
}

/// The name of the builtin board that best matches the system under `root`,
/// or `None` when no board matches.
pub fn detect_from(root: &Path) -> Option<String> {
    let facts = Facts::read(root);
    let mut best: Option<(u32, &'static str)> = None;
    for &(name, text) in BUILTIN {
        // Builtins are tested to parse; one that does not is never detected.
        let Ok(board) = parse(name, name, text) else {
            continue;
        };
        let Some(score) = score(&board.detect, &facts) else {
            continue;
        };
        if best.is_none_or(|(s, n)| score > s || (score == s && name < n)) {
            best = Some((score, name));
        }
    }
    best.map(|(_, name)| name.to_owned())
}

/// What the system says about itself.
#[derive(Debug, Default)]
struct Facts {
    compatible: Vec<String>,
    hat_product: Option<String>,
    dmi: Vec<String>,
    alsa_cards: Vec<String>,
    arch: String,
}

impl Facts {
    fn read(root: &Path) -> Facts {
        let read = |rel: &str| -> Option<String> {
            let bytes = std::fs::read(root.join(rel)).ok()?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        };
        let clean = |s: String| -> Option<String> {
            let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned();
            (!s.is_empty()).then_some(s)
        };
        let compatible = read("proc/device-tree/compatible")
            .map(|s| s.split('\0').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let hat_product = read("proc/device-tree/hat/product").and_then(clean);
        let dmi = ["product_name", "board_name", "sys_vendor"]
            .iter()
            .filter_map(|f| read(&format!("sys/class/dmi/id/{f}")).and_then(clean))
            .collect();
        let alsa_cards = read("proc/asound/cards").map(|s| card_ids(&s)).unwrap_or_default();
        let arch = read("proc/sys/kernel/arch").and_then(clean).unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        Facts { compatible, hat_product, dmi, alsa_cards, arch }
    }
}

/// Card ids from /proc/asound/cards, whose card lines look like
/// ` 1 [seeed4micvoicec]: seeed-4mic-voi - seeed-4mic-voicecard`.
fn card_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (index, rest) = line.split_once(' ')?;
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let rest = rest.trim_start().strip_prefix('[')?;
            let (id, _) = rest.split_once(']')?;
            let id = id.trim();
            (!id.is_empty()).then(|| id.to_owned())
        })
        .collect()
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// How well `d` matches `f`; `None` when the platform does not match.
fn score(d: &Detect, f: &Facts) -> Option<u32> {
    if !d.arch.is_empty() && !d.arch.contains(&f.arch) {
        return None;
    }
    let n = f.compatible.len();
    let compatible = f
        .compatible
        .iter()
        .enumerate()
        .filter(|(_, c)| d.compatible.iter().any(|w| w == *c))
        .map(|(i, _)| PLATFORM + (n - i).min(50) as u32)
        .max();
    let dmi = if f.dmi.is_empty() {
        None
    } else {
        d.dmi
            .iter()
            .filter_map(|w| {
                if w == "*" {
                    Some(ANY_DMI)
                } else if f.dmi.iter().any(|v| contains_ci(v, w)) {
                    Some(PLATFORM)
                } else {
                    None
                }
            })
            .max()
    };
    let platform = compatible.max(dmi)?;
    let hat = f.hat_product.as_deref().is_some_and(|p| d.hat.iter().any(|h| contains_ci(p, h)));
    let card = d.alsa_cards.iter().any(|c| f.alsa_cards.iter().any(|x| x == c));
    Some(platform + if hat { CONFIRMED } else { 0 } + if card { CONFIRMED } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_ids_are_read_from_proc_asound_cards() {
        let text = " 0 [ALSA           ]: bcm2835_alsa - bcm2835 ALSA\n                      bcm2835 ALSA\n 1 [seeed4micvoicec]: seeed-4mic-voi - seeed-4mic-voicecard\n                      seeed-4mic-voicecard\n";
        assert_eq!(card_ids(text), vec!["ALSA", "seeed4micvoicec"]);
    }
}
