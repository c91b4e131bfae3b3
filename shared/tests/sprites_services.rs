//! Services: create-and-start, state, stop/start/restart, delete, the one-http_port rule.

mod common;

use shared::sprites::{ServiceSpec, SpritesError};

/// A service that runs until stopped (the emulator runs a service's command: an OpenClaw
/// gateway would need an installed Sprite, which these API tests do not).
fn gateway() -> ServiceSpec {
    ServiceSpec {
        cmd: "sleep".into(),
        args: vec!["3600".into()],
        http_port: Some(8080),
        ..ServiceSpec::default()
    }
}

#[tokio::test]
async fn service_lifecycle() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-s1").await;

    let events = h.client.put_service(&s, "gateway", &gateway()).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "started"), "{events:?}");
    let service = h.client.get_service(&s, "gateway").await.unwrap();
    assert!(service.is_running());
    assert_eq!(service.http_port, Some(8080));
    assert_eq!(service.cmd.as_deref(), Some("sleep"));
    assert_eq!(service.args, gateway().args);

    h.client.stop_service(&s, "gateway").await.unwrap();
    assert!(!h.client.get_service(&s, "gateway").await.unwrap().is_running());
    let again = h.client.stop_service(&s, "gateway").await.unwrap_err();
    assert!(matches!(again, SpritesError::Conflict { .. }), "{again:?}");

    h.client.start_service(&s, "gateway").await.unwrap();
    assert!(h.client.get_service(&s, "gateway").await.unwrap().is_running());
    let events = h.client.restart_service(&s, "gateway").await.unwrap();
    assert!(events.iter().any(|e| e.kind == "started"), "{events:?}");
    assert!(h.client.get_service(&s, "gateway").await.unwrap().is_running());

    let listed = h.client.list_services(&s).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "gateway");

    assert!(h.client.delete_service(&s, "gateway").await.unwrap());
    assert!(!h.client.delete_service(&s, "gateway").await.unwrap());
    assert!(h.client.get_service(&s, "gateway").await.unwrap_err().is_not_found());
    assert!(h.client.list_services(&s).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_one_service_may_take_the_url() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-s2").await;
    h.client.put_service(&s, "gateway", &gateway()).await.unwrap();
    let second = ServiceSpec { cmd: "python3".into(), http_port: Some(9000), ..ServiceSpec::default() };
    let err = h.client.put_service(&s, "other", &second).await.unwrap_err();
    assert!(matches!(err, SpritesError::Conflict { .. }), "{err:?}");
    // A service without a port is fine beside it.
    let worker = ServiceSpec { cmd: "worker".into(), ..ServiceSpec::default() };
    h.client.put_service(&s, "worker", &worker).await.unwrap();
    assert_eq!(h.client.list_services(&s).await.unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_service_actions_are_not_found() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-s3").await;
    assert!(h.client.start_service(&s, "ghost").await.unwrap_err().is_not_found());
    assert!(h.client.restart_service(&s, "ghost").await.unwrap_err().is_not_found());
}
