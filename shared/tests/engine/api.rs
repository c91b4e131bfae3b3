//! Every route through the handler the Lambda functions run, fed API Gateway HTTP API (v2)
//! events as AWS sends them: auth, each 4xx, the 202 poll flows, and no secret in any answer.

use std::time::Duration;

use http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use shared::api::{Api, Route};
use shared::store::Status;
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;

use crate::harness::{Options, Pool, eventually, pool, pool_with, test_settings};

pub(crate) const KEY: &str = crate::harness::API_KEY;

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
}

fn api(pool: &Pool) -> Api {
    pool.api.clone()
}

/// An API Gateway v2 event, shaped as in events/*.json.
fn event(
    method: &str,
    target: &str,
    key: Option<&str>,
    body: Option<&str>,
    base64: bool,
) -> lambda_http::Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = json!({ "content-type": "application/json", "user-agent": "api-test" });
    if let Some(key) = key {
        headers["authorization"] = json!(format!("Bearer {key}"));
    }
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "api-test" },
            "requestId": "req-1",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "21/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_262_400_000u64,
        },
        "body": body,
        "isBase64Encoded": base64,
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 event")
}

/// Sends a request to the function API Gateway would route it to (`$default` -> healthz).
pub(crate) async fn send(
    api: &Api,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    to_answer(
        shared::lambda::http(api, function_for(method, path), event(method, target, key, body, false)).await,
    )
}

/// API Gateway's choice: the route of the path and method; the ANY route of a known path goes
/// to one of its functions; unknown paths to `$default`.
fn function_for(method: &str, path: &str) -> Route {
    let fits = |pattern: &str| {
        let (want, have): (Vec<_>, Vec<_>) = (pattern.split('/').collect(), path.split('/').collect());
        want.len() == have.len()
            && want.iter().zip(&have).all(|(w, h)| w == h || (*w == "{id}" && !h.is_empty()))
    };
    let on_path: Vec<(Route, bool)> = Route::ALL
        .iter()
        .flat_map(|route| {
            route.patterns().filter(|(_, p)| fits(p)).map(move |(m, _)| (*route, m.as_str() == method))
        })
        .collect();
    on_path.iter().find(|(_, same)| *same).or(on_path.first()).map_or(Route::Healthz, |(route, _)| *route)
}

fn to_answer(response: lambda_http::Response<lambda_http::Body>) -> Answer {
    let (parts, body) = response.into_parts();
    let text = match body {
        lambda_http::Body::Text(text) => text,
        lambda_http::Body::Binary(bytes) => String::from_utf8(bytes).unwrap(),
        _ => String::new(),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status: parts.status, headers: parts.headers, body, text }
}

pub(crate) async fn get(api: &Api, path: &str) -> Answer {
    send(api, "GET", path, Some(KEY), None).await
}

#[sqlx::test(migrations = "../migrations")]
async fn public_routes_answer_without_a_key(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);

    let health = send(&api, "GET", "/healthz", None, None).await;
    assert_eq!((health.status, health.body.clone()), (StatusCode::OK, json!({ "ok": true })));
    assert_eq!(health.headers["content-type"], "application/json");

    let version = send(&api, "GET", "/version", None, None).await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(version.body["environment"], "dev");
    let commit = version.body["commit"].as_str().unwrap();
    assert!(!commit.is_empty() && version.body["version"].as_str().unwrap().ends_with(commit));

    // The OpenAPI document, through its own function as API Gateway routes it (issue 16.4).
    let openapi = send(&api, "GET", "/openapi.json", None, None).await;
    assert_eq!(openapi.status, StatusCode::OK, "{}", openapi.text);
    assert_eq!(openapi.headers["content-type"], "application/json");
    assert_eq!(openapi.body["openapi"], "3.1.0");
    assert!(openapi.body["paths"]["/api/pool/claim"]["post"]["responses"]["200"].is_object());

    let counts = send(&api, "GET", "/api/pool/counts", None, None).await;
    assert_eq!(counts.status, StatusCode::OK);
    for status in Status::ALL {
        assert_eq!(counts.body[status.as_str()], 0, "{}", counts.text);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn every_other_route_refuses_a_missing_or_wrong_key(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let wrong_keys = [None, Some("wrong"), Some("test-pool-key-0123456788"), Some("")];
    for route in Route::ALL.iter().filter(|r| r.needs_key()) {
        for (method, pattern) in route.patterns() {
            let path = pattern.replace("{id}", "some-id");
            for key in wrong_keys {
                let answer = send(&api, method.as_str(), &path, key, Some("{}")).await;
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
                assert_eq!(answer.body["error"], "missing or wrong API key");
                assert_eq!(answer.headers["www-authenticate"], "Bearer");
            }
        }
    }
    // The scheme is "Bearer " exactly; a raw key is not accepted.
    let mut request = event("GET", "/api/pool/status", None, None, false);
    request.headers_mut().insert("authorization", KEY.parse().unwrap());
    let answer = to_answer(shared::lambda::http(&api, Route::Status, request).await);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = "../migrations")]
async fn wrong_methods_unknown_paths_misrouted_events_and_big_bodies(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);

    let answer = send(&api, "PUT", "/api/pool/instances/abc", Some(KEY), None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers["allow"], "GET, DELETE");
    assert_eq!(answer.body["error"], "method not allowed");
    let answer = send(&api, "GET", "/api/pool/claim", Some(KEY), None).await;
    assert_eq!(
        (answer.status, answer.headers["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );

    let answer = send(&api, "GET", "/api/pool/nothing-here", Some(KEY), None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["error"], "route not found");

    // A claim event that reaches the status function (a mis-wired route) does not run.
    let request = event("POST", "/api/pool/claim", Some(KEY), Some("{}"), false);
    let answer = to_answer(shared::lambda::http(&api, Route::Status, request).await);
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let big = json!({ "agentName": "a", "instructions": "x".repeat(300 * 1024) }).to_string();
    let answer = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(&big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.body["error"].as_str().unwrap().contains("262144"));

    for path in ["/api/pool/instances/nope", "/api/pool/debug/nope"] {
        assert_eq!(get(&api, path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    // The id is percent-decoded; a trailing slash is ignored, as express ignored it.
    let answer = get(&api, "/api/pool/instances/no%20pe").await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("instance not found"))
    );
    assert_eq!(send(&api, "GET", "/healthz/", None, None).await.status, StatusCode::OK);
    for path in ["/api/pool/instances/nope", "/api/pool/instances/nope/destroy", "/api/pool/crashed/nope"] {
        let answer = send(&api, "DELETE", path, Some(KEY), None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.body["error"], "instance not found");
    }
    let answer = get(&api, "/api/pool/claims/not-a-uuid").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = get(&api, "/api/pool/claims/6f1c2a0e-4d7b-4f59-9a63-2b8f0f2c1d11").await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("claim not found"))
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_fields_are_named_in_a_400(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let cases = [
        ("/api/pool/claim", r#"{"instructions": "hi"}"#, "agentName"),
        ("/api/pool/claim", r#"{"agentName": 7, "instructions": "hi"}"#, "agentName"),
        ("/api/pool/claim", r#"{"agentName": "a"}"#, "instructions"),
        (
            "/api/pool/claim",
            r#"{"agentName": "a", "instructions": "hi", "joinUrl": "https://popup.convos.org/v2?i=x"}"#,
            "joinUrl",
        ),
        ("/api/pool/claim", "not json", "body"),
        ("/api/pool/claim", "[1]", "body"),
        ("/api/pool/replenish", r#"{"count": 0}"#, "count"),
        ("/api/pool/replenish", r#"{"count": 21}"#, "count"),
        ("/api/pool/replenish", r#"{"count": "3"}"#, "count"),
        ("/api/pool/replenish", r#"{"count": 2.5}"#, "count"),
        ("/api/pool/drain", "", "count"),
        ("/api/pool/drain", r#"{"count": -1}"#, "count"),
    ];
    for (path, body, field) in cases {
        let answer = send(&api, "POST", path, Some(KEY), Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", answer.text);
        assert_eq!(answer.body["field"], field, "{path} {body}");
        assert!(answer.body["error"].as_str().unwrap().starts_with(field), "{}", answer.text);
    }
    assert_eq!(pool.store.instances().await.unwrap().len(), 0, "nothing was started");
}

/// Text a reader or the database would take for something else: a 400 naming the field, never
/// a 500 and never stored (issue 14, low items).
#[sqlx::test(migrations = "../migrations")]
async fn hostile_text_is_a_400_naming_its_field(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let invite = sprites_emulator::mint_invite_url("dev");
    let rest = invite.strip_prefix("https://dev.convos.org").expect("a dev invite");
    let claim = |agent: &str, instructions: &str, join: Option<String>| {
        serde_json::json!({ "agentName": agent, "instructions": instructions, "joinUrl": join }).to_string()
    };
    let cases = [
        (claim("a", "hi\u{0}there", None), "instructions"),
        (claim("a\u{0}", "hi", None), "agentName"),
        (claim("evil\u{202e}gnp.exe", "hi", None), "agentName"),
        (claim("zero\u{200b}width", "hi", None), "agentName"),
        (claim("a", "hi", Some(format!("{invite}\u{0}"))), "joinUrl"),
        (claim("a", "hi", Some(format!("https://evil@dev.convos.org{rest}"))), "joinUrl"),
        (claim("a", "hi", Some(format!("https://dev%2Econvos.org{rest}"))), "joinUrl"),
        (claim("a", "hi", Some(format!("https://dev.convos.org:8443{rest}"))), "joinUrl"),
    ];
    for (body, field) in &cases {
        let answer = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert_eq!(answer.body["field"], *field, "{body}");
    }
    for (method, path) in [
        ("GET", "/api/pool/claims/%00"),
        ("DELETE", "/api/pool/instances/%00"),
        ("DELETE", "/api/pool/instances/ab%00cd/destroy"),
    ] {
        let answer = send(&api, method, path, Some(KEY), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {path}: {}", answer.text);
        assert_eq!(answer.body["field"], "id", "{method} {path}");
    }
    // What is kept and forwarded is the URL as parsed, not as sent.
    let shouted = format!("https://DEV.Convos.org{rest}");
    let request = shared::engine::ClaimRequest::new(
        "a".into(),
        "hi".into(),
        Some(shouted),
        shared::config::PoolEnvironment::Dev,
    )
    .unwrap();
    assert_eq!(request.join_url.as_deref(), Some(invite.as_str()));
    let claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM claims").fetch_one(pool.store.pool()).await.unwrap();
    assert_eq!(claims, 0, "nothing refused was stored");
}

#[sqlx::test(migrations = "../migrations")]
async fn claim_hands_out_an_invite_and_no_answer_carries_a_secret(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let claim_body =
        r#"{"agentName": "tokyo-trip-planner", "instructions": "You are a helpful trip planner for Tokyo."}"#;

    let empty = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(claim_body)).await;
    assert_eq!(empty.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(empty.headers["retry-after"], "30");
    // The message and the header name the same wait (issue 16.6).
    assert_eq!(empty.body["error"], "No idle instances available. Try again in 30 seconds.");

    let started = send(&api, "POST", "/api/pool/replenish", Some(KEY), Some(r#"{"count": 2}"#)).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert_eq!((started.body["ok"].clone(), started.body["created"].clone()), (json!(true), json!(2)));
    pool.settled_idle(2).await;

    let claimed = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(claim_body)).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.text);
    let id = claimed.body["instanceId"].as_str().unwrap().to_string();
    assert!(claimed.body["inviteUrl"].as_str().unwrap().starts_with("https://dev.convos.org/"));
    assert!(claimed.body["conversationId"].is_string());
    assert_eq!(claimed.body["joined"], false);
    assert_eq!(claimed.body["status"], "created");
    assert_eq!(claimed.body["agentName"], "tokyo-trip-planner");
    // What the Railway pool's claim answered too (issue 16.6): the invite's slug, the
    // instance's gateway URL and token, and the waiting flag beside `status`.
    let instance = pool.instance(&id).await.unwrap();
    let token = instance.gateway_token.expose_secret().to_string();
    assert_eq!(claimed.body["gatewayToken"], token.as_str());
    assert_eq!(claimed.body["gatewayUrl"], instance.url.as_deref().unwrap());
    let invite = claimed.body["inviteUrl"].as_str().unwrap();
    let slug = claimed.body["inviteSlug"].as_str().unwrap();
    assert!(!slug.is_empty() && invite.ends_with(&format!("?i={slug}")), "{invite} / {slug}");
    assert_eq!(claimed.body["waitingForAcceptance"], false);
    let claim_status =
        get(&api, &format!("/api/pool/claims/{}", claimed.body["claimId"].as_str().unwrap())).await;
    assert_eq!(claim_status.body["inviteSlug"], slug);
    assert!(claim_status.body.get("gatewayToken").is_none(), "{}", claim_status.text);

    let agents = get(&api, "/api/pool/agents").await;
    assert_eq!(agents.body["agents"][0]["instanceId"], id.as_str());
    assert_eq!(agents.body["agents"][0]["instructions"], "You are a helpful trip planner for Tokyo.");
    let ids = send(&api, "DELETE", "/api/pool/instances", Some(KEY), None).await;
    assert_eq!(ids.body, json!({ "ids": [id] }));
    let status = get(&api, "/api/pool/status").await;
    assert_eq!(status.body["counts"]["claimed"], 1);
    assert_eq!(status.body["instances"].as_array().unwrap().len(), 2, "one idle, one claimed");
    assert_eq!(status.body["poolId"], pool.store.pool_id().await.unwrap().as_str(), "issue 14.1");
    let detail = get(&api, &format!("/api/pool/instances/{id}")).await;
    assert_eq!(detail.body["status"], "claimed");
    assert!(
        detail.body["events"].as_array().unwrap().iter().any(|e| e["toStatus"] == "claimed"),
        "{}",
        detail.text
    );
    let debug = get(&api, &format!("/api/pool/debug/{id}")).await;
    assert_eq!(debug.status, StatusCode::OK, "{}", debug.text);
    assert_eq!(debug.body["gateway"]["ready"], true);
    assert!(debug.body["machine"]["services"].is_array(), "{}", debug.text);
    let counts = send(&api, "GET", "/api/pool/counts", None, None).await;

    // The claim's own answer is the one that carries the token.
    for answer in [&claim_status, &agents, &ids, &status, &detail, &debug, &counts] {
        assert!(!answer.text.contains(&token), "a gateway token leaked: {}", answer.text);
        assert!(!answer.text.contains(KEY), "the API key leaked");
        assert!(!answer.text.contains(crate::harness::ANTHROPIC_KEY), "the Anthropic key leaked");
    }
    assert!(!claimed.text.contains(KEY) && !claimed.text.contains(crate::harness::ANTHROPIC_KEY));
}

/// Every key of every object in `value`, nested ones included, is camelCase (issue 16.6).
fn assert_camel_case(route: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                assert!(!key.contains('_') && !key.contains('-'), "{route}: key {key:?} is not camelCase");
                assert_camel_case(route, inner);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| assert_camel_case(route, item)),
        _ => {}
    }
}

/// A replenish that creates fewer than asked says why (issue 16.6), and the reports the
/// operator routes answer are camelCase through and through.
#[sqlx::test(migrations = "../migrations")]
async fn a_replenish_says_why_it_created_nothing_and_every_answer_is_camel_case(db: PgPool) {
    let mut settings = test_settings();
    settings.min_idle = 1;
    settings.max_total = 2;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let api = api(&pool);
    let replenish = |body: Option<&'static str>| {
        let api = api.clone();
        async move { send(&api, "POST", "/api/pool/replenish", Some(KEY), body).await }
    };

    // `2.0` is the number 2 in JSON (schemathesis sends it as a valid integer).
    let two = replenish(Some(r#"{"count": 2.0}"#)).await;
    assert_eq!(
        (two.status, two.body["created"].clone(), two.body["reason"].clone()),
        (StatusCode::OK, json!(2), Value::Null)
    );
    let capped = replenish(Some(r#"{"count": 1}"#)).await;
    assert_eq!(capped.body["created"], 0, "{}", capped.text);
    let why = capped.body["reason"].as_str().unwrap_or_else(|| panic!("no reason: {}", capped.text));
    assert!(why.contains("POOL_MAX_TOTAL (2)") && why.contains("0 of 1"), "{why}");
    let topped = replenish(None).await;
    assert_eq!(topped.body["created"], 0, "{}", topped.text);
    let why = topped.body["reason"].as_str().unwrap_or_else(|| panic!("no reason: {}", topped.text));
    assert!(why.contains("POOL_MIN_IDLE (1)"), "{why}");

    pool.settled_idle(2).await;
    let reconcile = send(&api, "POST", "/api/pool/reconcile", Some(KEY), None).await;
    assert_eq!(reconcile.status, StatusCode::OK, "{}", reconcile.text);
    let report = &reconcile.body["report"];
    for key in ["rowsRemoved", "markedCrashed", "sentToDestroy", "orphansDeleted", "orphansWaiting"] {
        assert!(report[key].is_array(), "{key}: {}", reconcile.text);
    }
    assert!(report["resources"]["keysUnrecognised"]["count"].is_u64(), "{}", reconcile.text);
    let id = pool.store.instances().await.unwrap()[0].id.clone();
    let answers = [
        ("replenish", two.body),
        ("reconcile", reconcile.body),
        ("status", get(&api, "/api/pool/status").await.body),
        ("instance", get(&api, &format!("/api/pool/instances/{id}")).await.body),
        ("events", get(&api, "/api/pool/events").await.body),
        ("agents", get(&api, "/api/pool/agents").await.body),
        ("version", get(&api, "/version").await.body),
    ];
    for (route, body) in &answers {
        assert!(body.is_object(), "{route}: {body}");
        assert_camel_case(route, body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_slow_join_answers_202_and_its_status_url_reports_the_end(db: PgPool) {
    let mut settings = test_settings();
    settings.claim_wait = Duration::from_millis(300);
    let emulator = EmulatorConfig { speed: 0.001, join_delay_ms: 1_500_000, ..EmulatorConfig::default() };
    let pool = pool_with(db, Options { settings, emulator, ..Options::default() }).await;
    let api = api(&pool);
    pool.provision(1).await;

    let body = serde_json::json!({
        "agentName": "joiner",
        "instructions": "hi",
        "joinUrl": sprites_emulator::mint_invite_url("dev"),
    })
    .to_string();
    let accepted = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(&body)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "pending");
    assert_eq!(accepted.body["waitingForAcceptance"], false);
    let url = accepted.body["statusUrl"].as_str().unwrap().to_string();
    assert_eq!(accepted.headers["location"], url.as_str());
    assert!(url.starts_with("/api/pool/claims/"));

    let pending = get(&api, &url).await;
    assert_eq!((pending.status, pending.body["status"].as_str()), (StatusCode::OK, Some("pending")));
    let done = eventually("the join to finish", Duration::from_secs(10), || async {
        let answer = get(&api, &url).await;
        (answer.body["status"] != "pending").then_some(answer)
    })
    .await;
    assert_eq!(done.body["status"], "joined", "{}", done.text);
    assert_eq!(done.body["joined"], true);
    assert_eq!(done.body["instanceId"], accepted.body["instanceId"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn recycle_and_destroy_answer_202_and_the_instance_route_follows_them(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let ids: Vec<String> = pool.provision(2).await.into_iter().map(|i| i.id).collect();
    let claim = r#"{"agentName": "a", "instructions": "b"}"#;
    let claimed = send(&api, "POST", "/api/pool/claim", Some(KEY), Some(claim)).await;
    let id = claimed.body["instanceId"].as_str().unwrap().to_string();

    let recycle = send(&api, "DELETE", &format!("/api/pool/instances/{id}"), Some(KEY), None).await;
    assert_eq!(recycle.status, StatusCode::ACCEPTED, "{}", recycle.text);
    assert_eq!(recycle.body["status"], "recycling");
    let url = recycle.body["statusUrl"].as_str().unwrap().to_string();
    let idle = eventually("the recycle to finish", Duration::from_secs(10), || async {
        let answer = get(&api, &url).await;
        (answer.body["status"] == "idle").then_some(answer)
    })
    .await;
    assert!(
        idle.body["events"].as_array().unwrap().iter().any(|e| e["reason"] == "recycle"),
        "{}",
        idle.text
    );

    let other = ids.iter().find(|i| **i != id).unwrap();
    let destroy = send(&api, "DELETE", &format!("/api/pool/crashed/{other}"), Some(KEY), None).await;
    assert_eq!((destroy.status, destroy.body["status"].as_str()), (StatusCode::ACCEPTED, Some("destroying")));
    eventually("the row to go", Duration::from_secs(10), || async {
        (get(&api, &format!("/api/pool/instances/{other}")).await.status == StatusCode::NOT_FOUND)
            .then_some(())
    })
    .await;

    // Drained, the instance is past recycling.
    let drained = send(&api, "POST", "/api/pool/drain", Some(KEY), Some(r#"{"count": 5}"#)).await;
    assert_eq!((drained.body["ok"].clone(), drained.body["drained"].clone()), (json!(true), json!(1)));
    let again = send(&api, "DELETE", &format!("/api/pool/instances/{id}"), Some(KEY), None).await;
    assert!(matches!(again.status, StatusCode::CONFLICT | StatusCode::NOT_FOUND), "{}", again.text);

    let reconcile = send(&api, "POST", "/api/pool/reconcile", Some(KEY), None).await;
    assert_eq!(reconcile.status, StatusCode::OK, "{}", reconcile.text);
    assert_eq!(reconcile.body["ok"], true);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_base64_body_is_read_as_sent(db: PgPool) {
    use base64::Engine as _;
    let pool = pool(db).await;
    let api = api(&pool);
    let body = base64::engine::general_purpose::STANDARD.encode(r#"{"count": 1}"#);
    let request = event("POST", "/api/pool/replenish", Some(KEY), Some(&body), true);
    let answer = to_answer(shared::lambda::http(&api, Route::Replenish, request).await);
    assert_eq!(
        (answer.status, answer.body["created"].clone()),
        (StatusCode::OK, json!(1)),
        "{}",
        answer.text
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_page_is_public_self_contained_and_keyless(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let page = send(&api, "GET", "/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(!page.text.contains(KEY), "the page never carries the key");
    assert!(page.text.contains("<html"), "{}", page.text);

    // Issue 14: no inline script runs; the page's one script is a file of this origin.
    assert!(
        policy.contains("script-src 'self';") && !policy.contains("script-src 'unsafe-inline'"),
        "{policy}"
    );
    assert_eq!(page.text.matches("<script").count(), 1, "{}", page.text);
    assert!(page.text.contains(r#"<script src="/dashboard.js"></script>"#));
    let script = send(&api, "GET", "/dashboard.js", None, None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(script.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(script.headers["x-content-type-options"], "nosniff");
    assert!(script.text.contains("\"use strict\"") && !script.text.contains(KEY), "{}", script.text);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_feed_lists_events_and_agents_carry_a_qr_code_of_their_invite(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    pool.provision(1).await;
    let claim = r#"{"agentName": "qr", "instructions": "x"}"#;
    assert_eq!(send(&api, "POST", "/api/pool/claim", Some(KEY), Some(claim)).await.status, StatusCode::OK);

    // The QR code comes from the agent's own route now (issue 14), not inline in the list.
    let agents = get(&api, "/api/pool/agents").await;
    assert!(agents.body["agents"][0].get("inviteQrSvg").is_none(), "{}", agents.text);
    let id = agents.body["agents"][0]["instanceId"].as_str().unwrap();
    let qr = get(&api, &format!("/api/pool/agents/{id}/qr")).await;
    assert_eq!(qr.status, StatusCode::OK, "{}", qr.text);
    assert_eq!(qr.headers["content-type"], "image/svg+xml");
    assert!(qr.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let svg = qr.text.as_str();
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    let invite = agents.body["agents"][0]["inviteUrl"].as_str().unwrap();
    assert!(!svg.contains(invite), "the URL is drawn, not written");

    let feed = get(&api, "/api/pool/events?limit=3").await;
    let events = feed.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{}", feed.text);
    assert_eq!(events[0]["toStatus"], "claimed", "newest first");
    assert!(events[0]["id"].as_i64() > events[1]["id"].as_i64());
    for bad in ["0", "501", "ten"] {
        let answer = get(&api, &format!("/api/pool/events?limit={bad}")).await;
        assert_eq!((answer.status, answer.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
    }
}

/// Issue 14 (low): the debug route answers within its function's 10 s timeout even when every
/// probe hangs; the probes run at once and the unfinished ones say so.
#[sqlx::test(migrations = "../migrations")]
async fn the_debug_route_answers_within_its_budget_when_probes_hang(db: PgPool) {
    let pool = pool(db).await;
    let api = api(&pool);
    let instance = pool.provision(1).await.pop().unwrap();
    for route in ["exec", "exec.http"] {
        let fault = json!({ "route": route, "sprite": instance.sprite_name, "kind": { "type": "hang" } });
        pool.emulator.fault(fault).await;
    }
    let started = std::time::Instant::now();
    let debug = get(&api, &format!("/api/pool/debug/{}", instance.id)).await;
    let took = started.elapsed();
    assert_eq!(debug.status, StatusCode::OK, "{}", debug.text);
    assert!(took < Duration::from_secs(9), "answered after {took:?}");
    for probe in ["processes", "listeningPorts", "localGateway", "configPresent"] {
        assert_eq!(
            debug.body["machine"][probe]["error"], "did not finish within the debug budget",
            "{probe}: {}",
            debug.text
        );
    }
    assert_eq!(debug.body["gateway"]["ready"], true, "the gateway still answered");
}
