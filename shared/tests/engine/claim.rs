//! Claims: validation, atomic hand-out under contention, compensation when the gateway fails,
//! joins that finish in the request or later, and user text that never meets a shell.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest};
use shared::store::{ClaimStatus, Status};
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;

use crate::harness::{Options, Pool, eventually, fault_json, operator, pool, pool_with, test_settings};

fn create(name: &str, instructions: &str) -> ClaimRequest {
    ClaimRequest::new(name.into(), instructions.into(), None, PoolEnvironment::Dev).unwrap()
}

fn join(name: &str, instructions: &str) -> ClaimRequest {
    // An invite the emulated CLI decodes; a made-up slug fails like on the real gateway.
    let url = sprites_emulator::mint_invite_url("dev");
    ClaimRequest::new(name.into(), instructions.into(), Some(url), PoolEnvironment::Dev).unwrap()
}

fn done(outcome: ClaimOutcome) -> shared::engine::ClaimResult {
    match outcome {
        ClaimOutcome::Done(result) => result,
        other => panic!("expected a finished claim, got {other:?}"),
    }
}

async fn no_claiming_rows(pool: &Pool) {
    assert!(pool.in_status(Status::Claiming).await.is_empty(), "an instance was left in claiming");
}

#[sqlx::test(migrations = "../migrations")]
async fn fifty_parallel_claims_on_twenty_idle_hand_out_each_once(db: PgPool) {
    let mut settings = test_settings();
    settings.max_total = 20;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    pool.provision(20).await;

    let engine = Arc::clone(&pool.engine);
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { engine.claim(create(&format!("agent {n}"), "hi"), &operator()).await })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => claimed.push(done(outcome)),
            Err(ClaimError::NoIdle { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(30));
                refused += 1;
            }
            Err(other) => panic!("unexpected claim error: {other}"),
        }
    }
    assert_eq!((claimed.len(), refused), (20, 30));
    let instances: HashSet<_> = claimed.iter().map(|c| c.instance_id.clone().unwrap()).collect();
    assert_eq!(instances.len(), 20, "no instance handed out twice");
    let conversations: HashSet<_> = claimed.iter().map(|c| c.conversation_id.clone().unwrap()).collect();
    assert_eq!(conversations.len(), 20);
    assert_eq!(pool.count(Status::Claimed).await, 20);
    assert_eq!(pool.count(Status::Idle).await, 0);
    no_claiming_rows(&pool).await;
    // Each Sprite's gateway was asked to create exactly once.
    assert_eq!(pool.emulator.count("gateway.conversation").await, 20);
}

/// The first create call fails as `fault` says; the claim moves to another idle instance,
/// the failed one is recycled (it may be half-bound) and comes back idle, nothing is lost.
async fn create_failure_is_compensated(db: PgPool, fault: serde_json::Value) {
    let pool = pool(db).await;
    pool.provision(2).await;
    let mut rule = fault_json("gateway.conversation", fault);
    rule["count"] = json!(1);
    pool.emulator.fault(rule).await;

    let result = done(pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap());
    assert_eq!(result.status, ClaimStatus::Created);
    let claim = pool.store.claim(result.claim_id).await.unwrap().unwrap();
    assert_eq!(claim.attempts, 2, "the claim moved to a second instance");
    no_claiming_rows(&pool).await;

    // The failed instance went through recycling and is idle again, with a new token.
    pool.settled_idle(1).await;
    assert_eq!(pool.count(Status::Claimed).await, 1);
    assert_eq!(pool.store.instances().await.unwrap().len(), 2, "no instance lost");
    let failed = pool.in_status(Status::Idle).await.pop().unwrap();
    let reasons: Vec<String> =
        pool.store.events(Some(&failed.id), 50).await.unwrap().into_iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"claim_failed".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"recycled".to_string()), "{reasons:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn gateway_500_during_claim_recycles_and_retries(db: PgPool) {
    create_failure_is_compensated(db, json!({"type": "status", "status": 500})).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn gateway_409_during_claim_recycles_and_retries(db: PgPool) {
    create_failure_is_compensated(db, json!({"type": "status", "status": 409})).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn gateway_timeout_during_claim_recycles_and_retries(db: PgPool) {
    // Never answers: the client's create timeout (2 s here) fires.
    create_failure_is_compensated(db, json!({"type": "hang"})).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn claim_failing_everywhere_fails_cleanly(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    pool.emulator.fault(fault_json("gateway.conversation", json!({"type": "status", "status": 500}))).await;

    let err = pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap_err();
    assert!(matches!(err, ClaimError::Failed(_)), "{err}");
    no_claiming_rows(&pool).await;
    // Two attempts, both instances recycled back; the third was never touched.
    assert_eq!(pool.emulator.count("gateway.conversation").await, 2);
    pool.emulator.clear_faults().await;
    pool.settled_idle(3).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claim_answers_within_its_budget(db: PgPool) {
    let mut settings = test_settings();
    settings.claim_budget = Duration::from_millis(1500);
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    pool.provision(2).await;
    pool.emulator.fault(fault_json("gateway.conversation", json!({"type": "hang"}))).await;

    let started = std::time::Instant::now();
    let err = pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ClaimError::Failed(_)), "{err}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // Too little budget was left for a second attempt; the first instance is recycling.
    assert_eq!(pool.emulator.count("gateway.conversation").await, 1);
    no_claiming_rows(&pool).await;
    // One snapshot: the recycled instance may go from recycling to idle between two reads.
    let counts = pool.store.counts().await.unwrap();
    let settled: i64 =
        counts.iter().filter(|(s, _)| matches!(s, Status::Idle | Status::Recycling)).map(|(_, n)| n).sum();
    assert_eq!(settled, 2, "{counts:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn no_idle_instance_is_refused_with_retry_after(db: PgPool) {
    let pool = pool(db).await;
    let err = pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap_err();
    let ClaimError::NoIdle { retry_after } = err else { panic!("{err}") };
    assert_eq!(retry_after, Duration::from_secs(30));
    // The message names the wait the Retry-After header gives (issue 16.6).
    assert_eq!(err_message(&pool).await, "No idle instances available. Try again in 30 seconds.");
}

async fn err_message(pool: &Pool) -> String {
    pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap_err().to_string()
}

#[sqlx::test(migrations = "../migrations")]
async fn claim_replenishes_at_once(db: PgPool) {
    let mut settings = test_settings();
    settings.min_idle = 2;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    pool.engine.replenish(&operator()).await.unwrap();
    pool.settled_idle(2).await;
    done(pool.engine.claim(create("Ada", "hi"), &operator()).await.unwrap());
    // Replaced without waiting for a tick.
    pool.settled_idle(2).await;
    assert_eq!(pool.count(Status::Claimed).await, 1);
}

const HOSTILE: &str = "Say \"hi\" & don't 'quote' me.\n$(rm -rf /) `reboot` ${HOME} $HOME\n\
EOF\nEOF'\n'EOF'\nMARKER\n\\n \\\\ \t tabs; exit 1; | cat > /etc/passwd\n\u{1F600} émoji\n";

#[sqlx::test(migrations = "../migrations")]
async fn instructions_arrive_byte_for_byte_and_never_in_a_command(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    let execs_before = pool.emulator.count("exec").await + pool.emulator.count("exec.http").await;

    let created = done(pool.engine.claim(create("Ada", HOSTILE), &operator()).await.unwrap());
    let joined = done(pool.engine.claim(join("Bob", HOSTILE), &operator()).await.unwrap());
    assert_eq!(joined.status, ClaimStatus::Joined);

    for result in [created, joined] {
        let instance = pool.instance(result.instance_id.as_deref().unwrap()).await.unwrap();
        let written = pool
            .read_file(&instance.sprite_name, "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md")
            .await
            .unwrap();
        assert_eq!(written, HOSTILE.as_bytes());
        assert_eq!(instance.instructions.as_deref(), Some(HOSTILE));
    }
    let execs_after = pool.emulator.count("exec").await + pool.emulator.count("exec.http").await;
    assert_eq!(execs_after, execs_before, "a claim runs no command on the Sprite");
}

#[sqlx::test(migrations = "../migrations")]
async fn join_reports_joined(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    let result = done(pool.engine.claim(join("Ada", "hi"), &operator()).await.unwrap());
    assert_eq!(result.status, ClaimStatus::Joined);
    assert!(result.joined);
    let instance = pool.instance(result.instance_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(instance.status, Status::Claimed);
    assert_eq!(instance.join_status.as_deref(), Some("joined"));
    assert_eq!(instance.conversation_id, result.conversation_id);
    let (_, body) = pool.gateway_status(&instance, &instance.gateway_token).await;
    assert_eq!(body["conversation"]["id"].as_str(), result.conversation_id.as_deref());
}

#[sqlx::test(migrations = "../migrations")]
async fn join_reports_waiting_for_acceptance(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    pool.emulator.configure(json!({"join_outcome": "waiting_for_acceptance"})).await;
    let result = done(pool.engine.claim(join("Ada", "hi"), &operator()).await.unwrap());
    assert_eq!(result.status, ClaimStatus::WaitingForAcceptance);
    assert!(!result.joined && result.conversation_id.is_none());
    // The flag the Railway pool's clients read beside `status` (issue 16.6).
    assert!(result.waiting_for_acceptance);
    let answer = serde_json::to_value(&result).unwrap();
    assert_eq!(
        (answer["status"].clone(), answer["waitingForAcceptance"].clone()),
        (json!("waiting_for_acceptance"), json!(true))
    );
    // Held for this claim, not silently handed to the next one.
    let instance = pool.instance(result.instance_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(instance.status, Status::Claimed);
    assert_eq!(instance.join_status.as_deref(), Some("waiting_for_acceptance"));
}

#[sqlx::test(migrations = "../migrations")]
async fn slow_join_answers_accepted_then_finishes(db: PgPool) {
    let mut settings = test_settings();
    settings.claim_wait = Duration::from_millis(300);
    // Everything nearly instant except the join, which takes 1.5 s.
    let emulator = EmulatorConfig { speed: 0.001, join_delay_ms: 1_500_000, ..EmulatorConfig::default() };
    let pool = pool_with(db, Options { settings, emulator, ..Options::default() }).await;
    pool.provision(1).await;

    let ClaimOutcome::Accepted { claim_id, instance_id } =
        pool.engine.claim(join("Ada", "hi"), &operator()).await.unwrap()
    else {
        panic!("a join slower than the claim wait answers Accepted")
    };
    let pending = pool.engine.claim_status(claim_id).await.unwrap().unwrap();
    assert_eq!(pending.status, ClaimStatus::Pending);
    assert_eq!(pending.instance_id.as_deref(), Some(instance_id.as_str()));
    let finished = eventually("the join to finish", Duration::from_secs(10), || async {
        let claim = pool.engine.claim_status(claim_id).await.unwrap().unwrap();
        (claim.status != ClaimStatus::Pending).then_some(claim)
    })
    .await;
    assert_eq!(finished.status, ClaimStatus::Joined);
    assert_eq!(pool.instance(&instance_id).await.unwrap().status, Status::Claimed);
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_join_recycles_and_retries_on_another_instance(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    let mut rule = fault_json(
        "gateway.join",
        json!({"type": "status", "status": 500, "body": r#"{"error":"Invalid invite signature"}"#}),
    );
    rule["count"] = json!(1);
    pool.emulator.fault(rule).await;

    let result = done(pool.engine.claim(join("Ada", "hi"), &operator()).await.unwrap());
    assert_eq!(result.status, ClaimStatus::Joined);
    let claim = pool.store.claim(result.claim_id).await.unwrap().unwrap();
    assert_eq!(claim.attempts, 2);
    no_claiming_rows(&pool).await;
    pool.settled_idle(1).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claim_whose_process_died_is_recycled_not_reused(db: PgPool) {
    let mut settings = test_settings();
    settings.lease_ttl = Duration::from_millis(300);
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let idle = pool.provision(1).await;
    // The API process takes the instance and dies before the gateway call returns: its lease
    // runs out with the row still claiming.
    pool.emulator.fault(fault_json("gateway.conversation", json!({"type": "hang"}))).await;
    let engine = Arc::clone(&pool.engine);
    let claim = tokio::spawn(async move { engine.claim(create("Ada", "hi"), &operator()).await });
    eventually("the claim to start", Duration::from_secs(5), || async {
        (pool.count(Status::Claiming).await == 1).then_some(())
    })
    .await;
    claim.abort();
    pool.emulator.clear_faults().await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let report = pool.engine.tick().await.unwrap();
    assert!(report.redriven >= 1, "{report:?}");
    pool.settled_idle(1).await;
    let events = pool.store.events(Some(&idle[0].id), 50).await.unwrap();
    let interrupted =
        events.iter().find(|e| e.reason == "claim_failed").expect("recycled after the claim died");
    assert!(interrupted.detail.as_deref().unwrap().contains("interrupted"), "{interrupted:?}");
}

#[test]
fn requests_are_validated_field_by_field() {
    let dev = PoolEnvironment::Dev;
    let parse = |body: serde_json::Value| ClaimRequest::from_json(body.to_string().as_bytes(), dev);
    let field = |body: serde_json::Value| parse(body).unwrap_err().field;

    assert_eq!(field(json!({"instructions": "x"})), "agentName");
    assert_eq!(field(json!({"agentName": 5, "instructions": "x"})), "agentName");
    assert_eq!(field(json!({"agentName": "  ", "instructions": "x"})), "agentName");
    assert_eq!(field(json!({"agentName": "a".repeat(101), "instructions": "x"})), "agentName");
    assert_eq!(field(json!({"agentName": "A"})), "instructions");
    assert_eq!(field(json!({"agentName": "A", "instructions": ["x"]})), "instructions");
    let mebibyte = "x".repeat(1024 * 1024);
    assert_eq!(field(json!({"agentName": "A", "instructions": mebibyte})), "instructions");
    assert_eq!(field(json!({"agentName": "A", "instructions": "x", "joinUrl": 7})), "joinUrl");
    assert_eq!(field(json!({"agentName": "A", "instructions": "x", "joinUrl": "not a url"})), "joinUrl");
    let foreign =
        json!({"agentName": "A", "instructions": "x", "joinUrl": "https://popup.convos.org/v2?i=abc"});
    let err = parse(foreign.clone()).unwrap_err();
    assert_eq!(err.field, "joinUrl");
    assert!(err.message.contains("dev.convos.org"), "{err}");
    let lookalike =
        json!({"agentName": "A", "instructions": "x", "joinUrl": "https://dev.convos.org.evil.com/v2?i=abc"});
    assert_eq!(parse(lookalike).unwrap_err().field, "joinUrl");
    assert_eq!(ClaimRequest::from_json(b"{not json", dev).unwrap_err().field, "body");
    assert_eq!(ClaimRequest::from_json(b"[]", dev).unwrap_err().field, "body");

    // Production accepts only production invites.
    let prod = ClaimRequest::from_json(foreign.to_string().as_bytes(), PoolEnvironment::Production).unwrap();
    assert_eq!(prod.join_url.as_deref(), Some("https://popup.convos.org/v2?i=abc"));
    let dev_invite =
        json!({"agentName": "A", "instructions": "x", "joinUrl": "https://dev.convos.org/v2?i=abc"});
    assert_eq!(
        ClaimRequest::from_json(dev_invite.to_string().as_bytes(), PoolEnvironment::Production)
            .unwrap_err()
            .field,
        "joinUrl"
    );
    let ok = parse(json!({"agentName": " Ada ", "instructions": "", "joinUrl": null})).unwrap();
    assert_eq!((ok.agent_name.as_str(), ok.instructions.as_str(), ok.join_url), ("Ada", "", None));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_pending_claim_no_instance_serves_is_failed_by_the_tick(db: PgPool) {
    let mut settings = test_settings();
    settings.claim_wait = Duration::from_millis(100);
    settings.claim_stale = Duration::from_millis(200);
    // A join that takes a minute.
    let emulator = EmulatorConfig { speed: 0.001, join_delay_ms: 60_000_000, ..EmulatorConfig::default() };
    let timeouts = shared::gateway::GatewayTimeouts {
        join: Duration::from_secs(120),
        ..crate::harness::test_timeouts()
    };
    let pool = pool_with(db, Options { settings, emulator, timeouts, ..Options::default() }).await;
    pool.provision(1).await;
    let ClaimOutcome::Accepted { claim_id, instance_id } =
        pool.engine.claim(join("Ada", "hi"), &operator()).await.unwrap()
    else {
        panic!("the join is still running")
    };
    // The operator's destroy does not interrupt a running step.
    assert!(pool.engine.destroy(&instance_id, &operator()).await.is_err());
    // A young pending claim whose instance is claiming is left alone.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(pool.engine.tick().await.unwrap().orphaned_claims_failed, 0);

    // The row goes by a hand edit; the claim must not stay pending for ever.
    sqlx::query("DELETE FROM instances").execute(pool.store.pool()).await.unwrap();
    assert_eq!(pool.engine.tick().await.unwrap().orphaned_claims_failed, 1);
    let claim = pool.engine.claim_status(claim_id).await.unwrap().unwrap();
    assert_eq!(claim.status, ClaimStatus::Failed);
    assert!(claim.error.unwrap().contains("went away"));
}
