//! The Railway provider's settings (`POOL_PROVIDER=railway`), read with the same [`Reader`] as
//! the rest of the configuration, so their problems are listed with every other.

use secrecy::SecretString;
use url::Url;

use super::Reader;

pub const RAILWAY_API_URL: &str = "https://backboard.railway.com/graphql/v2";
/// The Railway pool's default runtime image (its docs: "defaults to
/// ghcr.io/xmtplabs/convos-runtime:latest").
pub const DEFAULT_RAILWAY_RUNTIME_IMAGE: &str = "ghcr.io/xmtplabs/convos-runtime:latest";

#[derive(Debug, Clone)]
pub struct RailwayConfig {
    pub api_url: Url,
    pub token: SecretString,
    pub project_id: String,
    /// `RAILWAY_ENVIRONMENT_ID`, or empty when the environment is given by name.
    pub environment_id: String,
    /// `RAILWAY_ENVIRONMENT_NAME` (e.g. `production`): the client looks its id up once.
    pub environment_name: Option<String>,
    /// `RAILWAY_RUNTIME_IMAGE`, by default [`DEFAULT_RAILWAY_RUNTIME_IMAGE`] as in the Railway
    /// pool; pin it by digest in production. It only seeds the `runtimeImage` setting.
    pub image: String,
    /// `RAILWAY_START_COMMAND`, by default the pool server's (the image's own command runs
    /// the gateway without it, and nothing would answer `/pool/health`).
    pub start_command: String,
    /// `RAILWAY_RUNTIME_TYPE` (`openclaw` or `hermes`); unset: read from each instance's image
    /// name (the `runtimeImage` setting may change the image).
    pub runtime_type: Option<String>,
    pub cpu: f64,
    pub memory_mb: u64,
    /// Local use only: domains are served under this URL (the emulator) instead of https.
    pub public_url_base: Option<Url>,
}

pub(super) fn railway_config<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>) -> RailwayConfig {
    let why = "when POOL_PROVIDER=railway";
    let token = r.get("RAILWAY_API_TOKEN").map(SecretString::from).unwrap_or_else(|| {
        r.problems.push(format!("RAILWAY_API_TOKEN is required {why}"));
        SecretString::from(String::new())
    });
    let cpu: f64 = r.parsed("RAILWAY_CPU", 4.0, "a number of vCPUs");
    if !(cpu.is_finite() && cpu > 0.0) {
        r.problems.push("RAILWAY_CPU must be greater than 0".into());
    }
    let memory_mb = r.parsed("RAILWAY_MEMORY_MB", 4096, "a whole number of MB");
    if memory_mb == 0 {
        r.problems.push("RAILWAY_MEMORY_MB must be greater than 0".into());
    }
    let image = r.get("RAILWAY_RUNTIME_IMAGE").unwrap_or_else(|| DEFAULT_RAILWAY_RUNTIME_IMAGE.to_string());
    // The environment by id, or by name as the Railway pool also allowed; never both (which
    // one would win is a guess an operator should not have to make).
    let environment_name = r.get("RAILWAY_ENVIRONMENT_NAME");
    let environment_id = match (r.get("RAILWAY_ENVIRONMENT_ID"), &environment_name) {
        (Some(id), None) => id,
        (None, Some(_)) => String::new(),
        (Some(_), Some(_)) => {
            r.problems.push("set RAILWAY_ENVIRONMENT_ID or RAILWAY_ENVIRONMENT_NAME, not both".into());
            String::new()
        }
        (None, None) => {
            r.problems
                .push(format!("RAILWAY_ENVIRONMENT_ID (or RAILWAY_ENVIRONMENT_NAME) is required {why}"));
            String::new()
        }
    };
    let runtime_type = r.get("RAILWAY_RUNTIME_TYPE");
    if runtime_type.as_deref().is_some_and(|t| !matches!(t, "openclaw" | "hermes")) {
        r.problems.push("RAILWAY_RUNTIME_TYPE must be openclaw or hermes".into());
    }
    RailwayConfig {
        api_url: r.url("RAILWAY_API_URL", RAILWAY_API_URL),
        token,
        project_id: r.required("RAILWAY_PROJECT_ID", why),
        environment_id,
        environment_name,
        image,
        start_command: r
            .get("RAILWAY_START_COMMAND")
            .unwrap_or_else(|| crate::provider::POOL_SERVER_START_COMMAND.to_string()),
        runtime_type,
        cpu,
        memory_mb,
        public_url_base: r
            .get("RAILWAY_PUBLIC_URL_BASE")
            .map(|_| r.url("RAILWAY_PUBLIC_URL_BASE", "http://127.0.0.1/")),
    }
}
