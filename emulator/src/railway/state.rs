//! Railway's state as data: services with their deployments, volumes and domains, the
//! throttles and armed failures, and the pure operations on them. Below the world model
//! (`crate::state::World` holds it); the handlers are `railway` and its submodules.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::fs::Fs;
use crate::gateway::files::binding_at;
use crate::gateway::state::Layout;
use crate::latency;

pub const PROJECT_ID: &str = "emulator-project";
pub const ENVIRONMENT_ID: &str = "emulator-environment";
pub const ENVIRONMENT_NAME: &str = "production";
/// How long a deployment takes from QUEUED to SUCCESS, before `speed`.
pub const DEFAULT_DEPLOY_MS: u64 = 30_000;
/// Where the runtime keeps its state when the service has no volume (lost on every deploy).
const EPHEMERAL_STATE_DIR: &str = "/app";

/// What a service instance runs: set by `environmentPatchCommit`, copied into each deployment.
/// Serde (here and on `Forced` and `Domain`) for the state file (`persist`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub image: Option<String>,
    pub start_command: Option<String>,
    pub cpu: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub variables: BTreeMap<String, String>,
}

/// A status forced from outside the normal QUEUED → SUCCESS progression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Forced {
    Crashed,
    Sleeping,
}

#[derive(Debug)]
pub struct Deployment {
    pub id: String,
    pub created_at: OffsetDateTime,
    pub started: Instant,
    /// Ends FAILED instead of SUCCESS (the control API's fail-next).
    pub fails: bool,
    pub forced: Option<Forced>,
    /// When a sleeping deployment was woken: the runtime boots again from there.
    pub woke: Option<Instant>,
    pub config: ServiceConfig,
}

impl Deployment {
    /// Railway's status of this deployment; `latest` is false once a newer one exists.
    pub fn status(&self, latest: bool, deploy: Duration) -> &'static str {
        if !latest {
            return "REMOVED";
        }
        match self.forced {
            Some(Forced::Crashed) => return "CRASHED",
            Some(Forced::Sleeping) => return "SLEEPING",
            None => {}
        }
        let elapsed = self.started.elapsed();
        if elapsed >= deploy {
            if self.fails { "FAILED" } else { "SUCCESS" }
        } else if elapsed < deploy / 5 {
            "QUEUED"
        } else if elapsed < deploy / 2 {
            "INITIALIZING"
        } else {
            "DEPLOYING"
        }
    }

    /// Whether the runtime answers as ready: SUCCESS and the gateway booted since it came up.
    pub fn runtime_ready(&self, deploy: Duration, boot: Duration) -> bool {
        if self.status(true, deploy) != "SUCCESS" {
            return false;
        }
        let up_since = self.woke.unwrap_or(self.started);
        let needed = if self.woke.is_some() { boot } else { deploy + boot };
        up_since.elapsed() >= needed
    }
}

#[derive(Debug)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub seq: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub domains: Vec<Domain>,
    pub config: ServiceConfig,
    /// Oldest first.
    pub deployments: Vec<Deployment>,
    /// The container's own disk: where the runtime keeps its state without a volume.
    pub ephemeral: Fs,
}

impl Service {
    pub fn latest(&self) -> Option<&Deployment> {
        self.deployments.last()
    }

    pub fn latest_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments.last_mut()
    }

    /// Starts a deployment of the current config (a fresh container: ephemeral disk wiped).
    pub fn deploy(&mut self, fails: bool) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.deployments.push(Deployment {
            id: id.clone(),
            created_at: OffsetDateTime::now_utc(),
            started: Instant::now(),
            fails,
            forced: None,
            woke: None,
            config: self.config.clone(),
        });
        self.ephemeral = Fs::new();
        self.updated_at = OffsetDateTime::now_utc();
        id
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Domain {
    pub id: String,
    pub domain: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct Volume {
    pub id: String,
    pub seq: u64,
    pub name: String,
    pub created_at: OffsetDateTime,
    /// The service it was attached to (kept after that service is deleted).
    pub service_id: String,
    pub mount_path: String,
    /// The service was deleted before the volume: the volume stays, billed and unused.
    pub orphaned: bool,
    pub fs: Fs,
}

/// Railway's per-user throttle on `volumeCreate`: at most `limit` creations in any `window`
/// (wall clock: `speed` does not shrink it, as it does not shrink Railway's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeThrottle {
    pub limit: u32,
    pub window: Duration,
}

/// Everything Railway holds, reset by `POST /_emulator/reset`.
#[derive(Debug)]
pub struct RailwayWorld {
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, Volume>,
    /// Deploy time before `speed` (`PUT /_emulator/railway/config {"deployMs"}`).
    pub deploy_ms: u64,
    /// The next this many deployments end FAILED.
    pub fail_next: u64,
    /// Off unless set through the control API.
    pub volume_throttle: Option<VolumeThrottle>,
    /// When recent volume creations were allowed through (for the throttle).
    volume_creates: Vec<Instant>,
    /// How many `volumeCreate` the throttle refused.
    pub volume_throttled: u64,
    /// Every `User-Agent` the GraphQL endpoint saw, so a test can check what clients send.
    pub user_agents: std::collections::BTreeSet<String>,
    /// Per counter route (`railway.volumeCreate`): this many requests act, then the edge
    /// answers 504 (the answer is lost).
    pub lost_answers: BTreeMap<String, u64>,
    /// The last sequence number handed out (kept in the state file, so ids stay in order).
    pub next_seq: u64,
}

impl Default for RailwayWorld {
    fn default() -> Self {
        RailwayWorld {
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            deploy_ms: DEFAULT_DEPLOY_MS,
            fail_next: 0,
            volume_throttle: None,
            volume_creates: Vec::new(),
            volume_throttled: 0,
            user_agents: Default::default(),
            lost_answers: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl RailwayWorld {
    /// Whether one more volume may be created now under the throttle; counts it if so.
    pub fn volume_create_allowed(&mut self) -> bool {
        let Some(throttle) = self.volume_throttle else { return true };
        let now = Instant::now();
        self.volume_creates.retain(|t| now.duration_since(*t) < throttle.window);
        if self.volume_creates.len() as u32 >= throttle.limit {
            self.volume_throttled += 1;
            return false;
        }
        self.volume_creates.push(now);
        true
    }

    /// Consumes one lost answer armed for `route`.
    pub fn take_lost_answer(&mut self, route: &str) -> bool {
        match self.lost_answers.get_mut(route) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn deploy_time(&self, speed: f64) -> Duration {
        latency::scaled(self.deploy_ms, speed)
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Services in creation order.
    pub fn services_in_order(&self) -> Vec<&Service> {
        let mut list: Vec<&Service> = self.services.values().collect();
        list.sort_by_key(|s| s.seq);
        list
    }

    /// A service by id, or by name (first created) for the control API's convenience.
    pub fn find_service_id(&self, id_or_name: &str) -> Option<String> {
        if self.services.contains_key(id_or_name) {
            return Some(id_or_name.to_string());
        }
        self.services_in_order().into_iter().find(|s| s.name == id_or_name).map(|s| s.id.clone())
    }

    pub fn service_by_domain(&self, domain: &str) -> Option<&Service> {
        self.services.values().find(|s| s.domains.iter().any(|d| d.domain.eq_ignore_ascii_case(domain)))
    }

    /// The live (not orphaned) volume attached to a service.
    pub fn volume_of(&self, service_id: &str) -> Option<&Volume> {
        self.volumes.values().find(|v| !v.orphaned && v.service_id == service_id)
    }

    /// Where the runtime of this service keeps its state.
    pub fn layout_of(&self, service_id: &str) -> Layout {
        match self.volume_of(service_id) {
            Some(v) => Layout::state_dir(&v.mount_path),
            None => Layout::state_dir(EPHEMERAL_STATE_DIR),
        }
    }

    /// Starts a deployment, consuming one fail-next.
    pub fn deploy(&mut self, service_id: &str) -> Option<String> {
        let fails = self.fail_next > 0;
        let svc = self.services.get_mut(service_id)?;
        if fails {
            self.fail_next -= 1;
        }
        Some(svc.deploy(fails))
    }

    /// The state dump: services, volumes, domains, variable names (never values).
    pub fn dump(&self, speed: f64) -> Value {
        let deploy = self.deploy_time(speed);
        let services: Vec<Value> = self
            .services_in_order()
            .into_iter()
            .map(|s| {
                let count = s.deployments.len();
                let deployments: Vec<Value> = s
                    .deployments
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        json!({
                            "id": d.id,
                            "status": d.status(i + 1 == count, deploy),
                            "createdAt": rfc3339(d.created_at),
                            "image": d.config.image,
                            "startCommand": d.config.start_command,
                            "variables": d.config.variables.keys().collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let layout = self.layout_of(&s.id);
                let conversation = match self.volume_of(&s.id) {
                    Some(v) => binding_at(&v.fs, &layout),
                    None => binding_at(&s.ephemeral, &layout),
                };
                json!({
                    "id": s.id,
                    "name": s.name,
                    "createdAt": rfc3339(s.created_at),
                    "image": s.config.image,
                    "startCommand": s.config.start_command,
                    "cpu": s.config.cpu,
                    "memoryBytes": s.config.memory_bytes,
                    "variables": s.config.variables.keys().collect::<Vec<_>>(),
                    "domains": s.domains.iter().map(|d| d.domain.clone()).collect::<Vec<_>>(),
                    "volumeIds": self.volumes.values().filter(|v| !v.orphaned && v.service_id == s.id)
                        .map(|v| v.id.clone()).collect::<Vec<_>>(),
                    "status": s.latest().map(|d| d.status(true, deploy)),
                    "deployments": deployments,
                    "conversationId": conversation,
                })
            })
            .collect();
        let volumes: Vec<Value> = self
            .volumes
            .values()
            .map(|v| {
                json!({
                    "id": v.id,
                    "name": v.name,
                    "serviceId": v.service_id,
                    "mountPath": v.mount_path,
                    "orphaned": v.orphaned,
                    "createdAt": rfc3339(v.created_at),
                })
            })
            .collect();
        json!({
            "projectId": PROJECT_ID,
            "environmentId": ENVIRONMENT_ID,
            "config": {"deployMs": self.deploy_ms, "failNext": self.fail_next},
            "lostAnswers": self.lost_answers,
            "volumeThrottled": self.volume_throttled,
            "userAgents": self.user_agents,
            "services": services,
            "volumes": volumes,
        })
    }
}
