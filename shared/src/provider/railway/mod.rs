//! Railway: one service per instance running the pre-built runtime image, with a volume and a
//! public domain (convos-contracts §3). Every lookup goes through the one batched listing, so
//! a sweep costs one Railway call however large the pool is.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{
    Capabilities, Failure, InstanceSecrets, Machine, Progress, Provider, ProviderError, RemoteMachine,
};
use crate::railway::{
    DeploySpec, DeployStatus, RailwayClient, RailwayError, RailwayErrorKind, ServiceSnapshot,
};

/// Where the runtime keeps its state (it links `~/.convos` there).
const VOLUME_MOUNT: &str = "/data";

#[derive(Clone)]
pub struct RailwayProviderSettings {
    /// The runtime image, ideally pinned by digest.
    pub image: String,
    pub start_command: Option<String>,
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

    fn variables(&self, secrets: &InstanceSecrets<'_>) -> BTreeMap<String, SecretString> {
        let mut vars: BTreeMap<String, SecretString> = BTreeMap::new();
        let mut put = |name: &str, value: &str| {
            vars.insert(name.to_string(), SecretString::from(value.to_string()));
        };
        put("GATEWAY_TOKEN", secrets.gateway_token.expose_secret());
        put("INSTANCE_ID", secrets.instance_id);
        put("XMTP_ENV", &self.settings.xmtp_env);
        put("POOL_ENVIRONMENT", &self.settings.pool_environment);
        put("RUNTIME_TYPE", "openclaw");
        put("_RUNTIME_IMAGE", &self.settings.image);
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

fn from_railway(err: RailwayError) -> ProviderError {
    let failure = match err.kind {
        RailwayErrorKind::RateLimited | RailwayErrorKind::Transient => Failure::Transient,
        RailwayErrorKind::NotFound => Failure::Gone,
        RailwayErrorKind::Unauthorized | RailwayErrorKind::Permanent => Failure::Permanent,
    };
    ProviderError { failure, message: format!("railway: {err}") }
}

#[async_trait]
impl Provider for RailwayProvider {
    fn kind(&self) -> &'static str {
        "railway"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { install: false, checkpoints: false, observing_list: true }
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        let mut existing = self.services_named(name).await?.into_iter();
        let service = match existing.next() {
            Some(service) => service,
            None => {
                let id = self.client.create_service(name).await.map_err(from_railway)?;
                ServiceSnapshot {
                    id,
                    name: name.to_string(),
                    created_at: None,
                    deploy_status: None,
                    domains: Vec::new(),
                    image: None,
                    volume_ids: Vec::new(),
                }
            }
        };
        for duplicate in existing {
            tracing::info!(service = %duplicate.id, "deleting a duplicate service left by a retried create");
            self.delete_service(&duplicate).await?;
        }
        // Volume and domain before the first deploy, so the runtime starts with
        // RAILWAY_VOLUME_MOUNT_PATH and RAILWAY_PUBLIC_DOMAIN set.
        if service.volume_ids.is_empty() {
            self.client.create_volume(&service.id, VOLUME_MOUNT).await.map_err(from_railway)?;
        }
        let domain = match service.domains.first() {
            Some(domain) => domain.clone(),
            None => self.client.create_domain(&service.id).await.map_err(from_railway)?,
        };
        Ok(Machine { url: self.client.public_url(&domain), provider_ref: Some(service.id) })
    }

    async fn install(&self, _name: &str, _git_ref: &str, _wait: Duration) -> Result<Progress, ProviderError> {
        Ok(Progress::Done)
    }

    async fn configure(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError> {
        let service = self.service(name).await?;
        let spec = DeploySpec {
            image: self.settings.image.clone(),
            start_command: self.settings.start_command.clone(),
            cpu: self.settings.cpu,
            memory_bytes: self.settings.memory_bytes,
            variables: self.variables(secrets),
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

    async fn diagnose(&self, name: &str) -> Result<serde_json::Value, ProviderError> {
        let service = self.service(name).await?;
        let health = match service.domains.first() {
            Some(domain) => match self.runtime_ready(&self.client.public_url(domain)).await {
                Ok(ready) => json!({ "ready": ready }),
                Err(err) => json!({ "error": err.message }),
            },
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

/// What the batched listing says of a service, from its latest deployment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    Starting,
    Running,
    Sleeping,
    Dead,
    /// No deployment yet, or a status this code does not know.
    Unknown,
}

impl Observed {
    pub fn from_deploy(status: Option<&DeployStatus>) -> Observed {
        match status {
            Some(DeployStatus::Success) => Observed::Running,
            Some(DeployStatus::Sleeping) => Observed::Sleeping,
            Some(
                DeployStatus::Failed | DeployStatus::Crashed | DeployStatus::Removed | DeployStatus::Skipped,
            ) => Observed::Dead,
            Some(
                DeployStatus::Queued
                | DeployStatus::Waiting
                | DeployStatus::Initializing
                | DeployStatus::Building
                | DeployStatus::Deploying,
            ) => Observed::Starting,
            Some(DeployStatus::Removing | DeployStatus::Other(_)) | None => Observed::Unknown,
        }
    }
}

/// The pool-level status of a Railway instance (the old system's `deriveStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedStatus {
    Starting,
    Idle,
    Claimed,
    Sleeping,
    /// Gone or failed, nobody using it: replace it.
    Dead,
    /// Gone or failed while someone was using it: keep it for the operator.
    Crashed,
}

/// Derives an instance's status from what its latest deployment says, whether its runtime answered
/// (`None`: not asked), whether it holds a conversation, whether a claim is recorded on it, and
/// its age. A deployment that succeeded but never answers is given `stuck_timeout` before it is
/// called dead.
pub fn derive_status(
    observed: Observed,
    reachable: Option<bool>,
    conversation: bool,
    claimed: bool,
    age: Duration,
    stuck_timeout: Duration,
) -> DerivedStatus {
    let in_use = claimed || conversation;
    let young = age < stuck_timeout;
    match observed {
        Observed::Sleeping => DerivedStatus::Sleeping,
        Observed::Dead if in_use => DerivedStatus::Crashed,
        Observed::Dead => DerivedStatus::Dead,
        Observed::Starting if in_use => DerivedStatus::Claimed,
        Observed::Starting => DerivedStatus::Starting,
        _ if in_use => DerivedStatus::Claimed,
        Observed::Running if reachable != Some(false) => DerivedStatus::Idle,
        _ if reachable == Some(true) => DerivedStatus::Idle,
        _ if young => DerivedStatus::Starting,
        _ => DerivedStatus::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: Duration = Duration::from_secs(15 * 60);
    const YOUNG: Duration = Duration::from_secs(60);
    const OLD: Duration = Duration::from_secs(16 * 60);

    fn derive(
        deploy: Option<DeployStatus>,
        reachable: Option<bool>,
        conversation: bool,
        claimed: bool,
        age: Duration,
    ) -> DerivedStatus {
        derive_status(Observed::from_deploy(deploy.as_ref()), reachable, conversation, claimed, age, STUCK)
    }

    #[test]
    fn deploys_in_progress_are_starting() {
        for status in
            [DeployStatus::Building, DeployStatus::Deploying, DeployStatus::Queued, DeployStatus::Waiting]
        {
            assert_eq!(derive(Some(status), None, false, false, YOUNG), DerivedStatus::Starting);
        }
    }

    #[test]
    fn failed_deploys_are_dead() {
        for status in
            [DeployStatus::Failed, DeployStatus::Crashed, DeployStatus::Removed, DeployStatus::Skipped]
        {
            assert_eq!(derive(Some(status), None, false, false, YOUNG), DerivedStatus::Dead);
        }
    }

    #[test]
    fn sleeping_is_sleeping() {
        assert_eq!(derive(Some(DeployStatus::Sleeping), None, false, false, YOUNG), DerivedStatus::Sleeping);
    }

    #[test]
    fn success_and_ready_without_conversation_is_idle() {
        assert_eq!(derive(Some(DeployStatus::Success), Some(true), false, false, YOUNG), DerivedStatus::Idle);
    }

    #[test]
    fn success_with_a_conversation_is_claimed() {
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(true), true, false, YOUNG),
            DerivedStatus::Claimed
        );
    }

    #[test]
    fn success_but_unreachable_is_starting_until_the_stuck_timeout() {
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, YOUNG),
            DerivedStatus::Starting
        );
        assert_eq!(derive(Some(DeployStatus::Success), Some(false), false, false, OLD), DerivedStatus::Dead);
    }

    #[test]
    fn no_deploy_status_follows_the_age_rule() {
        assert_eq!(derive(None, None, false, false, YOUNG), DerivedStatus::Starting);
        assert_eq!(derive(None, None, false, false, OLD), DerivedStatus::Dead);
        assert_eq!(derive(None, Some(true), false, false, OLD), DerivedStatus::Idle);
    }

    #[test]
    fn a_claimed_instance_stays_claimed_through_deploys_and_silence() {
        for status in [DeployStatus::Building, DeployStatus::Deploying] {
            assert_eq!(derive(Some(status), None, false, true, YOUNG), DerivedStatus::Claimed);
        }
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, true, OLD),
            DerivedStatus::Claimed
        );
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(true), false, true, YOUNG),
            DerivedStatus::Claimed
        );
    }

    #[test]
    fn a_claimed_instance_whose_deploy_failed_is_crashed() {
        assert_eq!(derive(Some(DeployStatus::Failed), None, false, true, YOUNG), DerivedStatus::Crashed);
        assert_eq!(derive(Some(DeployStatus::Crashed), None, true, false, YOUNG), DerivedStatus::Crashed);
    }

    #[test]
    fn the_boundary_of_the_stuck_rule() {
        let just_under = STUCK - Duration::from_secs(1);
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, just_under),
            DerivedStatus::Starting
        );
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, STUCK),
            DerivedStatus::Dead
        );
    }
}
