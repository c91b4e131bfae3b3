//! The main job's parts, composed once for `pool-local` and for the tests that start it: the
//! in-process emulator (with its state file), the configuration pointed at it, the migrations,
//! the process and its sweeps. Serving the API is the caller's (`crate::serve`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use shared::config::Config;
use shared::store::Status;
use shared::sweep_loop::{self, Sweep};
use shared::wiring::{self, Process, Wiring};
use sprites_emulator::{Emulator, EmulatorConfig, Loaded};
use tokio::task::JoinHandle;

/// `POOL_API_KEY` when the environment gives none: a local pool's, shown on the banner.
pub const DEV_API_KEY: &str = "dev-pool-key";

/// The state file's name when `EMULATOR_STATE_FILE` does not give one: next to the binary, so
/// under the target directory (`target/debug/emulator-state.json` for `scripts/dev`).
pub const STATE_FILE_NAME: &str = "emulator-state.json";

/// A running main job without its HTTP server.
pub struct Job {
    pub process: Arc<Process>,
    /// The bundled emulator, unless the provider's API URL points elsewhere.
    pub emulator: Option<Emulator>,
    /// The dev key is in use: the banner may show it.
    pub key_shown: bool,
    sweeps: Vec<JoinHandle<()>>,
}

impl Job {
    /// Starts the emulator (unless the provider's API URL is set), migrates, wires the process
    /// and starts its sweeps. `env` is the environment (an empty value counts as unset).
    pub async fn start(env: &dyn Fn(&str) -> Option<String>) -> Result<Job, String> {
        // The emulator stands in for Fly.io (or Railway) unless the provider's API URL points
        // elsewhere; it also serves OpenRouter and AgentMail, so every instance gets both.
        let railway = env("POOL_PROVIDER").as_deref() == Some("railway");
        let emulator = match env(if railway { "RAILWAY_API_URL" } else { "SPRITES_API_URL" }) {
            Some(_) => None,
            None => Some(start_emulator(env).await?),
        };
        // The dev key is shown on the banner; a key of the operator's own never is.
        let key_shown = env("POOL_API_KEY").is_none();
        let mut defaults: HashMap<&str, String> = HashMap::from([("POOL_API_KEY", DEV_API_KEY.to_string())]);
        if let Some(emulator) = &emulator {
            defaults.extend(emulator_defaults(emulator));
            // An environment given by name is looked up in the emulator instead.
            if env("RAILWAY_ENVIRONMENT_NAME").is_some() {
                defaults.remove("RAILWAY_ENVIRONMENT_ID");
            }
        }
        let config = Config::from_lookup(|name| env(name).or_else(|| defaults.get(name).cloned()))
            .map_err(|err| err.to_string())?;
        let migrations = wiring::migration_store(&config).map_err(|e| e.to_string())?;
        let through = wiring::migration_url_variable(&config);
        migrations.migrate().await.map_err(|e| format!("migrations (through {through}): {e}"))?;
        let process = Arc::new(Wiring::new(config).build().map_err(|e| e.to_string())?);
        process.engine.report_ignored_environment().await.map_err(|e| format!("settings: {e}"))?;
        if let Some(emulator) = &emulator {
            report_empty_start(emulator, &process).await?;
        }
        // Each sweep's first pass runs at once: a reconcile right after a start finds what the
        // provider lost meanwhile (an emulator started without its state file) and says so.
        let sweeps = [Sweep::Tick, Sweep::Heartbeat, Sweep::Reconcile]
            .into_iter()
            .map(|sweep| {
                let interval = sweep.interval(&process.config);
                tokio::spawn(sweep_loop::run_forever(sweep, interval, process.engine.clone()))
            })
            .collect();
        Ok(Job { process, emulator, key_shown, sweeps })
    }

    /// What the banner says of the emulator's state file, if an emulator with one runs.
    pub fn state_summary(&self) -> Option<String> {
        let emulator = self.emulator.as_ref()?;
        let path = emulator.config().state_file.as_ref()?.display();
        Some(match emulator.loaded()? {
            Loaded::Fresh => format!("{path} (none yet: started empty)"),
            Loaded::Restored(r) => format!("{path} (restored {} Sprites)", r.sprites),
        })
    }

    /// Stops the sweeps, gives up this process's leases (so the next start takes their steps
    /// over at once, not after their expiry), then stops the emulator, which writes its state
    /// file a last time.
    pub async fn stop(self) {
        for sweep in self.sweeps {
            sweep.abort();
            let _ = sweep.await;
        }
        if let Err(err) = self.process.engine.release_leases().await {
            tracing::warn!(error = %err, "could not release this process's leases; they expire by themselves");
        }
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
    }
}

/// The one line that says the emulator lost what the database knows: it started empty (its
/// state file deleted, or none kept) while rows still name machines on it. Those machines are
/// gone; the sweeps replace the idle and provisioning instances and mark the claimed ones
/// crashed (reason `machine_gone`), without counting any of it against creation.
async fn report_empty_start(emulator: &Emulator, process: &Process) -> Result<(), String> {
    if matches!(emulator.loaded(), Some(Loaded::Restored(_))) {
        return Ok(());
    }
    let kind = process.config.provider.kind();
    let rows = process.engine.store().known_instances().await.map_err(|e| format!("instances: {e}"))?;
    let lost: Vec<_> = rows
        .iter()
        .filter(|row| {
            row.provider == kind && row.sprite_created_at.is_some() && row.status != Status::Crashed
        })
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let claimed = lost.iter().filter(|row| row.status == Status::Claimed).count();
    let state_file = emulator
        .config()
        .state_file
        .as_ref()
        .map_or("none (EMULATOR_STATE_FILE=off)".into(), |p| p.display().to_string());
    let instances = lost.len();
    tracing::warn!(
        instances,
        claimed,
        %state_file,
        "the emulator started empty, so the machines of the instances the database knows are gone \
         (was its state file deleted?): idle and provisioning ones are replaced, claimed ones marked crashed"
    );
    Ok(())
}

/// Where the emulator keeps its world: `EMULATOR_STATE_FILE`, `off` for nowhere, else
/// [`STATE_FILE_NAME`] next to the running binary.
pub fn state_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("EMULATOR_STATE_FILE") {
        Some(off) if off == "off" => None,
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::current_exe().ok()?.parent().map(|dir| dir.join(STATE_FILE_NAME)),
    }
}

async fn start_emulator(env: &dyn Fn(&str) -> Option<String>) -> Result<Emulator, String> {
    let number = |name: &str, default: f64| env(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let port = env("EMULATOR_PORT").and_then(|p| p.parse().ok()).unwrap_or(8090);
    // A Sprite is set up in 20 s here instead of ~5 min: fast enough to watch a pool fill.
    let config = EmulatorConfig {
        token: env("EMULATOR_TOKEN").unwrap_or_else(|| "emulator-token".into()),
        speed: number("EMULATOR_SPEED", 0.1),
        setup_secs: number("EMULATOR_SETUP_SECS", 200.0),
        state_file: state_file(env),
        ..EmulatorConfig::default()
    };
    Emulator::start_on(SocketAddr::from(([127, 0, 0, 1], port)), config)
        .await
        .map_err(|e| format!("starting the Sprites emulator on port {port}: {e}"))
}

/// Every outside service pointed at the emulator, with the emulator's own credentials.
fn emulator_defaults(emulator: &Emulator) -> [(&'static str, String); 12] {
    let base = emulator.base_url();
    let config = emulator.config();
    [
        ("SPRITES_API_URL", base.clone()),
        ("SPRITE_TOKEN", emulator.token().to_string()),
        ("RAILWAY_API_URL", format!("{base}/graphql/v2")),
        ("RAILWAY_API_TOKEN", config.railway_token.clone()),
        ("RAILWAY_PROJECT_ID", sprites_emulator::RAILWAY_PROJECT_ID.to_string()),
        ("RAILWAY_ENVIRONMENT_ID", sprites_emulator::RAILWAY_ENVIRONMENT_ID.to_string()),
        ("RAILWAY_RUNTIME_IMAGE", "ghcr.io/xmtplabs/convos-runtime:emulated".to_string()),
        ("RAILWAY_PUBLIC_URL_BASE", format!("{base}/_railway")),
        ("OPENROUTER_API_URL", format!("{base}/api/v1")),
        ("OPENROUTER_MANAGEMENT_KEY", config.openrouter_key.clone()),
        ("AGENTMAIL_API_URL", format!("{base}/v0")),
        ("AGENTMAIL_API_KEY", config.agentmail_key.clone()),
    ]
}
