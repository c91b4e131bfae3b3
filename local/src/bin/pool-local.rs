//! The main job: the Sprites emulator, migrations, every API route and the sweeps in one
//! process at http://127.0.0.1:3001 (ARCHITECTURE §9). `scripts/dev` runs it.

use std::net::SocketAddr;
use std::process::ExitCode;

use pool_local::job::Job;
use secrecy::ExposeSecret;
use shared::config::{Config, ProviderConfig};
use sprites_emulator::Emulator;

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
    let job = Job::start(&env).await?;
    let addr = pool_local::listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("binding {addr}: {e}"))?;
    let emulator_url = job.emulator.as_ref().map(Emulator::base_url);
    print!("{}", banner(&job.process.config, addr, emulator_url, job.state_summary(), job.key_shown));
    let served = pool_local::serve(job.process.clone(), listener, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
    })
    .await;
    job.stop().await;
    served.map_err(|e| e.to_string())
}

/// What the main job prints once it listens. The API key appears only when it is the dev
/// default (`key_shown`); a key from the environment or `.env` is referred to by name, so a
/// terminal log or a screen share never holds it.
/// `state`: where the emulator keeps its world across restarts, and what it found there.
fn banner(
    config: &Config,
    addr: SocketAddr,
    emulator_url: Option<String>,
    state: Option<String>,
    key_shown: bool,
) -> String {
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
    let state = state.map(|s| format!("  State:     {s}; delete it to start empty\n")).unwrap_or_default();
    format!(
        r#"
Convos agent pool ({env}) listening on {base}
  Machines:  {machines}
{state}  Resources: {resources}
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
    use pool_local::job::DEV_API_KEY;

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
        let dev = banner(&config(DEV_API_KEY), addr, None, None, true);
        assert!(dev.contains(&format!("API key:   {DEV_API_KEY}\n")), "{dev}");
        assert!(dev.contains(&format!("Bearer {DEV_API_KEY}")), "{dev}");

        let own = banner(&config("operator-key-0123456789"), addr, None, None, false);
        assert!(!own.contains("operator-key-0123456789"), "{own}");
        assert!(own.contains("API key:   from POOL_API_KEY (not shown)"), "{own}");
        assert!(own.contains("Bearer $POOL_API_KEY"), "{own}");
    }
}
