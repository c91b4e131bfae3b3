//! Client for Railway's public GraphQL API (convos-contracts §3): the services of one project
//! and environment, their volumes, domains and deployments.
//!
//! Every call goes through [`RailwayClient::call`]: one POST of `{query, variables}` with
//! `Authorization: Bearer`, the body read as text first (Railway's edge can answer HTML),
//! any `errors` array turned into a [`RailwayError`], and rate limits and transient failures
//! retried a bounded number of times with backoff ([`RetryPolicy`]). Each call is one tracing
//! span with the operation, status, attempts and duration — never the token or a variable
//! value, which are also blanked out of every error message.

mod error;
mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;
use url::Url;

pub use error::{RailwayError, RailwayErrorKind};
pub use retry::RetryPolicy;

use error::{kind_of_message, parse_retry_after, sanitize};

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
    pub environment_id: String,
    /// Dev only: when set, domain `d` is served at `{base}/{d}` (the emulator's `/_railway`);
    /// otherwise at `https://{d}`.
    pub public_url_base: Option<Url>,
    pub retry: RetryPolicy,
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
            public_url_base: None,
            retry: retry::patient(),
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
            .field("public_url_base", &self.public_url_base.as_ref().map(Url::as_str))
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What one deployment runs. Everything goes out in one `environmentPatchCommit`.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub image: String,
    pub start_command: Option<String>,
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
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient").field("settings", &self.inner.settings).finish()
    }
}

/// The batched listing: every service with this environment's instance (latest deployment,
/// domains, image) and every volume with the services it is attached to. One request,
/// whatever the number of services.
const SERVICES_QUERY: &str = "query services($projectId: String!) {
  project(id: $projectId) {
    services(first: 500) { edges { node {
      id name createdAt
      serviceInstances { edges { node {
        environmentId
        domains { serviceDomains { domain } customDomains { domain } }
        source { image }
        latestDeployment { id status }
      } } }
    } } }
    volumes { edges { node {
      id name
      volumeInstances { edges { node { serviceId environmentId } } }
    } } }
  }
}";

impl RailwayClient {
    pub fn new(settings: RailwaySettings, http: reqwest::Client) -> Self {
        RailwayClient { inner: Arc::new(Inner { settings, http }) }
    }

    pub fn settings(&self) -> &RailwaySettings {
        &self.inner.settings
    }

    /// Every service of the project in ONE request (see [`SERVICES_QUERY`]).
    pub async fn services(&self) -> Result<Vec<ServiceSnapshot>, RailwayError> {
        let op = "services";
        let data =
            self.call(op, SERVICES_QUERY, json!({"projectId": self.inner.settings.project_id}), &[]).await?;
        let project = data
            .get("project")
            .filter(|p| !p.is_null())
            .ok_or_else(|| RailwayError::new(RailwayErrorKind::NotFound, op, "the project was not found"))?;
        Ok(snapshots(project, &self.inner.settings.environment_id))
    }

    /// Creates an empty service (no source: nothing deploys yet) and returns its id. Railway
    /// does not keep names unique: after a lost answer, look for the name in [`Self::services`].
    pub async fn create_service(&self, name: &str) -> Result<String, RailwayError> {
        let op = "create_service";
        let s = &self.inner.settings;
        let data = self
            .call(
                op,
                "mutation serviceCreate($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }",
                json!({"input": {"projectId": s.project_id, "environmentId": s.environment_id, "name": name}}),
                &[],
            )
            .await?;
        string_at(&data, &["serviceCreate", "id"], op)
    }

    /// Creates the service's volume and returns its id.
    pub async fn create_volume(&self, service_id: &str, mount_path: &str) -> Result<String, RailwayError> {
        let op = "create_volume";
        let s = &self.inner.settings;
        let data = self
            .call(
                op,
                "mutation volumeCreate($input: VolumeCreateInput!) { volumeCreate(input: $input) { id name } }",
                json!({"input": {
                    "projectId": s.project_id,
                    "environmentId": s.environment_id,
                    "serviceId": service_id,
                    "mountPath": mount_path,
                }}),
                &[],
            )
            .await?;
        string_at(&data, &["volumeCreate", "id"], op)
    }

    /// Creates the service's public `*.up.railway.app` domain and returns it.
    pub async fn create_domain(&self, service_id: &str) -> Result<String, RailwayError> {
        let op = "create_domain";
        let data = self
            .call(
                op,
                "mutation serviceDomainCreate($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { domain } }",
                json!({"input": {"serviceId": service_id, "environmentId": self.inner.settings.environment_id}}),
                &[],
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
        let mut deploy = json!({
            "limitOverride": {"containers": {"cpu": spec.cpu, "memoryBytes": spec.memory_bytes}},
        });
        if let Some(cmd) = &spec.start_command {
            deploy["startCommand"] = json!(cmd);
        }
        let patch = json!({"services": {service_id: {
            "source": {"image": spec.image},
            "deploy": deploy,
            "variables": variables,
        }}});
        let secrets: Vec<&str> = spec.variables.values().map(|v| v.expose_secret()).collect();
        self.call(
            op,
            "mutation environmentPatchCommit($environmentId: String!, $patch: EnvironmentConfig, $commitMessage: String) { environmentPatchCommit(environmentId: $environmentId, patch: $patch, commitMessage: $commitMessage) }",
            json!({
                "environmentId": self.inner.settings.environment_id,
                "patch": patch,
                "commitMessage": "convos pool: deploy",
            }),
            &secrets,
        )
        .await?;
        Ok(())
    }

    /// A new deployment of the service's current configuration.
    pub async fn redeploy(&self, service_id: &str) -> Result<(), RailwayError> {
        self.call(
            "redeploy",
            "mutation serviceInstanceRedeploy($serviceId: String!, $environmentId: String!) { serviceInstanceRedeploy(serviceId: $serviceId, environmentId: $environmentId) }",
            json!({"serviceId": service_id, "environmentId": self.inner.settings.environment_id}),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Deletes a volume; one that is already gone counts as deleted.
    pub async fn delete_volume(&self, volume_id: &str) -> Result<(), RailwayError> {
        let result = self
            .call(
                "delete_volume",
                "mutation volumeDelete($volumeId: String!) { volumeDelete(volumeId: $volumeId) }",
                json!({"volumeId": volume_id}),
                &[],
            )
            .await;
        gone_is_ok(result)
    }

    /// Deletes a service; one that is already gone counts as deleted. Delete its volume
    /// first: a volume outlives a service deleted before it.
    pub async fn delete_service(&self, service_id: &str) -> Result<(), RailwayError> {
        let result = self
            .call(
                "delete_service",
                "mutation serviceDelete($id: String!) { serviceDelete(id: $id) }",
                json!({"id": service_id}),
                &[],
            )
            .await;
        gone_is_ok(result)
    }

    /// The URL a domain is reached at.
    pub fn public_url(&self, domain: &str) -> String {
        match &self.inner.settings.public_url_base {
            Some(base) => format!("{}/{domain}", base.as_str().trim_end_matches('/')),
            None => format!("https://{domain}"),
        }
    }

    /// Sends one GraphQL request, retrying as the policy allows; returns `data`.
    /// `secrets` are blanked out of any error message (variable values sent in the request).
    async fn call(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
        secrets: &[&str],
    ) -> Result<Value, RailwayError> {
        let span = tracing::info_span!(
            "railway",
            operation,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let body = json!({"query": query, "variables": variables});
        let started = Instant::now();
        async {
            let mut attempt = 1;
            loop {
                let result = self.attempt(operation, &body, secrets).await;
                let span = tracing::Span::current();
                span.record("attempts", attempt);
                span.record("duration_ms", started.elapsed().as_millis() as u64);
                let err = match result {
                    Ok(data) => {
                        span.record("status", 200);
                        tracing::debug!("railway call succeeded");
                        return Ok(data);
                    }
                    Err(err) => err,
                };
                span.record("status", err.status);
                match retry::delay_after(&self.inner.settings.retry, attempt, &err) {
                    Some(delay) => {
                        tracing::debug!(error = %err, delay_ms = delay.as_millis() as u64, "railway call will be retried");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => {
                        if err.is_not_found() {
                            tracing::debug!(error = %err, "railway call found nothing");
                        } else {
                            tracing::warn!(error = %err, "railway call failed");
                        }
                        return Err(err);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn attempt(
        &self,
        operation: &'static str,
        body: &Value,
        secrets: &[&str],
    ) -> Result<Value, RailwayError> {
        let settings = &self.inner.settings;
        let token = settings.token.expose_secret();
        let mut all_secrets: Vec<&str> = secrets.to_vec();
        all_secrets.push(token);
        let fail = |kind, status: u16, retry_after: Option<Duration>, message: &str| RailwayError {
            kind,
            operation,
            message: sanitize(message, &all_secrets),
            retry_after,
            status,
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            RailwayError::new(
                RailwayErrorKind::Unauthorized,
                operation,
                "the token has characters not allowed in a header",
            )
        })?;
        auth.set_sensitive(true);
        let response = self
            .inner
            .http
            .post(settings.api_url.clone())
            .header(header::AUTHORIZATION, auth)
            .json(body)
            .timeout(settings.request_timeout)
            .send()
            .await
            .map_err(|e| fail(RailwayErrorKind::Transient, 0, None, &e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response
            .text()
            .await
            .map_err(|e| fail(RailwayErrorKind::Transient, status, None, &e.without_url().to_string()))?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if status == 401 || status == 403 {
            return Err(fail(RailwayErrorKind::Unauthorized, status, None, &format!("HTTP {status}")));
        }
        if status == 429 {
            let message = parsed
                .as_ref()
                .and_then(first_message)
                .unwrap_or_else(|| "HTTP 429 Too Many Requests".into());
            return Err(fail(RailwayErrorKind::RateLimited, status, retry_after, &message));
        }
        let Some(parsed) = parsed else {
            // An HTML or text page from the edge: no GraphQL answer at all.
            let kind = if status >= 500 || (200..300).contains(&status) {
                RailwayErrorKind::Transient
            } else {
                RailwayErrorKind::Permanent
            };
            let snippet: String = text.chars().take(120).collect();
            return Err(fail(
                kind,
                status,
                retry_after,
                &format!("HTTP {status} without a JSON body: {snippet}"),
            ));
        };
        if let Some(message) = first_message(&parsed) {
            let kind = kind_of_message(&message).unwrap_or(if status >= 500 {
                RailwayErrorKind::Transient
            } else {
                RailwayErrorKind::Permanent
            });
            return Err(fail(kind, status, retry_after, &message));
        }
        if status >= 500 {
            return Err(fail(RailwayErrorKind::Transient, status, retry_after, &format!("HTTP {status}")));
        }
        if !(200..300).contains(&status) {
            return Err(fail(RailwayErrorKind::Permanent, status, None, &format!("HTTP {status}")));
        }
        match parsed.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => {
                Err(fail(RailwayErrorKind::Permanent, status, None, "the answer has neither data nor errors"))
            }
        }
    }
}

/// The first GraphQL error message (all of them joined when there are several).
fn first_message(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array()?;
    if errors.is_empty() {
        return None;
    }
    let messages: Vec<&str> =
        errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect();
    Some(if messages.is_empty() { "unknown GraphQL error".to_string() } else { messages.join("; ") })
}

fn gone_is_ok(result: Result<Value, RailwayError>) -> Result<(), RailwayError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
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

fn edge_nodes(conn: Option<&Value>) -> impl Iterator<Item = &Value> {
    conn.and_then(|c| c.get("edges"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("node"))
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The listing's JSON as snapshots of the services in `environment_id`.
fn snapshots(project: &Value, environment_id: &str) -> Vec<ServiceSnapshot> {
    let mut volumes_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for volume in edge_nodes(project.get("volumes")) {
        let Some(volume_id) = str_of(volume, "id") else { continue };
        for instance in edge_nodes(volume.get("volumeInstances")) {
            let env_matches =
                instance.get("environmentId").and_then(Value::as_str).is_none_or(|e| e == environment_id);
            if let Some(service_id) = str_of(instance, "serviceId").filter(|_| env_matches) {
                let ids = volumes_of.entry(service_id).or_default();
                if !ids.contains(&volume_id) {
                    ids.push(volume_id.clone());
                }
            }
        }
    }
    edge_nodes(project.get("services"))
        .filter_map(|node| {
            let id = str_of(node, "id")?;
            let instance = edge_nodes(node.get("serviceInstances"))
                .find(|i| i.get("environmentId").and_then(Value::as_str) == Some(environment_id));
            let mut domains = Vec::new();
            if let Some(all) = instance.and_then(|i| i.get("domains")) {
                for kind in ["serviceDomains", "customDomains"] {
                    for d in all.get(kind).and_then(Value::as_array).into_iter().flatten() {
                        if let Some(domain) = str_of(d, "domain") {
                            domains.push(domain);
                        }
                    }
                }
            }
            Some(ServiceSnapshot {
                name: str_of(node, "name").unwrap_or_default(),
                created_at: node
                    .get("createdAt")
                    .and_then(Value::as_str)
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
                deploy_status: instance
                    .and_then(|i| i.get("latestDeployment"))
                    .and_then(|d| d.get("status"))
                    .and_then(Value::as_str)
                    .map(DeployStatus::parse),
                domains,
                image: instance.and_then(|i| i.get("source")).and_then(|s| str_of(s, "image")),
                volume_ids: volumes_of.remove(&id).unwrap_or_default(),
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_picks_this_environment_and_maps_volumes() {
        let project = json!({
            "services": {"edges": [{"node": {
                "id": "s1", "name": "convos-agent-a", "createdAt": "2026-04-01T10:00:00Z",
                "serviceInstances": {"edges": [
                    {"node": {"environmentId": "other", "latestDeployment": {"id": "d0", "status": "FAILED"}}},
                    {"node": {"environmentId": "env", "domains": {"serviceDomains": [{"domain": "a.up.railway.app"}], "customDomains": [{"domain": "a.example"}]},
                              "source": {"image": "img"}, "latestDeployment": {"id": "d1", "status": "SUCCESS"}}}
                ]}
            }}, {"node": {"id": "s2", "name": "b", "createdAt": null, "serviceInstances": {"edges": []}}}]},
            "volumes": {"edges": [{"node": {"id": "v1", "volumeInstances": {"edges": [{"node": {"serviceId": "s1", "environmentId": "env"}}]}}},
                                  {"node": {"id": "v2", "volumeInstances": {"edges": [{"node": {"serviceId": "gone"}}]}}}]}
        });
        let list = snapshots(&project, "env");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].deploy_status, Some(DeployStatus::Success));
        assert_eq!(list[0].domains, vec!["a.up.railway.app", "a.example"]);
        assert_eq!(list[0].image.as_deref(), Some("img"));
        assert_eq!(list[0].volume_ids, vec!["v1"]);
        assert!(list[0].created_at.is_some());
        assert_eq!(list[1].deploy_status, None);
        assert!(list[1].volume_ids.is_empty());
        assert_eq!(DeployStatus::parse("NEEDS_APPROVAL"), DeployStatus::Other("NEEDS_APPROVAL".into()));
    }
}
