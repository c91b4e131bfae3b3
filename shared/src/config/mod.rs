//! Typed settings from the environment (ARCHITECTURE §8). Start-up fails with one message
//! listing every problem, so an operator fixes a deployment in one round, not one per variable.
//! Secrets are held as `SecretString`: `Debug` shows `[REDACTED]`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::sprites::DEFAULT_API_URL;

pub mod parameter_store;
mod railway;
pub mod ssm;

use railway::railway_config;
pub use railway::{DEFAULT_RAILWAY_RUNTIME_IMAGE, RAILWAY_API_URL, RailwayConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEnvironment {
    Dev,
    Staging,
    Production,
}

impl PoolEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolEnvironment::Dev => "dev",
            PoolEnvironment::Staging => "staging",
            PoolEnvironment::Production => "production",
        }
    }

    /// Every Sprite of this environment is named `convos-agent-<env>-<id>`, so environments
    /// sharing one Sprites org never list or delete each other's.
    pub fn sprite_prefix(self) -> String {
        format!("convos-agent-{}-", self.as_str())
    }

    /// The Convos app host whose invite links this environment accepts.
    pub fn invite_host(self) -> &'static str {
        match self {
            PoolEnvironment::Production => "popup.convos.org",
            _ => "dev.convos.org",
        }
    }

    fn default_xmtp_env(self) -> &'static str {
        match self {
            PoolEnvironment::Production => "production",
            _ => "dev",
        }
    }

    fn default_git_ref(self) -> &'static str {
        match self {
            PoolEnvironment::Production => "main",
            _ => "staging",
        }
    }
}

impl FromStr for PoolEnvironment {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "dev" => Ok(PoolEnvironment::Dev),
            "staging" => Ok(PoolEnvironment::Staging),
            "production" => Ok(PoolEnvironment::Production),
            other => Err(format!("must be dev, staging or production, not {other:?}")),
        }
    }
}

impl fmt::Display for PoolEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compute backend (`POOL_PROVIDER`).
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Sprites { token: SecretString, api_url: Url },
    Railway(Box<RailwayConfig>),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Sprites { .. } => "sprites",
            ProviderConfig::Railway(_) => "railway",
        }
    }
}

/// An OpenRouter key per instance, when `OPENROUTER_MANAGEMENT_KEY` is set.
#[derive(Debug, Clone)]
pub struct OpenRouterConfig {
    pub api_url: Url,
    pub management_key: SecretString,
    pub limit_usd: f64,
    pub limit_reset: Option<String>,
}

/// An AgentMail inbox per instance, when `AGENTMAIL_API_KEY` is set.
#[derive(Debug, Clone)]
pub struct AgentMailConfig {
    pub api_url: Url,
    pub api_key: SecretString,
    pub domain: Option<String>,
}

/// Signed webhooks (issue 16.5), when `POOL_WEBHOOK_URL` is set: every announced event is
/// POSTed there, signed with the secret (docs/webhooks.md).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Url,
    pub secret: SecretString,
}

/// A shorter secret is too easy to guess for an HMAC key.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

pub const OPENROUTER_API_URL: &str = "https://openrouter.ai/api/v1";
pub const AGENTMAIL_API_URL: &str = "https://api.agentmail.to/v0";

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: PoolEnvironment,
    pub api_key: SecretString,
    pub database_url: SecretString,
    /// Migrations and anything session-scoped bypass a transaction-mode pooler.
    pub database_url_direct: Option<SecretString>,
    pub provider: ProviderConfig,
    pub openrouter: Option<OpenRouterConfig>,
    pub agentmail: Option<AgentMailConfig>,
    /// The organisation's Anthropic key, written into every agent when set. Optional: each
    /// instance's own OpenRouter key is its model credential. Refused in production unless
    /// `POOL_ALLOW_SHARED_MODEL_KEY=true`, since every agent reads untrusted input.
    pub instance_anthropic_api_key: Option<SecretString>,
    pub instance_xmtp_env: String,
    pub openclaw_git_ref: String,
    pub min_idle: u32,
    pub max_total: u32,
    pub heartbeat_interval: Duration,
    pub tick_interval: Duration,
    pub reconcile_interval: Duration,
    pub stuck_timeout: Duration,
    /// Most instances one replenish pass starts creating.
    pub replenish_batch: u32,
    /// Gateways pinged at once by the heartbeat.
    pub heartbeat_concurrency: u32,
    /// Finished claims and history lines older than this are pruned by the tick.
    pub retention: Duration,
    /// The EventBridge bus step events go to (AWS only).
    pub step_event_bus: Option<String>,
    pub webhook: Option<WebhookConfig>,
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables through `lookup` and collects problems instead of stopping at the first.
struct Reader<F> {
    lookup: F,
    problems: Vec<String>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn required_secret(&mut self, name: &str) -> SecretString {
        match self.get(name) {
            Some(value) => SecretString::from(value),
            None => {
                self.problems.push(format!("{name} is required"));
                SecretString::from(String::new())
            }
        }
    }

    fn optional_secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// Parsing errors name the variable but never echo a value (it may be a misplaced secret).
    fn parsed<T: FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.get(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                self.problems.push(format!("{name} must be {what}"));
                default
            }),
        }
    }

    fn url(&mut self, name: &str, default: &str) -> Url {
        let fallback = || Url::parse(default).expect("the default URL parses");
        match self.get(name) {
            None => fallback(),
            Some(raw) => match Url::parse(&raw) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => url,
                _ => {
                    self.problems.push(format!("{name} must be an http(s) URL"));
                    fallback()
                }
            },
        }
    }

    fn required(&mut self, name: &str, why: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is required {why}"));
            String::new()
        })
    }

    fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        let ms = self.parsed(name, default_ms, "a whole number of milliseconds");
        if ms == 0 {
            self.problems.push(format!("{name} must be greater than 0"));
        }
        Duration::from_millis(ms)
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut r = Reader { lookup, problems: Vec::new() };
        let environment = match r.get("POOL_ENVIRONMENT") {
            None => PoolEnvironment::Dev,
            Some(raw) => raw.parse().unwrap_or_else(|why| {
                r.problems.push(format!("POOL_ENVIRONMENT {why}"));
                PoolEnvironment::Dev
            }),
        };
        let api_key = r.required_secret("POOL_API_KEY");
        let database_url = r.required_secret("DATABASE_URL");
        let database_url_direct = r.optional_secret("DATABASE_URL_DIRECT");
        for (name, url) in
            [("DATABASE_URL", Some(&database_url)), ("DATABASE_URL_DIRECT", database_url_direct.as_ref())]
        {
            if let Some(problem) = url.and_then(|url| database_url_problem(url.expose_secret())) {
                r.problems.push(format!("{name} {problem}"));
            }
        }
        let provider = match r.get("POOL_PROVIDER").as_deref() {
            None | Some("sprites") => ProviderConfig::Sprites {
                token: r.required_secret("SPRITE_TOKEN"),
                api_url: r.url("SPRITES_API_URL", DEFAULT_API_URL),
            },
            Some("railway") => ProviderConfig::Railway(Box::new(railway_config(&mut r))),
            Some(_) => {
                r.problems.push("POOL_PROVIDER must be sprites or railway".into());
                ProviderConfig::Sprites {
                    token: SecretString::from(String::new()),
                    api_url: Url::parse(DEFAULT_API_URL).expect("the default API URL parses"),
                }
            }
        };
        let openrouter =
            r.optional_secret("OPENROUTER_MANAGEMENT_KEY").map(|management_key| OpenRouterConfig {
                api_url: r.url("OPENROUTER_API_URL", OPENROUTER_API_URL),
                management_key,
                limit_usd: r.parsed("OPENROUTER_KEY_LIMIT", 20.0_f64, "a number of US dollars"),
                limit_reset: match r.get("OPENROUTER_KEY_LIMIT_RESET").as_deref() {
                    None => Some("monthly".to_string()),
                    Some("none") => None,
                    Some(v @ ("daily" | "weekly" | "monthly")) => Some(v.to_string()),
                    Some(_) => {
                        r.problems
                            .push("OPENROUTER_KEY_LIMIT_RESET must be daily, weekly, monthly or none".into());
                        None
                    }
                },
            });
        if let Some(openrouter) = &openrouter
            && !(openrouter.limit_usd.is_finite() && openrouter.limit_usd > 0.0)
        {
            r.problems.push("OPENROUTER_KEY_LIMIT must be greater than 0".into());
        }
        let agentmail = r.optional_secret("AGENTMAIL_API_KEY").map(|api_key| AgentMailConfig {
            api_url: r.url("AGENTMAIL_API_URL", AGENTMAIL_API_URL),
            api_key,
            domain: r.get("AGENTMAIL_DOMAIN"),
        });
        let instance_anthropic_api_key = r.optional_secret("INSTANCE_ANTHROPIC_API_KEY");
        let allow_shared_model_key = r.parsed("POOL_ALLOW_SHARED_MODEL_KEY", false, "true or false");
        if instance_anthropic_api_key.is_some()
            && environment == PoolEnvironment::Production
            && !allow_shared_model_key
        {
            r.problems.push(
                "INSTANCE_ANTHROPIC_API_KEY is refused in production: every agent would hold the \
                 organisation's key (each instance's own OpenRouter key is its model credential); \
                 set POOL_ALLOW_SHARED_MODEL_KEY=true to accept that"
                    .into(),
            );
        }
        let instance_xmtp_env =
            r.get("INSTANCE_XMTP_ENV").unwrap_or_else(|| environment.default_xmtp_env().to_string());
        if !matches!(instance_xmtp_env.as_str(), "dev" | "production" | "local") {
            r.problems.push("INSTANCE_XMTP_ENV must be dev, production or local".into());
        }
        let openclaw_git_ref =
            r.get("OPENCLAW_GIT_REF").unwrap_or_else(|| environment.default_git_ref().to_string());
        let min_idle = r.parsed("POOL_MIN_IDLE", 3, "a whole number");
        let max_total = r.parsed("POOL_MAX_TOTAL", 10, "a whole number");
        if min_idle > max_total {
            r.problems
                .push(format!("POOL_MIN_IDLE ({min_idle}) must not exceed POOL_MAX_TOTAL ({max_total})"));
        }
        let heartbeat_interval = r.millis("HEARTBEAT_INTERVAL_MS", 20_000);
        let tick_interval = r.millis("TICK_INTERVAL_MS", 30_000);
        let reconcile_interval = r.millis("POOL_RECONCILE_INTERVAL_MS", 300_000);
        let stuck_timeout = r.millis("POOL_STUCK_TIMEOUT_MS", 900_000);
        let step_event_bus = r.get("POOL_STEP_EVENT_BUS");
        // A whole deficit at once by default: filling 50 takes one setup time, not 17 ticks.
        // The breaker still stops creation after three failures in a row.
        let replenish_batch = r.parsed("POOL_REPLENISH_BATCH", 50, "a whole number");
        // A hung gateway holds its slot for the whole ping timeout: with 128 slots the 50 hung
        // pings of a 1000-instance pool cost one timeout, not four (docs/performance.md).
        let heartbeat_concurrency = r.parsed("HEARTBEAT_CONCURRENCY", 128, "a whole number");
        let retention_days: u64 = r.parsed("POOL_RETENTION_DAYS", 30, "a whole number of days");
        if retention_days == 0 {
            r.problems.push("POOL_RETENTION_DAYS must be greater than 0".into());
        }
        let retention = Duration::from_secs(retention_days * 24 * 3600);
        if replenish_batch == 0 || heartbeat_concurrency == 0 {
            r.problems.push("POOL_REPLENISH_BATCH and HEARTBEAT_CONCURRENCY must be greater than 0".into());
        }
        let webhook = webhook_config(&mut r, environment);

        if !r.problems.is_empty() {
            return Err(ConfigError { problems: r.problems });
        }
        Ok(Config {
            environment,
            api_key,
            database_url,
            database_url_direct,
            provider,
            openrouter,
            agentmail,
            instance_anthropic_api_key,
            instance_xmtp_env,
            openclaw_git_ref,
            min_idle,
            max_total,
            heartbeat_interval,
            tick_interval,
            reconcile_interval,
            stuck_timeout,
            replenish_batch,
            heartbeat_concurrency,
            retention,
            step_event_bus,
            webhook,
        })
    }
}

/// What is wrong with a database URL, without repeating it (it holds a password).
fn database_url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return None; // reported as missing
    }
    const SHAPE: &str = "postgres://user:password@host:port/database";
    match Url::parse(url) {
        Err(err) => Some(format!("is not a URL ({err}); expected {SHAPE}")),
        Ok(parsed) if !matches!(parsed.scheme(), "postgres" | "postgresql") => {
            Some(format!("must start with postgres:// (or postgresql://); expected {SHAPE}"))
        }
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => {
            Some(format!("names no host; expected {SHAPE}"))
        }
        Ok(_) => None,
    }
}

impl Config {
    /// Every secret value this configuration holds, the database passwords on their own too
    /// (a driver's error may print one without its URL). The logs mask them all.
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut secrets = vec![self.api_key.clone()];
        for url in std::iter::once(&self.database_url).chain(&self.database_url_direct) {
            secrets.push(url.clone());
            if let Some(password) =
                Url::parse(url.expose_secret()).ok().and_then(|u| u.password().map(String::from))
            {
                secrets.push(SecretString::from(password));
            }
        }
        match &self.provider {
            ProviderConfig::Sprites { token, .. } => secrets.push(token.clone()),
            ProviderConfig::Railway(railway) => secrets.push(railway.token.clone()),
        }
        secrets.extend(self.openrouter.iter().map(|o| o.management_key.clone()));
        secrets.extend(self.agentmail.iter().map(|a| a.api_key.clone()));
        secrets.extend(self.instance_anthropic_api_key.clone());
        secrets.extend(self.webhook.iter().map(|w| w.secret.clone()));
        secrets
    }
}

/// The URL must be https in production (the body tells the receiver who claimed what); the
/// secret is required with it. Neither value is echoed in a problem.
fn webhook_config<F: Fn(&str) -> Option<String>>(
    r: &mut Reader<F>,
    environment: PoolEnvironment,
) -> Option<WebhookConfig> {
    let raw = r.get("POOL_WEBHOOK_URL")?;
    let secret = r.optional_secret("POOL_WEBHOOK_SECRET");
    let url = match Url::parse(&raw) {
        Ok(url) if url.scheme() == "https" => Some(url),
        Ok(url) if url.scheme() == "http" && environment != PoolEnvironment::Production => Some(url),
        Ok(url) if url.scheme() == "http" => {
            r.problems.push("POOL_WEBHOOK_URL must be an https URL in production".into());
            None
        }
        _ => {
            r.problems.push("POOL_WEBHOOK_URL must be an http(s) URL (https in production)".into());
            None
        }
    };
    let secret = match secret {
        None => {
            r.problems.push("POOL_WEBHOOK_SECRET is required when POOL_WEBHOOK_URL is set".into());
            None
        }
        Some(secret) if secret.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_LEN => {
            r.problems
                .push(format!("POOL_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_LEN} characters"));
            None
        }
        Some(secret) => Some(secret),
    };
    Some(WebhookConfig { url: url?, secret: secret? })
}

#[cfg(test)]
mod tests;
