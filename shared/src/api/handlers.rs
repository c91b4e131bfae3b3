//! One function per route. Each takes what it needs and answers a [`Reply`]; failures go
//! through `?` to their answer in `errors.rs`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

use super::Reply;
use super::errors::Answer;
use super::views::{InstanceDetail, InstanceView};
use crate::engine::{ActionError, ClaimOutcome, ClaimRequest, Engine, EngineSettings, ReplenishReport};
use crate::lifecycle::Actor;
use crate::metrics;
use crate::store::Status;

/// The Node pool capped manual replenish and drain at 20 per request.
const MAX_COUNT: u64 = 20;
const INSTANCE_EVENTS: i64 = 20;
const FEED_EVENTS: i64 = 50;
const MAX_FEED_EVENTS: i64 = 500;

pub fn healthz() -> Reply {
    Reply::ok(json!({ "ok": true }))
}

pub fn version(engine: &Engine) -> Reply {
    let (version, commit) = super::build_version();
    Reply::ok(json!({
        "version": format!("{version}+{commit}"),
        "commit": commit,
        "environment": engine.settings().environment.as_str(),
    }))
}

/// Every status with its count, zeros included, so a client never has to guess a key.
pub async fn counts(engine: &Engine) -> Answer {
    let counts = engine.store().counts().await?;
    let mut map = serde_json::Map::new();
    for status in Status::ALL {
        let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        map.insert(status.as_str().into(), n.into());
    }
    Ok(Reply::ok(Value::Object(map)))
}

pub async fn claim(engine: &Arc<Engine>, headers: &http::HeaderMap, body: &[u8], actor: &Actor) -> Answer {
    let mut request = ClaimRequest::from_json(body, engine.settings().environment)?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().map_err(|_| Reply::bad_request("Idempotency-Key", "must be visible ASCII"))?;
        request = request.with_idempotency_key(key)?;
    }
    let started = Instant::now();
    // A task of its own: a caller that hangs up mid-claim does not cut the claim halfway (its
    // instance would sit in `claiming` until the stale-claim rule); it ends, recorded.
    let engine = Arc::clone(engine);
    let actor = actor.clone();
    let outcome = tokio::spawn(async move { engine.claim(request, &actor).await })
        .await
        .map_err(|err| Reply::internal(&err))?;
    metrics::claim_latency(started.elapsed(), outcome.is_ok());
    Ok(match outcome? {
        ClaimOutcome::Done(result) => Reply::ok(result),
        ClaimOutcome::Accepted { claim_id, instance_id } => {
            let url = format!("/api/pool/claims/{claim_id}");
            Reply::accepted(
                json!({
                    "claimId": claim_id,
                    "instanceId": instance_id,
                    "status": "pending",
                    "waitingForAcceptance": false,
                    "statusUrl": url,
                }),
                &url,
            )
        }
    })
}

pub async fn claim_status(engine: &Engine, id: &str) -> Answer {
    let claim_id = Uuid::parse_str(id).map_err(|_| Reply::not_found("claim"))?;
    let result = engine.claim_status(claim_id).await?.ok_or_else(|| Reply::not_found("claim"))?;
    Ok(Reply::ok(result))
}

/// `PATCH /api/pool/claims/{id}` `{"ttlSeconds": N}`: a live claim now expires N seconds from
/// now (issue 15.4). Any other field is refused by name.
pub async fn claim_update(engine: &Engine, id: &str, body: &[u8]) -> Answer {
    let claim_id = Uuid::parse_str(id).map_err(|_| Reply::not_found("claim"))?;
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request("body", format!("not valid JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| Reply::bad_request("body", "must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| *k != "ttlSeconds") {
        return Err(Reply::bad_request(unknown, "is not a field of a claim update (only ttlSeconds)"));
    }
    let ttl = object.get("ttlSeconds").ok_or_else(|| Reply::bad_request("ttlSeconds", "is required"))?;
    Ok(Reply::ok(engine.extend_claim(claim_id, ttl).await?))
}

/// The Node pool's `DELETE /api/pool/instances`: the ids of claimed instances, which its
/// dashboard then recycled one by one.
pub async fn claimed_ids(engine: &Engine) -> Answer {
    let all = engine.store().instances().await?;
    let ids: Vec<&str> = all.iter().filter(|i| i.status == Status::Claimed).map(|i| i.id.as_str()).collect();
    Ok(Reply::ok(json!({ "ids": ids })))
}

pub async fn instance(engine: &Engine, id: &str) -> Answer {
    let instance = engine.store().instance(id).await?.ok_or(ActionError::NotFound)?;
    let events = engine.store().events(Some(id), INSTANCE_EVENTS).await?;
    Ok(Reply::ok(InstanceDetail { instance: InstanceView::from(&instance), events: &events }))
}

pub async fn recycle(engine: &Engine, id: &str, actor: &Actor) -> Answer {
    action(id, engine.recycle(id, actor).await?)
}

pub async fn destroy(engine: &Engine, id: &str, actor: &Actor) -> Answer {
    action(id, engine.destroy(id, actor).await?)
}

/// Recycle and destroy run as steps: answer 202 at once with where to watch them.
fn action(id: &str, status: Status) -> Answer {
    let url = format!("/api/pool/instances/{id}");
    Ok(Reply::accepted(json!({ "instanceId": id, "status": status, "statusUrl": url }), &url))
}

/// `{}` or no body: top up to the minimum now. `{"count": N}`: start N more. `reason` says why
/// fewer were created than asked (null when nothing is missing).
pub async fn replenish(engine: &Engine, body: &[u8], actor: &Actor) -> Answer {
    let count = count_field(body, false)?;
    let refill = match count {
        None => engine.replenish(actor).await?,
        Some(n) => engine.add_instances(n, actor).await?,
    };
    let reason = short_refill_reason(&refill, count, engine.settings());
    Ok(Reply::ok(json!({
        "ok": true,
        "created": refill.created.len(),
        "ids": refill.created,
        "warm": refill.warm,
        "total": refill.total,
        "breakerOpen": refill.breaker_open,
        "reason": reason,
    })))
}

/// Why a refill created fewer instances than it was asked for, from what it counted.
fn short_refill_reason(
    refill: &ReplenishReport,
    count: Option<u32>,
    settings: &EngineSettings,
) -> Option<String> {
    let created = refill.created.len() as i64;
    let min_idle = i64::from(settings.min_idle);
    let max_total = i64::from(settings.max_total);
    let asked = match count {
        Some(n) => i64::from(n),
        // A top-up asks for the warm instances missing (`warm` and `total` were counted before
        // this refill created any).
        None => (min_idle - refill.warm).max(0),
    };
    if created >= asked {
        return match count {
            None if created == 0 => Some(format!(
                "at least POOL_MIN_IDLE ({min_idle}) instances are idle or on their way: none needed"
            )),
            _ => None,
        };
    }
    if refill.breaker_open {
        return Some("the circuit breaker is open after repeated creation failures: none created".into());
    }
    match refill.total {
        Some(total) if total + created >= max_total => Some(format!(
            "at POOL_MAX_TOTAL ({max_total}): {total} instances existed, so {created} of {asked} were created"
        )),
        // A top-up creates at most POOL_REPLENISH_BATCH at once; the next tick goes on.
        _ => Some(format!("{created} of {asked} created in this batch; the tick creates the rest")),
    }
}

/// `{"count": N}`: destroy up to N idle instances, oldest first.
pub async fn drain(engine: &Engine, body: &[u8], actor: &Actor) -> Answer {
    let ids = engine.drain(count_field(body, true)?, actor).await?;
    Ok(Reply::ok(json!({ "ok": true, "drained": ids.len(), "ids": ids })))
}

pub async fn reconcile(engine: &Engine, actor: &Actor) -> Answer {
    let report = engine.reconcile(actor).await?;
    Ok(Reply::ok(json!({ "ok": true, "report": report })))
}

pub async fn status(engine: &Engine) -> Answer {
    let pool = engine.status().await?;
    let instances = engine.store().instances().await?;
    let views: Vec<InstanceView> = instances.iter().map(InstanceView::from).collect();
    Ok(Reply::ok(json!({
        "environment": pool.environment,
        "poolId": pool.pool_id,
        "counts": pool.counts,
        "total": pool.total,
        "minIdle": pool.min_idle,
        "maxTotal": pool.max_total,
        "settings": pool.settings,
        "breaker": pool.breaker,
        "rollout": pool.rollout,
        "running": pool.running,
        "sizing": pool.sizing,
        "instances": views,
    })))
}

pub async fn debug(engine: &Engine, id: &str) -> Answer {
    Ok(Reply::ok(engine.debug(id).await?))
}

/// Reads `{"count": N}` with 1 <= N <= 20; an empty body is `None` unless `required`.
fn count_field(body: &[u8], required: bool) -> Result<Option<u32>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if required { Err(Reply::bad_request("count", "is required")) } else { Ok(None) };
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request("body", format!("not valid JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| Reply::bad_request("body", "must be a JSON object"))?;
    match object.get("count") {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(Reply::bad_request("count", "is required")),
        Some(count) => match crate::settings::whole_number(count) {
            Some(n @ 1..=MAX_COUNT) => Ok(Some(n as u32)),
            _ => Err(Reply::bad_request("count", format!("must be a whole number from 1 to {MAX_COUNT}"))),
        },
    }
}

/// `?limit=N` (1–500, default 50) of a feed.
fn feed_limit(query: Option<&str>) -> Result<i64, Reply> {
    let mut limit = FEED_EVENTS;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "limit" {
            limit = page_limit(&value, MAX_FEED_EVENTS)?;
        }
    }
    Ok(limit)
}

/// A page's `limit` value: a whole number from 1 to `max`, or a 400 naming `limit`. Every paged
/// route reads it this way.
pub(super) fn page_limit(value: &str, max: i64) -> Result<i64, Reply> {
    match value.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Reply::bad_request("limit", format!("must be a whole number from 1 to {max}"))),
    }
}

/// Webhook delivery state (issue 16.5): whether webhooks are on, the rows waiting and given up,
/// and the newest deliveries with their attempts, next attempt and last error, `?limit=N`.
/// Neither the URL nor the secret is in the answer.
pub async fn webhooks(engine: &Engine, query: Option<&str>) -> Answer {
    let limit = feed_limit(query)?;
    let store = engine.store();
    let enabled = store.webhooks_enabled().await?;
    let counts = store.webhook_counts().await?;
    let deliveries = store.webhook_deliveries(limit).await?;
    Ok(Reply::ok(json!({
        "enabled": enabled,
        "pending": counts.pending,
        "failed": counts.failed,
        "deliveries": deliveries,
    })))
}
