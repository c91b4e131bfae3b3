//! Claims the gateway itself fails, as the real one does (convos-contracts §7): a failed
//! create or join leaves the user's INSTRUCTIONS.md, and often the CLI's identity and
//! database, behind on an instance that still reports itself unbound. Such an instance must
//! fail `verify_clean` and be restored (or destroyed), never handed to the next user as is.

use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest};
use shared::provider::Provider;
use shared::store::{ClaimStatus, Instance, Status};
use sqlx::PgPool;

use crate::harness::{Pool, operator, pool};

const INSTRUCTIONS: &str = "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md";
const IDENTITIES: &str = "/home/sprite/.convos/identities";
const SECRET: &str = "the first user's private instructions";

/// No trace of any claim on the instance's Sprite, and its gateway unbound.
async fn assert_clean(pool: &Pool, instance: &Instance) {
    let sprite = &instance.sprite_name;
    assert_eq!(pool.read_file(sprite, INSTRUCTIONS).await, None, "{sprite}: INSTRUCTIONS.md left");
    let convos = pool.emulator.client.list_dir(sprite, "/home/sprite/.convos").await.unwrap();
    assert!(convos.is_none(), "{sprite}: ~/.convos left");
    let (status, body) = pool.gateway_status(instance, &instance.gateway_token).await;
    assert_eq!((status, &body["conversation"]), (200, &serde_json::Value::Null), "{sprite}: {body}");
}

/// Every instance the pool holds is idle again, clean, and went through a recycle.
async fn all_recycled_clean(pool: &Pool, n: i64) {
    let idle = pool.settled_idle(n).await;
    for instance in &idle {
        assert_clean(pool, instance).await;
        let events = pool.store.events(Some(&instance.id), 100).await.unwrap();
        assert!(
            events.iter().any(|e| e.reason == "claim_failed"),
            "{}: not recycled after its failed claim: {events:?}",
            instance.id
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_bogus_invite_fails_the_claim_and_each_instance_tried_is_restored(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    // The pool only checks the host; the invite itself is the CLI's to refuse.
    let bogus = "https://dev.convos.org/v2?i=abc".to_string();
    let request = ClaimRequest::new("Ada".into(), SECRET.into(), Some(bogus), PoolEnvironment::Dev).unwrap();
    let claim_id = match pool.engine.claim(request, &operator()).await {
        Err(ClaimError::Failed(message)) => {
            assert!(message.contains("Invalid invite"), "{message}");
            None
        }
        Ok(ClaimOutcome::Accepted { claim_id, .. }) => Some(claim_id),
        other => panic!("a bogus invite never joins: {other:?}"),
    };
    if let Some(claim_id) = claim_id {
        let failed = crate::harness::eventually("the claim to fail", Duration::from_secs(10), || async {
            let claim = pool.store.claim(claim_id).await.unwrap().unwrap();
            (claim.status == ClaimStatus::Failed).then_some(claim)
        })
        .await;
        assert!(failed.error.unwrap_or_default().contains("Invalid invite"));
    }
    // Both instances were tried (one retry elsewhere), both left INSTRUCTIONS.md behind, and
    // both were restored before becoming idle again.
    all_recycled_clean(&pool, 2).await;
    assert!(pool.in_status(Status::Claimed).await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_create_that_fails_without_the_network_is_recycled_not_handed_out(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    pool.emulator.configure(json!({"xmtp_network": "down"})).await;
    let request = ClaimRequest::new("Ada".into(), SECRET.into(), None, PoolEnvironment::Dev).unwrap();
    match pool.engine.claim(request, &operator()).await {
        Err(ClaimError::Failed(message)) => assert!(message.contains("XMTP"), "{message}"),
        other => panic!("the create fails: {other:?}"),
    }
    pool.emulator.configure(json!({"xmtp_network": "up"})).await;
    all_recycled_clean(&pool, 2).await;

    // The next user gets an instance holding only their own state.
    let request = ClaimRequest::new("Bob".into(), "Bob's".into(), None, PoolEnvironment::Dev).unwrap();
    let Ok(ClaimOutcome::Done(result)) = pool.engine.claim(request, &operator()).await else {
        panic!("a clean instance is claimed");
    };
    assert_eq!(result.status, ClaimStatus::Created);
    let instance = pool.instance(result.instance_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(pool.read_file(&instance.sprite_name, INSTRUCTIONS).await.unwrap(), b"Bob's");
    let identities = pool.emulator.client.list_dir(&instance.sprite_name, IDENTITIES).await.unwrap();
    assert_eq!(identities.map(|l| l.len()), Some(1), "only Bob's identity");
}

/// `verify_clean` asks the provider: leftovers of a failed claim count as conversation state,
/// the instructions alone included (a bogus invite leaves nothing else).
#[sqlx::test(migrations = "../migrations")]
async fn leftovers_of_a_failed_claim_are_conversation_state(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(1).await;
    let sprite = idle[0].sprite_name.clone();
    let provider = pool.sprites_provider();
    assert!(!provider.has_conversation_state(&sprite).await.unwrap(), "a fresh instance is clean");

    let request = ClaimRequest::new(
        "Ada".into(),
        SECRET.into(),
        Some("https://dev.convos.org/v2?i=abc".into()),
        PoolEnvironment::Dev,
    )
    .unwrap();
    // Straight at the gateway, so nothing recycles the instance afterwards.
    let gateway = pool.gateway();
    let join = shared::gateway::JoinConversation {
        invite_url: request.join_url.clone().unwrap(),
        profile_name: request.agent_name.clone(),
        env: "dev".into(),
        instructions: request.instructions.clone(),
    };
    let url = idle[0].url.clone().unwrap();
    assert!(gateway.join(&url, &idle[0].gateway_token, &join).await.is_err());
    assert_eq!(pool.read_file(&sprite, INSTRUCTIONS).await.unwrap(), SECRET.as_bytes());
    assert!(provider.has_conversation_state(&sprite).await.unwrap(), "INSTRUCTIONS.md alone is state");
}
