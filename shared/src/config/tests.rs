//! The configuration read from the environment: defaults, every problem at once, no values echoed.
use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

const REQUIRED: [(&str, &str); 3] =
    [("POOL_API_KEY", "key-123"), ("DATABASE_URL", "postgres://u:pw@h/db"), ("SPRITE_TOKEN", "org/1/2/tok")];

#[test]
fn defaults_follow_the_environment() {
    let dev = load(&REQUIRED).unwrap();
    assert_eq!(dev.environment, PoolEnvironment::Dev);
    assert_eq!(dev.instance_xmtp_env, "dev");
    assert_eq!(dev.openclaw_git_ref, "staging");
    assert_eq!((dev.min_idle, dev.max_total), (3, 10));
    assert_eq!(dev.stuck_timeout, Duration::from_secs(900));
    match &dev.provider {
        ProviderConfig::Sprites { api_url, .. } => {
            assert_eq!(api_url.as_str(), "https://api.sprites.dev/")
        }
        other => panic!("sprites by default, not {}", other.kind()),
    }
    assert!(dev.openrouter.is_none() && dev.agentmail.is_none());
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
fn railway_needs_its_own_settings_and_not_a_sprite_token() {
    let base =
        [("POOL_API_KEY", "key-123"), ("DATABASE_URL", "postgres://u:pw@h/db"), ("POOL_PROVIDER", "railway")];
    let err = load(&base).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    for expected in
        ["RAILWAY_API_TOKEN", "RAILWAY_PROJECT_ID", "RAILWAY_ENVIRONMENT_ID (or RAILWAY_ENVIRONMENT_NAME)"]
    {
        assert!(err.to_string().contains(expected), "{expected} missing from {err}");
    }
    let mut vars = base.to_vec();
    vars.extend([
        ("RAILWAY_API_TOKEN", "rw-secret"),
        ("RAILWAY_PROJECT_ID", "p1"),
        ("RAILWAY_ENVIRONMENT_ID", "e1"),
        ("RAILWAY_RUNTIME_IMAGE", "ghcr.io/x/runtime@sha256:abc"),
        ("OPENROUTER_MANAGEMENT_KEY", "or-secret"),
        ("OPENROUTER_KEY_LIMIT_RESET", "weekly"),
        ("AGENTMAIL_API_KEY", "am-secret"),
    ]);
    let config = load(&vars).unwrap();
    let ProviderConfig::Railway(railway) = &config.provider else { panic!("railway") };
    assert_eq!(railway.api_url.as_str(), RAILWAY_API_URL);
    assert_eq!((railway.cpu, railway.memory_mb), (4.0, 4096));
    assert_eq!(railway.start_command, "node convos-platform/pool-server/dist/index.js");
    assert_eq!(railway.runtime_type, None, "read from each instance's image");
    let openrouter = config.openrouter.as_ref().unwrap();
    assert_eq!((openrouter.limit_usd, openrouter.limit_reset.as_deref()), (20.0, Some("weekly")));
    assert_eq!(config.agentmail.as_ref().unwrap().api_url.as_str(), AGENTMAIL_API_URL);
    let debug = format!("{config:?}");
    for secret in ["rw-secret", "or-secret", "am-secret"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

/// As the Railway pool read them: the environment by name instead of id, and the runtime image
/// its docs give when none is set.
#[test]
fn railway_takes_the_environment_by_name_and_defaults_the_image() {
    let base = [
        ("POOL_API_KEY", "key-123"),
        ("DATABASE_URL", "postgres://u:pw@h/db"),
        ("POOL_PROVIDER", "railway"),
        ("RAILWAY_API_TOKEN", "rw-secret"),
        ("RAILWAY_PROJECT_ID", "p1"),
    ];
    let mut vars = base.to_vec();
    vars.push(("RAILWAY_ENVIRONMENT_NAME", "scaling"));
    let config = load(&vars).unwrap();
    let ProviderConfig::Railway(railway) = &config.provider else { panic!("railway") };
    assert_eq!(railway.environment_name.as_deref(), Some("scaling"));
    assert_eq!(railway.environment_id, "");
    assert_eq!(railway.image, "ghcr.io/xmtplabs/convos-runtime:latest");
    assert_eq!(railway.runtime_type, None, "read from each instance's image");

    vars.push(("RAILWAY_ENVIRONMENT_ID", "e1"));
    let err = load(&vars).unwrap_err();
    assert_eq!(
        err.problems,
        vec!["set RAILWAY_ENVIRONMENT_ID or RAILWAY_ENVIRONMENT_NAME, not both".to_string()]
    );
}

#[test]
fn bad_resource_settings_are_named() {
    let mut vars = REQUIRED.to_vec();
    vars.extend([
        ("POOL_PROVIDER", "fly"),
        ("OPENROUTER_MANAGEMENT_KEY", "k"),
        ("OPENROUTER_KEY_LIMIT", "-3"),
        ("OPENROUTER_KEY_LIMIT_RESET", "yearly"),
    ]);
    let err = load(&vars).unwrap_err();
    for expected in ["POOL_PROVIDER", "OPENROUTER_KEY_LIMIT must be greater", "OPENROUTER_KEY_LIMIT_RESET"] {
        assert!(err.to_string().contains(expected), "{expected} missing from {err}");
    }
}

#[test]
fn debug_hides_secrets() {
    let config = load(&REQUIRED).unwrap();
    let debug = format!("{config:?}");
    for secret in ["key-123", "pw@h", "org/1/2/tok"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn retention_is_thirty_days_unless_set_and_never_zero() {
    assert_eq!(load(&REQUIRED).unwrap().retention, Duration::from_secs(30 * 24 * 3600));
    let mut vars = REQUIRED.to_vec();
    vars.push(("POOL_RETENTION_DAYS", "7"));
    assert_eq!(load(&vars).unwrap().retention, Duration::from_secs(7 * 24 * 3600));
    vars.pop();
    vars.push(("POOL_RETENTION_DAYS", "0"));
    let err = load(&vars).unwrap_err();
    assert!(err.to_string().contains("POOL_RETENTION_DAYS must be greater than 0"), "{err}");
}

/// Issue 14.2: the organisation's Anthropic key is optional everywhere; in production it is
/// refused unless the operator accepts every agent holding it.
#[test]
fn the_shared_model_key_is_optional_and_refused_in_production_unless_allowed() {
    let key = ("INSTANCE_ANTHROPIC_API_KEY", "sk-ant-org-secret");
    let production = ("POOL_ENVIRONMENT", "production");
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = REQUIRED.to_vec();
        vars.extend_from_slice(extra);
        load(&vars)
    };
    assert!(with(&[]).unwrap().instance_anthropic_api_key.is_none());
    assert!(with(&[production]).unwrap().instance_anthropic_api_key.is_none());
    for environment in ["dev", "staging"] {
        let config = with(&[("POOL_ENVIRONMENT", environment), key]).unwrap();
        assert_eq!(config.instance_anthropic_api_key.unwrap().expose_secret(), "sk-ant-org-secret");
    }

    let refused = with(&[production, key]).unwrap_err();
    assert_eq!(refused.problems.len(), 1, "{refused}");
    assert!(refused.problems[0].starts_with("INSTANCE_ANTHROPIC_API_KEY is refused in production"));
    assert!(refused.problems[0].contains("POOL_ALLOW_SHARED_MODEL_KEY=true"));
    assert!(!refused.to_string().contains("sk-ant-org-secret"));
    let refused = with(&[production, key, ("POOL_ALLOW_SHARED_MODEL_KEY", "false")]).unwrap_err();
    assert_eq!(refused.problems.len(), 1, "{refused}");

    let allowed = with(&[production, key, ("POOL_ALLOW_SHARED_MODEL_KEY", "true")]).unwrap();
    assert!(allowed.instance_anthropic_api_key.is_some());
    let bad = with(&[("POOL_ALLOW_SHARED_MODEL_KEY", "yes")]).unwrap_err();
    assert_eq!(bad.problems, vec!["POOL_ALLOW_SHARED_MODEL_KEY must be true or false".to_string()]);
}

/// What the logs mask: every secret the configuration holds, the database password alone too.
#[test]
fn secrets_lists_every_secret_held() {
    let mut vars = REQUIRED.to_vec();
    vars.extend([
        ("DATABASE_URL_DIRECT", "postgres://u:direct-pw@h/db"),
        ("OPENROUTER_MANAGEMENT_KEY", "or-secret"),
        ("AGENTMAIL_API_KEY", "am-secret"),
        ("INSTANCE_ANTHROPIC_API_KEY", "sk-ant-secret"),
    ]);
    let config = load(&vars).unwrap();
    let secrets: Vec<String> = config.secrets().iter().map(|s| s.expose_secret().to_string()).collect();
    for secret in [
        "key-123",
        "postgres://u:pw@h/db",
        "pw",
        "postgres://u:direct-pw@h/db",
        "direct-pw",
        "org/1/2/tok",
        "or-secret",
        "am-secret",
        "sk-ant-secret",
    ] {
        assert!(secrets.iter().any(|s| s == secret), "{secret} missing");
    }
    let railway = load(&[
        ("POOL_API_KEY", "key-123"),
        ("DATABASE_URL", "postgres://h/db"),
        ("POOL_PROVIDER", "railway"),
        ("RAILWAY_API_TOKEN", "rw-secret"),
        ("RAILWAY_PROJECT_ID", "p1"),
        ("RAILWAY_ENVIRONMENT_ID", "e1"),
        ("RAILWAY_RUNTIME_IMAGE", "ghcr.io/x/runtime@sha256:abc"),
    ])
    .unwrap();
    let secrets: Vec<String> = railway.secrets().iter().map(|s| s.expose_secret().to_string()).collect();
    assert_eq!(secrets, ["key-123", "postgres://h/db", "rw-secret"]);
}

#[test]
fn webhooks_need_a_secret_and_https_in_production() {
    let secret = "whsec-0123456789abcdef";
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = REQUIRED.to_vec();
        vars.extend_from_slice(extra);
        load(&vars)
    };
    assert!(with(&[]).unwrap().webhook.is_none(), "off without a URL");

    let dev = with(&[("POOL_WEBHOOK_URL", "http://127.0.0.1:43001/hook"), ("POOL_WEBHOOK_SECRET", secret)])
        .unwrap();
    let hook = dev.webhook.as_ref().unwrap();
    assert_eq!(hook.url.as_str(), "http://127.0.0.1:43001/hook");
    assert!(dev.secrets().iter().any(|s| s.expose_secret() == secret), "masked in logs");

    let prod = with(&[
        ("POOL_ENVIRONMENT", "production"),
        ("POOL_WEBHOOK_URL", "http://hooks.example.com/pool"),
        ("POOL_WEBHOOK_SECRET", secret),
    ])
    .unwrap_err();
    assert_eq!(prod.problems, vec!["POOL_WEBHOOK_URL must be an https URL in production".to_string()]);
    let prod_https = with(&[
        ("POOL_ENVIRONMENT", "production"),
        ("POOL_WEBHOOK_URL", "https://hooks.example.com/pool"),
        ("POOL_WEBHOOK_SECRET", secret),
    ])
    .unwrap();
    assert_eq!(prod_https.webhook.unwrap().url.scheme(), "https");

    let missing = with(&[("POOL_WEBHOOK_URL", "https://hooks.example.com/pool")]).unwrap_err();
    assert_eq!(
        missing.problems,
        vec!["POOL_WEBHOOK_SECRET is required when POOL_WEBHOOK_URL is set".to_string()]
    );
    let short =
        with(&[("POOL_WEBHOOK_URL", "https://hooks.example.com/pool"), ("POOL_WEBHOOK_SECRET", "short")])
            .unwrap_err();
    assert!(!short.to_string().contains("short"), "the secret is not echoed: {short}");
    let bad = with(&[("POOL_WEBHOOK_URL", "ftp://tok@x/"), ("POOL_WEBHOOK_SECRET", secret)]).unwrap_err();
    assert!(bad.to_string().contains("POOL_WEBHOOK_URL must be an http(s) URL"), "{bad}");
    assert!(!bad.to_string().contains("tok@"), "the URL is not echoed: {bad}");
}

/// Issue 16.7: a database URL that cannot work names its variable and the expected shape,
/// never its value (it holds a password).
#[test]
fn a_bad_database_url_names_its_variable() {
    let with = |url: &'static str, direct: &'static str| {
        let mut vars: Vec<(&str, &str)> =
            REQUIRED.iter().filter(|(k, _)| *k != "DATABASE_URL").copied().collect();
        vars.push(("DATABASE_URL", url));
        if !direct.is_empty() {
            vars.push(("DATABASE_URL_DIRECT", direct));
        }
        load(&vars).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let text = with("pw-s3cret-not-a-url", "");
    assert!(
        text.contains("DATABASE_URL is not a URL") && text.contains("postgres://user:password@host"),
        "{text}"
    );
    assert!(!text.contains("pw-s3cret"), "{text}");
    let text = with("mysql://u:pw-s3cret@h/db", "");
    assert!(text.contains("DATABASE_URL must start with postgres://"), "{text}");
    let text = with("postgres://u:pw@h/db", "postgres:///no-host");
    assert!(text.contains("DATABASE_URL_DIRECT names no host"), "{text}");
    assert!(with("postgresql://u:pw@h:5432/db?sslmode=require", "").is_empty());
}
