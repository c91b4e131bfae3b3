//! Client for Railway's public GraphQL API (convos-contracts §3): the services of one project
//! and environment, their volumes, domains and deployments.
//!
//! Every call goes through one request path (`transport`): a POST of `{query, variables}` with
//! `Authorization: Bearer` and our User-Agent, the answer classified into a [`RailwayError`]
//! (`error`), and rate limits and transient failures retried a bounded number of times
//! (`retry`). Creates whose outcome is unknown are not resent: the caller looks first. The
//! listing pages through the project (`listing`). Each call is one tracing span with the
//! operation, status, attempts and duration — never the token or a variable value, which are
//! also blanked out of every error message.

mod error;
mod listing;
mod retry;
mod transport;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use url::Url;

pub use error::{Missing, RailwayError, RailwayErrorKind};
pub use listing::PAGE as LISTING_PAGE;
pub use retry::{DEFAULT_THROTTLE_WAIT, RetryPolicy};
pub use transport::USER_AGENT;

use transport::Resend;

/// The public API endpoint.
pub const DEFAULT_API_URL: &str = "https://backboard.railway.com/graphql/v2";

/// Where and as whom the client works.
#[derive(Clone)]
pub struct RailwaySettings {
    /// The GraphQL endpoint, e.g. [`DEFAULT_API_URL`].
    pub api_url: Url,
    /// A workspace or account token (sent as `Authorization: Bearer`).
    pub token: SecretString,
    pub project_id: String,
    /// Empty when [`Self::environment_name`] names the environment instead.
    pub environment_id: String,
    /// The environment by name (`RAILWAY_ENVIRONMENT_NAME`): its id is looked up in the
    /// project on the first call that needs it, once per client.
    pub environment_name: Option<String>,
    /// Dev only: when set, domain `d` is served at `{base}/{d}` (the emulator's `/_railway`);
    /// otherwise at `https://{d}`.
    pub public_url_base: Option<Url>,
    pub retry: RetryPolicy,
    /// The first wait after a per-user creation throttle ([`DEFAULT_THROTTLE_WAIT`]).
    pub throttle_wait: Duration,
    /// Per attempt.
    pub request_timeout: Duration,
}

impl RailwaySettings {
    pub fn new(api_url: Url, token: SecretString, project_id: String, environment_id: String) -> Self {
        RailwaySettings {
            api_url,
            token,
            project_id,
            environment_id,
            environment_name: None,
            public_url_base: None,
            retry: retry::patient(),
            throttle_wait: DEFAULT_THROTTLE_WAIT,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for RailwaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwaySettings")
            .field("api_url", &self.api_url.as_str())
            .field("token", &"[redacted]")
            .field("project_id", &self.project_id)
            .field("environment_id", &self.environment_id)
            .field("environment_name", &self.environment_name)
            .field("public_url_base", &self.public_url_base.as_ref().map(Url::as_str))
            .field("retry", &self.retry)
            .field("throttle_wait", &self.throttle_wait)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What one deployment runs. Everything goes out in one `environmentPatchCommit`.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub image: String,
    /// Always sent: the image's own command would run without the pool server.
    pub start_command: String,
    pub cpu: f64,
    pub memory_bytes: u64,
    pub variables: BTreeMap<String, SecretString>,
}

/// Railway's deployment statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployStatus {
    Queued,
    Waiting,
    Initializing,
    Building,
    Deploying,
    Success,
    Failed,
    Crashed,
    Removed,
    Removing,
    Sleeping,
    Skipped,
    Other(String),
}

impl DeployStatus {
    pub fn parse(s: &str) -> DeployStatus {
        match s {
            "QUEUED" => DeployStatus::Queued,
            "WAITING" => DeployStatus::Waiting,
            "INITIALIZING" => DeployStatus::Initializing,
            "BUILDING" => DeployStatus::Building,
            "DEPLOYING" => DeployStatus::Deploying,
            "SUCCESS" => DeployStatus::Success,
            "FAILED" => DeployStatus::Failed,
            "CRASHED" => DeployStatus::Crashed,
            "REMOVED" => DeployStatus::Removed,
            "REMOVING" => DeployStatus::Removing,
            "SLEEPING" => DeployStatus::Sleeping,
            "SKIPPED" => DeployStatus::Skipped,
            other => DeployStatus::Other(other.to_string()),
        }
    }
}

/// One service as [`RailwayClient::services`] sees it, in the client's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub id: String,
    pub name: String,
    pub created_at: Option<OffsetDateTime>,
    /// The latest deployment's status; None when it never deployed here.
    pub deploy_status: Option<DeployStatus>,
    /// Railway-provided domains first, then custom ones.
    pub domains: Vec<String>,
    pub image: Option<String>,
    pub volume_ids: Vec<String>,
}

/// A cheap-to-clone handle; build one per process and share it.
#[derive(Clone)]
pub struct RailwayClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RailwaySettings,
    http: reqwest::Client,
    /// When an answer said the rate-limit window is spent: calls wait until then.
    window_opens: Mutex<Option<Instant>>,
    /// The environment's id, looked up by name once.
    environment: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient").field("settings", &self.inner.settings).finish()
    }
}

impl RailwayClient {
    pub fn new(settings: RailwaySettings, http: reqwest::Client) -> Self {
        let environment = tokio::sync::OnceCell::new();
        RailwayClient {
            inner: Arc::new(Inner { settings, http, window_opens: Mutex::new(None), environment }),
        }
    }

    pub fn settings(&self) -> &RailwaySettings {
        &self.inner.settings
    }

    /// The environment's id: the configured one, or the one named, looked up on first use.
    pub async fn environment_id(&self) -> Result<String, RailwayError> {
        let s = &self.inner.settings;
        let Some(name) = s.environment_name.as_deref() else {
            return Ok(s.environment_id.clone());
        };
        self.inner.environment.get_or_try_init(|| self.environment_named(name)).await.cloned()
    }

    /// `project(id){environments{edges{node{id name}}}}`, as the Railway pool resolved
    /// `RAILWAY_ENVIRONMENT_NAME` (convos-contracts §3).
    async fn environment_named(&self, name: &str) -> Result<String, RailwayError> {
        let op = "environment_by_name";
        let data = self
            .call(
                op,
                "query environments($projectId: String!) { project(id: $projectId) { environments { edges { node { id name } } } } }",
                json!({"projectId": self.inner.settings.project_id}),
                &[],
                Resend::Safe,
            )
            .await?;
        let project = data.get("project").filter(|p| !p.is_null()).ok_or_else(|| RailwayError {
            missing: Some(Missing::Project),
            ..RailwayError::new(RailwayErrorKind::NotFound, op, "the project was not found")
        })?;
        let found = project
            .get("environments")
            .and_then(|c| c.get("edges"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|edge| edge.get("node"))
            .find(|node| node.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|node| node.get("id").and_then(Value::as_str));
        match found {
            Some(id) => {
                tracing::info!(environment = name, id, "railway environment resolved by name");
                Ok(id.to_string())
            }
            None => Err(RailwayError {
                missing: Some(Missing::Environment),
                ..RailwayError::new(
                    RailwayErrorKind::NotFound,
                    op,
                    format!("the project has no environment named {name:?}"),
                )
            }),
        }
    }

    /// Creates an empty service (no source: nothing deploys yet) and returns its id. Railway
    /// does not keep names unique, so a create of unknown outcome is not resent: look for the
    /// name in [`Self::services`] first.
    pub async fn create_service(&self, name: &str) -> Result<String, RailwayError> {
        let op = "create_service";
        let s = &self.inner.settings;
        let environment_id = self.environment_id().await?;
        let data = self
            .call(
                op,
                "mutation serviceCreate($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }",
                json!({"input": {"projectId": s.project_id, "environmentId": environment_id, "name": name}}),
                &[],
                Resend::LookUpFirst,
            )
            .await?;
        string_at(&data, &["serviceCreate", "id"], op)
    }

    /// Creates the service's volume and returns its id. Not resent when its outcome is
    /// unknown: look for the volume in [`Self::services`] first.
    pub async fn create_volume(&self, service_id: &str, mount_path: &str) -> Result<String, RailwayError> {
        let op = "create_volume";
        let s = &self.inner.settings;
        let environment_id = self.environment_id().await?;
        let data = self
            .call(
                op,
                "mutation volumeCreate($input: VolumeCreateInput!) { volumeCreate(input: $input) { id name } }",
                json!({"input": {
                    "projectId": s.project_id,
                    "environmentId": environment_id,
                    "serviceId": service_id,
                    "mountPath": mount_path,
                }}),
                &[],
                Resend::LookUpFirst,
            )
            .await?;
        string_at(&data, &["volumeCreate", "id"], op)
    }

    /// Creates the service's public `*.up.railway.app` domain and returns it. Not resent when
    /// its outcome is unknown: look for the domain in [`Self::services`] first.
    pub async fn create_domain(&self, service_id: &str) -> Result<String, RailwayError> {
        let op = "create_domain";
        let environment_id = self.environment_id().await?;
        let data = self
            .call(
                op,
                "mutation serviceDomainCreate($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { domain } }",
                json!({"input": {"serviceId": service_id, "environmentId": environment_id}}),
                &[],
                Resend::LookUpFirst,
            )
            .await?;
        string_at(&data, &["serviceDomainCreate", "domain"], op)
    }

    /// One `environmentPatchCommit`: image, start command, limits and ALL variables together
    /// (never variables after the image: the old system lost ~10% of variables that way).
    pub async fn deploy(&self, service_id: &str, spec: &DeploySpec) -> Result<(), RailwayError> {
        let op = "deploy";
        let variables: serde_json::Map<String, Value> =
            spec.variables.iter().map(|(k, v)| (k.clone(), json!({"value": v.expose_secret()}))).collect();
        let deploy = json!({
            "startCommand": spec.start_command,
            "limitOverride": {"containers": {"cpu": spec.cpu, "memoryBytes": spec.memory_bytes}},
        });
        let patch = json!({"services": {service_id: {
            "source": {"image": spec.image},
            "deploy": deploy,
            "variables": variables,
        }}});
        let secrets: Vec<&str> = spec.variables.values().map(|v| v.expose_secret()).collect();
        let environment_id = self.environment_id().await?;
        self.call(
            op,
            "mutation environmentPatchCommit($environmentId: String!, $patch: EnvironmentConfig, $commitMessage: String) { environmentPatchCommit(environmentId: $environmentId, patch: $patch, commitMessage: $commitMessage) }",
            json!({
                "environmentId": environment_id,
                "patch": patch,
                "commitMessage": "convos pool: deploy",
            }),
            &secrets,
            Resend::Safe,
        )
        .await?;
        Ok(())
    }

    /// A new deployment of the service's current configuration.
    pub async fn redeploy(&self, service_id: &str) -> Result<(), RailwayError> {
        let environment_id = self.environment_id().await?;
        self.call(
            "redeploy",
            "mutation serviceInstanceRedeploy($serviceId: String!, $environmentId: String!) { serviceInstanceRedeploy(serviceId: $serviceId, environmentId: $environmentId) }",
            json!({"serviceId": service_id, "environmentId": environment_id}),
            &[],
            Resend::Safe,
        )
        .await?;
        Ok(())
    }

    /// Deletes a volume; one that is already gone ("Volume not found", nothing else) counts
    /// as deleted.
    pub async fn delete_volume(&self, volume_id: &str) -> Result<(), RailwayError> {
        let result = self
            .call(
                "delete_volume",
                "mutation volumeDelete($volumeId: String!) { volumeDelete(volumeId: $volumeId) }",
                json!({"volumeId": volume_id}),
                &[],
                Resend::Safe,
            )
            .await;
        gone_is_ok(result, Missing::Volume)
    }

    /// Deletes a service; one that is already gone ("Service not found", nothing else)
    /// counts as deleted. Delete its volume
    /// first: a volume outlives a service deleted before it.
    pub async fn delete_service(&self, service_id: &str) -> Result<(), RailwayError> {
        let result = self
            .call(
                "delete_service",
                "mutation serviceDelete($id: String!) { serviceDelete(id: $id) }",
                json!({"id": service_id}),
                &[],
                Resend::Safe,
            )
            .await;
        gone_is_ok(result, Missing::Service)
    }

    /// The URL a domain is reached at.
    pub fn public_url(&self, domain: &str) -> String {
        match &self.inner.settings.public_url_base {
            Some(base) => format!("{}/{domain}", base.as_str().trim_end_matches('/')),
            None => format!("https://{domain}"),
        }
    }
}

/// A delete of something already gone is done; any other NotFound (the project, the
/// environment) is not.
fn gone_is_ok(result: Result<Value, RailwayError>, what: Missing) -> Result<(), RailwayError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_missing(what) => Ok(()),
        Err(e) => Err(e),
    }
}

fn string_at(data: &Value, path: &[&str], operation: &'static str) -> Result<String, RailwayError> {
    let mut v = data;
    for key in path {
        v = v.get(key).unwrap_or(&Value::Null);
    }
    v.as_str().map(str::to_string).ok_or_else(|| {
        RailwayError::new(
            RailwayErrorKind::Permanent,
            operation,
            format!("the answer lacks {}", path.join(".")),
        )
    })
}
