//! Which calls are retried, after how long, and which never are — proven by the emulator's
//! request counters while it injects faults.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use shared::sprites::{CreateSprite, ExecRequest, RetryPolicy, Sprite, SpritesError};
use sprites_emulator::EmulatorConfig;

use common::fault_json;

async fn create(h: &common::Harness, name: &str) -> Result<Sprite, SpritesError> {
    h.client
        .create_sprite(&CreateSprite { name: name.into(), url_settings: None, wait_for_capacity: false })
        .await
}

#[tokio::test]
async fn rate_limit_delay_from_the_server_is_honoured() {
    let h = common::start().await;
    h.sprite("convos-agent-dev-rl").await;
    h.fault(
        json!({"route": "sprites.get", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}),
    )
    .await;
    let started = Instant::now();
    let sprite = h.client.get_sprite("convos-agent-dev-rl").await.unwrap();
    assert_eq!(sprite.name, "convos-agent-dev-rl");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited only {:?}", started.elapsed());
    assert_eq!(h.count("sprites.get").await, 2);
}

#[tokio::test]
async fn unavailable_is_retried_with_backoff() {
    let h = common::start().await;
    h.sprite("convos-agent-dev-un").await;
    h.fault(json!({"route": "sprites.get", "count": 2, "kind": {"type": "status", "status": 503, "body": "Storage not ready"}}))
        .await;
    h.client.get_sprite("convos-agent-dev-un").await.unwrap();
    assert_eq!(h.count("sprites.get").await, 3);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() {
    let h = common::start().await;
    h.fault(fault_json("sprites.list", json!({"type": "status", "status": 503}))).await;
    let err = h.client.list_all_sprites("convos-agent-dev-").await.unwrap_err();
    assert!(matches!(err, SpritesError::Unavailable { status: 503, .. }), "{err:?}");
    assert_eq!(h.count("sprites.list").await, u64::from(RetryPolicy::default().max_attempts));
}

#[tokio::test]
async fn a_server_delay_longer_than_allowed_is_handed_back() {
    let h = common::start().await;
    h.fault(
        json!({"route": "sprites.get", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 120}}),
    )
    .await;
    let started = Instant::now();
    let err = h.client.get_sprite("convos-agent-dev-x").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(h.count("sprites.get").await, 1);
}

#[tokio::test]
async fn create_is_never_retried() {
    let h = common::start().await;
    h.fault(json!({"route": "sprites.create", "count": 1, "kind": {"type": "status", "status": 503}})).await;
    let err = create(&h, "convos-agent-dev-c").await.unwrap_err();
    assert!(matches!(err, SpritesError::Unavailable { .. }), "{err:?}");
    assert_eq!(h.count("sprites.create").await, 1);

    h.fault(
        json!({"route": "sprites.create", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}),
    )
    .await;
    let err = create(&h, "convos-agent-dev-c").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "the caller gets the delay: {err:?}");
    assert_eq!(h.count("sprites.create").await, 2);
}

#[tokio::test]
async fn exec_is_never_retried() {
    let h = common::start().await;
    h.sprite("convos-agent-dev-ex").await;
    h.fault(json!({"route": "exec", "count": 1, "kind": {"type": "status", "status": 503}})).await;
    let err = h.client.exec("convos-agent-dev-ex", &ExecRequest::new(["true"])).await.unwrap_err();
    assert!(matches!(err, SpritesError::Unavailable { status: 503, .. }), "{err:?}");
    assert_eq!(h.count("exec").await, 1);
    // Once the fault is spent the same command runs.
    assert!(h.client.exec("convos-agent-dev-ex", &ExecRequest::new(["true"])).await.unwrap().success());
}

#[tokio::test]
async fn a_timed_out_idempotent_call_is_retried() {
    let h = common::start_with(EmulatorConfig { speed: 0.0, ..EmulatorConfig::default() }, |c| {
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    h.sprite("convos-agent-dev-hang").await;
    h.fault(json!({"route": "sprites.get", "count": 1, "kind": {"type": "hang", "ms": 3000}})).await;
    h.client.get_sprite("convos-agent-dev-hang").await.unwrap();
    assert_eq!(h.count("sprites.get").await, 2);
}

#[tokio::test]
async fn a_hung_create_is_a_transport_error_not_a_retry() {
    let h = common::start_with(EmulatorConfig { speed: 0.0, ..EmulatorConfig::default() }, |c| {
        c.create_timeout = Duration::from_millis(300);
    })
    .await;
    h.fault(json!({"route": "sprites.create", "count": 1, "kind": {"type": "hang"}})).await;
    let err = create(&h, "convos-agent-dev-h").await.unwrap_err();
    assert!(matches!(err, SpritesError::Transport(_)), "{err:?}");
    assert_eq!(h.count("sprites.create").await, 1);
}

#[tokio::test]
async fn restore_is_retried_only_on_refusals() {
    let h = common::start().await;
    let name = h.sprite("convos-agent-dev-rs").await;
    let id = h.client.create_checkpoint(&name, "golden").await.unwrap();
    h.fault(json!({"route": "checkpoints.restore", "count": 1, "kind": {"type": "status", "status": 503}}))
        .await;
    h.client.restore_checkpoint(&name, &id).await.unwrap();
    assert_eq!(h.count("checkpoints.restore").await, 2);

    h.fault(json!({"route": "checkpoints.restore", "count": 1, "kind": {"type": "status", "status": 500}}))
        .await;
    let err = h.client.restore_checkpoint(&name, &id).await.unwrap_err();
    assert!(matches!(err, SpritesError::Api { status: 500, .. }), "{err:?}");
    assert_eq!(h.count("checkpoints.restore").await, 3);
}
