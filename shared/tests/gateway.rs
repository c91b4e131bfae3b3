//! The gateway client against the emulator's simulated OpenClaw gateway behind a Sprite URL.

mod common;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use shared::gateway::{
    CreateConversation, GatewayClient, GatewayError, GatewayTimeouts, JoinConversation, JoinOutcome,
};
use shared::sprites::{ServiceSpec, WriteFile};

const TOKEN: &str = "instance-token-1";

/// A public Sprite whose gateway runs and accepts only `TOKEN`; returns its URL.
async fn booted(h: &common::Harness, name: &str) -> String {
    let s = h.sprite(name).await;
    let config = json!({
        "gateway": {
            "mode": "local", "port": 8080, "bind": "lan", "reload": {"mode": "off"}, "auth": {"token": TOKEN},
        },
        "channels": {"convos": {"enabled": true, "env": "dev", "poolApiKey": TOKEN}},
    });
    h.client
        .write_file(
            &s,
            &WriteFile::new("/home/sprite/.openclaw/openclaw.json", config.to_string()).mode(0o600),
        )
        .await
        .unwrap();
    h.install_openclaw(&s).await;
    let gateway = ServiceSpec {
        cmd: "node".into(),
        args: vec!["openclaw.mjs".into(), "gateway".into()],
        dir: Some(sprites_emulator::OPENCLAW_DIR.into()),
        http_port: Some(8080),
        ..ServiceSpec::default()
    };
    h.client.put_service(&s, "gateway", &gateway).await.unwrap();
    h.wait_listening(&s, 8080).await;
    h.client.get_sprite(&s).await.unwrap().url.unwrap()
}

fn token() -> SecretString {
    SecretString::from(TOKEN.to_string())
}

fn create_body(instructions: &str) -> CreateConversation {
    CreateConversation {
        name: "tokyo-trip-planner".into(),
        profile_name: "tokyo-trip-planner".into(),
        env: "dev".into(),
        instructions: instructions.into(),
    }
}

#[tokio::test]
async fn create_binds_once_and_status_reports_it() {
    let h = common::start().await;
    let url = booted(&h, "convos-agent-dev-g1").await;
    let gateway = GatewayClient::new(GatewayTimeouts::default()).unwrap();

    let status = gateway.status(&url, &token()).await.unwrap();
    assert!(status.ready);
    assert_eq!(status.conversation, None);

    let created = gateway.create_conversation(&url, &token(), &create_body("Plan a trip.")).await.unwrap();
    assert!(created.invite_url.starts_with("https://dev.convos.org/v2?i="), "{created:?}");
    let status = gateway.status(&url, &token()).await.unwrap();
    assert_eq!(status.conversation.map(|c| c.id), Some(created.conversation_id.clone()));

    let again = gateway.create_conversation(&url, &token(), &create_body("again")).await.unwrap_err();
    assert!(matches!(again, GatewayError::AlreadyBound(_)), "{again:?}");
    assert!(!again.may_have_bound(), "a 409 changed nothing");
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let h = common::start().await;
    let url = booted(&h, "convos-agent-dev-g2").await;
    let gateway = GatewayClient::new(GatewayTimeouts::default()).unwrap();
    let wrong = SecretString::from("someone-else".to_string());
    assert!(matches!(gateway.status(&url, &wrong).await, Err(GatewayError::Unauthorized)));
    let err = gateway.create_conversation(&url, &wrong, &create_body("x")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unauthorized), "{err:?}");
    assert_eq!(gateway.status(&url, &token()).await.unwrap().conversation, None, "nothing was bound");
}

#[tokio::test]
async fn no_running_gateway_is_unreachable() {
    let h = common::start().await;
    let url = booted(&h, "convos-agent-dev-g3").await;
    h.client.stop_service("convos-agent-dev-g3", "gateway").await.unwrap();
    let gateway = GatewayClient::new(GatewayTimeouts::default()).unwrap();
    let err = gateway.status(&url, &token()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unreachable(_)), "{err:?}");
    assert!(!err.may_have_bound());
}

#[tokio::test]
async fn join_reports_both_outcomes() {
    let h = common::start().await;
    let gateway = GatewayClient::new(GatewayTimeouts::default()).unwrap();
    let body = JoinConversation {
        invite_url: sprites_emulator::mint_invite_url("dev"),
        profile_name: "helper".into(),
        env: "dev".into(),
        instructions: "Be helpful.".into(),
    };

    h.configure(json!({"join_outcome": "waiting_for_acceptance", "join_delay_ms": 0})).await;
    let url = booted(&h, "convos-agent-dev-g4").await;
    assert_eq!(gateway.join(&url, &token(), &body).await.unwrap(), JoinOutcome::WaitingForAcceptance);
    assert_eq!(gateway.status(&url, &token()).await.unwrap().conversation, None);

    h.configure(json!({"join_outcome": "joined"})).await;
    match gateway.join(&url, &token(), &body).await.unwrap() {
        JoinOutcome::Joined { conversation_id } => {
            let status = gateway.status(&url, &token()).await.unwrap();
            assert_eq!(status.conversation.map(|c| c.id), Some(conversation_id));
        }
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_and_timeouts_may_have_bound() {
    let h = common::start().await;
    let url = booted(&h, "convos-agent-dev-g5").await;
    let timeouts = GatewayTimeouts { create: Duration::from_millis(300), ..GatewayTimeouts::default() };
    let gateway = GatewayClient::new(timeouts).unwrap();

    h.fault(json!({"route": "gateway.conversation", "count": 1, "kind": {"type": "status", "status": 500, "body": "{\"error\":\"convos CLI failed\"}"}})).await;
    let err = gateway.create_conversation(&url, &token(), &create_body("x")).await.unwrap_err();
    assert!(
        matches!(&err, GatewayError::Failed { status: 500, message } if message == "convos CLI failed"),
        "{err:?}"
    );
    assert!(err.may_have_bound());

    h.fault(json!({"route": "gateway.conversation", "count": 1, "kind": {"type": "hang", "ms": 2000}})).await;
    let err = gateway.create_conversation(&url, &token(), &create_body("x")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Timeout(_)), "{err:?}");
    assert!(err.may_have_bound());
}
