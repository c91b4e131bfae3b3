//! The outside-world clients a process talks through, built from its `Config`: the compute
//! provider (Sprites or Railway), the per-instance resources (OpenRouter, AgentMail) and the
//! HTTP client they share. Only the composition root calls this; the engine receives what it
//! builds and never builds a client itself.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ProviderConfig, RailwayConfig};
use crate::engine::Resources;
use crate::provider::{
    InboxKeys, Provider, RailwayProvider, RailwayProviderSettings, SpritesProvider, SpritesProviderSettings,
};
use crate::railway::{RailwayClient, RailwaySettings, RetryPolicy as RailwayRetry};
use crate::resources::{AgentMailClient, AgentMailSettings, OpenRouterClient, OpenRouterSettings};
use crate::sprites::{SpritesClient, SpritesConfig};

/// Why a client could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Sprites client: {0}")]
    Sprites(#[from] crate::sprites::SpritesError),
    #[error("gateway client: {0}")]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// The HTTP client shared by the Railway, OpenRouter and AgentMail clients, with `timeout`
/// on each request.
pub fn http(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    crate::tls::http_client_builder()
        .map_err(|e| ClientError::Http(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| ClientError::Http(e.without_url().to_string()))
}

/// The webhook client: `timeout` per request, and no redirects followed (a receiver that
/// moved is a failed delivery the operator sees, never a silent hop to another URL, or from
/// https to http).
pub fn webhook_http(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    crate::tls::http_client_builder()
        .map_err(|e| ClientError::Http(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError::Http(e.without_url().to_string()))
}

/// The configured compute provider.
pub fn provider(config: &Config, http: &reqwest::Client) -> Result<Arc<dyn Provider>, ClientError> {
    Ok(match &config.provider {
        ProviderConfig::Sprites { token, api_url } => {
            let client = SpritesClient::new(SpritesConfig::new(api_url.clone(), token.clone()))?;
            Arc::new(SpritesProvider::new(
                client,
                SpritesProviderSettings {
                    xmtp_env: config.instance_xmtp_env.clone(),
                    anthropic_api_key: config.instance_anthropic_api_key.clone(),
                    install_detach_limit: Duration::from_secs(30 * 60),
                },
            ))
        }
        ProviderConfig::Railway(railway) => Arc::new(railway_provider(config, railway, http)),
    })
}

fn railway_provider(config: &Config, railway: &RailwayConfig, http: &reqwest::Client) -> RailwayProvider {
    let mut settings = RailwaySettings::new(
        railway.api_url.clone(),
        railway.token.clone(),
        railway.project_id.clone(),
        railway.environment_id.clone(),
    );
    settings.environment_name = railway.environment_name.clone();
    settings.public_url_base = railway.public_url_base.clone();
    // A step gives a rate limit a few short waits; longer ones are the engine's
    // backoff between attempts, which holds no Lambda open. A volume throttle is
    // waited out in the step (15 s, 30 s, up to a minute): it outlasts request
    // backoff, and failing the step for it would only spend its attempts.
    settings.retry = RailwayRetry {
        max_attempts: 4,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(10),
        max_server_delay: Duration::from_secs(60),
    };
    let client = RailwayClient::new(settings, http.clone());
    RailwayProvider::new(
        client,
        http.clone(),
        RailwayProviderSettings {
            image: railway.image.clone(),
            start_command: railway.start_command.clone(),
            runtime_type: railway.runtime_type.clone(),
            inbox_keys: config
                .agentmail
                .as_ref()
                .map(|c| InboxKeys::new(c.api_url.clone(), c.api_key.clone(), http.clone())),
            cpu: railway.cpu,
            memory_bytes: railway.memory_mb * 1024 * 1024,
            xmtp_env: config.instance_xmtp_env.clone(),
            pool_environment: config.environment.as_str().to_string(),
            anthropic_api_key: config.instance_anthropic_api_key.clone(),
            health_timeout: Duration::from_secs(5),
        },
    )
}

/// The configured per-instance resources: an OpenRouter key and an AgentMail inbox, each
/// when its management key is set.
pub fn resources(config: &Config, http: &reqwest::Client) -> Resources {
    Resources {
        openrouter: config.openrouter.as_ref().map(|c| {
            OpenRouterClient::new(
                OpenRouterSettings {
                    api_url: c.api_url.clone(),
                    management_key: c.management_key.clone(),
                    limit_usd: c.limit_usd,
                    limit_reset: c.limit_reset.clone(),
                },
                http.clone(),
            )
        }),
        agentmail: config.agentmail.as_ref().map(|c| {
            AgentMailClient::new(
                AgentMailSettings {
                    api_url: c.api_url.clone(),
                    api_key: c.api_key.clone(),
                    domain: c.domain.clone(),
                },
                http.clone(),
            )
        }),
    }
}
