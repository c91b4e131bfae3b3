//! A Sprite as data: its files, services, checkpoints and exec sessions, and the pure
//! operations on them. Below the world model (`crate::state::World` holds every Sprite); the
//! Sprites API handlers are `sprites`, `exec`, `services`, `checkpoints` and `fs_routes`.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::clock::{rfc3339, unix_ms};
use crate::fs::Fs;
use crate::gateway::files::binding;
use crate::gateway::state::GatewayChaos;
use crate::sprites::lifecycle::{Lifecycle, Power, Settled};
use crate::vm::table::{Listener, VmState};

/// Why a running exec session is being ended from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// A signal through `POST …/exec/{id}/kill`: the command exits with this code (128+n).
    Signal(u8),
    /// The environment went away (restore, delete, kill, reset): the socket closes with no
    /// exit frame, as when the VM restarts under a real client.
    Restart,
}

pub struct Session {
    pub id: u64,
    pub command: String,
    pub workdir: String,
    pub created: OffsetDateTime,
    pub tty: bool,
    pub last_activity: OffsetDateTime,
    /// Its client is still connected: an open session keeps the Sprite running; a detached
    /// one does not (reference §3.7).
    pub attached: bool,
    pub kill: watch::Sender<Option<KillReason>>,
}

impl Session {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "command": self.command,
            "workdir": self.workdir,
            "created": rfc3339(self.created),
            "tty": self.tty,
            "bytes_per_second": 0,
            "is_active": true,
            "last_activity": rfc3339(self.last_activity),
        })
    }
}

/// Serialize is the API's shape; Deserialize reads it back from the state file (`persist`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceDef {
    pub name: String,
    pub cmd: String,
    pub args: Vec<String>,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub def: ServiceDef,
    pub running: bool,
    pub pid: Option<u32>,
    pub started_at: Option<OffsetDateTime>,
    /// When the process (re)started.
    pub started: Option<Instant>,
    pub restart_count: u32,
    pub logs: Vec<Value>,
    /// Bumped on every start, so a process task knows whether it still serves this start.
    pub generation: u64,
    /// While a crashed process waits for its restart.
    pub next_restart_at: Option<OffsetDateTime>,
}

/// How many log events a service keeps in memory (a crash loop must not grow without bound).
const MAX_LOG_EVENTS: usize = 2000;

impl Service {
    /// Appends a log event, dropping the oldest beyond [`MAX_LOG_EVENTS`].
    pub fn log(&mut self, line: Value) {
        if self.logs.len() >= MAX_LOG_EVENTS {
            self.logs.drain(..self.logs.len() + 1 - MAX_LOG_EVENTS);
        }
        self.logs.push(line);
    }

    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.def).unwrap_or(Value::Null);
        v["state"] = json!({
            "name": self.def.name,
            "status": match (self.running, self.pid) {
                (true, Some(_)) => "running",
                (true, None) => "starting",
                (false, _) => "stopped",
            },
            "pid": self.pid,
            "started_at": self.started_at.map(rfc3339),
            "error": null,
            "restart_count": self.restart_count,
            "next_restart_at": self.next_restart_at.map(rfc3339),
        });
        v
    }
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub id: String,
    pub create_time: OffsetDateTime,
    pub comment: String,
    pub source_id: String,
    pub history: Vec<String>,
    pub fs: Fs,
    pub services: Vec<ServiceDef>,
}

impl Checkpoint {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "create_time": rfc3339(self.create_time),
            "comment": self.comment,
            "source_id": self.source_id,
            "history": self.history,
            "is_auto": false,
            "health": "",
        })
    }
}

/// Definitions in the order a boot starts them: each after the ones it `needs`; unsatisfiable
/// needs start last rather than never.
pub fn needs_order(defs: Vec<ServiceDef>) -> Vec<ServiceDef> {
    let mut order: Vec<ServiceDef> = Vec::new();
    let mut pending = defs;
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|d| d.needs.iter().all(|n| order.iter().any(|o| &o.name == n)));
        order.extend(ready);
        pending = rest;
        if pending.len() == before {
            order.append(&mut pending);
        }
    }
    order
}

pub struct Sprite {
    pub id: String,
    pub name: String,
    pub url_auth: String,
    pub private_access: Option<String>,
    pub labels: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub lifecycle: Lifecycle,
    pub last_active_at: Option<OffsetDateTime>,
    pub fs: Fs,
    pub services: BTreeMap<String, Service>,
    pub checkpoints: Vec<Checkpoint>,
    pub next_checkpoint: u32,
    /// The checkpoint the live state descends from (last created or restored).
    pub current_base: Option<String>,
    pub last_restored: Option<String>,
    pub sessions: BTreeMap<u64, Session>,
    pub gateway: GatewayChaos,
    /// What runs inside: processes, listening ports, service processes.
    pub vm: VmState,
    /// Bumped whenever the environment restarts, so in-flight gateway work started before
    /// it (a slow join) does not land on the new environment.
    pub boot_epoch: u64,
    pub policy: Value,
    /// Requests to its URL being served: the gateway is working on them, so it is not idle.
    pub in_flight: u32,
}

impl Sprite {
    pub fn new(name: String, url_auth: String, labels: Vec<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id: format!("sprite-{}", uuid::Uuid::new_v4()),
            name,
            url_auth,
            private_access: None,
            labels,
            created_at: now,
            updated_at: now,
            lifecycle: Lifecycle::new(Instant::now()),
            last_active_at: None,
            fs: Fs::new(),
            services: BTreeMap::new(),
            checkpoints: Vec::new(),
            next_checkpoint: 1,
            current_base: None,
            last_restored: None,
            sessions: BTreeMap::new(),
            gateway: GatewayChaos::default(),
            vm: Default::default(),
            boot_epoch: 0,
            policy: json!({"rules": []}),
            in_flight: 0,
        }
    }

    pub fn status(&self) -> &'static str {
        self.lifecycle.power().as_str()
    }

    /// Activity: it postpones the idle pause of a running Sprite.
    pub fn touch(&mut self) {
        if self.lifecycle.power() == Power::Running {
            self.lifecycle.touch(Instant::now());
            self.last_active_at = Some(OffsetDateTime::now_utc());
        }
    }

    /// Whether something keeps it from pausing: a session whose client is attached, or a
    /// request to its URL still being answered (a gateway call that takes seconds is traffic).
    pub fn held(&self) -> bool {
        self.in_flight > 0 || self.sessions.values().any(|s| s.attached)
    }

    /// What a pause means inside: every exec session drops, its socket closing as on a
    /// restart (reference §8: open WebSockets drop on pause; detached sessions do not survive
    /// it). Going cold stops the VM: every process and listener is gone, and in-flight gateway
    /// work of the old boot must not land (`boot_epoch`). The services' definitions, and
    /// whether each is wanted (a stop is sticky), stay for the next boot.
    pub fn apply_pause(&mut self, settled: Settled) {
        if settled.paused || settled.went_cold {
            self.end_sessions();
        }
        if settled.went_cold {
            self.vm = Default::default();
            self.boot_epoch += 1;
            for svc in self.services.values_mut() {
                svc.pid = None;
                svc.started = None;
                svc.next_restart_at = None;
            }
        }
    }

    /// After a cold wake: the services that were wanted start again in `needs` order, as at
    /// boot (`pids` hands one fresh pid to each).
    pub fn boot_services(&mut self, mut pids: impl FnMut() -> u32) {
        let wanted: Vec<ServiceDef> =
            self.services.values().filter(|s| s.running).map(|s| s.def.clone()).collect();
        for def in needs_order(wanted) {
            self.start_service(&def.name, pids());
        }
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        let mut url_settings = json!({"auth": self.url_auth});
        if let Some(pa) = &self.private_access {
            url_settings["private_access"] = json!(pa);
        }
        json!({
            "id": self.id,
            "name": self.name,
            "organization": "emulator",
            "url": format!("{base_url}/_sprite/{}", self.name),
            "url_settings": url_settings,
            "status": self.status(),
            "labels": self.labels,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "last_started_at": self.last_active_at.map(rfc3339),
            "last_active_at": self.last_active_at.map(rfc3339),
            "version": "0.0.1-emulator",
            "environment_version": "",
        })
    }

    /// Ends every exec session as if the VM restarted.
    pub fn end_sessions(&mut self) {
        for (_, session) in std::mem::take(&mut self.sessions) {
            let _ = session.kill.send(Some(KillReason::Restart));
        }
    }

    /// (Re)starts a service: a fresh pid, and a new generation whose process
    /// `vm::supervisor::launch` then runs (any previous process of it ends here).
    pub fn start_service(&mut self, name: &str, pid: u32) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        svc.running = true;
        svc.pid = Some(pid);
        svc.started_at = Some(OffsetDateTime::now_utc());
        svc.started = Some(Instant::now());
        svc.generation += 1;
        svc.next_restart_at = None;
        svc.log(json!({"type": "started", "timestamp": unix_ms()}));
        self.vm.end_service(name);
    }

    pub fn stop_service(&mut self, name: &str) {
        if let Some(svc) = self.services.get_mut(name) {
            svc.running = false;
            svc.pid = None;
            svc.started = None;
            svc.next_restart_at = None;
            svc.log(json!({"type": "stopped", "exit_code": 0, "timestamp": unix_ms()}));
        }
        self.vm.end_service(name);
    }

    /// What the Sprite URL reaches: the listener on the `http_port` service's port, else on
    /// 8080 (reference §5 "http_port and the URL"); None when nothing listens there.
    pub fn url_listener(&self) -> Option<&Listener> {
        let port = self.services.values().find_map(|s| s.def.http_port).unwrap_or(8080);
        self.vm.listener(port)
    }

    /// The running service that carries the Sprite's URL, if any.
    pub fn http_service(&self) -> Option<&Service> {
        self.services.values().find(|s| s.def.http_port.is_some() && s.running)
    }

    pub fn dump(&self, base_url: &str) -> Value {
        let files: Vec<Value> = self
            .fs
            .nodes()
            .map(|(path, node)| {
                json!({
                    "path": path,
                    "type": if node.is_dir() { "directory" } else { "file" },
                    "size": node.size(),
                    "mode": format!("{:04o}", node.mode()),
                })
            })
            .collect();
        let mut v = self.to_json(base_url);
        v["files"] = json!(files);
        v["services"] = json!(self.services.values().map(Service::to_json).collect::<Vec<_>>());
        v["checkpoints"] = json!(self.checkpoints.iter().map(Checkpoint::to_json).collect::<Vec<_>>());
        v["last_restored"] = json!(self.last_restored);
        v["sessions"] = json!(self.sessions.values().map(Session::to_json).collect::<Vec<_>>());
        let binding = binding(&self.fs);
        v["gateway"] = json!({
            "down": self.gateway.down,
            "until_exec": self.gateway.until_exec,
            "service_running": self.http_service().is_some(),
            "conversation_id": binding,
        });
        v["listening"] = json!(self.vm.listeners.keys().collect::<Vec<_>>());
        v["policy"] = self.policy.clone();
        v["lifecycle"] = self.lifecycle.to_json(Instant::now());
        v
    }
}
