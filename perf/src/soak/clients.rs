//! The pool's users, over real HTTP: claim (create or join), hold the agent a moment, then
//! recycle or destroy it. Each client also keeps the ledger the checks need: which
//! conversation it was given, on which instance, and whether someone else held it then.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

pub const API_KEY: &str = "soak-pool-key";

#[derive(Default, Serialize)]
pub struct ClientStats {
    pub claims_created: AtomicU64,
    pub claims_joined: AtomicU64,
    /// Joins answered 202 and followed on the claim's status URL.
    pub claims_accepted_202: AtomicU64,
    /// 202s still pending when the client stopped following them.
    pub claims_left_pending: AtomicU64,
    pub claims_503: AtomicU64,
    /// 500 (both attempts failed) or a followed 202 that ended failed.
    pub claims_failed: AtomicU64,
    pub claims_other: AtomicU64,
    pub http_errors: AtomicU64,
    pub recycles: AtomicU64,
    pub destroys: AtomicU64,
    /// Release answered 409 (a step running on the instance): tried again.
    pub release_busy: AtomicU64,
    /// Release answered 404: the instance was already gone (its Sprite died, say).
    pub release_gone: AtomicU64,
    pub release_gave_up: AtomicU64,
}

/// One claim that bound a conversation (or waits for acceptance) to an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub client: usize,
    pub claim_id: String,
    pub instance_id: String,
    pub conversation_id: Option<String>,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A claim handed out an instance some other client still held (had not started releasing).
#[derive(Debug, Clone, Serialize)]
pub struct Overlap {
    pub instance_id: String,
    pub holder: Grant,
    pub newcomer: Grant,
}

#[derive(Default)]
pub struct Ledger {
    pub grants: Mutex<Vec<Grant>>,
    pub overlaps: Mutex<Vec<Overlap>>,
    /// instance id -> the grant that holds it, until its release is sent.
    held: Mutex<HashMap<String, Grant>>,
    /// Ids the soak asked to destroy or recycle (operator actions), with when.
    pub destroy_requests: Mutex<BTreeMap<String, OffsetDateTime>>,
    pub recycle_requests: Mutex<BTreeMap<String, OffsetDateTime>>,
    pub failures: Mutex<Vec<String>>,
    /// Every gateway token a claim answer handed out: none may appear in a log line.
    pub gateway_tokens: Mutex<Vec<String>>,
}

impl Ledger {
    fn acquire(&self, grant: Grant) {
        let mut held = self.held.lock().expect("ledger");
        if let Some(holder) = held.get(&grant.instance_id) {
            self.overlaps.lock().expect("ledger").push(Overlap {
                instance_id: grant.instance_id.clone(),
                holder: holder.clone(),
                newcomer: grant.clone(),
            });
        }
        held.insert(grant.instance_id.clone(), grant.clone());
        self.grants.lock().expect("ledger").push(grant);
    }

    fn releasing(&self, grant: &Grant) {
        let mut held = self.held.lock().expect("ledger");
        if held.get(&grant.instance_id).is_some_and(|g| g.claim_id == grant.claim_id) {
            held.remove(&grant.instance_id);
        }
    }

    fn note(&self, message: String) {
        let mut failures = self.failures.lock().expect("ledger");
        if failures.len() < 200 {
            failures.push(message);
        }
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        let http = shared::tls::http_client_builder()
            .expect("tls")
            .timeout(Duration::from_secs(40))
            .build()
            .expect("http client");
        Api { base, http }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `PUT /api/pool/settings` as an operator would: the HTTP status and the answer.
    pub async fn change_settings(&self, patch: Value) -> Result<(u16, Value), String> {
        self.call(reqwest::Method::PUT, "/api/pool/settings", Some(patch)).await
    }

    /// The operator's destroy (the settle phase removes crashed instances with it).
    pub async fn destroy(&self, id: &str) -> Result<u16, String> {
        self.call(reqwest::Method::DELETE, &format!("/api/pool/instances/{id}/destroy"), None)
            .await
            .map(|r| r.0)
    }
}

pub async fn run_client(
    index: usize,
    api: Api,
    seed: u64,
    stats: Arc<ClientStats>,
    ledger: Arc<Ledger>,
    stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let join = rng.random_bool(0.3);
        let mut body = json!({
            "agentName": format!("soak-{index}-{n}"),
            "instructions": format!("You are soak agent {index}/{n}."),
        });
        if join {
            // An invite the emulated CLI accepts: a made-up slug fails the join, as on the real
            // gateway.
            body["joinUrl"] = json!(sprites_emulator::mint_invite_url("dev"));
        }
        let grant = match api.call(reqwest::Method::POST, "/api/pool/claim", Some(body)).await {
            Err(err) => {
                stats.http_errors.fetch_add(1, Ordering::Relaxed);
                ledger.note(format!("claim: {err}"));
                tokio::time::sleep(Duration::from_millis(300)).await;
                None
            }
            Ok((200, answer)) => {
                if let Some(token) = answer["gatewayToken"].as_str() {
                    ledger.gateway_tokens.lock().expect("ledger").push(token.to_string());
                }
                grant_of(index, &answer)
            }
            Ok((202, answer)) => {
                stats.claims_accepted_202.fetch_add(1, Ordering::Relaxed);
                follow(index, &api, &answer, &stats).await
            }
            Ok((503, _)) => {
                stats.claims_503.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..600))).await;
                None
            }
            Ok((500, answer)) => {
                stats.claims_failed.fetch_add(1, Ordering::Relaxed);
                ledger.note(format!("claim 500: {}", answer["error"]));
                None
            }
            Ok((status, answer)) => {
                stats.claims_other.fetch_add(1, Ordering::Relaxed);
                ledger.note(format!("claim {status}: {answer}"));
                None
            }
        };
        let Some(grant) = grant else { continue };
        match grant.status.as_str() {
            "joined" => stats.claims_joined.fetch_add(1, Ordering::Relaxed),
            _ => stats.claims_created.fetch_add(1, Ordering::Relaxed),
        };
        ledger.acquire(grant.clone());
        // Users keep their agents a moment; the chaos goes on meanwhile.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        release(&api, &grant, rng.random_bool(0.6), &stats, &ledger).await;
    }
}

fn grant_of(client: usize, answer: &Value) -> Option<Grant> {
    Some(Grant {
        client,
        claim_id: answer["claimId"].as_str()?.to_string(),
        instance_id: answer["instanceId"].as_str()?.to_string(),
        conversation_id: answer["conversationId"].as_str().map(String::from),
        status: answer["status"].as_str().unwrap_or_default().to_string(),
        at: OffsetDateTime::now_utc(),
    })
}

/// Follows a 202 on its status URL until the join ends (or 20 s pass).
async fn follow(client: usize, api: &Api, accepted: &Value, stats: &ClientStats) -> Option<Grant> {
    let claim_id = accepted["claimId"].as_str()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok((200, claim)) =
            api.call(reqwest::Method::GET, &format!("/api/pool/claims/{claim_id}"), None).await
        else {
            continue;
        };
        match claim["status"].as_str() {
            Some("pending") => continue,
            Some("failed") => {
                stats.claims_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            _ => return grant_of(client, &claim),
        }
    }
    stats.claims_left_pending.fetch_add(1, Ordering::Relaxed);
    None
}

async fn release(api: &Api, grant: &Grant, recycle: bool, stats: &ClientStats, ledger: &Ledger) {
    let id = &grant.instance_id;
    let path = if recycle {
        format!("/api/pool/instances/{id}")
    } else {
        format!("/api/pool/instances/{id}/destroy")
    };
    ledger.releasing(grant);
    for _ in 0..40 {
        let now = OffsetDateTime::now_utc();
        let requests = if recycle { &ledger.recycle_requests } else { &ledger.destroy_requests };
        requests.lock().expect("ledger").entry(id.clone()).or_insert(now);
        match api.call(reqwest::Method::DELETE, &path, None).await {
            Ok((202, _)) => {
                let counter = if recycle { &stats.recycles } else { &stats.destroys };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok((404, _)) => {
                stats.release_gone.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok((409, _)) => {
                stats.release_busy.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => ledger.note(format!("release {id} {status}: {body}")),
            Err(err) => {
                stats.http_errors.fetch_add(1, Ordering::Relaxed);
                ledger.note(format!("release {id}: {err}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stats.release_gave_up.fetch_add(1, Ordering::Relaxed);
    ledger.note(format!("gave up releasing {id}"));
}
