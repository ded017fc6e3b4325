//! Updates through RAUC, and what huisd tells people about them.
//!
//! huisd never writes a slot itself: RAUC (`de.pengutronix.rauc` on the
//! system bus, object `/`, interface `de.pengutronix.rauc.Installer`) does.
//! [`Updater`] checks what a person asked for, hands it to RAUC, mirrors
//! RAUC's `Operation`, `Progress` and `LastError` as `org.huis.Update1`
//! properties (with `PropertiesChanged`), and turns RAUC's `Completed` into
//! its own `Completed(result, message)` with a message for people.
//!
//! Where RAUC is absent (the simulated board, a development machine),
//! `Update1` still exists and `Install` says so; nothing else changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use zbus::{Connection, OwnedVariant, Variant, proxy};

use crate::status::{Feed, StatusEvent, set};
pub use crate::status::{Slot, UpdateStatus};

/// Why an install was refused or failed; the text is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The source is not a bundle huisd can take.
    #[error("{0}")]
    InvalidSource(String),
    /// An update is already running.
    #[error("{0}")]
    Busy(String),
    /// RAUC is not there (the simulated board, a development machine).
    #[error("{0}")]
    NotAvailable(String),
    /// The download or RAUC failed.
    #[error("{0}")]
    Failed(String),
}

pub const RAUC_NAME: &str = "de.pengutronix.rauc";
/// Where bundles given as URLs are downloaded before RAUC installs them:
/// the data partition, which no update overwrites.
pub const DOWNLOAD_DIR: &str = "/data/update";
/// The image's version files (written by image/build.sh and bundle.sh).
const OS_RELEASE: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

#[proxy(interface = "de.pengutronix.rauc.Installer", default_service = "de.pengutronix.rauc", default_path = "/")]
pub trait Installer {
    fn install_bundle(&self, source: &str, args: HashMap<&str, Variant<'_>>) -> zbus::Result<()>;
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedVariant>)>>;
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}

/// The image version of the running system: `IMAGE_VERSION` in os-release,
/// or None off an image.
pub fn image_version() -> Option<String> {
    OS_RELEASE.iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        text.lines().find_map(|l| {
            let v = l.strip_prefix("IMAGE_VERSION=")?.trim().trim_matches(|c| c == '"' || c == '\'');
            (!v.is_empty()).then(|| v.to_owned())
        })
    })
}

/// What `Install` was given.
#[derive(Debug, PartialEq)]
pub enum Source {
    Path(PathBuf),
    Url(String),
}

/// Checks an install source; the error names it and says what is wrong.
pub fn parse_source(source: &str) -> Result<Source, String> {
    let s = source.trim();
    if s.is_empty() {
        return Err("no update source given: pass the path of a .raucb bundle or an http(s):// URL".into());
    }
    if s.len() > 4096 {
        return Err(format!("an update source of {} bytes is too long (at most 4096)", s.len()));
    }
    // Quoted back bounded (the source comes from a D-Bus caller).
    let q = crate::text::excerpt_long(s);
    if let Some((scheme, rest)) = s.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" if !rest.is_empty() && !rest.starts_with('/') => Ok(Source::Url(s.to_owned())),
            "http" | "https" => Err(format!("update source '{q}': the URL has no host")),
            other => Err(format!(
                "update source '{q}': unsupported URL scheme '{other}' (give a local path or an http:// or https:// URL)"
            )),
        };
    }
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!(
            "update bundle '{q}': huisd needs an absolute path (huisctl makes relative paths absolute)"
        ));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(Source::Path(p.to_owned())),
        Ok(_) => Err(format!("update bundle {q}: not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "update bundle {q}: no such file (as huisd sees it; huisd's /tmp and /home are private, \
             put bundles under /data or a mounted medium)"
        )),
        Err(e) => Err(format!("update bundle {q}: {e}")),
    }
}

/// Why RAUC is not there, as one sentence for people.
fn not_available(why: impl std::fmt::Display) -> String {
    format!("RAUC is not available on this system ({why}); updates need a huis image with RAUC")
}

pub struct Updater {
    /// Where `Update1`'s state and its `Completed` are published.
    feed: Feed,
    /// The system bus, where RAUC lives; connected on first use.
    system: tokio::sync::Mutex<Option<Connection>>,
    watching: std::sync::atomic::AtomicBool,
    /// A download or install started by huisd and not yet completed.
    busy: Mutex<bool>,
    /// The file huisd downloaded for the install in progress, removed at the end.
    downloaded: Mutex<Option<PathBuf>>,
    /// The slots as they were when huisd handed a bundle to RAUC: a failed
    /// install is reported against them (what changed, if anything).
    slots_before: Mutex<Vec<Slot>>,
}

impl Updater {
    pub fn new(feed: Feed) -> Arc<Self> {
        Arc::new(Self {
            feed,
            system: tokio::sync::Mutex::new(None),
            watching: false.into(),
            busy: Mutex::new(false),
            downloaded: Mutex::new(None),
            slots_before: Mutex::new(Vec::new()),
        })
    }

    /// Follows `Update1`'s state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<crate::status::UpdateStatus> {
        self.feed.watch_update()
    }

    /// The system bus connection (RAUC's, logind's).
    pub async fn system_bus(&self) -> Result<Connection, String> {
        let mut g = self.system.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = Connection::system().await.map_err(|e| format!("cannot reach the system bus: {e}"))?;
        *g = Some(c.clone());
        Ok(c)
    }

    /// A proxy for RAUC, checked to answer; starts mirroring its state on first success.
    pub async fn rauc(self: &Arc<Self>) -> Result<InstallerProxy<'static>, String> {
        let sys = self.system_bus().await.map_err(not_available)?;
        let p = InstallerProxy::builder(&sys)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(not_available)?;
        // A property read activates RAUC if it is D-Bus activatable, and fails
        // with ServiceUnknown where it is not installed.
        match p.compatible().await {
            Ok(_) => {}
            Err(zbus::Error::MethodError(name, msg, _)) => {
                return Err(not_available(format!(
                    "{RAUC_NAME} on the system bus: {}",
                    msg.as_deref().unwrap_or(name.as_str())
                )));
            }
            Err(e) => return Err(not_available(e)),
        }
        if !self.watching.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let me = self.clone();
            let sys2 = sys.clone();
            tokio::spawn(async move {
                if let Err(e) = me.watch(sys2).await {
                    tracing::warn!(error = %e, "stopped following RAUC");
                }
                me.watching.store(false, std::sync::atomic::Ordering::SeqCst);
            });
            self.refresh(&p).await;
        }
        Ok(p)
    }

    /// RAUC's operation now (`idle`, `installing`), asked of RAUC itself.
    pub async fn rauc_operation(self: &Arc<Self>) -> Result<String, String> {
        let p = self.rauc().await?;
        p.operation().await.map_err(not_available)
    }

    /// After an install huisd did not see to its end (huisd restarted meanwhile): whether the
    /// other slot now holds `version`, from RAUC's slots read again.
    pub async fn installed(self: &Arc<Self>, version: &str) -> Result<(), String> {
        let p = self.rauc().await?;
        self.refresh(&p).await;
        let slots = self.feed.update_now().slots;
        if slots.iter().any(|s| s.state != "booted" && s.version == version && s.boot_status == "good") {
            return Ok(());
        }
        let e = p.last_error().await.unwrap_or_default();
        Err(if e.trim().is_empty() {
            format!("RAUC's install ended without version {version} in the other slot")
        } else {
            format!("RAUC's install failed: {}", crate::text::excerpt_long(e.trim()))
        })
    }

    /// Reads RAUC's slots and state into the properties (start-up and after installs).
    pub async fn refresh(&self, p: &InstallerProxy<'_>) {
        let compatible = p.compatible().await.unwrap_or_default();
        let boot_slot = p.boot_slot().await.unwrap_or_default();
        let operation = p.operation().await.unwrap_or_else(|_| "idle".into());
        let running = image_version().unwrap_or_default();
        let slots = match p.get_slot_status().await {
            Ok(list) => slots_from_status(&list, &running),
            Err(e) => {
                tracing::warn!(error = %e, "RAUC GetSlotStatus");
                Vec::new()
            }
        };
        let busy = *self.busy.lock().unwrap_or_else(|e| e.into_inner());
        self.feed.update(|u| {
            let mut changed = set(&mut u.compatible, compatible) | set(&mut u.boot_slot, boot_slot);
            changed |= set(&mut u.slots, slots);
            if !busy {
                changed |= set(&mut u.operation, operation);
            }
            changed
        });
    }

    /// Follows RAUC: property changes and Completed, for as long as the bus lives.
    async fn watch(self: &Arc<Self>, sys: Connection) -> zbus::Result<()> {
        let props = zbus::fdo::PropertiesProxy::builder(&sys)
            .destination(RAUC_NAME)
            .path("/")
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let rauc = InstallerProxy::builder(&sys).cache_properties(zbus::proxy::CacheProperties::No).build().await?;
        let mut changed = props.receive_properties_changed().await?;
        let mut completed = rauc.receive_completed().await?;
        loop {
            tokio::select! {
                Some(sig) = changed.next() => {
                    let Ok(args) = sig.args() else { continue };
                    if args.interface_name.as_str() != "de.pengutronix.rauc.Installer" {
                        continue;
                    }
                    self.mirror(&args.changed_properties).await;
                }
                Some(sig) = completed.next() => {
                    let result = sig.args().map(|a| a.result).unwrap_or(-1);
                    self.completed(&rauc, result).await;
                }
                else => return Ok(()),
            }
        }
    }

    async fn mirror(&self, changed: &HashMap<&str, Variant<'_>>) {
        let operation = changed.get("Operation").and_then(|v| String::try_from(v.clone()).ok());
        let progress = changed.get("Progress").and_then(|v| <(i32, String, i32)>::try_from(v.clone()).ok());
        let error = changed.get("LastError").and_then(|v| String::try_from(v.clone()).ok()).filter(|e| !e.is_empty());
        self.feed.update(|u| {
            let mut c = false;
            if let Some(op) = operation {
                c |= set(&mut u.operation, op);
            }
            if let Some((pct, msg, _depth)) = progress {
                c |= set(&mut u.progress, (pct, msg));
            }
            if let Some(e) = error {
                c |= set(&mut u.last_error, e);
            }
            c
        });
    }

    async fn completed(&self, rauc: &InstallerProxy<'_>, result: i32) {
        let was_ours = std::mem::replace(&mut *self.busy.lock().unwrap_or_else(|e| e.into_inner()), false);
        if let Some(f) = self.downloaded.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(f);
        }
        self.refresh(rauc).await;
        let message = if result == 0 {
            let other = self.feed.update_now().slots.iter().find(|s| s.state != "booted").cloned();
            match other {
                Some(s) if !s.version.is_empty() => {
                    format!("version {} installed in slot {}: reboot to start it", s.version, s.bootname)
                }
                Some(s) => format!("installed in slot {}: reboot to start it", s.bootname),
                None => "installed: reboot to start it".into(),
            }
        } else {
            let e = rauc.last_error().await.unwrap_or_default();
            let e = if e.is_empty() { format!("RAUC reported failure {result}") } else { e };
            let before = std::mem::take(&mut *self.slots_before.lock().unwrap_or_else(|e| e.into_inner()));
            failure_message(&e, &before, &self.feed.update_now().slots)
        };
        tracing::info!(result, %message, ours = was_ours, "update completed");
        self.ended(result, message);
    }

    /// An install ended, well (`result` 0) or not: counted, with its error, and the operation
    /// back to idle, in one change (see `UpdateStatus::completed`); then announced.
    fn ended(&self, result: i32, message: String) {
        let last_error = if result == 0 { String::new() } else { message.clone() };
        self.feed.update(|u| {
            u.completed += 1;
            u.last_error = last_error;
            u.operation = "idle".into();
            true
        });
        self.feed.event(StatusEvent::UpdateCompleted { result, message });
    }

    /// Sets huisd's own view of the operation (downloading, errors before RAUC).
    fn set(&self, operation: Option<&str>, progress: Option<(i32, String)>, last_error: Option<String>) {
        self.feed.update(|u| {
            let mut c = false;
            if let Some(op) = operation {
                c |= set(&mut u.operation, op.to_owned());
            }
            if let Some(p) = progress {
                c |= set(&mut u.progress, p);
            }
            if let Some(e) = last_error {
                c |= set(&mut u.last_error, e);
            }
            c
        });
    }

    /// Reports an error to the caller and in `LastError`.
    fn refuse(&self, e: UpdateError) -> UpdateError {
        tracing::warn!("update refused: {e}");
        self.set(None, None, Some(e.to_string()));
        e
    }

    /// `Update1.Install`: checks, then hands the bundle to RAUC. Returns once
    /// RAUC has accepted it (or, for a URL, once the download has started);
    /// the end comes as `Completed`.
    pub async fn install(self: &Arc<Self>, source: String) -> Result<(), UpdateError> {
        let src = match parse_source(&source) {
            Ok(s) => s,
            Err(m) => return Err(self.refuse(UpdateError::InvalidSource(m))),
        };
        if *self.busy.lock().unwrap_or_else(|e| e.into_inner()) {
            let op = self.feed.update_now().operation;
            return Err(self.refuse(UpdateError::Busy(format!("an update is already running ({op})"))));
        }
        let rauc = match self.rauc().await {
            Ok(p) => p,
            Err(m) => return Err(self.refuse(UpdateError::NotAvailable(m))),
        };
        match rauc.operation().await {
            Ok(op) if op == "idle" => {}
            Ok(op) => {
                return Err(self.refuse(UpdateError::Busy(format!("an update is already running (RAUC is {op})"))));
            }
            Err(e) => return Err(self.refuse(UpdateError::NotAvailable(not_available(e)))),
        }
        let already = std::mem::replace(&mut *self.busy.lock().unwrap_or_else(|e| e.into_inner()), true);
        if already {
            return Err(self.refuse(UpdateError::Busy("an update is already running".into())));
        }
        self.set(None, Some((0, format!("starting {source}"))), Some(String::new()));
        match src {
            Source::Path(p) => {
                let r = self.hand_to_rauc(&rauc, &p).await;
                if let Err(m) = r {
                    *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
                    return Err(self.refuse(UpdateError::Failed(m)));
                }
                Ok(())
            }
            Source::Url(url) => {
                let dir = Path::new(DOWNLOAD_DIR);
                if let Err(e) = std::fs::create_dir_all(dir) {
                    *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
                    return Err(self.refuse(UpdateError::Failed(format!("cannot download {url}: {DOWNLOAD_DIR}: {e}"))));
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let file = dir.join("bundle.raucb");
                    me.set(Some("downloading"), Some((0, format!("downloading {url}"))), None);
                    let r = match download(&url, &file).await {
                        Ok(n) => {
                            me.set(None, Some((0, format!("downloaded {n} bytes from {url}"))), None);
                            *me.downloaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(file.clone());
                            me.hand_to_rauc(&rauc, &file).await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(m) = r {
                        *me.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
                        let _ = std::fs::remove_file(&file);
                        me.ended(1, m);
                    }
                });
                Ok(())
            }
        }
    }

    async fn hand_to_rauc(&self, rauc: &InstallerProxy<'_>, bundle: &Path) -> Result<(), String> {
        let path = bundle.to_string_lossy();
        self.refresh(rauc).await;
        *self.slots_before.lock().unwrap_or_else(|e| e.into_inner()) = self.feed.update_now().slots;
        tracing::info!(bundle = %path, "asking RAUC to install");
        rauc.install_bundle(&path, HashMap::new()).await.map_err(|e| match e {
            zbus::Error::MethodError(name, msg, _) if name.as_str() == "org.freedesktop.DBus.Error.AccessDenied" => {
                format!("RAUC refused huisd ({}): huisd's user must be in group huis-admin", msg.unwrap_or_default())
            }
            zbus::Error::MethodError(_, Some(msg), _) => format!("RAUC refused {path}: {msg}"),
            other => format!("RAUC refused {path}: {other}"),
        })
    }

    /// Stores a health check failure for people to see (`Update1.LastError`).
    pub fn report(&self, message: String) {
        self.set(None, None, Some(message));
    }

    /// The boot health check's verdict (`passed` or `failed: why`), for the fleet agent.
    pub fn set_health(&self, verdict: String) {
        self.feed.update(|u| set(&mut u.health, verdict));
    }

    /// Reboots the machine through logind (the image's polkit rule lets huisd's group do so).
    pub async fn reboot(&self) -> Result<(), String> {
        let sys = self.system_bus().await?;
        sys.call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Reboot",
            &(false,),
        )
        .await
        .map(drop)
        .map_err(|e| format!("logind refused the reboot: {e}"))
    }
}

/// The exit code of the image's RAUC pre-install check
/// (`/usr/libexec/huis/rauc-check-bundle`) when part of the bundle's payload
/// fails its verity check: RAUC then stops before it marks or writes a slot.
pub const DAMAGED_BUNDLE_EXIT: i32 = 65;

/// What a failed install did, in words for people: RAUC's `LastError`, and the
/// slots before and after. RAUC marks the target slot bad before it writes it,
/// so a failure in the middle of the copy costs the room its fallback until a
/// good bundle is installed: that is said, never "nothing was changed".
pub fn failure_message(rauc_error: &str, before: &[Slot], after: &[Slot]) -> String {
    let e = crate::text::excerpt_long(rauc_error.trim());
    if rauc_error.contains(&format!("exited with code {DAMAGED_BUNDLE_EXIT}")) {
        return format!(
            "the bundle is damaged: part of its payload fails its verity check (a corrupted download or a tampered \
             file); it was refused before any slot was written, nothing was changed ({e})"
        );
    }
    let changed: Vec<String> = after
        .iter()
        .filter(|s| s.state != "booted")
        .filter(|s| before.iter().find(|b| b.bootname == s.bootname).is_none_or(|b| b.boot_status != s.boot_status))
        .map(|s| {
            format!(
                "slot {} is now marked {}",
                s.bootname,
                if s.boot_status.is_empty() { "unknown" } else { &s.boot_status }
            )
        })
        .collect();
    if changed.is_empty() {
        format!("installation failed, nothing was changed: {e}")
    } else {
        format!(
            "installation failed after RAUC began writing: {}; the running slot is unchanged, and the room has no \
             other slot to fall back to until an update succeeds: {e}",
            changed.join(", ")
        )
    }
}

fn field(m: &HashMap<String, OwnedVariant>, key: &str) -> String {
    m.get(key).and_then(|v| v.downcast_ref::<&str>().ok().map(str::to_owned)).unwrap_or_default()
}

/// RAUC's `GetSlotStatus` as slots sorted by bootname. The running slot's
/// version is the image's own (the factory slot has no RAUC install record).
pub fn slots_from_status(list: &[(String, HashMap<String, OwnedVariant>)], running: &str) -> Vec<Slot> {
    let mut slots: Vec<Slot> = list
        .iter()
        .filter(|(_, m)| !field(m, "bootname").is_empty())
        .map(|(_, m)| {
            let state = field(m, "state");
            let version =
                if state == "booted" && !running.is_empty() { running.to_owned() } else { field(m, "bundle.version") };
            Slot { bootname: field(m, "bootname"), state, boot_status: field(m, "boot-status"), version }
        })
        .collect();
    slots.sort_by(|a, b| a.bootname.cmp(&b.bootname));
    slots
}

/// Downloads `url` to `file` with curl (http and https, certificates checked
/// against the system's CAs). Returns the size.
async fn download(url: &str, file: &Path) -> Result<u64, String> {
    let tmp = file.with_extension("part");
    let out = tokio::process::Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--proto", "=http,https", "--output"])
        .arg(&tmp)
        .arg("--")
        .arg(url)
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("cannot download {url}: curl is not installed")
            } else {
                format!("cannot download {url}: {e}")
            }
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let why = String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("curl: ").to_owned();
        return Err(format!("cannot download {url}: {why}"));
    }
    std::fs::rename(&tmp, file).map_err(|e| format!("cannot download {url}: {}: {e}", file.display()))?;
    Ok(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(bootname: &str, state: &str, boot_status: &str) -> Slot {
        Slot { bootname: bootname.into(), state: state.into(), boot_status: boot_status.into(), version: String::new() }
    }

    #[test]
    fn a_failed_install_says_what_it_cost() {
        let before = [slot("A", "inactive", "good"), slot("B", "booted", "good")];
        // The pre-install check refused a damaged bundle: no slot was touched.
        let m = failure_message("Pre-install handler error: Child process exited with code 65", &before, &before);
        assert!(m.starts_with("the bundle is damaged") && m.contains("nothing was changed"), "{m}");
        // Refused before RAUC wrote anything (a signature, say): the slots are as they were.
        let m = failure_message("signature verification failed", &before, &before);
        assert!(m.starts_with("installation failed, nothing was changed: signature"), "{m}");
        // Failed in the middle of the copy: RAUC had marked the target bad first.
        let after = [slot("A", "inactive", "bad"), slot("B", "booted", "good")];
        let m = failure_message("Failed splicing data: Input/output error", &before, &after);
        assert!(!m.contains("nothing was changed"), "{m}");
        assert!(m.contains("slot A is now marked bad") && m.contains("no other slot to fall back to"), "{m}");
        assert!(m.contains("Input/output error"), "{m}");
    }

    #[test]
    fn sources_are_checked_and_named() {
        assert_eq!(parse_source("https://example.org/a.raucb"), Ok(Source::Url("https://example.org/a.raucb".into())));
        let e = parse_source("ftp://example.org/a.raucb").unwrap_err();
        assert!(e.contains("unsupported URL scheme 'ftp'"), "{e}");
        let e = parse_source("/nonexistent/b.raucb").unwrap_err();
        assert!(e.contains("/nonexistent/b.raucb") && e.contains("no such file"), "{e}");
        let e = parse_source("rel.raucb").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = parse_source("/").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(parse_source("http:///x").is_err());
    }

    #[test]
    fn slot_versions_come_from_os_release_and_rauc() {
        let entry = |bn: &str, state: &str, bs: &str, v: Option<&str>| {
            let mut m = HashMap::new();
            let s = |x: &str| OwnedVariant::try_from(Variant::from(x.to_owned())).unwrap();
            m.insert("bootname".into(), s(bn));
            m.insert("state".into(), s(state));
            m.insert("boot-status".into(), s(bs));
            if let Some(v) = v {
                m.insert("bundle.version".into(), s(v));
            }
            (format!("rootfs.{bn}"), m)
        };
        let list = vec![entry("B", "inactive", "good", Some("1.2")), entry("A", "booted", "good", None)];
        let slots = slots_from_status(&list, "1.1");
        assert_eq!(
            slots[0],
            Slot { bootname: "A".into(), state: "booted".into(), boot_status: "good".into(), version: "1.1".into() }
        );
        assert_eq!(slots[1].version, "1.2");
    }
}
