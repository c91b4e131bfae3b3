//! The chaos itself, through the emulator's control API: injected errors (5xx, 429 with
//! Retry-After, hung calls), Sprite deaths and dead or sleeping gateways, at random but from a
//! seed, every kind once per round so even a short run sees them all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use shared::store::{Status, Store};
use time::OffsetDateTime;
use tokio::sync::watch;

/// The emulator's control API (emulator/README.md).
#[derive(Clone)]
pub struct Control {
    base: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(base: String) -> Self {
        let http = shared::tls::http_client_builder()
            .expect("tls")
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Control { base, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_emulator/{path}", self.base)
    }

    pub async fn add_fault(&self, fault: &Value) -> Option<String> {
        let response = self.http.post(self.url("faults")).json(fault).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        match &body["id"] {
            Value::String(id) => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        }
    }

    pub async fn delete_fault(&self, id: &str) {
        let _ = self.http.delete(self.url(&format!("faults/{id}"))).send().await;
    }

    pub async fn faults(&self) -> Vec<Value> {
        let Ok(response) = self.http.get(self.url("faults")).send().await else { return Vec::new() };
        let body: Value = response.json().await.unwrap_or_default();
        match body {
            Value::Array(list) => list,
            Value::Object(ref o) => o.get("faults").and_then(Value::as_array).cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub async fn clear_faults(&self) {
        let _ = self.http.delete(self.url("faults")).send().await;
    }

    /// `true` when the Sprite existed and is now dead.
    pub async fn kill(&self, sprite: &str) -> bool {
        let url = self.url(&format!("sprites/{sprite}/kill"));
        matches!(self.http.post(url).send().await, Ok(r) if r.status().is_success())
    }

    pub async fn gateway_down(&self, sprite: &str, until_exec: bool) -> bool {
        let url = self.url(&format!("sprites/{sprite}/gateway"));
        let body = json!({"down": true, "until_exec": until_exec});
        matches!(self.http.post(url).json(&body).send().await, Ok(r) if r.status().is_success())
    }

    pub async fn state(&self) -> Result<Value, String> {
        let response = self.http.get(self.url("state")).send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// Every Sprite the emulator holds, with whether its gateway is switched off for good.
    pub async fn sprites(&self) -> Result<BTreeMap<String, bool>, String> {
        let state = self.state().await?;
        let mut out = BTreeMap::new();
        let mut add = |name: &str, sprite: &Value| {
            let gateway = &sprite["gateway"];
            let dead =
                gateway["down"].as_bool() == Some(true) && gateway["until_exec"].as_bool() != Some(true);
            out.insert(name.to_string(), dead);
        };
        match &state["sprites"] {
            Value::Array(list) => {
                for sprite in list {
                    if let Some(name) = sprite["name"].as_str() {
                        add(name, sprite);
                    }
                }
            }
            Value::Object(map) => {
                for (name, sprite) in map {
                    add(name, sprite);
                }
            }
            _ => return Err("emulator state without sprites".into()),
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    ServerError,
    RateLimit,
    Hang,
    Kill,
    DeadGateway,
    SleepyGateway,
}

const ACTIONS: &[Action] = &[
    Action::ServerError,
    Action::RateLimit,
    Action::Hang,
    Action::Kill,
    Action::DeadGateway,
    Action::SleepyGateway,
];

/// Routes the pool calls: Sprites API and gateway.
const ROUTES: &[&str] = &[
    "sprites.create",
    "sprites.get",
    "sprites.list",
    "sprites.delete",
    "exec",
    "exec.sessions",
    "fs.write",
    "fs.read",
    "fs.list",
    "services.put",
    "services.restart",
    "checkpoints.create",
    "checkpoints.list",
    "checkpoints.restore",
    "gateway.status",
    "gateway.conversation",
    "gateway.join",
];

#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub id: String,
    pub kind: &'static str,
    pub route: &'static str,
    pub probability: f64,
    pub spec: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub hits: u64,
    #[serde(skip)]
    expires: tokio::time::Instant,
}

/// A Sprite killed or a gateway switched off, and what the instance was doing then.
#[derive(Debug, Clone, Serialize)]
pub struct Blow {
    pub instance_id: String,
    pub sprite: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Default, Serialize)]
pub struct ChaosLog {
    pub faults: Vec<FaultRecord>,
    pub kills: Vec<Blow>,
    pub dead_gateways: Vec<Blow>,
    pub sleepy_gateways: Vec<Blow>,
    /// Actions that found no target (e.g. no idle instance to take the gateway of).
    pub no_target: u64,
}

impl ChaosLog {
    /// Faults that actually fired, by kind.
    pub fn hits_by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for fault in &self.faults {
            *out.entry(fault.kind).or_insert(0) += fault.hits;
        }
        out
    }
}

/// Runs the chaos until `stop` turns true; returns what it did, every fault's hits read back.
pub async fn inject(
    control: Control,
    store: Store,
    seed: u64,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> ChaosLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = ChaosLog::default();
    let mut deck: Vec<Action> = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    loop {
        let wait = every.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        expire(&control, &mut log, &mut live, false).await;
        if deck.is_empty() {
            deck = ACTIONS.to_vec();
            deck.shuffle(&mut rng);
        }
        let action = deck.pop().expect("a full deck");
        act(&control, &store, &mut rng, &mut log, &mut live, action).await;
    }
    expire(&control, &mut log, &mut live, true).await;
    control.clear_faults().await;
    log
}

/// Reads back the hits of faults past their time (all of them when `all`) and removes them.
async fn expire(control: &Control, log: &mut ChaosLog, live: &mut Vec<usize>, all: bool) {
    let now = tokio::time::Instant::now();
    let due: Vec<usize> = live.iter().copied().filter(|i| all || log.faults[*i].expires <= now).collect();
    if due.is_empty() {
        return;
    }
    let listed = control.faults().await;
    for i in &due {
        let record = &mut log.faults[*i];
        if let Some(found) = listed.iter().find(|f| id_of(f) == record.id) {
            record.hits = found["hits"].as_u64().unwrap_or(0);
        }
        control.delete_fault(&record.id).await;
    }
    live.retain(|i| !due.contains(i));
}

fn id_of(fault: &Value) -> String {
    match &fault["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

async fn act(
    control: &Control,
    store: &Store,
    rng: &mut StdRng,
    log: &mut ChaosLog,
    live: &mut Vec<usize>,
    action: Action,
) {
    match action {
        Action::ServerError | Action::RateLimit | Action::Hang => {
            let route = ROUTES[rng.random_range(0..ROUTES.len())];
            let (kind, spec) = match action {
                Action::ServerError => {
                    let status = [500, 502, 503][rng.random_range(0..3)];
                    ("5xx", json!({"type": "status", "status": status}))
                }
                Action::RateLimit => ("429", json!({"type": "rate_limit", "retry_after_secs": 1})),
                _ => ("hang", json!({"type": "hang", "ms": rng.random_range(300..5000)})),
            };
            let probability = (rng.random_range(0.3..1.0_f64) * 100.0).round() / 100.0;
            let count = rng.random_range(2..8);
            let fault = json!({"route": route, "probability": probability, "count": count, "kind": spec});
            if let Some(id) = control.add_fault(&fault).await {
                let lifetime = Duration::from_millis(rng.random_range(2000..6000));
                log.faults.push(FaultRecord {
                    id,
                    kind,
                    route,
                    probability,
                    spec: fault,
                    at: OffsetDateTime::now_utc(),
                    hits: 0,
                    expires: tokio::time::Instant::now() + lifetime,
                });
                live.push(log.faults.len() - 1);
            }
        }
        Action::Kill | Action::DeadGateway | Action::SleepyGateway => {
            let Ok(all) = store.instances().await else { return };
            let wanted = |status: Status| match action {
                // A Sprite can die whatever the pool is doing with it.
                Action::Kill => status != Status::Destroying,
                _ => matches!(status, Status::Idle | Status::Claimed),
            };
            let targets: Vec<_> = all.iter().filter(|i| i.url.is_some() && wanted(i.status)).collect();
            if targets.is_empty() {
                log.no_target += 1;
                return;
            }
            let target = targets[rng.random_range(0..targets.len())];
            let blow = Blow {
                instance_id: target.id.clone(),
                sprite: target.sprite_name.clone(),
                status: target.status.to_string(),
                at: OffsetDateTime::now_utc(),
            };
            let done = match action {
                Action::Kill => control.kill(&target.sprite_name).await,
                Action::DeadGateway => control.gateway_down(&target.sprite_name, false).await,
                _ => control.gateway_down(&target.sprite_name, true).await,
            };
            if !done {
                log.no_target += 1;
                return;
            }
            match action {
                Action::Kill => log.kills.push(blow),
                Action::DeadGateway => log.dead_gateways.push(blow),
                _ => log.sleepy_gateways.push(blow),
            }
        }
    }
}

/// Kills the worker at random intervals and starts it again after a short downtime.
pub async fn kill_worker_loop(
    worker: Arc<super::supervisor::Worker>,
    seed: u64,
    every: (Duration, Duration),
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let wait =
            Duration::from_millis(rng.random_range(every.0.as_millis() as u64..=every.1.as_millis() as u64));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        worker.kill().await;
        let down = Duration::from_millis(rng.random_range(0..1500));
        tokio::time::sleep(down).await;
        if let Err(err) = worker.start().await {
            eprintln!("soak: restarting the worker: {err}");
        }
    }
    if !worker.is_running()
        && let Err(err) = worker.start().await
    {
        eprintln!("soak: restarting the worker: {err}");
    }
}
