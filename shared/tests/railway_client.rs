//! The Railway client against the emulator over real HTTP: every method, the paged listing,
//! retries (counted by the emulator), error classes, rate-limit headers, creates of unknown
//! outcome, and secrecy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use shared::railway::{
    DeploySpec, DeployStatus, Missing, RailwayClient, RailwayErrorKind, RailwaySettings, RetryPolicy,
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
    s.throttle_wait = Duration::from_millis(20);
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

    async fn control_post(&self, path: &str, body: Value) {
        let r = self.control.post(self.url(path)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.text().await.unwrap());
    }

    async fn state(&self) -> Value {
        self.control.get(self.url("/_emulator/railway/state")).send().await.unwrap().json().await.unwrap()
    }
}

fn spec(vars: &[(&str, &str)]) -> DeploySpec {
    DeploySpec {
        image: "ghcr.io/xmtplabs/convos-runtime@sha256:1234".into(),
        start_command: "node convos-platform/pool-server/dist/index.js".into(),
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

#[tokio::test]
async fn a_pool_of_600_services_is_listed_page_by_page() {
    let h = start().await;
    let mut ids = Vec::new();
    for i in 0..600 {
        ids.push(h.client.create_service(&format!("convos-agent-{i:03}")).await.unwrap());
    }
    // Volumes on a few, spread over the pages.
    for i in [0, 150, 420, 599] {
        h.client.create_volume(&ids[i], "/data").await.unwrap();
    }
    let before = h.count("railway.project").await;
    let list = h.client.services().await.unwrap();
    assert_eq!(list.len(), 600, "every service, not the first page only");
    assert_eq!(h.count("railway.project").await - before, 6, "100 services a request");
    for (i, s) in list.iter().enumerate() {
        assert_eq!(s.name, format!("convos-agent-{i:03}"));
        assert_eq!(s.volume_ids.len(), usize::from([0, 150, 420, 599].contains(&i)), "{i}");
    }
}

#[tokio::test]
async fn generic_errors_and_the_edge_403_page_are_transient() {
    let h = start().await;
    let problem = json!({"data": null, "errors": [{"message": "Problem processing request"}]}).to_string();
    h.fault(json!({"route": "railway.project", "count": 1, "kind": {"type": "status", "status": 200, "body": problem}}))
        .await;
    assert!(h.client.services().await.unwrap().is_empty());
    assert_eq!(h.count("railway.project").await, 2, "retried once");

    let page = "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>blocked</body></html>";
    h.fault(json!({"route": "railway.project", "count": 1, "kind": {"type": "status", "status": 403, "body": page}}))
        .await;
    assert!(h.client.services().await.unwrap().is_empty());
    assert_eq!(h.count("railway.project").await, 4);

    // A GraphQL answer refusing the token is not transient.
    let refused = json!({"errors": [{"message": "Not Authorized"}]}).to_string();
    h.fault(json!({"route": "railway.project", "count": 1, "kind": {"type": "status", "status": 403, "body": refused}}))
        .await;
    let err = h.client.services().await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Unauthorized);
    assert_eq!(h.count("railway.project").await, 5);
}

#[tokio::test]
async fn a_create_of_unknown_outcome_is_not_resent() {
    let h = start().await;
    let id = h.client.create_service("convos-agent-u").await.unwrap();
    // The origin makes the volume, the edge answers 504: the client does not send it again.
    h.control_post("/_emulator/railway/lose-answer", json!({"field": "volumeCreate"})).await;
    let err = h.client.create_volume(&id, "/data").await.unwrap_err();
    assert_eq!((err.kind, err.status), (RailwayErrorKind::Transient, 504));
    assert_eq!(h.count("railway.volumeCreate").await, 1);
    assert_eq!(h.client.services().await.unwrap()[0].volume_ids.len(), 1, "it was made");

    // Railway's generic error leaves the outcome unknown too; a rate limit does not.
    let problem = json!({"errors": [{"message": "Problem processing request"}]}).to_string();
    h.fault(json!({"route": "railway.serviceDomainCreate", "count": 1, "kind": {"type": "status", "status": 200, "body": problem}}))
        .await;
    let err = h.client.create_domain(&id).await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::Transient);
    assert_eq!(h.count("railway.serviceDomainCreate").await, 1);
    h.fault(json!({"route": "railway.serviceDomainCreate", "count": 1, "kind": {"type": "status", "status": 429}}))
        .await;
    h.client.create_domain(&id).await.unwrap();
    assert_eq!(h.count("railway.serviceDomainCreate").await, 3, "the 429 was sent again");
}

#[tokio::test]
async fn only_the_missing_thing_makes_a_delete_done() {
    let h = start().await;
    let id = h.client.create_service("convos-agent-d").await.unwrap();
    let env_missing = json!({"errors": [{"message": "Environment not found"}]}).to_string();
    h.fault(json!({"route": "railway.serviceDelete", "count": 1, "kind": {"type": "status", "status": 200, "body": env_missing}}))
        .await;
    let err = h.client.delete_service(&id).await.unwrap_err();
    assert_eq!((err.kind, err.missing), (RailwayErrorKind::NotFound, Some(Missing::Environment)));
    assert_eq!(h.state().await["services"].as_array().unwrap().len(), 1, "not deleted, not done");
    h.client.delete_service(&id).await.unwrap();
    h.client.delete_service(&id).await.unwrap();
    let err = h.client.delete_volume("never").await;
    assert!(err.is_ok(), "{err:?}");
}

#[tokio::test]
async fn a_volume_throttle_is_waited_out_on_a_longer_clock() {
    let h = start().await;
    let r = h
        .control
        .put(h.url("/_emulator/railway/config"))
        .json(&json!({"volumeThrottle": {"limit": 1, "windowMs": 1500}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut s = settings(&h.emu, TOKEN);
    s.throttle_wait = Duration::from_millis(600);
    let client = RailwayClient::new(s, h.control.clone());
    let a = client.create_service("a").await.unwrap();
    let b = client.create_service("b").await.unwrap();
    client.create_volume(&a, "/data").await.unwrap();
    let started = Instant::now();
    client.create_volume(&b, "/data").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    let sent = h.count("railway.volumeCreate").await;
    assert!((3..=5).contains(&sent), "waited, not hammered: {sent}");
}

/// A stand-in Railway that records what it was sent and answers from a script.
mod scripted {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    /// When each request came and the User-Agent it carried.
    pub type Log = Vec<(Instant, Option<String>)>;

    #[derive(Clone, Default)]
    pub struct Seen(pub Arc<Mutex<Log>>);

    pub type Answer = Box<dyn Fn() -> Response + Send + Sync>;

    pub async fn serve(answers: Vec<Answer>) -> (String, Seen) {
        let seen = Seen::default();
        let answers = Arc::new(answers);
        let state = (seen.clone(), answers);
        async fn handle(
            State((seen, answers)): State<(Seen, Arc<Vec<Answer>>)>,
            headers: HeaderMap,
        ) -> Response {
            let n = {
                let mut log = seen.0.lock().unwrap();
                let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string);
                log.push((Instant::now(), agent));
                log.len() - 1
            };
            match answers.get(n) {
                Some(answer) => answer(),
                None => (StatusCode::INTERNAL_SERVER_ERROR, "script ended").into_response(),
            }
        }
        let app = axum::Router::new().route("/graphql/v2", axum::routing::post(handle)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/graphql/v2", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }
}

#[tokio::test]
async fn the_user_agent_is_sent_and_rate_limit_headers_are_honoured() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let reset_in = |secs: u64| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        (now + secs).to_string()
    };
    let ok = || axum::Json(json!({"data": {"serviceCreate": {"id": "s1", "name": "x"}}}));
    let answers: Vec<scripted::Answer> = vec![
        // A 429 without Retry-After: X-RateLimit-Reset says when.
        Box::new(move || {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("x-ratelimit-remaining", "0".to_string()), ("x-ratelimit-reset", reset_in(2))],
                "slow down",
            )
                .into_response()
        }),
        // Success, but the window is spent: the next call waits for its reset.
        Box::new(move || {
            ([("x-ratelimit-remaining", "0".to_string()), ("x-ratelimit-reset", reset_in(2))], ok())
                .into_response()
        }),
        Box::new(move || ok().into_response()),
    ];
    let (url, seen) = scripted::serve(answers).await;
    let mut s = RailwaySettings::new(
        url.parse().unwrap(),
        SecretString::from(TOKEN.to_string()),
        "p".into(),
        "e".into(),
    );
    s.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_server_delay: Duration::from_secs(5),
    };
    let client = RailwayClient::new(s, reqwest::Client::builder().no_proxy().build().unwrap());
    assert_eq!(client.create_service("x").await.unwrap(), "s1");
    assert_eq!(client.create_service("y").await.unwrap(), "s1");
    let log = seen.0.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    for (_, agent) in &log {
        assert_eq!(agent.as_deref(), Some(shared::railway::USER_AGENT));
    }
    assert!(shared::railway::USER_AGENT.starts_with("convos-pool/"));
    let gap = |i: usize| log[i].0.duration_since(log[i - 1].0);
    assert!(gap(1) >= Duration::from_millis(900), "the 429's reset was waited for: {:?}", gap(1));
    assert!(gap(2) >= Duration::from_millis(900), "the spent window was waited for: {:?}", gap(2));
}

/// `RAILWAY_ENVIRONMENT_NAME`, as the Railway pool allowed: the id is read from the project's
/// environments once, then every call uses it; a name the project lacks fails before any write.
#[tokio::test]
async fn an_environment_given_by_name_is_looked_up_once() {
    let h = start().await;
    let by_name = |name: &str| {
        let mut s = settings(&h.emu, TOKEN);
        s.environment_id = String::new();
        s.environment_name = Some(name.into());
        RailwayClient::new(s, h.control.clone())
    };
    // The emulated project's one environment is called "production".
    let client = by_name("production");
    assert_eq!(client.environment_id().await.unwrap(), "emulator-environment");
    let lookups = h.count("railway.project").await;
    assert_eq!(lookups, 1);
    let id = client.create_service("convos-agent-byname").await.unwrap();
    client.deploy(&id, &spec(&[])).await.unwrap();
    let services = client.services().await.unwrap();
    let service = services.iter().find(|s| s.id == id).expect("the service is listed in its environment");
    assert_eq!(service.image.as_deref(), Some("ghcr.io/xmtplabs/convos-runtime@sha256:1234"));
    // The listing reads the project too; no further environment lookup happened.
    assert_eq!(client.environment_id().await.unwrap(), "emulator-environment");
    assert_eq!(h.count("railway.project").await, lookups + 1);

    let unknown = by_name("staging");
    let err = unknown.create_service("convos-agent-nowhere").await.unwrap_err();
    assert_eq!(err.kind, RailwayErrorKind::NotFound, "{err}");
    assert_eq!(err.missing, Some(Missing::Environment));
    assert!(err.to_string().contains("\"staging\""), "{err}");
    assert_eq!(h.count("railway.serviceCreate").await, 1, "nothing is created in an unknown environment");
}
