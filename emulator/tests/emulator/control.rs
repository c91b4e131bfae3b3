use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{json, start};

#[tokio::test]
async fn status_fault_with_count_then_normal_service() {
    let env = start().await;
    env.create_sprite("f").await;
    let id = env
        .add_fault(json!({"route": "sprites.get", "count": 1, "kind": {"type": "status", "status": 503, "body": "boom", "retry_after_secs": 2}}))
        .await;
    let first = env.get("/v1/sprites/f").await;
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(first.text().await.unwrap(), "boom");
    assert_eq!(env.get("/v1/sprites/f").await.status(), 200);
    let faults = json(env.control(Method::GET, "/_emulator/faults", None).await).await;
    assert_eq!(faults[0]["id"], id.as_str());
    assert_eq!(faults[0]["count"], 0);
    assert_eq!(faults[0]["hits"], 1);
    let counters = json(env.control(Method::GET, "/_emulator/counters", None).await).await;
    assert_eq!(counters["sprites.get"], 2, "faulted requests count too");
    assert_eq!(counters["sprites.create"], 1);

    // No body given: a JSON error with the reason phrase.
    env.add_fault(json!({"route": "sprites.list", "count": 1, "kind": {"type": "status", "status": 500}}))
        .await;
    let resp = env.get("/v1/sprites").await;
    assert_eq!(resp.status(), 500);
    assert_eq!(json(resp).await["error"], "Internal Server Error");
}

#[tokio::test]
async fn rate_limit_fault_has_headers_and_body() {
    let env = start().await;
    env.add_fault(json!({"route": "sprites.create", "kind": {"type": "rate_limit", "retry_after_secs": 7}}))
        .await;
    let resp = env.post("/v1/sprites", json!({"name": "rl"})).await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["retry-after"], "7");
    assert_eq!(h["x-ratelimit-limit"], "10");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > time::OffsetDateTime::now_utc().unix_timestamp());
    let body = json(resp).await;
    assert_eq!(body["error"], "sprite_creation_rate_limited");
    assert!(body["message"].as_str().unwrap().contains('7'));
    assert_eq!(body["limit"], 10);
    assert_eq!(body["window_seconds"], 60);
    assert_eq!(body["retry_after_seconds"], 7);
    // Unlimited count: still limited, and nothing was created.
    assert_eq!(env.post("/v1/sprites", json!({"name": "rl"})).await.status(), 429);
    env.control(Method::DELETE, "/_emulator/faults", None).await;
    assert_eq!(env.post("/v1/sprites", json!({"name": "rl"})).await.status(), 201);
}

#[tokio::test]
async fn hang_faults_delay_or_never_answer() {
    let env = start().await;
    env.create_sprite("h").await;
    env.add_fault(json!({"route": "sprites.get", "count": 1, "kind": {"type": "hang", "ms": 300}})).await;
    let t = Instant::now();
    assert_eq!(env.get("/v1/sprites/h").await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    env.add_fault(json!({"route": "*", "sprite": "h", "count": 1, "kind": {"type": "hang"}})).await;
    let err = env
        .req(Method::GET, "/v1/sprites/h/services")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(env.get("/v1/sprites/h/services").await.status(), 200, "count used up");
}

#[tokio::test]
async fn probability_zero_sprite_filter_and_wildcard() {
    let env = start().await;
    env.create_sprite("a").await;
    env.create_sprite("b").await;
    env.add_fault(json!({"route": "*", "probability": 0.0, "kind": {"type": "status", "status": 500}})).await;
    for _ in 0..20 {
        assert_eq!(env.get("/v1/sprites/a").await.status(), 200);
    }
    env.control(Method::DELETE, "/_emulator/faults", None).await;
    let id =
        env.add_fault(json!({"route": "*", "sprite": "b", "kind": {"type": "status", "status": 418}})).await;
    assert_eq!(env.get("/v1/sprites/a").await.status(), 200);
    assert_eq!(env.get("/v1/sprites/b").await.status(), 418);
    assert_eq!(env.get("/v1/sprites/b/checkpoints").await.status(), 418);
    let del = env.control(Method::DELETE, &format!("/_emulator/faults/{id}"), None).await;
    assert_eq!(del.status(), 204);
    assert_eq!(env.get("/v1/sprites/b").await.status(), 200);
    assert_eq!(env.control(Method::DELETE, &format!("/_emulator/faults/{id}"), None).await.status(), 404);
    for bad in [
        json!({"route": "nope", "kind": {"type": "hang"}}),
        json!({"route": "sprites.get", "kind": {"type": "exec_text_frames"}}),
        json!({"route": "*", "probability": 2, "kind": {"type": "hang"}}),
        json!({"route": "*", "kind": {"type": "explode"}}),
    ] {
        let r = env.control(Method::POST, "/_emulator/faults", Some(bad.clone())).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn counters_reset_and_config() {
    let env = start().await;
    env.create_sprite("c").await;
    env.get("/v1/sprites/c").await;
    env.exec("c", &["true"]).await;
    env.req(Method::GET, "/v1/sprites/c/fs/list")
        .query(&[("path", "/"), ("workingDir", "/")])
        .send()
        .await
        .unwrap();
    let counters = json(env.control(Method::GET, "/_emulator/counters", None).await).await;
    assert_eq!(counters, json!({"sprites.create": 1, "sprites.get": 1, "exec": 1, "fs.list": 1}));

    let config = json(env.control(Method::GET, "/_emulator/config", None).await).await;
    assert_eq!(config["speed"], 0.0);
    assert_eq!(config["setup_ms"], 1000);
    assert_eq!(config["gateway_boot_ms"], 2000);
    assert_eq!(config["join_outcome"], "joined");
    assert_eq!(config["join_delay_ms"], 5000);
    assert_eq!(config["latency_ms"]["sprites.create"], 1200);
    assert_eq!(config["latency_ms"]["checkpoints.restore"], 12000);
    assert_eq!(config["latency_ms"]["gateway.conversation"], 2500);

    let updated = env
        .control(
            Method::PUT,
            "/_emulator/config",
            Some(json!({"speed": 0.5, "latency_ms": {"sprites.get": 7}, "join_outcome": "waiting_for_acceptance"})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let updated = json(updated).await;
    assert_eq!(updated["speed"], 0.5);
    assert_eq!(updated["latency_ms"]["sprites.get"], 7);
    assert_eq!(updated["latency_ms"]["sprites.create"], 1200, "other routes kept");
    assert_eq!(updated["join_outcome"], "waiting_for_acceptance");
    for bad in [
        json!({"join_outcome": "maybe"}),
        json!({"latency_ms": {"nope": 1}}),
        json!({"speed": -1}),
        json!({"unknown": 1}),
    ] {
        let r = env.control(Method::PUT, "/_emulator/config", Some(bad.clone())).await;
        assert_eq!(r.status(), 400, "{bad}");
    }

    env.add_fault(json!({"route": "*", "kind": {"type": "hang", "ms": 1}})).await;
    let reset = env.control(Method::POST, "/_emulator/reset", None).await;
    assert_eq!(reset.status(), 200);
    assert_eq!(env.get("/v1/sprites/c").await.status(), 404, "sprites forgotten");
    assert_eq!(json(env.control(Method::GET, "/_emulator/faults", None).await).await, json!([]));
    let config = json(env.control(Method::GET, "/_emulator/config", None).await).await;
    assert_eq!(config["speed"], 0.0, "config back to start");
    assert_eq!(config["join_outcome"], "joined");
    let counters = json(env.control(Method::GET, "/_emulator/counters", None).await).await;
    assert_eq!(counters, json!({"sprites.get": 1}), "counters restart from zero");
}

#[tokio::test]
async fn kill_removes_the_sprite_from_api_and_url() {
    let env = start().await;
    env.create_public_sprite("k").await;
    env.start_gateway("k").await;
    assert_eq!(env.get("/_sprite/k/convos/status").await.status(), 200);
    let kill = env.control(Method::POST, "/_emulator/sprites/k/kill", None).await;
    assert_eq!(kill.status(), 204);
    assert_eq!(env.get("/v1/sprites/k").await.status(), 404);
    assert_eq!(env.get("/_sprite/k/convos/status").await.status(), 404);
    let names: Vec<Value> = json(env.get("/v1/sprites").await).await["sprites"].as_array().unwrap().clone();
    assert!(names.is_empty());
    assert_eq!(env.control(Method::POST, "/_emulator/sprites/k/kill", None).await.status(), 404);
}

#[tokio::test]
async fn state_dump_shows_files_services_checkpoints_and_sessions() {
    let env = start().await;
    env.create_sprite("s").await;
    env.write_file("s", "/home/sprite/x.txt", "12345").await;
    env.start_gateway("s").await;
    env.checkpoint("s", "golden").await;
    env.add_fault(json!({"route": "fs.read", "probability": 0.0, "kind": {"type": "hang"}})).await;
    let state = json(env.control(Method::GET, "/_emulator/state", None).await).await;
    let sprite = &state["sprites"]["s"];
    let file = sprite["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/home/sprite/x.txt")
        .expect("file listed");
    assert_eq!(file["size"], 5);
    assert_eq!(file["mode"], "0644");
    assert_eq!(sprite["services"][0]["name"], "gateway");
    assert_eq!(sprite["checkpoints"][0]["id"], "v1");
    assert_eq!(sprite["sessions"], json!([]));
    assert_eq!(sprite["gateway"]["down"], false);
    assert_eq!(state["faults"].as_array().unwrap().len(), 1);
    assert!(state["config"]["latency_ms"].is_object());
    // The test's file and the gateway config `start_gateway` writes.
    assert_eq!(state["counters"]["fs.write"], 2);
}

#[tokio::test]
async fn stream_error_fails_in_band_and_changes_nothing() {
    let env = start().await;
    env.create_sprite("se").await;
    env.add_fault(json!({"route": "checkpoints.create", "count": 1, "kind": {"type": "stream_error", "message": "disk full"}}))
        .await;

    let response = env.post("/v1/sprites/se/checkpoint", json!({})).await;
    assert_eq!(response.status(), 200, "failures arrive inside a 200 stream");
    let body = response.text().await.unwrap();
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"], "disk full");
    let listed = json(env.get("/v1/sprites/se/checkpoints").await).await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "no checkpoint was made");

    let misplaced = json!({"route": "sprites.get", "kind": {"type": "stream_error", "message": "x"}});
    assert_eq!(env.control(Method::POST, "/_emulator/faults", Some(misplaced)).await.status(), 400);
}
