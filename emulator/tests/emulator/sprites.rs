use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{json, start};

#[tokio::test]
async fn create_get_update_delete_codes_and_bodies() {
    let env = start().await;
    let created = env.create_sprite("alpha-1").await;
    assert_eq!(created["name"], "alpha-1");
    assert_eq!(created["status"], "cold");
    assert_eq!(created["url_settings"]["auth"], "sprite");
    assert_eq!(created["url"], format!("{}/_sprite/alpha-1", env.base));
    assert!(created["id"].as_str().unwrap().starts_with("sprite-"));
    assert!(
        time::OffsetDateTime::parse(
            created["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );

    let dup = env.post("/v1/sprites", json!({"name": "alpha-1"})).await;
    assert_eq!(dup.status(), 409);
    assert_eq!(json(dup).await, json!({"error": "sprite already exists"}));

    let long = "a".repeat(64);
    for bad in ["Upper", "has_underscore", "", long.as_str(), "dot.name"] {
        let resp = env.post("/v1/sprites", json!({"name": bad})).await;
        assert_eq!(resp.status(), 400, "name {bad:?}");
        let body = json(resp).await;
        assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }
    let ok63 = "b".repeat(63);
    assert_eq!(env.post("/v1/sprites", json!({"name": ok63})).await.status(), 201);
    let not_json = env.req(Method::POST, "/v1/sprites").body("{nope").send().await.unwrap();
    assert_eq!(not_json.status(), 400);

    let got = env.get("/v1/sprites/alpha-1").await;
    assert_eq!(got.status(), 200);
    assert_eq!(json(got).await["id"], created["id"]);

    let missing = env.get("/v1/sprites/nope").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(json(missing).await, json!({"error": "sprite not found"}));

    let updated =
        env.put("/v1/sprites/alpha-1", json!({"url_settings": {"auth": "public"}, "labels": ["x"]})).await;
    assert_eq!(updated.status(), 200);
    let updated = json(updated).await;
    assert_eq!(updated["url_settings"]["auth"], "public");
    assert_eq!(updated["labels"], json!(["x"]));
    assert_eq!(updated["name"], "alpha-1");
    // Partial update: labels stay when only url_settings change.
    let again = json(env.put("/v1/sprites/alpha-1", json!({"url_settings": {"auth": "sprite"}})).await).await;
    assert_eq!(again["labels"], json!(["x"]));
    assert_eq!(env.put("/v1/sprites/nope", json!({})).await.status(), 404);

    let del = env.delete("/v1/sprites/alpha-1").await;
    assert_eq!(del.status(), 204);
    assert!(del.bytes().await.unwrap().is_empty());
    let del2 = env.delete("/v1/sprites/alpha-1").await;
    assert_eq!(del2.status(), 404);
    assert_eq!(json(del2).await["error"], "sprite not found");
    assert_eq!(env.get("/v1/sprites/alpha-1").await.status(), 404);
}

async fn names(env: &crate::common::Env, query: &str) -> Value {
    let resp = env.get(&format!("/v1/sprites?{query}")).await;
    assert_eq!(resp.status(), 200);
    json(resp).await
}

fn page_names(page: &Value) -> Vec<String> {
    page["sprites"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn list_paginates_past_fifty_with_prefix_and_clamp() {
    let env = start().await;
    // Created out of order to prove the list is sorted by name.
    for i in (0..55).rev() {
        env.create_sprite(&format!("pool-{i:03}")).await;
    }
    for i in 0..3 {
        env.create_sprite(&format!("other-{i}")).await;
    }

    let first = names(&env, "prefix=pool-").await;
    let first_names = page_names(&first);
    assert_eq!(first_names.len(), 50, "default page size is 50");
    assert_eq!(first_names[0], "pool-000");
    assert_eq!(first_names[49], "pool-049");
    assert_eq!(first["has_more"], true);
    let token = first["next_continuation_token"].as_str().unwrap().to_string();

    let second = names(&env, &format!("prefix=pool-&continuation_token={token}")).await;
    assert_eq!(page_names(&second), (50..55).map(|i| format!("pool-{i:03}")).collect::<Vec<_>>());
    assert_eq!(second["has_more"], false);
    assert!(second["next_continuation_token"].is_null());

    let clamped = names(&env, "prefix=pool-&max_results=100").await;
    assert_eq!(page_names(&clamped).len(), 50, "max_results clamps to 50");
    let small = names(&env, "prefix=pool-&max_results=0").await;
    assert_eq!(page_names(&small).len(), 1, "max_results clamps up to 1");
    let three = names(&env, "prefix=pool-&max_results=3").await;
    assert_eq!(page_names(&three), vec!["pool-000", "pool-001", "pool-002"]);

    let others = names(&env, "prefix=other-").await;
    assert_eq!(page_names(&others), vec!["other-0", "other-1", "other-2"]);
    assert_eq!(others["has_more"], false);

    let all = names(&env, "").await;
    assert_eq!(page_names(&all)[0], "other-0");
    assert_eq!(all["has_more"], true);
    assert_eq!(env.get("/v1/sprites?max_results=x").await.status(), 400);
}

#[tokio::test]
async fn bearer_token_is_required_everywhere() {
    let env = start().await;
    env.create_sprite("locked").await;
    for (method, path) in [
        (Method::GET, "/v1/sprites"),
        (Method::POST, "/v1/sprites"),
        (Method::GET, "/v1/sprites/locked"),
        (Method::DELETE, "/v1/sprites/locked"),
        (Method::GET, "/v1/sprites/locked/exec"),
        (Method::GET, "/v1/sprites/locked/checkpoints"),
        (Method::GET, "/v1/sprites/locked/services"),
    ] {
        let none = env.http.request(method.clone(), env.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        assert_eq!(json(none).await, json!({"error": "unauthorized"}));
        let wrong = env
            .http
            .request(method.clone(), env.url(path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
    }
    // The sprite survived the unauthenticated DELETE.
    assert_eq!(env.get("/v1/sprites/locked").await.status(), 200);

    // The WebSocket upgrade is refused too.
    let url = format!("{}/v1/sprites/locked/exec?cmd=true", env.base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("expected a 401 handshake, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn network_policy_defaults_and_updates() {
    let env = start().await;
    env.create_sprite("pol").await;
    let got = json(env.get("/v1/sprites/pol/policy/network").await).await;
    assert_eq!(got, json!({"rules": []}));
    let rules = json!({"rules": [{"include": "defaults"}, {"domain": "example.com", "action": "deny"}]});
    let set = env.post("/v1/sprites/pol/policy/network", rules.clone()).await;
    assert_eq!(set.status(), 204);
    assert_eq!(json(env.get("/v1/sprites/pol/policy/network").await).await, rules);
    let bad = env.post("/v1/sprites/pol/policy/network", json!({"rules": [{"domain": "x.com"}]})).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn handle_reports_its_address_and_shutdown_stops_serving() {
    let env = start().await;
    assert_eq!(env.base, format!("http://{}", env.emu.addr()));
    assert!(env.emu.base_url().starts_with("http://127.0.0.1:"));
    assert!(!env.emu.base_url().ends_with('/'));
    assert_eq!(env.emu.token(), "emulator-token");
    env.create_sprite("bye").await;
    // A long exec must not keep shutdown waiting.
    let _ws = env.ws("bye", &[("cmd", "sleep"), ("cmd", "60")]).await.unwrap();
    let (http, url) = (env.http.clone(), env.url("/v1/sprites"));
    let t = std::time::Instant::now();
    env.emu.shutdown().await;
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert!(http.get(url).send().await.is_err(), "nothing listens any more");
}
