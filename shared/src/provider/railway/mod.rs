//! Railway: one service per instance running the pre-built runtime image, with a volume and a
//! public domain (convos-contracts §3). Every lookup goes through the one batched listing, so
//! a sweep costs one Railway request per 100 services however large the pool is.
//!
//! Creates are not idempotent on Railway (names are not unique, a second volume or domain is
//! refused or doubled): when one's outcome is unknown (a timeout, a 5xx, an edge page) the
//! listing is read before it is sent again.

mod inbox_keys;
mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

pub use inbox_keys::InboxKeys;
pub use status::{DerivedStatus, Observed, derive_status};

use super::{
    Capabilities, Failure, InstanceSecrets, Machine, Progress, Provider, ProviderError, RemoteMachine,
};
use crate::railway::{DeploySpec, Missing, RailwayClient, RailwayError, RailwayErrorKind, ServiceSnapshot};

/// Where the runtime keeps its state (it links `~/.convos` there).
const VOLUME_MOUNT: &str = "/data";

/// The production pool's start command: the pool server (`/pool/health`, the `/data` set-up)
/// in front of the runtime. The image's own command (`pnpm start`) runs the gateway alone.
pub const POOL_SERVER_START_COMMAND: &str = "node convos-platform/pool-server/dist/index.js";

/// How often one create is sent when its outcome stays unknown after a look.
const CREATE_TRIES: usize = 3;

/// The runtime an image runs, as the runtime images are named: a Hermes image
/// (`…/convos-hermes-runtime…`, `…hermes…`) runs Hermes, anything else OpenClaw. Only the
/// repository path counts, not the tag or digest.
pub fn runtime_type_of_image(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A `:` after the last `/` starts the tag (a registry's `host:port` comes before it).
    let repository = match without_digest.rfind(':') {
        Some(colon) if colon > without_digest.rfind('/').unwrap_or(0) => &without_digest[..colon],
        _ => without_digest,
    };
    let name = repository.rsplit('/').next().unwrap_or(repository).to_ascii_lowercase();
    if name.contains("hermes") { "hermes" } else { "openclaw" }
}

#[derive(Clone)]
pub struct RailwayProviderSettings {
    /// `RAILWAY_RUNTIME_IMAGE`, ideally pinned by digest: it seeds the `runtimeImage` setting,
    /// and deploys a row made before rows recorded their image.
    pub image: String,
    /// Normally [`POOL_SERVER_START_COMMAND`].
    pub start_command: String,
    /// `RUNTIME_TYPE` for the pool server (`openclaw` or `hermes`) when `RAILWAY_RUNTIME_TYPE`
    /// names it; `None`: read from each instance's image, which the setting may change.
    pub runtime_type: Option<String>,
    /// Mints each instance's inbox-scoped AgentMail key (when AgentMail is configured).
    pub inbox_keys: Option<InboxKeys>,
    pub cpu: f64,
    pub memory_bytes: u64,
    pub xmtp_env: String,
    pub pool_environment: String,
    pub anthropic_api_key: Option<SecretString>,
    /// How long one `/pool/health` request may take.
    pub health_timeout: Duration,
}

#[derive(Clone)]
pub struct RailwayProvider {
    client: RailwayClient,
    http: reqwest::Client,
    settings: RailwayProviderSettings,
}

impl RailwayProvider {
    pub fn new(client: RailwayClient, http: reqwest::Client, settings: RailwayProviderSettings) -> Self {
        RailwayProvider { client, http, settings }
    }

    /// Every service of this name, oldest first: a create retried after a lost answer can
    /// leave two, since Railway does not keep names unique.
    async fn services_named(&self, name: &str) -> Result<Vec<ServiceSnapshot>, ProviderError> {
        let mut found: Vec<ServiceSnapshot> = self
            .client
            .services()
            .await
            .map_err(from_railway)?
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        found.sort_by_key(|s| s.created_at);
        Ok(found)
    }

    async fn service(&self, name: &str) -> Result<ServiceSnapshot, ProviderError> {
        self.services_named(name).await?.into_iter().next().ok_or_else(|| ProviderError {
            failure: Failure::Gone,
            message: format!("no Railway service {name}"),
        })
    }

    /// Volumes first: a service deleted before its volume leaves the volume behind, billed.
    async fn delete_service(&self, service: &ServiceSnapshot) -> Result<(), ProviderError> {
        for volume in &service.volume_ids {
            self.client.delete_volume(volume).await.map_err(from_railway)?;
        }
        self.client.delete_service(&service.id).await.map_err(from_railway)
    }

    /// `serviceCreate`; after an answer that leaves its outcome unknown, the listing is read
    /// before it is sent again.
    async fn create_service(&self, name: &str) -> Result<ServiceSnapshot, ProviderError> {
        let mut last = None;
        for _ in 0..CREATE_TRIES {
            match self.client.create_service(name).await {
                Ok(id) => {
                    return Ok(ServiceSnapshot {
                        id,
                        name: name.to_string(),
                        created_at: None,
                        deploy_status: None,
                        domains: Vec::new(),
                        image: None,
                        volume_ids: Vec::new(),
                    });
                }
                Err(err) if outcome_unknown(&err) => {
                    if let Some(found) = self.services_named(name).await?.into_iter().next() {
                        tracing::info!(service = %found.id, "a create of unknown outcome had made the service");
                        return Ok(found);
                    }
                    last = Some(err);
                }
                Err(err) => return Err(from_railway(err)),
            }
        }
        Err(from_railway(last.expect("at least one try")))
    }

    /// `volumeCreate`, looked up first after an unknown outcome (a second one is refused).
    async fn create_volume(&self, name: &str, service_id: &str) -> Result<(), ProviderError> {
        let mut last = None;
        for _ in 0..CREATE_TRIES {
            match self.client.create_volume(service_id, VOLUME_MOUNT).await {
                Ok(_) => return Ok(()),
                Err(err) if outcome_unknown(&err) => {
                    let found = self.services_named(name).await?.into_iter().find(|s| s.id == service_id);
                    if found.is_some_and(|s| !s.volume_ids.is_empty()) {
                        tracing::info!(
                            service = service_id,
                            "a volume create of unknown outcome had made the volume"
                        );
                        return Ok(());
                    }
                    last = Some(err);
                }
                Err(err) => return Err(from_railway(err)),
            }
        }
        Err(from_railway(last.expect("at least one try")))
    }

    /// `serviceDomainCreate`, looked up first after an unknown outcome (one domain a service).
    async fn create_domain(&self, name: &str, service_id: &str) -> Result<String, ProviderError> {
        let mut last = None;
        for _ in 0..CREATE_TRIES {
            match self.client.create_domain(service_id).await {
                Ok(domain) => return Ok(domain),
                Err(err) if outcome_unknown(&err) => {
                    let found = self.services_named(name).await?.into_iter().find(|s| s.id == service_id);
                    if let Some(domain) = found.and_then(|s| s.domains.into_iter().next()) {
                        tracing::info!(
                            service = service_id,
                            "a domain create of unknown outcome had made the domain"
                        );
                        return Ok(domain);
                    }
                    last = Some(err);
                }
                Err(err) => return Err(from_railway(err)),
            }
        }
        Err(from_railway(last.expect("at least one try")))
    }

    /// The image an instance runs: the one recorded with it. A row made by a process of the
    /// deploy before rows recorded their image has none; it gets the environment's.
    fn image<'a>(&'a self, secrets: &InstanceSecrets<'a>) -> &'a str {
        secrets.runtime_image.unwrap_or(&self.settings.image)
    }

    fn variables(&self, secrets: &InstanceSecrets<'_>) -> BTreeMap<String, SecretString> {
        let image = self.image(secrets);
        let runtime_type =
            self.settings.runtime_type.as_deref().unwrap_or_else(|| runtime_type_of_image(image));
        let mut vars: BTreeMap<String, SecretString> = BTreeMap::new();
        let mut put = |name: &str, value: &str| {
            vars.insert(name.to_string(), SecretString::from(value.to_string()));
        };
        put("GATEWAY_TOKEN", secrets.gateway_token.expose_secret());
        put("INSTANCE_ID", secrets.instance_id);
        put("XMTP_ENV", &self.settings.xmtp_env);
        put("POOL_ENVIRONMENT", &self.settings.pool_environment);
        put("RUNTIME_TYPE", runtime_type);
        put("_RUNTIME_IMAGE", image);
        if let Some(key) = secrets.openrouter_key {
            put("OPENROUTER_API_KEY", key.expose_secret());
        }
        if let Some(inbox) = secrets.agentmail_inbox_id {
            put("AGENTMAIL_INBOX_ID", inbox);
        }
        if let Some(key) = &self.settings.anthropic_api_key {
            put("ANTHROPIC_API_KEY", key.expose_secret());
        }
        vars
    }
}

/// Rate limits and throttles are Throttled (waited out, never counted toward the creation
/// breaker); only a missing service, volume or deployment is Gone: a missing project or
/// environment is a configuration fault, Permanent.
fn from_railway(err: RailwayError) -> ProviderError {
    let failure = match err.kind {
        RailwayErrorKind::RateLimited => Failure::Throttled { wait: err.retry_after },
        _ if err.throttle => Failure::Throttled { wait: err.retry_after },
        RailwayErrorKind::Transient => Failure::Transient,
        RailwayErrorKind::NotFound => match err.missing {
            Some(Missing::Service | Missing::Volume | Missing::Deployment) => Failure::Gone,
            _ => Failure::Permanent,
        },
        RailwayErrorKind::Unauthorized | RailwayErrorKind::Permanent => Failure::Permanent,
    };
    ProviderError { failure, message: format!("railway: {err}") }
}

/// Whether a failed create may have taken effect (so the listing must be read first).
fn outcome_unknown(err: &RailwayError) -> bool {
    !err.surely_not_applied()
}

#[async_trait]
impl Provider for RailwayProvider {
    fn kind(&self) -> &'static str {
        "railway"
    }

    fn runtime_image(&self) -> Option<String> {
        Some(self.settings.image.clone())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { install: false, checkpoints: false, observing_list: true, hibernates: false }
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        let mut existing = self.services_named(name).await?.into_iter();
        let service = match existing.next() {
            Some(service) => service,
            None => self.create_service(name).await?,
        };
        for duplicate in existing {
            tracing::info!(service = %duplicate.id, "deleting a duplicate service left by a retried create");
            self.delete_service(&duplicate).await?;
        }
        // Volume and domain before the first deploy, so the runtime starts with
        // RAILWAY_VOLUME_MOUNT_PATH and RAILWAY_PUBLIC_DOMAIN set.
        if service.volume_ids.is_empty() {
            self.create_volume(name, &service.id).await?;
        }
        let domain = match service.domains.first() {
            Some(domain) => domain.clone(),
            None => self.create_domain(name, &service.id).await?,
        };
        Ok(Machine { url: self.client.public_url(&domain), provider_ref: Some(service.id) })
    }

    async fn install(&self, _name: &str, _git_ref: &str, _wait: Duration) -> Result<Progress, ProviderError> {
        Ok(Progress::Done)
    }

    async fn configure(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError> {
        let service = self.service(name).await?;
        let mut variables = self.variables(secrets);
        // The runtime's email handler needs a credential for its inbox: a key scoped to it.
        if let (Some(inbox), Some(keys)) = (secrets.agentmail_inbox_id, &self.settings.inbox_keys) {
            let key = keys.issue(inbox, &format!("convos-pool-{}", secrets.instance_id)).await?;
            variables.insert("AGENTMAIL_API_KEY".into(), key);
        }
        let spec = DeploySpec {
            image: self.image(secrets).to_string(),
            start_command: self.settings.start_command.clone(),
            cpu: self.settings.cpu,
            memory_bytes: self.settings.memory_bytes,
            variables,
        };
        self.client.deploy(&service.id, &spec).await.map_err(from_railway)
    }

    /// The deploy committed by `configure` starts the runtime.
    async fn start_gateway(&self, _name: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn restart_gateway(&self, name: &str) -> Result<(), ProviderError> {
        let service = self.service(name).await?;
        self.client.redeploy(&service.id).await.map_err(from_railway)
    }

    async fn runtime_ready(&self, url: &str) -> Result<bool, ProviderError> {
        let response = self
            .http
            .get(format!("{}/pool/health", url.trim_end_matches('/')))
            .timeout(self.settings.health_timeout)
            .send()
            .await
            .map_err(|err| ProviderError::transient(format!("runtime health: {}", err.without_url())))?;
        match response.status().as_u16() {
            200 => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                Ok(body["ready"].as_bool() == Some(true))
            }
            503 => Ok(false),
            other => Err(ProviderError::transient(format!("runtime health answered {other}"))),
        }
    }

    /// The container's disk is not reachable from outside; `verify_clean` asks the gateway,
    /// which reports any bound conversation, and every instance starts from a fresh volume.
    async fn has_conversation_state(&self, _name: &str) -> Result<bool, ProviderError> {
        Ok(false)
    }

    async fn checkpoint(&self, _name: &str, _comment: &str) -> Result<String, ProviderError> {
        Err(ProviderError::permanent("Railway has no checkpoints"))
    }

    async fn restore(&self, _name: &str, _checkpoint: &str) -> Result<(), ProviderError> {
        Err(ProviderError::permanent("Railway has no checkpoints"))
    }

    async fn wake(&self, name: &str) -> Result<(), ProviderError> {
        let service = self.service(name).await?;
        self.client.redeploy(&service.id).await.map_err(from_railway)
    }

    async fn destroy(&self, name: &str) -> Result<(), ProviderError> {
        for service in self.services_named(name).await? {
            self.delete_service(&service).await?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RemoteMachine>, ProviderError> {
        let services = self.client.services().await.map_err(from_railway)?;
        Ok(services
            .into_iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| RemoteMachine {
                observed: Some(Observed::from_deploy(s.deploy_status.as_ref())),
                created_at: s.created_at,
                name: s.name,
            })
            .collect())
    }

    async fn diagnose(
        &self,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<serde_json::Value, ProviderError> {
        let service = tokio::time::timeout_at(deadline, self.service(name))
            .await
            .map_err(|_| ProviderError::transient("Railway did not answer within the debug budget"))??;
        let health = match service.domains.first() {
            Some(domain) => {
                match tokio::time::timeout_at(deadline, self.runtime_ready(&self.client.public_url(domain)))
                    .await
                {
                    Ok(Ok(ready)) => json!({ "ready": ready }),
                    Ok(Err(err)) => json!({ "error": err.message }),
                    Err(_) => json!({ "error": "did not finish within the debug budget" }),
                }
            }
            None => json!(null),
        };
        Ok(json!({
            "service": {
                "id": service.id,
                "name": service.name,
                "deployStatus": service.deploy_status.as_ref().map(|s| format!("{s:?}")),
                "domains": service.domains,
                "image": service.image,
                "volumes": service.volume_ids,
            },
            "runtimeHealth": health,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::runtime_type_of_image;

    #[test]
    fn the_runtime_type_follows_the_image_repository() {
        assert_eq!(runtime_type_of_image("ghcr.io/xmtplabs/convos-runtime@sha256:abc"), "openclaw");
        assert_eq!(runtime_type_of_image("ghcr.io/xmtplabs/convos-runtime:latest"), "openclaw");
        assert_eq!(runtime_type_of_image("ghcr.io/xmtplabs/convos-hermes-runtime:v2"), "hermes");
        assert_eq!(runtime_type_of_image("registry:5000/hermes@sha256:1"), "hermes");
        // A tag or registry host saying "hermes" does not make the image Hermes.
        assert_eq!(runtime_type_of_image("ghcr.io/xmtplabs/convos-runtime:hermes-compat"), "openclaw");
        assert_eq!(runtime_type_of_image("hermes.example:5000/convos-runtime"), "openclaw");
    }
}
