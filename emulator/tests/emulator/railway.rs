//! The Railway emulation over raw HTTP: GraphQL at `/graphql/v2`, the runtime behind each
//! domain at `/_railway/{domain}`, and the `/_emulator/railway/*` controls.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::{Env, eventually, json, start};

const TOKEN: &str = "emulator-railway-token";
const PROJECT: &str = "emulator-project";
const ENVIRONMENT: &str = "emulator-environment";
const POOL_SERVER: &str = "node convos-platform/pool-server/dist/index.js";

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
        "deploy": {"startCommand": POOL_SERVER, "limitOverride": {"containers": {"cpu": 4, "memoryBytes": 4_000_000_000u64}}},
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

/// Deploys `service_id` with `start_command` and variables, as one commit.
async fn deploy_with(env: &Env, service_id: &str, start_command: &str, variables: Value) {
    let svc = json!({
        "source": {"image": "ghcr.io/xmtplabs/convos-runtime@sha256:abc"},
        "deploy": {"startCommand": start_command},
        "variables": variables,
    });
    gql(
        env,
        "mutation($e: String!, $p: EnvironmentConfig!) { environmentPatchCommit(environmentId: $e, patch: $p) }",
        json!({"e": ENVIRONMENT, "p": {"services": {service_id: svc}}}),
    )
    .await;
}

const PAGED: &str = "query($p: String!, $e: String!, $after: String, $vafter: String) {
  project(id: $p) { services(first: 500, after: $after) { edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }
  environment(id: $e) {
    serviceInstances(after: $after) { edges { node { serviceId } } pageInfo { hasNextPage } }
    volumeInstances(first: 2, after: $vafter) { edges { node { volumeId serviceId } } pageInfo { hasNextPage endCursor } }
  }
}";

#[tokio::test]
async fn connections_are_served_a_hundred_at_a_time_with_cursors() {
    let env = start().await;
    let mut ids = Vec::new();
    for i in 0..230 {
        ids.push(create_service(&env, &format!("convos-agent-{i:03}")).await);
    }
    for id in &ids[..3] {
        create_volume(&env, id).await;
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data =
            gql(&env, PAGED, json!({"p": PROJECT, "e": ENVIRONMENT, "after": after, "vafter": null})).await;
        let services = &data["project"]["services"];
        let edges = services["edges"].as_array().unwrap();
        assert!(edges.len() <= 100, "first: 500 still pages at 100");
        seen.extend(edges.iter().map(|e| e["node"]["name"].as_str().unwrap().to_string()));
        pages += 1;
        // The environment's own connection pages the same way without `first`.
        assert!(data["environment"]["serviceInstances"]["edges"].as_array().unwrap().len() <= 100);
        if services["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = services["pageInfo"]["endCursor"].clone();
        assert_eq!(after, edges.last().unwrap()["cursor"]);
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..230).map(|i| format!("convos-agent-{i:03}")).collect();
    assert_eq!(seen, expected, "every service once, in creation order");

    // A smaller page, and the next one after its cursor.
    let data = gql(&env, PAGED, json!({"p": PROJECT, "e": ENVIRONMENT, "after": null, "vafter": null})).await;
    let volumes = &data["environment"]["volumeInstances"];
    assert_eq!(volumes["edges"].as_array().unwrap().len(), 2);
    assert_eq!(volumes["pageInfo"]["hasNextPage"], true);
    let next = volumes["pageInfo"]["endCursor"].clone();
    let data = gql(&env, PAGED, json!({"p": PROJECT, "e": ENVIRONMENT, "after": null, "vafter": next})).await;
    let rest = data["environment"]["volumeInstances"]["edges"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["node"]["serviceId"], ids[2].as_str());
    // A cursor that is not ours is an error; an unknown environment is not found.
    let bad =
        gql_error(&env, PAGED, json!({"p": PROJECT, "e": ENVIRONMENT, "after": "nope", "vafter": null}))
            .await;
    assert!(bad.starts_with("Invalid cursor"), "{bad}");
    let missing =
        gql_error(&env, PAGED, json!({"p": PROJECT, "e": "other", "after": null, "vafter": null})).await;
    assert_eq!(missing, "Environment not found");
}

#[tokio::test]
async fn the_runtime_needs_the_pool_server_start_command() {
    let env = start().await;
    let id = create_service(&env, "convos-agent-cmd").await;
    create_volume(&env, &id).await;
    let domain = create_domain(&env, &id).await;
    // The image's own command: the gateway alone, nothing answers the pool's routes.
    deploy_with(&env, &id, "pnpm start", json!({"GATEWAY_TOKEN": {"value": "t"}})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(state(&env).await["services"][0]["status"], "SUCCESS");
    assert_eq!(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await.status(), 502);
    assert_eq!(runtime(&env, &domain, Method::GET, "/convos/status", Some("t"), None).await.status(), 502);
    // Started with the pool server: ready, and the runtime type comes from RUNTIME_TYPE.
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"GATEWAY_TOKEN": {"value": "t"}, "RUNTIME_TYPE": {"value": "hermes"}}),
    )
    .await;
    let health = json(runtime(&env, &domain, Method::GET, "/pool/health", None, None).await).await;
    assert_eq!(health, json!({"ready": true, "version": "emulated", "runtime": "hermes"}));
    assert_eq!(runtime(&env, &domain, Method::GET, "/convos/status", Some("t"), None).await.status(), 200);
    assert_eq!(state(&env).await["services"][0]["deployments"][1]["startCommand"], POOL_SERVER);
}

async fn agentmail(env: &Env, method: Method, path: &str, key: &str, body: Option<Value>) -> Response {
    let mut req = env.http.request(method, env.url(path)).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_email_handler_needs_a_credential_for_its_inbox() {
    let env = start().await;
    let org = "emulator-agentmail-key";
    let inbox = json(
        agentmail(&env, Method::POST, "/v0/inboxes", org, Some(json!({"username": "convos-agent-mail"})))
            .await,
    )
    .await;
    let inbox_id = inbox["inbox_id"].as_str().unwrap().to_string();
    let id = create_service(&env, "convos-agent-mail").await;
    let domain = create_domain(&env, &id).await;
    let health = |env: &Env| {
        let domain = domain.clone();
        let env_url = env.url(&format!("/_railway/{domain}/pool/health"));
        let http = env.http.clone();
        async move {
            let r = http.get(env_url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // An inbox and no credential: the runtime cannot read its mail and says so.
    deploy_with(&env, &id, POOL_SERVER, json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}})).await;
    let (code, body) = health(&env).await;
    assert_eq!(code, 503);
    assert!(body["error"].as_str().unwrap().contains("missing"), "{body}");
    assert_eq!(state(&env).await["services"][0]["emailCredential"], "missing");

    // A key that opens nothing is no better.
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}, "AGENTMAIL_API_KEY": {"value": "am_made_up"}}),
    )
    .await;
    assert_eq!(health(&env).await.0, 503);
    assert_eq!(state(&env).await["services"][0]["emailCredential"], "invalid");

    // A key scoped to the inbox: minted with the organisation key, shown once, listed without it.
    let path = format!("/v0/inboxes/{inbox_id}/api-keys");
    let r = agentmail(&env, Method::POST, &path, "am_made_up", Some(json!({"name": "k"}))).await;
    assert_eq!(r.status(), 401, "only the organisation key mints keys");
    let key =
        json(agentmail(&env, Method::POST, &path, org, Some(json!({"name": "convos-pool-x"}))).await).await;
    let secret = key["api_key"].as_str().unwrap().to_string();
    assert_eq!(key["inbox_id"], inbox_id.as_str());
    let listed = json(agentmail(&env, Method::GET, &path, org, None).await).await;
    assert_eq!(listed["count"], 1);
    assert!(listed["api_keys"][0].get("api_key").is_none(), "{listed}");
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}, "AGENTMAIL_API_KEY": {"value": secret}}),
    )
    .await;
    assert_eq!(health(&env).await.0, 200);
    assert_eq!(state(&env).await["services"][0]["emailCredential"], "inbox");

    // The organisation key works too (and the state says so); a pool proxy URL works.
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}, "AGENTMAIL_API_KEY": {"value": org}}),
    )
    .await;
    assert_eq!(state(&env).await["services"][0]["emailCredential"], "organization");
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}, "POOL_URL": {"value": "https://pool.example"}}),
    )
    .await;
    assert_eq!(health(&env).await.0, 200);

    // Revoked, or its inbox deleted: the scoped key opens nothing.
    deploy_with(
        &env,
        &id,
        POOL_SERVER,
        json!({"AGENTMAIL_INBOX_ID": {"value": inbox_id}, "AGENTMAIL_API_KEY": {"value": secret}}),
    )
    .await;
    let key_id = key["api_key_id"].as_str().unwrap();
    let r = agentmail(&env, Method::DELETE, &format!("{path}/{key_id}"), org, None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(state(&env).await["services"][0]["emailCredential"], "invalid");
    assert_eq!(health(&env).await.0, 503);
}

#[tokio::test]
async fn volume_creation_is_throttled_and_answers_can_be_lost() {
    let env = start().await;
    let r = env
        .control(
            Method::PUT,
            "/_emulator/railway/config",
            Some(json!({"volumeThrottle": {"limit": 1, "windowMs": 400}})),
        )
        .await;
    assert_eq!(json(r).await["volumeThrottle"], json!({"limit": 1, "windowMs": 400}));
    let a = create_service(&env, "a").await;
    let b = create_service(&env, "b").await;
    create_volume(&env, &a).await;
    let input = json!({"input": {"projectId": PROJECT, "environmentId": ENVIRONMENT, "serviceId": b, "mountPath": "/data"}});
    let q = "mutation($input: VolumeCreateInput!) { volumeCreate(input: $input) { id } }";
    assert_eq!(gql_error(&env, q, input.clone()).await, "You are creating volumes too quickly");
    tokio::time::sleep(Duration::from_millis(450)).await;
    gql(&env, q, input).await;
    env.control(Method::PUT, "/_emulator/railway/config", Some(json!({"volumeThrottle": null}))).await;

    // A lost answer: the domain is made, the edge answers 504 with a page.
    let r = env
        .control(
            Method::POST,
            "/_emulator/railway/lose-answer",
            Some(json!({"field": "serviceDomainCreate"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let resp = gql_with(
        &env,
        TOKEN,
        "mutation($input: ServiceDomainCreateInput!) { serviceDomainCreate(input: $input) { domain } }",
        json!({"input": {"serviceId": a, "environmentId": ENVIRONMENT}}),
    )
    .await;
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().starts_with("<html>"));
    let dump = state(&env).await;
    assert_eq!(dump["services"][0]["domains"].as_array().unwrap().len(), 1, "{dump}");
    assert_eq!(dump["lostAnswers"]["railway.serviceDomainCreate"], 0);
}
