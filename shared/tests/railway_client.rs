//! The Railway client against the emulator over real HTTP: every method, the one-request
//! listing, retries (counted by the emulator), error classes and secrecy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use shared::railway::{
    DeploySpec, DeployStatus, RailwayClient, RailwayErrorKind, RailwaySettings, RetryPolicy,
};
use sprites_emulator::{Emulator, EmulatorConfig};

const TOKEN: &str = "emulator-railway-token";

struct H {
    emu: Emulator,
    client: RailwayClient,
    control: reqwest::Client,
}

fn settings(emu: &Emulator, token: &str) -> RailwaySettings {
    let mut s = RailwaySettings::new(
        format!("{}/graphql/v2", emu.base_url()).parse().unwrap(),
        SecretString::from(token.to_string()),
        "emulator-project".into(),
        "emulator-environment".into(),
    );
    s.public_url_base = Some(format!("{}/_railway", emu.base_url()).parse().unwrap());
    s.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_server_delay: Duration::from_secs(5),
    };
    s
}

async fn start() -> H {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Emulator::start(EmulatorConfig { speed: 0.0, ..Default::default() }).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = RailwayClient::new(settings(&emu, TOKEN), http.clone());
    H { emu, client, control: http }
}

impl H {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    async fn count(&self, route: &str) -> u64 {
        let counters: Value =
            self.control.get(self.url("/_emulator/counters")).send().await.unwrap().json().await.unwrap();
        counters[route].as_u64().unwrap_or(0)
    }

    async fn fault(&self, fault: Value) {
        let r = self.control.post(self.url("/_emulator/faults")).json(&fault).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    async fn state(&self) -> Value {
        self.control.get(self.url("/_emulator/railway/state")).send().await.unwrap().json().await.unwrap()
    }
}

fn spec(vars: &[(&str, &str)]) -> DeploySpec {
    DeploySpec {
        image: "ghcr.io/xmtplabs/convos-runtime@sha256:1234".into(),
        start_command: Some("node convos-platform/pool-server/dist/index.js".into()),
        cpu: 4.0,
        memory_bytes: 4 * 1024 * 1024 * 1024,
        variables: vars
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[tokio::test]
async fn the_whole_lifecycle_of_a_service() {
    let h = start().await;
    let id = h.client.create_service("convos-agent-one").await.unwrap();
    let volume = h.client.create_volume(&id, "/data").await.unwrap();
    let domain = h.client.create_domain(&id).await.unwrap();
    assert!(domain.starts_with("convos-agent-one-production-"), "{domain}");

    let list = h.client.services().await.unwrap();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!((s.id.as_str(), s.name.as_str()), (id.as_str(), "convos-agent-one"));
    assert_eq!(s.deploy_status, None, "never deployed");
    assert_eq!(s.domains, vec![domain.clone()]);
    assert_eq!(s.volume_ids, vec![volume.clone()]);
    assert!(s.created_at.is_some());
    assert_eq!(s.image, None);

    h.client
        .deploy(
            &id,
            &spec(&[
                ("GATEWAY_TOKEN", "gw-token-1"),
                ("XMTP_ENV", "dev"),
                ("OPENROUTER_API_KEY", "sk-or-v1-secret"),
            ]),
        )
        .await
        .unwrap();
    let list = h.client.services().await.unwrap();
    assert_eq!(list[0].deploy_status, Some(DeployStatus::Success));
    assert_eq!(list[0].image.as_deref(), Some("ghcr.io/xmtplabs/convos-runtime@sha256:1234"));
    // One commit: image, command, limits and every variable, one deployment.
    let state = h.state().await;
    let svc = &state["services"][0];
    assert_eq!(svc["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(
        svc["deployments"][0]["variables"],
        json!(["GATEWAY_TOKEN", "OPENROUTER_API_KEY", "XMTP_ENV"])
    );
    assert_eq!(svc["startCommand"], "node convos-platform/pool-server/dist/index.js");
    assert_eq!(svc["cpu"], 4.0);
    assert_eq!(svc["memoryBytes"], 4u64 * 1024 * 1024 * 1024);
    assert_eq!(h.count("railway.environmentPatchCommit").await, 1);

    // The runtime answers at public_url with the token from the variables.
    let url = h.client.public_url(&domain);
    assert_eq!(url, format!("{}/_railway/{domain}", h.emu.base_url()));
    let health = h.control.get(format!("{url}/pool/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let status =
        h.control.get(format!("{url}/convos/status")).bearer_auth("gw-token-1").send().await.unwrap();
    assert_eq!(status.status(), 200);

    h.client.redeploy(&id).await.unwrap();
    assert_eq!(h.state().await["services"][0]["deployments"].as_array().unwrap().len(), 2);

    // Volume first, then the service: nothing is left behind.
    h.client.delete_volume(&volume).await.unwrap();
    h.client.delete_service(&id).await.unwrap();
    let state = h.state().await;
    assert!(state["services"].as_array().unwrap().is_empty());
    assert!(state["volumes"].as_array().unwrap().is_empty());
    // Already gone is fine.
    h.client.delete_volume(&volume).await.unwrap();
    h.client.delete_service(&id).await.unwrap();
    h.client.delete_service("never-existed").await.unwrap();

    let without_base = RailwayClient::new(
        RailwaySettings { public_url_base: None, ..settings(&h.emu, TOKEN) },
        reqwest::Client::new(),
    );
    assert_eq!(without_base.public_url("x.up.railway.app"), "https://x.up.railway.app");
}

#[tokio::test]
async fn the_listing_is_one_request_whatever_the_number_of_services() {
    let h = start().await;
    let first = h.client.create_service("convos-agent-0").await.unwrap();
    h.client.create_volume(&first, "/data").await.unwrap();
    let before = h.count("railway.project").await;
    assert_eq!(h.client.services().await.unwrap().len(), 1);
    assert_eq!(h.count("railway.project").await - before, 1);

    for i in 1..30 {
        let id = h.client.create_service(&format!("convos-agent-{i}")).await.unwrap();
        h.client.create_domain(&id).await.unwrap();
    }
    let before = h.count("railway.project").await;
    let list = h.client.services().await.unwrap();
    assert_eq!(list.len(), 30);
    assert_eq!(h.count("railway.project").await - before, 1);
    assert_eq!(h.count("railway.service").await, 0);
    // Creation order; a repeated name is a second service the caller must adopt or delete.
    assert_eq!(list[29].name, "convos-agent-29");
    assert_eq!(list[1].domains.len(), 1);
    h.client.create_service("convos-agent-0").await.unwrap();
    let named: Vec<_> =
        h.client.services().await.unwrap().into_iter().filter(|s| s.name == "convos-agent-0").collect();
    assert_eq!(named.len(), 2);
    assert_eq!(named[0].volume_ids.len(), 1);
    assert!(named[1].volume_ids.is_empty());
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_retried() {
    let h = start().await;
    h.fault(json!({"route": "railway.serviceCreate", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}))
        .await;
    let started = Instant::now();
    h.client.create_service("convos-agent-rl").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited only {:?}", started.elapsed());
    assert_eq!(h.count("railway.serviceCreate").await, 2);
}

#[tokio::test]
async fn a_graphql_rate_limit_message_is_retried() {
    let h = start().await;
    let id = h.client.create_service("convos-agent-v").await.unwrap();
    let body =
        json!({"data": null, "errors": [{"message": "You are creating volumes too quickly"}]}).to_string();
    h.fault(json!({"route": "railway.volumeCreate", "count": 2, "kind": {"type": "status", "status": 200, "body": body}}))
        .await;
    h.client.create_volume(&id, "/data").await.unwrap();
    assert_eq!(h.count("railway.volumeCreate").await, 3);
}

#[tokio::test]
async fn rate_limits_that_persist_reach_the_caller_as_retryable() {
    let h = start().await;
    let body = json!({"errors": [{"message": "Only one project can be created per user"}]}).to_string();
    h.fault(
        json!({"route": "railway.serviceCreate", "kind": {"type": "status", "status": 200, "body": body}}),
    )
    .await;
    let err = h.client.create_service("x").await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::RateLimited);
    assert!(err.is_retryable());
    assert_eq!(h.count("railway.serviceCreate").await, 4);
}

#[tokio::test]
async fn an_html_502_page_is_transient() {
    let h = start().await;
    let page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>";
    h.fault(json!({"route": "railway.project", "kind": {"type": "status", "status": 502, "body": page}}))
        .await;
    let err = h.client.services().await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Transient);
    assert!(err.is_retryable());
    assert_eq!(err.status, 502);
    assert_eq!(h.count("railway.project").await, 4, "retried up to the attempt limit");

    // One transient failure, then success.
    let h = start().await;
    h.fault(json!({"route": "railway.project", "count": 1, "kind": {"type": "status", "status": 503, "body": page}}))
        .await;
    assert!(h.client.services().await.unwrap().is_empty());
    assert_eq!(h.count("railway.project").await, 2);
}

#[tokio::test]
async fn unauthorized_is_never_retried_and_the_token_never_shows() {
    let h = start().await;
    let secret_token = "wrong-token-abcdef123456";
    let client = RailwayClient::new(settings(&h.emu, secret_token), h.control.clone());
    let err = client.create_service("x").await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Unauthorized);
    assert!(!err.is_retryable());
    assert_eq!(h.count("railway.serviceCreate").await, 1);
    for text in
        [format!("{err}"), format!("{err:?}"), format!("{client:?}"), format!("{:?}", client.settings())]
    {
        assert!(!text.contains(secret_token), "token leaked: {text}");
    }
    assert!(!format!("{:?}", h.client).contains(TOKEN));
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_variable_values_never_show() {
    let h = start().await;
    let id = h.client.create_service("convos-agent-p").await.unwrap();
    h.client.create_volume(&id, "/data").await.unwrap();
    let err = h.client.create_volume(&id, "/data").await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Permanent);
    assert_eq!(h.count("railway.volumeCreate").await, 2, "the refused second create was sent once");

    let err = h
        .client
        .deploy("missing-service", &spec(&[("GATEWAY_TOKEN", "value-that-must-not-leak")]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::NotFound);
    let err = h.client.create_domain("missing-service").await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::NotFound);

    // An error that echoes the request is scrubbed of every variable value and the token.
    let echo = json!({"errors": [{"message": "Variable \"$patch\" got invalid value \"value-that-must-not-leak\" near emulator-railway-token"}]}).to_string();
    h.fault(json!({"route": "railway.environmentPatchCommit", "count": 1, "kind": {"type": "status", "status": 400, "body": echo}})).await;
    let err =
        h.client.deploy(&id, &spec(&[("GATEWAY_TOKEN", "value-that-must-not-leak")])).await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Permanent);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("value-that-must-not-leak") && !text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted]"));
    let spec_debug = format!("{:?}", spec(&[("K", "value-that-must-not-leak")]));
    assert!(!spec_debug.contains("value-that-must-not-leak"), "{spec_debug}");
}
