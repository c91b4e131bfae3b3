//! Secrets from Parameter Store (shared::config::ssm) against a real SSM API: a moto server of
//! its own holds SecureString parameters, and the configuration a Lambda function builds at
//! start-up (`config_from_ssm` over the signed `GetParameters` request, what
//! `wiring::for_lambda` calls) must resolve them. The SDK's SSM client only writes them.

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use secrecy::ExposeSecret;
use shared::config::parameter_store::ParameterStore;
use shared::config::ssm::{FROM_SSM, config_from_ssm};
use shared::config::{Config, ConfigError, ProviderConfig};

use crate::eventbridge::Moto;

const API_KEY: &str = "pool-api-key-from-ssm-0123456789";
const DATABASE_URL: &str = "postgres://pool:s3cret@db.example.com:5432/pool";
const SPRITE_TOKEN: &str = "sprite-token-from-ssm";
const OPENROUTER_KEY: &str = "sk-or-management-from-ssm";

/// An SSM client on moto, built as `sdk_config` builds it in production (ring-backed rustls).
fn client(moto: &Moto) -> aws_sdk_ssm::Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&moto.url)
        .http_client(http)
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// What a function reads through: the SDK configuration as `sdk_config` loads it on Lambda,
/// pointed at moto.
fn store(moto: &Moto) -> ParameterStore {
    let credentials = Credentials::new("test", "test", Some("session".into()), None, "test");
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
        .endpoint_url(&moto.url)
        .build();
    ParameterStore::new(&sdk).unwrap()
}

/// moto with the stack's SecureString parameters, as an operator puts them.
async fn parameters() -> (Moto, ParameterStore) {
    let moto = Moto::start().await;
    let client = client(&moto);
    for (name, value) in [
        ("/pool-test/pool-api-key", API_KEY),
        ("/pool-test/database-url", DATABASE_URL),
        ("/pool-test/sprite-token", SPRITE_TOKEN),
        ("/pool-test/openrouter-management-key", OPENROUTER_KEY),
    ] {
        client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {name}: {}", aws_sdk_ssm::error::DisplayErrorContext(e)));
    }
    let store = store(&moto);
    (moto, store)
}

fn env(vars: Vec<(&'static str, &'static str)>) -> impl Fn(&str) -> Option<String> {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

async fn lambda_config(
    client: &ParameterStore,
    vars: Vec<(&'static str, &'static str)>,
) -> Result<Config, ConfigError> {
    let mut vars = vars;
    vars.push((FROM_SSM, "true"));
    vars.push(("POOL_ENVIRONMENT", "staging"));
    config_from_ssm(client, env(vars)).await
}

#[tokio::test]
async fn a_function_gets_the_secret_parameters_it_names_and_no_others() {
    let (_moto, client) = parameters().await;

    // A step-starting function: the key, the database, the provider and OpenRouter. AgentMail's
    // parameter does not exist, so that feature is off.
    let config = lambda_config(
        &client,
        vec![
            ("POOL_API_KEY_PARAM", "/pool-test/pool-api-key"),
            ("DATABASE_URL_PARAM", "/pool-test/database-url"),
            ("SPRITE_TOKEN_PARAM", "/pool-test/sprite-token"),
            ("OPENROUTER_MANAGEMENT_KEY_PARAM", "/pool-test/openrouter-management-key"),
            ("AGENTMAIL_API_KEY_PARAM", "/pool-test/agentmail-api-key"),
            ("POOL_MIN_IDLE", "2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(config.api_key.expose_secret(), API_KEY);
    assert_eq!(config.database_url.expose_secret(), DATABASE_URL);
    let ProviderConfig::Sprites { token, .. } = &config.provider else { panic!("sprites expected") };
    assert_eq!(token.expose_secret(), SPRITE_TOKEN);
    assert_eq!(config.openrouter.as_ref().unwrap().management_key.expose_secret(), OPENROUTER_KEY);
    assert!(config.agentmail.is_none(), "a missing optional parameter leaves its feature off");
    assert!(config.instance_anthropic_api_key.is_none(), "a secret not named is not read");
    assert_eq!(config.min_idle, 2, "the rest still comes from the environment");

    // A public function given only the database: the others hold values nobody can use.
    let counts =
        lambda_config(&client, vec![("DATABASE_URL_PARAM", "/pool-test/database-url")]).await.unwrap();
    assert_eq!(counts.database_url.expose_secret(), DATABASE_URL);
    for held in [counts.api_key.expose_secret(), provider_token(&counts)] {
        assert!(held.len() >= 32 && ![API_KEY, SPRITE_TOKEN].contains(&held), "a stand-in, not a secret");
    }
    assert!(counts.openrouter.is_none() && counts.agentmail.is_none());

    // A function given nothing (healthz) starts, and its database cannot resolve.
    let healthz = lambda_config(&client, vec![]).await.unwrap();
    assert!(healthz.database_url.expose_secret().contains(".invalid/"), "{:?}", healthz.database_url);
    let process = shared::wiring::Wiring::new(healthz).build().unwrap_or_else(|e| panic!("healthz: {e}"));
    assert_eq!(process.engine.settings().environment.as_str(), "staging");
}

fn provider_token(config: &Config) -> &str {
    match &config.provider {
        ProviderConfig::Sprites { token, .. } => token.expose_secret(),
        ProviderConfig::Railway(railway) => railway.token.expose_secret(),
    }
}

#[tokio::test]
async fn a_secret_in_the_environment_or_a_missing_required_parameter_stops_the_start() {
    let (_moto, client) = parameters().await;
    let err = lambda_config(
        &client,
        vec![
            ("POOL_API_KEY", "plain-key-in-the-environment"),
            ("DATABASE_URL_PARAM", "/pool-test/database-url"),
            ("SPRITE_TOKEN_PARAM", "/pool-test/no-such-parameter"),
        ],
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("POOL_API_KEY must come from Parameter Store"), "{text}");
    assert!(text.contains("SPRITE_TOKEN is required"), "{text}");
    for secret in ["plain-key-in-the-environment", DATABASE_URL, SPRITE_TOKEN] {
        assert!(!text.contains(secret), "a problem must not show a value: {text}");
    }
}

/// The service's refusal reaches the start-up error with its type and message, and nothing the
/// function asked for.
#[tokio::test]
async fn a_refused_request_is_reported_with_the_service_error() {
    let (_moto, store) = parameters().await;
    // GetParameters takes at most 10 names.
    let names: Vec<String> = (0..11).map(|i| format!("/pool-test/param-{i}")).collect();
    let err = store.get_parameters(&names).await.unwrap_err();
    assert!(err.contains("400") && err.contains("ValidationException"), "{err}");
    let found = store.get_parameters(&["/pool-test/sprite-token".to_string()]).await.unwrap();
    assert_eq!(found.get("/pool-test/sprite-token").map(String::as_str), Some(SPRITE_TOKEN));
}
