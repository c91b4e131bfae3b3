//! Typed settings from the environment (ARCHITECTURE §8). Start-up fails with one message
//! listing every problem, so an operator fixes a deployment in one round, not one per variable.
//! Secrets are held as `SecretString`: `Debug` shows `[REDACTED]`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::sprites::DEFAULT_API_URL;

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

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: PoolEnvironment,
    pub api_key: SecretString,
    pub database_url: SecretString,
    /// Migrations and anything session-scoped bypass a transaction-mode pooler.
    pub database_url_direct: Option<SecretString>,
    pub sprite_token: SecretString,
    pub sprites_api_url: Url,
    pub instance_anthropic_api_key: Option<SecretString>,
    pub instance_xmtp_env: String,
    pub openclaw_git_ref: String,
    pub min_idle: u32,
    pub max_total: u32,
    pub heartbeat_interval: Duration,
    pub tick_interval: Duration,
    pub reconcile_interval: Duration,
    pub stuck_timeout: Duration,
    /// The EventBridge bus step events go to (AWS only).
    pub step_event_bus: Option<String>,
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
        let sprite_token = r.required_secret("SPRITE_TOKEN");
        let sprites_api_url = match r.get("SPRITES_API_URL") {
            None => Url::parse(DEFAULT_API_URL).expect("the default API URL parses"),
            Some(raw) => match Url::parse(&raw) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => url,
                _ => {
                    r.problems.push("SPRITES_API_URL must be an http(s) URL".into());
                    Url::parse(DEFAULT_API_URL).expect("the default API URL parses")
                }
            },
        };
        let instance_anthropic_api_key = r.optional_secret("INSTANCE_ANTHROPIC_API_KEY");
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

        if !r.problems.is_empty() {
            return Err(ConfigError { problems: r.problems });
        }
        Ok(Config {
            environment,
            api_key,
            database_url,
            database_url_direct,
            sprite_token,
            sprites_api_url,
            instance_anthropic_api_key,
            instance_xmtp_env,
            openclaw_git_ref,
            min_idle,
            max_total,
            heartbeat_interval,
            tick_interval,
            reconcile_interval,
            stuck_timeout,
            step_event_bus,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("POOL_API_KEY", "key-123"),
        ("DATABASE_URL", "postgres://u:pw@h/db"),
        ("SPRITE_TOKEN", "org/1/2/tok"),
    ];

    #[test]
    fn defaults_follow_the_environment() {
        let dev = load(&REQUIRED).unwrap();
        assert_eq!(dev.environment, PoolEnvironment::Dev);
        assert_eq!(dev.instance_xmtp_env, "dev");
        assert_eq!(dev.openclaw_git_ref, "staging");
        assert_eq!((dev.min_idle, dev.max_total), (3, 10));
        assert_eq!(dev.stuck_timeout, Duration::from_secs(900));
        assert_eq!(dev.sprites_api_url.as_str(), "https://api.sprites.dev/");
        assert_eq!(dev.environment.sprite_prefix(), "convos-agent-dev-");

        let mut vars = REQUIRED.to_vec();
        vars.push(("POOL_ENVIRONMENT", "production"));
        let prod = load(&vars).unwrap();
        assert_eq!(prod.instance_xmtp_env, "production");
        assert_eq!(prod.openclaw_git_ref, "main");
        assert_eq!(prod.environment.invite_host(), "popup.convos.org");
        assert_eq!(prod.api_key.expose_secret(), "key-123");
    }

    #[test]
    fn every_problem_is_listed_at_once_without_values() {
        let err = load(&[
            ("POOL_ENVIRONMENT", "prod"),
            ("POOL_MIN_IDLE", "many"),
            ("HEARTBEAT_INTERVAL_MS", "0"),
            ("SPRITES_API_URL", "ftp://sekrit@x"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "POOL_ENVIRONMENT",
            "POOL_API_KEY is required",
            "DATABASE_URL is required",
            "SPRITE_TOKEN is required",
            "POOL_MIN_IDLE must be a whole number",
            "HEARTBEAT_INTERVAL_MS must be greater than 0",
            "SPRITES_API_URL",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        assert_eq!(err.problems.len(), 7, "{text}");
        assert!(!text.contains("sekrit"));
    }

    #[test]
    fn min_idle_above_max_total_is_refused() {
        let mut vars = REQUIRED.to_vec();
        vars.extend([("POOL_MIN_IDLE", "12"), ("POOL_MAX_TOTAL", "5")]);
        let err = load(&vars).unwrap_err();
        assert_eq!(err.problems, vec!["POOL_MIN_IDLE (12) must not exceed POOL_MAX_TOTAL (5)".to_string()]);
    }

    #[test]
    fn debug_hides_secrets() {
        let config = load(&REQUIRED).unwrap();
        let debug = format!("{config:?}");
        for secret in ["key-123", "pw@h", "org/1/2/tok"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}
