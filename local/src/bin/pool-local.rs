//! The main job: the Sprites emulator, migrations, every API route and the sweeps in one
//! process at http://127.0.0.1:3001 (ARCHITECTURE §9). `scripts/dev` runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use secrecy::ExposeSecret;
use shared::config::{Config, ProviderConfig};
use shared::sweep_loop::{self, Sweep};
use shared::wiring::{self, Wiring};
use sprites_emulator::{Emulator, EmulatorConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    shared::logging::init_readable();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pool-local: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `POOL_API_KEY` when the environment gives none: a local pool's, shown on the banner.
const DEV_API_KEY: &str = "dev-pool-key";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The dev key is public (every dev banner prints it): a production pool must have its own.
fn check_dev_key_allowed(environment: Option<&str>, api_key: Option<&str>) -> Result<(), String> {
    match (environment, api_key) {
        (Some("production"), None) => {
            Err("POOL_ENVIRONMENT=production needs a POOL_API_KEY of its own: the dev default key is public \
             (every dev banner prints it). Set POOL_API_KEY and start again."
                .into())
        }
        _ => Ok(()),
    }
}

async fn run() -> Result<(), String> {
    check_dev_key_allowed(env("POOL_ENVIRONMENT").as_deref(), env("POOL_API_KEY").as_deref())?;
    // The emulator stands in for Fly.io (or Railway) unless the provider's API URL points
    // elsewhere; it also serves OpenRouter and AgentMail, so every instance gets both.
    let railway = env("POOL_PROVIDER").as_deref() == Some("railway");
    let emulator = match env(if railway { "RAILWAY_API_URL" } else { "SPRITES_API_URL" }) {
        Some(_) => None,
        None => Some(start_emulator().await?),
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

    for sweep in [Sweep::Tick, Sweep::Heartbeat, Sweep::Reconcile] {
        let interval = sweep.interval(&process.config);
        tokio::spawn(sweep_loop::run_forever(sweep, interval, process.engine.clone()));
    }

    let addr = pool_local::listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("binding {addr}: {e}"))?;
    print!("{}", banner(&process.config, addr, emulator.as_ref().map(Emulator::base_url), key_shown));
    let served = pool_local::serve(process, listener, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
    })
    .await;
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    served.map_err(|e| e.to_string())
}

async fn start_emulator() -> Result<Emulator, String> {
    let number = |name: &str, default: f64| env(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let port = env("EMULATOR_PORT").and_then(|p| p.parse().ok()).unwrap_or(8090);
    // A Sprite is set up in 20 s here instead of ~5 min: fast enough to watch a pool fill.
    let config = EmulatorConfig {
        token: env("EMULATOR_TOKEN").unwrap_or_else(|| "emulator-token".into()),
        speed: number("EMULATOR_SPEED", 0.1),
        setup_secs: number("EMULATOR_SETUP_SECS", 200.0),
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

/// What the main job prints once it listens. The API key appears only when it is the dev
/// default (`key_shown`); a key from the environment or `.env` is referred to by name, so a
/// terminal log or a screen share never holds it.
fn banner(config: &Config, addr: SocketAddr, emulator_url: Option<String>, key_shown: bool) -> String {
    let (key, bearer) = if key_shown {
        let key = config.api_key.expose_secret();
        (key.to_string(), key.to_string())
    } else {
        ("from POOL_API_KEY (not shown)".to_string(), "$POOL_API_KEY".to_string())
    };
    let base = format!("http://{addr}");
    let provider = config.provider.kind();
    let machines = match (emulator_url, &config.provider) {
        (Some(url), _) => format!("{provider} on the emulator at {url}"),
        (None, ProviderConfig::Sprites { api_url, .. }) => format!("sprites at {api_url}"),
        (None, ProviderConfig::Railway(railway)) => format!("railway at {}", railway.api_url),
    };
    let resources = match (&config.openrouter, &config.agentmail) {
        (Some(_), Some(_)) => "an OpenRouter key and an AgentMail inbox per instance",
        (Some(_), None) => "an OpenRouter key per instance",
        (None, Some(_)) => "an AgentMail inbox per instance",
        (None, None) => "none",
    };
    format!(
        r#"
Convos agent pool ({env}) listening on {base}
  Machines:  {machines}
  Resources: {resources}
  API key:   {key}
  Pool:      {min} idle wanted, at most {max} in all (about a minute to fill on the emulator)

Try:
  curl -s {base}/api/pool/counts
  curl -s -H "Authorization: Bearer {bearer}" {base}/api/pool/status
  curl -s -X POST {base}/api/pool/claim -H "Authorization: Bearer {bearer}" \
       -H "Content-Type: application/json" \
       -d '{{"agentName": "tokyo-trip-planner", "instructions": "You are a helpful trip planner for Tokyo."}}'
Ctrl-C stops it all.
"#,
        env = config.environment,
        min = config.min_idle,
        max = config.max_total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api_key: &str) -> Config {
        let vars = [("POOL_API_KEY", api_key), ("DATABASE_URL", "postgres://unused"), ("SPRITE_TOKEN", "t")];
        Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).unwrap()
    }

    /// Issue 14 (low): a production pool never starts on the public dev key.
    #[test]
    fn production_without_a_key_of_its_own_refuses_to_start() {
        let refused = check_dev_key_allowed(Some("production"), None).unwrap_err();
        assert!(refused.contains("POOL_API_KEY"), "{refused}");
        assert!(check_dev_key_allowed(Some("production"), Some("k-0123456789")).is_ok());
        assert!(check_dev_key_allowed(Some("dev"), None).is_ok());
        assert!(check_dev_key_allowed(None, None).is_ok());
    }

    /// Issue 14.4: the banner shows the dev default key, never an operator's.
    #[test]
    fn the_banner_shows_only_the_dev_key() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 3001));
        let dev = banner(&config(DEV_API_KEY), addr, None, true);
        assert!(dev.contains(&format!("API key:   {DEV_API_KEY}\n")), "{dev}");
        assert!(dev.contains(&format!("Bearer {DEV_API_KEY}")), "{dev}");

        let own = banner(&config("operator-key-0123456789"), addr, None, false);
        assert!(!own.contains("operator-key-0123456789"), "{own}");
        assert!(own.contains("API key:   from POOL_API_KEY (not shown)"), "{own}");
        assert!(own.contains("Bearer $POOL_API_KEY"), "{own}");
    }
}
