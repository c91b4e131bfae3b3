//! What must hold once the chaos has stopped and the pool has settled (issue 6): each check
//! is PASS or FAIL with what it looked at, and a failure names the instances with their
//! timelines from the events table.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Value, json};
use shared::store::{Event, Instance, Status};

use super::chaos::{Blow, ChaosLog};
use super::clients::{ClientStats, Ledger};
use super::supervisor::WorkerStats;

/// Event reasons that say why an instance failed or went away. `destroy` and `drain` are the
/// operator's (the soak's own requests); the rest are the pool noticing something wrong.
const EXPLAINS: &[&str] = &[
    "step_failed",
    "provisioning_failed",
    "recycle_failed",
    "heartbeat_failed",
    "machine_gone",
    "claim_failed",
    "stale_claim",
    "stuck",
    "destroy",
    "drain",
];

/// Reasons for moving to `destroying` that an operator's settings cause, not a request per
/// instance: a rollout replacing a stale instance (the soak changes `openclawRef` during the
/// chaos) and adaptive sizing shedding surplus idle.
const POLICY_EXITS: &[&str] = &["rollout", "scale_down"];

/// Reasons for moving to `destroying` that need no operator.
const FAILURE_EXITS: &[&str] =
    &["step_failed", "provisioning_failed", "recycle_failed", "heartbeat_failed", "stuck", "machine_gone"];

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
    /// Offending instances with their event timelines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Value>,
}

/// One row of the claims table.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimRow {
    pub id: String,
    pub status: String,
    pub error: Option<String>,
    pub instance_id: Option<String>,
    pub conversation_id: Option<String>,
}

/// Everything the checks read, taken after the worker stopped so nothing moves meanwhile.
pub struct Snapshot {
    pub instances: Vec<Instance>,
    /// Oldest first.
    pub events: Vec<Event>,
    pub claims: Vec<ClaimRow>,
    /// Sprites of this pool (its pool id) -> gateway switched off for good.
    pub sprites: BTreeMap<String, bool>,
}

pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub chaos: &'a ChaosLog,
    pub ledger: &'a Ledger,
    pub clients: &'a ClientStats,
    pub worker: &'a WorkerStats,
    pub min_idle: u32,
    pub dropped_in_api: u64,
}

fn timeline(events: &[Event], id: &str) -> Value {
    let lines: Vec<String> = events
        .iter()
        .filter(|e| e.instance_id == id)
        .map(|e| {
            format!(
                "{} {} -> {} [{}{}{}]{}",
                e.at.time(),
                e.from_status.as_deref().unwrap_or("-"),
                e.to_status,
                if e.kind == "status" { String::new() } else { format!("{} ", e.kind) },
                e.reason,
                e.step.as_deref().map(|s| format!(" step={s}")).unwrap_or_default(),
                e.detail.as_deref().map(|d| format!(" {d}")).unwrap_or_default(),
            )
        })
        .collect();
    json!({ "instance": id, "events": lines })
}

fn check(name: &'static str, pass: bool, detail: String, evidence: Vec<Value>) -> Check {
    Check { name, pass, detail, evidence }
}

pub fn run(inputs: &Inputs<'_>) -> Vec<Check> {
    let s = inputs.snapshot;
    let events = &s.events;
    let mut checks = Vec::new();
    let count = |status: Status| s.instances.iter().filter(|i| i.status == status).count();

    // 1. Nothing left half-claimed.
    let claiming: Vec<&Instance> = s.instances.iter().filter(|i| i.status == Status::Claiming).collect();
    let pending: Vec<&ClaimRow> = s.claims.iter().filter(|c| c.status == "pending").collect();
    checks.push(check(
        "nothing_claiming",
        claiming.is_empty() && pending.is_empty(),
        format!("{} instance(s) claiming, {} claim(s) pending", claiming.len(), pending.len()),
        claiming.iter().map(|i| timeline(events, &i.id)).collect(),
    ));

    // 2. Settled: no step due or running anywhere.
    let busy: Vec<&Instance> = s
        .instances
        .iter()
        .filter(|i| i.step.is_some() || !matches!(i.status, Status::Idle | Status::Claimed))
        .collect();
    checks.push(check(
        "pool_settled",
        busy.is_empty(),
        format!(
            "{} instance(s) still busy ({})",
            busy.len(),
            busy.iter().map(|i| format!("{}:{}", i.id, i.status)).collect::<Vec<_>>().join(", ")
        ),
        busy.iter().map(|i| timeline(events, &i.id)).collect(),
    ));

    // 3, 4. Rows and Sprites agree both ways.
    let row_names: HashSet<&str> = s.instances.iter().map(|i| i.sprite_name.as_str()).collect();
    let orphans: Vec<&String> = s.sprites.keys().filter(|n| !row_names.contains(n.as_str())).collect();
    checks.push(check(
        "no_sprite_without_row",
        orphans.is_empty(),
        format!("{} Sprite(s) of this pool, {} without a row {:?}", s.sprites.len(), orphans.len(), orphans),
        Vec::new(),
    ));
    let lost: Vec<&Instance> =
        s.instances.iter().filter(|i| !s.sprites.contains_key(&i.sprite_name)).collect();
    checks.push(check(
        "no_row_without_sprite",
        lost.is_empty(),
        format!("{} row(s), {} without a Sprite", s.instances.len(), lost.len()),
        lost.iter().map(|i| timeline(events, &i.id)).collect(),
    ));

    // 5. No conversation bound twice.
    let grants = inputs.ledger.grants.lock().expect("ledger").clone();
    let mut seen = HashSet::new();
    let mut twice: Vec<String> = Vec::new();
    for conversation in grants.iter().filter_map(|g| g.conversation_id.as_ref()) {
        if !seen.insert(conversation.clone()) {
            twice.push(format!("conversation {conversation} handed out twice"));
        }
    }
    let mut in_db = HashSet::new();
    for conversation in s.claims.iter().filter_map(|c| c.conversation_id.as_ref()) {
        if !in_db.insert(conversation.clone()) {
            twice.push(format!("conversation {conversation} on two claims"));
        }
    }
    // Per instance, from its history: never a second binding before it left `claimed`.
    let mut bound: HashMap<&str, &Event> = HashMap::new();
    let mut rebound: BTreeSet<String> = BTreeSet::new();
    for e in events {
        if e.to_status == "claimed" && e.from_status.as_deref() != Some("claimed") {
            if bound.contains_key(e.instance_id.as_str()) {
                rebound.insert(e.instance_id.clone());
            }
            bound.insert(&e.instance_id, e);
        } else if e.to_status != "claimed" {
            bound.remove(e.instance_id.as_str());
        }
    }
    let overlaps = inputs.ledger.overlaps.lock().expect("ledger").clone();
    let mut evidence: Vec<Value> = rebound.iter().map(|id| timeline(events, id)).collect();
    evidence
        .extend(overlaps.iter().map(|o| json!({"overlap": o, "timeline": timeline(events, &o.instance_id)})));
    checks.push(check(
        "no_conversation_bound_twice",
        twice.is_empty() && rebound.is_empty() && overlaps.is_empty(),
        format!(
            "{} grants, {} distinct conversations; {} duplicate(s), {} instance(s) bound twice in the events, \
             {} instance(s) handed to a client while another still held them",
            grants.len(),
            seen.len(),
            twice.len(),
            rebound.len(),
            overlaps.len()
        ),
        evidence,
    ));

    // 6. Back at POOL_MIN_IDLE.
    let idle = count(Status::Idle);
    checks.push(check(
        "pool_back_at_min_idle",
        idle as u32 >= inputs.min_idle,
        format!(
            "{idle} idle for POOL_MIN_IDLE {} ({} claimed; recycles return instances to idle, so more is fine)",
            inputs.min_idle,
            count(Status::Claimed)
        ),
        Vec::new(),
    ));

    // 7, 8. Every Sprite death and dead gateway shows in the events of its instance, and
    // none of those instances is still in the pool.
    checks.push(blows_check("sprite_deaths_visible", &inputs.chaos.kills, s, inputs.ledger));
    checks.push(blows_check("dead_gateways_visible", &inputs.chaos.dead_gateways, s, inputs.ledger));

    // 9. Every failed claim that took an instance shows why on that instance.
    let mut unexplained = Vec::new();
    let mut failed_with_instance = 0;
    for claim in s.claims.iter().filter(|c| c.status == "failed") {
        let marker = format!("claim {}", claim.id);
        let takes: Vec<&Event> =
            events.iter().filter(|e| e.reason == "claim" && e.detail.as_deref() == Some(&marker)).collect();
        if takes.is_empty() {
            continue;
        }
        failed_with_instance += 1;
        for take in takes {
            // The next move: a line that moves nothing (the claim's wake) is not an answer.
            let next = events
                .iter()
                .find(|e| e.instance_id == take.instance_id && e.id > take.id && e.kind == "status");
            let explained = next.is_some_and(|e| {
                matches!(e.reason.as_str(), "claim_failed" | "stale_claim" | "destroy" | "machine_gone")
            });
            if !explained {
                unexplained.push(json!({
                    "claim": claim,
                    "timeline": timeline(events, &take.instance_id),
                }));
            }
        }
    }
    checks.push(check(
        "failed_claims_visible",
        unexplained.is_empty(),
        format!(
            "{} failed claim(s) in the claims table, {} of them took an instance; {} attempt(s) without a \
             claim_failed/stale_claim event",
            s.claims.iter().filter(|c| c.status == "failed").count(),
            failed_with_instance,
            unexplained.len()
        ),
        unexplained,
    ));

    // 9b. What a client was told is what the claims table says.
    let by_id: HashMap<&str, &ClaimRow> = s.claims.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut mismatched = Vec::new();
    for grant in &grants {
        let row = by_id.get(grant.claim_id.as_str());
        let agrees = row.is_some_and(|c| {
            c.status == grant.status
                && c.conversation_id == grant.conversation_id
                && c.instance_id.as_deref() == Some(grant.instance_id.as_str())
        });
        if !agrees {
            mismatched.push(json!({
                "answer": grant,
                "claims_row": row,
                "timeline": timeline(events, &grant.instance_id),
                "recorded_instance_timeline": row
                    .and_then(|c| c.instance_id.as_deref())
                    .filter(|id| *id != grant.instance_id)
                    .map(|id| timeline(events, id)),
            }));
        }
    }
    checks.push(check(
        "claims_table_matches_answers",
        mismatched.is_empty(),
        format!(
            "{} claim(s) answered with an instance; {} recorded otherwise in the claims table",
            grants.len(),
            mismatched.len()
        ),
        mismatched,
    ));

    // 10. No instance went away without a reason: each removal is the soak's own request or a
    // failure the pool recorded.
    let destroys = inputs.ledger.destroy_requests.lock().expect("ledger").clone();
    let recycles = inputs.ledger.recycle_requests.lock().expect("ledger").clone();
    let mut removed = 0;
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut silent = Vec::new();
    for gone in events.iter().filter(|e| e.to_status == "destroyed") {
        removed += 1;
        let reason = if gone.reason == "destroyed" {
            events
                .iter()
                .rev()
                .find(|e| e.instance_id == gone.instance_id && e.id < gone.id && e.to_status == "destroying")
                .map(|e| e.reason.clone())
                .unwrap_or_else(|| "?".into())
        } else {
            gone.reason.clone()
        };
        *by_reason.entry(reason.clone()).or_insert(0) += 1;
        let ok = FAILURE_EXITS.contains(&reason.as_str())
            || POLICY_EXITS.contains(&reason.as_str())
            || (reason == "destroy"
                && (destroys.contains_key(&gone.instance_id) || recycles.contains_key(&gone.instance_id)));
        if !ok {
            silent.push(timeline(events, &gone.instance_id));
        }
    }
    checks.push(check(
        "removals_explained",
        silent.is_empty(),
        format!(
            "{removed} instance(s) removed, by reason {by_reason:?}; {} without a recorded cause",
            silent.len()
        ),
        silent,
    ));

    // 11. The run really exercised what it claims to.
    let hits = inputs.chaos.hits_by_kind();
    let ok_claims = inputs.clients.claims_created.load(std::sync::atomic::Ordering::Relaxed)
        + inputs.clients.claims_joined.load(std::sync::atomic::Ordering::Relaxed);
    let kills = inputs.worker.kills.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = inputs.worker.dropped.load(std::sync::atomic::Ordering::Relaxed) + inputs.dropped_in_api;
    let fired = hits.values().sum::<u64>();
    let exercised = ok_claims > 0
        && kills > 0
        && fired > 0
        && dropped > 0
        && !inputs.chaos.kills.is_empty()
        && !inputs.chaos.dead_gateways.is_empty();
    checks.push(check(
        "chaos_exercised",
        exercised,
        format!(
            "{ok_claims} claims served, {kills} worker kills, {fired} injected errors fired {hits:?}, {dropped} \
             deliveries dropped, {} Sprite deaths, {} dead gateways",
            inputs.chaos.kills.len(),
            inputs.chaos.dead_gateways.len()
        ),
        Vec::new(),
    ));
    checks
}

/// Each blow: its instance is gone, and an event at or after it (or a destroy already under
/// way) says why.
fn blows_check(name: &'static str, blows: &[Blow], s: &Snapshot, ledger: &Ledger) -> Check {
    let events = &s.events;
    let live: HashSet<&str> = s.instances.iter().map(|i| i.id.as_str()).collect();
    let destroys = ledger.destroy_requests.lock().expect("ledger").clone();
    let mut bad = Vec::new();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for blow in blows {
        let since = blow.at - time::Duration::seconds(1);
        let mine: Vec<&Event> = events.iter().filter(|e| e.instance_id == blow.instance_id).collect();
        let before = mine.iter().rev().find(|e| e.at < blow.at);
        let already_leaving = before.is_some_and(|e| e.to_status == "destroying");
        // A rollout may rebuild a hit instance before anything notices the blow: it went
        // away for a recorded reason all the same.
        let explains = |r: &str| EXPLAINS.contains(&r) || POLICY_EXITS.contains(&r);
        let cause = mine.iter().find(|e| e.at >= since && explains(e.reason.as_str()));
        let operator_ok = |e: &&&Event| {
            e.reason != "destroy" || destroys.get(&blow.instance_id).is_some_and(|t| *t >= since)
        };
        let reason = match cause.filter(operator_ok) {
            Some(e) => Some(e.reason.clone()),
            None if already_leaving => Some("already_destroying".to_string()),
            None => None,
        };
        let still_here = live.contains(blow.instance_id.as_str());
        match reason {
            Some(reason) if !still_here => *by_reason.entry(reason).or_insert(0) += 1,
            _ => bad.push(json!({
                "blow": blow,
                "still_in_pool": still_here,
                "timeline": timeline(events, &blow.instance_id),
            })),
        }
    }
    Check {
        name,
        pass: bad.is_empty(),
        detail: format!(
            "{} injected, shown by {by_reason:?}; {} unexplained or still in the pool",
            blows.len(),
            bad.len()
        ),
        evidence: bad,
    }
}
