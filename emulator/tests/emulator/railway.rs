//! The Railway emulation over raw HTTP: GraphQL at `/graphql/v2`, the runtime behind each
//! domain at `/_railway/{domain}`, and the `/_emulator/railway/*` controls.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::{Env, eventually, json, start};

const TOKEN: &str = "emulator-railway-token";
const PROJECT: &str = "emulator-project";
const ENVIRONMENT: &str = "emulator-environment";

async fn gql_with(env: &Env, token: &str, query: &str, variables: Value) -> Response {
    env.http
        .post(env.url("/graphql/v2"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
}

/// A GraphQL call that must succeed; returns `data`.
async fn gql(env: &Env, query: &str, variables: Value) -> Value {
    let resp = gql_with(env, TOKEN, query, variables).await;
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// A GraphQL call that must fail with HTTP 200 and `data: null`; returns the first message.
async fn gql_error(env: &Env, query: &str, variables: Value) -> String {
    let resp = gql_with(env, TOKEN, query, variables).await;
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["data"], Value::Null, "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_string()
}

async fn create_service(env: &Env, name: &str) -> String {
    let data = gql(
        env,
        "mutation($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }",
        json!({"input": {"projectId": PROJECT, "environmentId": ENVIRONMENT, "name": name}}),
    )
    .await;
    assert_eq!(data["serviceCreate"]["name"], name);
    data["serviceCreate"]["id"].as_str().unwrap().to_string()
}

async fn create_volume(env: &Env, service_id: &str) -> String {
    let data = gql(
        env,
        "mutation($input: VolumeCreateInput!) { volumeCreate(input: $input) { id name } }",
        json!({"input": {"projectId": PROJECT, "environmentId": ENVIRONMENT, "serviceId": service_id, "mountPath": "/data"}}),
    )
    .await;
    data["volumeCreate"]["id"].as_str().unwrap().to_string()
}

async fn create_domain(env: &Env, service_id: &str) -> String {
    let data = gql(
        env,
        "mutation($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { domain } }",
        json!({"input": {"serviceId": service_id, "environmentId": ENVIRONMENT}}),
    )
    .await;
    data["serviceDomainCreate"]["domain"].as_str().unwrap().to_string()
}

async fn patch(env: &Env, service_id: &str, variables: Value) {
    let mut svc = json!({
        "source": {"image": "ghcr.io/xmtplabs/convos-runtime@sha256:abc"},
        "deploy": {"startCommand": "node pool-server.js", "limitOverride": {"containers": {"cpu": 4, "memoryBytes": 4_000_000_000u64}}},
    });
    svc["variables"] = variables;
    let data = gql(
        env,
        "mutation($e: String!, $p: EnvironmentConfig!) { environmentPatchCommit(environmentId: $e, patch: $p, commitMessage: \"deploy\") }",
        json!({"e": ENVIRONMENT, "p": {"services": {service_id: svc}}}),
    )
    .await;
    assert!(data["environmentPatchCommit"].is_string());
}

async fn state(env: &Env) -> Value {
    json(env.control(Method::GET, "/_emulator/railway/state", None).await).await
}

async fn runtime(
    env: &Env,
    domain: &str,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut req = env.http.request(method, env.url(&format!("/_railway/{domain}{path}")));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn counter(env: &Env, route: &str) -> u64 {
    let counters = json(env.control(Method::GET, "/_emulator/counters", None).await).await;
    counters[route].as_u64().unwrap_or(0)
}

const LISTING: &str = "query($id: String!) { project(id: $id) { services(first: 500) { edges { node { id name createdAt serviceInstances { edges { node { environmentId domains { serviceDomains { domain } customDomains { domain } } source { image } latestDeployment { id status } } } } } } } volumes { edges { node { id name volumeInstances { edges { node { serviceId } } } } } } } }";

#[tokio::test]
async fn auth_syntax_and_unknown_fields() {
    let env = start().await;
    let resp = gql_with(&env, "wrong", "{ project(id: \"emulator-project\") { id } }", json!({})).await;
    assert_eq!(resp.status(), 401);
    let resp = env
        .http
        .post(env.url("/graphql/v2"))
        .json(&json!({"query": "{ service(id: \"x\") { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = gql_with(&env, TOKEN, "query { project(id: ", json!({})).await;
    assert_eq!(resp.status(), 400);
    let body = json(resp).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Syntax Error"), "{body}");

    let msg = gql_error(&env, "query { projects { edges { node { id } } } }", json!({})).await;
    assert_eq!(msg, "Cannot query field \"projects\" on type \"Query\".");
    let msg = gql_error(&env, "mutation { project(id: \"emulator-project\") { id } }", json!({})).await;
    assert!(msg.contains("on type \"Mutation\""), "{msg}");
    let msg = gql_error(&env, "{ project(id: \"emulator-project\") { id nope } }", json!({})).await;
    assert_eq!(msg, "Cannot query field \"nope\" on type \"Project\".");
    assert_eq!(gql_error(&env, "{ project(id: \"other\") { id } }", json!({})).await, "Project not found");
    let msg = gql_error(
        &env,
        "mutation { serviceCreate(input: {projectId: \"emulator-project\", environmentId: \"x\", name: \"a\"}) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(msg, "Environment not found");
    assert_eq!(gql_error(&env, "{ service(id: \"missing\") { id } }", json!({})).await, "Service not found");
    // Literals, aliases, fragments and __typename work as in any GraphQL server.
    let data = gql(
        &env,
        "query Q { p: project(id: \"emulator-project\") { ...F __typename } } fragment F on Project { id name }",
        json!({}),
    )
    .await;
    assert_eq!(data, json!({"p": {"id": PROJECT, "name": "emulator", "__typename": "Project"}}));
    assert_eq!(counter(&env, "railway.invalid").await, 3, "the syntax error and two unknown root fields");
}

#[tokio::test]
async fn deploy_to_success_then_the_runtime_serves_the_gateway() {
    let env = start().await;
    env.set_config(json!({"speed": 0.001, "gateway_boot_ms": 100_000})).await; // 100 ms boot
    env.control(Method::PUT, "/_emulator/railway/config", Some(json!({"deployMs": 300_000}))).await; // 300 ms
    let id = create_service(&env, "convos-agent-a").await;
    create_volume(&env, &id).await;
    let domain = create_domain(&env, &id).await;
    assert!(
        domain.starts_with("convos-agent-a-production-") && domain.ends_with(".up.railway.app"),
        "{domain}"
    );
    // No deployment yet: the edge has nothing to route to.
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 503);
    patch(&env, &id, json!({"GATEWAY_TOKEN": {"value": "gw-secret"}, "XMTP_ENV": {"value": "dev"}})).await;

    let data = gql(&env, LISTING, json!({"id": PROJECT})).await;
    let node = &data["project"]["services"]["edges"][0]["node"];
    let instance = &node["serviceInstances"]["edges"][0]["node"];
    assert_eq!(instance["latestDeployment"]["status"], "QUEUED");
    assert_eq!(instance["source"]["image"], "ghcr.io/xmtplabs/convos-runtime@sha256:abc");
    assert_eq!(instance["domains"]["serviceDomains"][0]["domain"], domain);
    assert_eq!(instance["environmentId"], ENVIRONMENT);
    assert_eq!(
        data["project"]["volumes"]["edges"][0]["node"]["volumeInstances"]["edges"][0]["node"]["serviceId"],
        id
    );
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 503);
    let success = eventually(Duration::from_secs(5), || async {
        let data = gql(&env, "query($id: String!) { service(id: $id) { deployments(first: 1) { edges { node { status } } } } }", json!({"id": id})).await;
        data["service"]["deployments"]["edges"][0]["node"]["status"] == "SUCCESS"
    })
    .await;
    assert!(success);
    let up = eventually(Duration::from_secs(5), || async {
        runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status() == 200
    })
    .await;
    assert!(up);
    let health = json(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await).await;
    assert_eq!(health, json!({"ready": true, "version": "emulated", "runtime": "openclaw"}));

    // The gateway wants GATEWAY_TOKEN.
    assert_eq!(runtime(&env, &domain, Method::GET, "/convos/status", None, None).await.status(), 401);
    assert_eq!(runtime(&env, &domain, Method::GET, "/convos/status", Some("nope"), None).await.status(), 401);
    let ok = runtime(&env, &domain, Method::GET, "/convos/status", Some("gw-secret"), None).await;
    assert_eq!(json(ok).await, json!({"ready": true, "conversation": null, "streaming": false}));
    assert_eq!(
        runtime(&env, &domain, Method::POST, "/convos/status", Some("gw-secret"), None).await.status(),
        405
    );
    // Paths no route claims are the gateway's Control UI, built into the image, without auth.
    let ui = runtime(&env, &domain, Method::GET, "/nowhere", None, None).await;
    assert_eq!(ui.status(), 200);
    assert!(ui.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let r = runtime(&env, &domain, Method::POST, "/convos/join", Some("gw-secret"), Some(json!({}))).await;
    assert_eq!(r.status(), 400);

    let r = runtime(
        &env,
        &domain,
        Method::POST,
        "/convos/conversation",
        Some("gw-secret"),
        Some(json!({"name": "A", "instructions": "be nice"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let created = json(r).await;
    let conversation = created["conversationId"].as_str().unwrap().to_string();
    assert!(created["inviteUrl"].as_str().unwrap().starts_with("https://dev.convos.org/v2?i="));
    let r = runtime(
        &env,
        &domain,
        Method::POST,
        "/convos/join",
        Some("gw-secret"),
        Some(json!({"inviteUrl": "x"})),
    )
    .await;
    assert_eq!(r.status(), 409);
    let status =
        json(runtime(&env, &domain, Method::GET, "/convos/status", Some("gw-secret"), None).await).await;
    assert_eq!(status["conversation"]["id"], conversation);

    // The binding lives on the volume: a redeploy keeps it.
    gql(
        &env,
        "mutation($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
        json!({"s": id, "e": ENVIRONMENT}),
    )
    .await;
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 503);
    let dump = state(&env).await;
    assert_eq!(dump["services"][0]["deployments"][0]["status"], "REMOVED");
    assert_eq!(dump["services"][0]["conversationId"], conversation);
    assert!(
        eventually(Duration::from_secs(5), || async {
            runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status() == 200
        })
        .await
    );
    let status =
        json(runtime(&env, &domain, Method::GET, "/convos/status", Some("gw-secret"), None).await).await;
    assert_eq!(status["conversation"]["id"], conversation);
    assert_eq!(counter(&env, "railway.environmentPatchCommit").await, 1);
    assert!(counter(&env, "railway.runtime").await >= 10);
}

#[tokio::test]
async fn without_a_volume_a_redeploy_loses_the_binding_and_the_gateway_is_open_without_token() {
    let env = start().await;
    let id = create_service(&env, "convos-agent-b").await;
    let domain = create_domain(&env, &id).await;
    patch(&env, &id, json!({})).await;
    let r = runtime(
        &env,
        &domain,
        Method::POST,
        "/convos/join",
        None,
        Some(json!({"inviteUrl": sprites_emulator::mint_invite_url("dev")})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "joined");
    gql(
        &env,
        "mutation($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
        json!({"s": id, "e": ENVIRONMENT}),
    )
    .await;
    let status = json(runtime(&env, &domain, Method::GET, "/convos/status", None, None).await).await;
    assert_eq!(status["conversation"], Value::Null);
}

#[tokio::test]
async fn crash_sleep_and_failed_deployments() {
    let env = start().await;
    let id = create_service(&env, "convos-agent-c").await;
    let domain = create_domain(&env, &id).await;
    patch(&env, &id, json!({})).await;
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 200);

    let r = env.control(Method::POST, &format!("/_emulator/railway/services/{id}/crash"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(state(&env).await["services"][0]["status"], "CRASHED");
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 503);
    assert_eq!(runtime(&env, &domain, Method::GET, "/convos/status", None, None).await.status(), 502);

    // A redeploy recovers; sleeping is undone by a request to the domain.
    gql(
        &env,
        "mutation($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
        json!({"s": id, "e": ENVIRONMENT}),
    )
    .await;
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 200);
    let r = env.control(Method::POST, "/_emulator/railway/services/convos-agent-c/sleep", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(state(&env).await["services"][0]["status"], "SLEEPING");
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 200);
    assert_eq!(state(&env).await["services"][0]["status"], "SUCCESS");

    let r = env.control(Method::POST, "/_emulator/railway/fail-next", Some(json!({"count": 1}))).await;
    assert_eq!(r.status(), 200);
    gql(
        &env,
        "mutation($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
        json!({"s": id, "e": ENVIRONMENT}),
    )
    .await;
    assert_eq!(state(&env).await["services"][0]["status"], "FAILED");
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 503);
    gql(
        &env,
        "mutation($s: String!, $e: String!) { serviceInstanceRedeploy(serviceId: $s, environmentId: $e) }",
        json!({"s": id, "e": ENVIRONMENT}),
    )
    .await;
    assert_eq!(state(&env).await["services"][0]["status"], "SUCCESS");
    assert_eq!(
        env.control(Method::POST, "/_emulator/railway/services/missing/crash", None).await.status(),
        404
    );
}

#[tokio::test]
async fn a_volume_outlives_a_service_deleted_first_and_names_may_repeat() {
    let env = start().await;
    let first = create_service(&env, "convos-agent-d").await;
    let second = create_service(&env, "convos-agent-d").await;
    assert_ne!(first, second, "Railway does not enforce unique names");
    let volume = create_volume(&env, &first).await;
    let msg = gql_error(
        &env,
        "mutation($input: VolumeCreateInput!) { volumeCreate(input: $input) { id } }",
        json!({"input": {"projectId": PROJECT, "environmentId": ENVIRONMENT, "serviceId": first, "mountPath": "/data"}}),
    )
    .await;
    assert!(msg.contains("already has a volume"), "{msg}");
    patch(&env, &first, json!({"SECRET_THING": {"value": "do-not-show"}})).await;
    let dump = state(&env).await;
    assert_eq!(dump["services"][0]["variables"], json!(["SECRET_THING"]));
    assert!(!dump.to_string().contains("do-not-show"), "values never appear in the dump");

    assert_eq!(
        gql(&env, "mutation($id: String!) { serviceDelete(id: $id) }", json!({"id": first})).await["serviceDelete"],
        true
    );
    let dump = state(&env).await;
    assert_eq!(dump["services"].as_array().unwrap().len(), 1);
    assert_eq!(dump["volumes"][0]["id"], volume);
    assert_eq!(dump["volumes"][0]["orphaned"], true);
    let data = gql(&env, LISTING, json!({"id": PROJECT})).await;
    assert_eq!(data["project"]["volumes"]["edges"][0]["node"]["id"], volume);
    assert_eq!(data["project"]["services"]["edges"].as_array().unwrap().len(), 1);

    assert_eq!(
        gql_error(&env, "mutation($id: String!) { serviceDelete(id: $id) }", json!({"id": first})).await,
        "Service not found"
    );
    gql(&env, "mutation($v: String!) { volumeDelete(volumeId: $v) }", json!({"v": volume})).await;
    assert_eq!(
        gql_error(&env, "mutation($v: String!) { volumeDelete(volumeId: $v) }", json!({"v": volume})).await,
        "Volume not found"
    );
    assert!(state(&env).await["volumes"].as_array().unwrap().is_empty());
    assert_eq!(counter(&env, "railway.serviceCreate").await, 2);
    assert_eq!(counter(&env, "railway.volumeDelete").await, 2);
}

#[tokio::test]
async fn faults_apply_per_operation_and_reset_clears_railway() {
    let env = start().await;
    env.add_fault(json!({"route": "railway.serviceCreate", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 3}})).await;
    let resp = gql_with(
        &env,
        TOKEN,
        "mutation { serviceCreate(input: {projectId: \"emulator-project\", name: \"x\"}) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    // Other operations are not affected; the fault is used up.
    gql(&env, "{ project(id: \"emulator-project\") { id } }", json!({})).await;
    create_service(&env, "x").await;
    assert_eq!(counter(&env, "railway.serviceCreate").await, 2);
    assert_eq!(counter(&env, "railway.project").await, 1);

    let resp = env.control(Method::POST, "/_emulator/reset", None).await;
    assert_eq!(resp.status(), 200);
    let dump = state(&env).await;
    assert!(dump["services"].as_array().unwrap().is_empty());
    assert_eq!(dump["config"]["deployMs"], 30_000);
}
