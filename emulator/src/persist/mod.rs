//! The state file (`--state-file`): the world is loaded from it at start, and written to it
//! every [`PERIOD`] when something changed and once more on shutdown, so a stopped emulator
//! (Ctrl-C on the dev job) comes back with the same Sprites, keys and inboxes. Writes go to a
//! temporary file that is then renamed over the old one: a crash mid-write leaves the previous
//! file whole. The file names its format and version; one of another version is refused with
//! a message saying what to do, never half-read.

mod snapshot;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::state::{App, World};
pub use snapshot::Restored;
use snapshot::{Meters, WorldSnap};

/// What the `format` field says, so a file of something else is told apart from a corrupt one.
const FORMAT: &str = "sprites-emulator-state";
/// Bumped whenever the layout changes: an older or newer file is refused, not guessed at.
pub const FORMAT_VERSION: u32 = 1;
/// How often the world is looked at for changes. A kill -9 loses at most this much.
pub const PERIOD: Duration = Duration::from_secs(2);

/// What was found at the state file's path when the emulator started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No file: the world starts empty (and is written there from now on).
    Fresh,
    Restored(Restored),
}

#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u32>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'a str,
    version: u32,
    saved_at: String,
    /// The base URL the Sprite URLs were handed out under: a restart on another port changes
    /// every Sprite URL, which the load warns about.
    base_url: &'a str,
    meters: &'a Meters,
    world: &'a WorldSnap,
}

#[derive(Deserialize)]
struct FileIn {
    base_url: String,
    meters: Meters,
    world: WorldSnap,
}

/// Reads the state file into `world` (a fresh one). A missing file is [`Loaded::Fresh`]; a
/// file that is not a state file of this version, or does not parse, is an error that says
/// which and what to do.
pub fn load(path: &Path, world: &mut World, base_url: &str) -> Result<Loaded, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let fix = "delete it to start empty, or point --state-file (EMULATOR_STATE_FILE) elsewhere";
    let header: Header =
        serde_json::from_slice(&text).map_err(|e| format!("not a readable state file ({e}); {fix}"))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(format!("not a Sprites emulator state file; {fix}"));
    }
    match header.version {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "written in state format version {other}, this emulator reads version {FORMAT_VERSION}; {fix}"
            ));
        }
        None => return Err(format!("has no format version; {fix}")),
    }
    let file: FileIn = serde_json::from_slice(&text).map_err(|e| format!("corrupt ({e}); {fix}"))?;
    if file.base_url != base_url {
        tracing::warn!(
            saved = %file.base_url, now = %base_url,
            "emulator state: the emulator listens elsewhere than when it was saved; Sprite URLs changed"
        );
    }
    let restored = snapshot::restore(world, file.world, file.meters, Instant::now())?;
    Ok(Loaded::Restored(restored))
}

/// The writer: every [`PERIOD`] it writes the world if it changed since the last write; when
/// `last` fires (the emulator stopped serving) it writes once more and ends.
pub async fn run(app: App, path: PathBuf, mut last: oneshot::Receiver<()>) {
    let mut written: Option<Vec<u8>> = None;
    let mut failing: Option<String> = None;
    loop {
        let final_write = tokio::select! {
            _ = tokio::time::sleep(PERIOD) => false,
            _ = &mut last => true,
        };
        let (snap, meters) = snapshot::take(&app.world(), Instant::now());
        let base_url = app.base_url().to_string();
        let target = path.clone();
        let previous = written.take();
        // Serializing and writing a world of many Sprites is blocking work: off the runtime.
        let job = tokio::task::spawn_blocking(move || {
            let world = serde_json::to_vec(&snap).map_err(|e| e.to_string())?;
            if previous.as_deref() == Some(world.as_slice()) && !final_write {
                return Ok(world);
            }
            let file = FileOut {
                format: FORMAT,
                version: FORMAT_VERSION,
                saved_at: crate::clock::rfc3339(OffsetDateTime::now_utc()),
                base_url: &base_url,
                meters: &meters,
                world: &snap,
            };
            let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
            write_atomically(&target, &bytes).map_err(|e| format!("writing {}: {e}", target.display()))?;
            Ok::<_, String>(world)
        });
        match job.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(world) => {
                if failing.take().is_some() {
                    tracing::info!(path = %path.display(), "emulator state written again");
                }
                written = Some(world);
            }
            // Once per distinct failure: a read-only directory must not fill the log.
            Err(e) if failing.as_deref() != Some(e.as_str()) => {
                tracing::warn!(error = %e, "emulator state not saved");
                failing = Some(e);
            }
            Err(_) => {}
        }
        if final_write {
            return;
        }
    }
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk, and renames it over
/// `path`: readers see the old file or the new one, never half of one. Owner-only, since it
/// holds the emulated services' keys.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The line the emulator logs about what it loaded.
pub fn describe(path: &Path, loaded: &Loaded) -> String {
    match loaded {
        Loaded::Fresh => format!("no state file at {}: starting empty, saving there", path.display()),
        Loaded::Restored(r) => format!(
            "restored from {}: {} Sprites (cold until woken), {} Railway services, {} OpenRouter keys, {} AgentMail inboxes",
            path.display(),
            r.sprites,
            r.railway_services,
            r.openrouter_keys,
            r.agentmail_inboxes
        ),
    }
}

/// A fresh world loaded from `path`, for the emulator's start.
pub fn world_from(
    path: &Path,
    config: &crate::config::EmulatorConfig,
    base_url: &str,
) -> Result<(World, Loaded), String> {
    let mut world = World::new(config);
    let loaded = load(path, &mut world, base_url)?;
    Ok((world, loaded))
}
