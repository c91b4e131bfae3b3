//! Secrets from SSM Parameter Store on Lambda (issue 14, item 5). With
//! `POOL_SECRETS_FROM_SSM=true` a function's environment holds no secret: `<VAR>_PARAM` names the
//! SecureString parameter holding `<VAR>` (`SPRITE_TOKEN_PARAM=/convos-pool-staging/sprite-token`),
//! and all of them are read in one `GetParameters` call (with decryption) when the process starts.
//! The values live in the [`Config`] from then on, so they are read once per execution
//! environment, never per request.
//!
//! Each function is given only the parameters it uses (infra/template.yaml), and IAM lets it
//! read only those. A secret a function was not given is either unset (the optional ones) or
//! holds a stand-in nothing can use (the ones [`Config`] requires): a random API key nobody
//! knows, a database URL that cannot resolve, a provider token the provider refuses. Whatever
//! would need the real secret therefore fails closed instead of the function failing to start.

use std::collections::HashMap;

use super::parameter_store::ParameterStore;
use super::{Config, ConfigError};

/// `true` on Lambda: every secret comes from Parameter Store, none from the environment.
pub const FROM_SSM: &str = "POOL_SECRETS_FROM_SSM";

/// The suffix of the variable that names a secret's parameter.
pub const PARAM_SUFFIX: &str = "_PARAM";

/// A database URL whose host never resolves (`.invalid`, RFC 6761): the lazy pool of a function
/// given no database never connects, and a query it should not make fails.
const NO_DATABASE: &str = "postgres://no-database-given.invalid/none";

/// What a function that was not given a secret holds instead.
#[derive(Clone, Copy)]
enum StandIn {
    /// Unset: the feature it enables is off.
    Unset,
    /// A value no one knows (random per process).
    Random,
    /// A value that cannot work.
    Fixed(&'static str),
}

/// Every secret variable of [`Config`]. One `GetParameters` call takes at most 10 names.
const SECRETS: [(&str, StandIn); 9] = [
    ("POOL_API_KEY", StandIn::Random),
    ("DATABASE_URL", StandIn::Fixed(NO_DATABASE)),
    ("DATABASE_URL_DIRECT", StandIn::Unset),
    ("SPRITE_TOKEN", StandIn::Random),
    ("RAILWAY_API_TOKEN", StandIn::Random),
    ("OPENROUTER_MANAGEMENT_KEY", StandIn::Unset),
    ("AGENTMAIL_API_KEY", StandIn::Unset),
    ("INSTANCE_ANTHROPIC_API_KEY", StandIn::Unset),
    ("POOL_WEBHOOK_SECRET", StandIn::Unset),
];
const _: () = assert!(SECRETS.len() <= 10, "GetParameters takes at most 10 names");

/// Whether this process reads its secrets from Parameter Store.
pub fn enabled(env: &impl Fn(&str) -> Option<String>) -> bool {
    env(FROM_SSM).is_some_and(|v| v.trim() == "true")
}

/// The parameters this function was given, as `(variable, parameter name)`.
pub fn requested(env: &impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    SECRETS
        .iter()
        .filter_map(|(var, _)| {
            let name = env(&format!("{var}{PARAM_SUFFIX}"))?.trim().to_string();
            (!name.is_empty()).then_some((*var, name))
        })
        .collect()
}

/// The configuration of a Lambda function: its settings from `env`, its secrets from the
/// parameters `env` names, fetched through `client` in one call. Problems are reported together,
/// by variable and parameter name, never with a value.
pub async fn config_from_ssm(
    client: &ParameterStore,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut problems: Vec<String> = SECRETS
        .iter()
        .filter(|(var, _)| env(var).is_some_and(|v| !v.trim().is_empty()))
        .map(|(var, _)| {
            format!("{var} must come from Parameter Store ({var}{PARAM_SUFFIX}), not the environment")
        })
        .collect();
    let requested = requested(&env);
    let fetched = match fetch(client, &requested).await {
        Ok(fetched) => fetched,
        Err(problem) => {
            problems.push(problem);
            HashMap::new()
        }
    };
    let missing: Vec<&str> = requested
        .iter()
        .filter(|(_, name)| !fetched.contains_key(name))
        .map(|(_, name)| name.as_str())
        .collect();
    if !missing.is_empty() {
        // The secret is then unset: optional features stay off, required ones fail below.
        tracing::warn!(?missing, "secret parameters not found in Parameter Store");
    }
    let random = random_stand_in();
    let secret = |var: &str| -> Option<String> {
        let (_, stand_in) = SECRETS.iter().find(|(v, _)| *v == var)?;
        match requested.iter().find(|(v, _)| *v == var) {
            Some((_, name)) => fetched.get(name).cloned(),
            None => match stand_in {
                StandIn::Unset => None,
                StandIn::Random => Some(random.clone()),
                StandIn::Fixed(value) => Some((*value).to_string()),
            },
        }
    };
    let config = Config::from_lookup(|name| {
        if SECRETS.iter().any(|(var, _)| *var == name) { secret(name) } else { env(name) }
    });
    match config {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError { problems }),
        Err(mut err) => {
            err.problems.extend(problems);
            Err(err)
        }
    }
}

/// The values of `requested`'s parameters that exist, by parameter name.
async fn fetch(
    client: &ParameterStore,
    requested: &[(&str, String)],
) -> Result<HashMap<String, String>, String> {
    if requested.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<String> = requested.iter().map(|(_, name)| name.clone()).collect();
    // The error names the operation and the service's message, never a value.
    client
        .get_parameters(&names)
        .await
        .map_err(|err| format!("reading the secret parameters from Parameter Store failed: {err}"))
}

fn random_stand_in() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn only_the_secrets_a_function_was_given_are_requested() {
        let env = env(&[
            (FROM_SSM, "true"),
            ("DATABASE_URL_PARAM", "/stack/database-url"),
            ("SPRITE_TOKEN_PARAM", " "),
            ("POOL_MIN_IDLE_PARAM", "/stack/not-a-secret"),
        ]);
        assert!(enabled(&env));
        assert_eq!(requested(&env), vec![("DATABASE_URL", "/stack/database-url".to_string())]);
        assert!(!enabled(&|_: &str| None));
    }

    /// A secret the configuration reads but this list misses would be read from the environment
    /// on Lambda, where the template puts no secret.
    #[test]
    fn every_secret_the_configuration_reads_comes_from_parameter_store() {
        let source = include_str!("mod.rs");
        for call in ["required_secret(\"", "optional_secret(\""] {
            for rest in source.split(call).skip(1) {
                let var = &rest[..rest.find('"').unwrap()];
                assert!(SECRETS.iter().any(|(v, _)| *v == var), "{var} is missing from SECRETS");
            }
        }
    }
}
