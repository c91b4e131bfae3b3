//! The Sprite lifecycle (reference §8): running → warm after the idle pause → cold later; a
//! request or an exec wakes it with the warm or cold wake latency; a cold wake boots the
//! services again; sessions drop on a pause; running time is metered; the account's running
//! limit answers 429 `concurrent_sprite_limit_exceeded`. Timers are set to fractions of a
//! second so nothing here waits 30 real seconds.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use sprites_emulator::EmulatorConfig;

use crate::common::{Env, collect, eventually, fast, json, start_with};

/// Idle pause 300 ms, cold 400 ms after that, latencies instant.
fn quick() -> EmulatorConfig {
    EmulatorConfig { idle_pause_secs: 0.3, cold_after_secs: 0.4, ..fast() }
}

async fn status(env: &Env, sprite: &str) -> String {
    json(env.get(&format!("/v1/sprites/{sprite}")).await).await["status"].as_str().unwrap().to_string()
}

async fn listed_status(env: &Env, sprite: &str) -> String {
    let list = json(env.get("/v1/sprites").await).await;
    let entry = list["sprites"].as_array().unwrap().iter().find(|s| s["name"] == sprite).cloned().unwrap();
    entry["status"].as_str().unwrap().to_string()
}

async fn lifecycle(env: &Env) -> Value {
    json(env.control(Method::GET, "/_emulator/lifecycle", None).await).await
}

async fn pause(env: &Env, sprite: &str, cold: bool) {
    let resp = env
        .control(Method::POST, &format!("/_emulator/sprites/{sprite}/pause"), Some(json!({"cold": cold})))
        .await;
    assert_eq!(resp.status(), 200);
}

/// A request to the Sprite URL (a public Sprite, so no token); its status code.
async fn url_get(env: &Env, sprite: &str, path: &str) -> u16 {
    env.http.get(env.url(&format!("/_sprite/{sprite}{path}"))).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_sprite_pauses_after_the_idle_time_then_goes_cold_and_get_and_list_say_so() {
    let env = start_with(quick()).await;
    env.create_public_sprite("lc").await;
    assert_eq!(status(&env, "lc").await, "cold", "a new Sprite is cold until its first request");
    assert_eq!(env.exec("lc", &["true"]).await.code(), 0);
    assert_eq!(status(&env, "lc").await, "running");
    assert_eq!(listed_status(&env, "lc").await, "running");

    // Traffic to its URL is activity: a second of requests 100 ms apart keeps it running.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        url_get(&env, "lc", "/").await;
        assert_eq!(status(&env, "lc").await, "running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Management calls (GET, list) do not wake it or keep it awake.
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "lc").await == "warm" }).await);
    assert_eq!(listed_status(&env, "lc").await, "warm");
    let list = json(env.get("/v1/sprites").await).await;
    assert_eq!(list["org"]["warm"], 1);
    assert_eq!(list["org"]["running"], 0);
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "lc").await == "cold" }).await);
    assert_eq!(listed_status(&env, "lc").await, "cold");

    // An exec wakes it (cold), a request to the URL too (after a pause, warm).
    assert_eq!(env.exec("lc", &["true"]).await.code(), 0);
    assert_eq!(status(&env, "lc").await, "running");
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "lc").await == "warm" }).await);
    url_get(&env, "lc", "/").await;
    assert_eq!(status(&env, "lc").await, "running");
    let meter = &lifecycle(&env).await["sprites"]["lc"];
    assert_eq!((meter["cold_wakes"].as_u64(), meter["warm_wakes"].as_u64()), (Some(2), Some(1)), "{meter}");

    // The control API moves the timers: with a 5 s idle pause it stays running well past 300 ms.
    env.set_config(json!({"idle_pause_ms": 5000})).await;
    assert_eq!(lifecycle(&env).await["idle_pause_ms"], 5000);
    url_get(&env, "lc", "/").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(status(&env, "lc").await, "running");
}

#[tokio::test]
async fn a_warm_wake_takes_100_to_500_ms_and_a_cold_one_1_to_2_s() {
    // Real speed for the wake, every route's own latency zeroed so only the wake is timed.
    let env = start_with(EmulatorConfig { speed: 1.0, idle_pause_secs: 600.0, ..fast() }).await;
    let zero: serde_json::Map<String, Value> = ["sprites.create", "sprites.get", "gateway.other"]
        .iter()
        .map(|r| (r.to_string(), json!(0)))
        .collect();
    env.set_config(json!({"latency_ms": zero})).await;
    env.create_public_sprite("wk").await;

    let t = Instant::now();
    assert_eq!(url_get(&env, "wk", "/").await, 502, "woken, nothing listens on 8080");
    let cold = t.elapsed();
    assert!(cold >= Duration::from_millis(1000) && cold < Duration::from_millis(2300), "cold wake {cold:?}");

    let t = Instant::now();
    url_get(&env, "wk", "/").await;
    // A running Sprite does not wake again (a cold wake would take 1 s at least).
    assert!(t.elapsed() < Duration::from_millis(1000), "a running Sprite answers at once: {:?}", t.elapsed());
    assert_eq!(lifecycle(&env).await["sprites"]["wk"]["cold_wakes"], 1);

    pause(&env, "wk", false).await;
    assert_eq!(status(&env, "wk").await, "warm");
    // Two requests racing into one wake both wait for it; it counts once.
    let t = Instant::now();
    let (a, b) = tokio::join!(url_get(&env, "wk", "/"), url_get(&env, "wk", "/a"));
    let warm = t.elapsed();
    assert_eq!((a, b), (502, 502));
    assert!(warm >= Duration::from_millis(100) && warm < Duration::from_millis(800), "warm wake {warm:?}");
    let meter = &lifecycle(&env).await["sprites"]["wk"];
    assert_eq!((meter["cold_wakes"].as_u64(), meter["warm_wakes"].as_u64()), (Some(1), Some(1)), "{meter}");

    // Scaled by speed like every latency: at 0 a wake is instant.
    env.set_config(json!({"speed": 0.0})).await;
    pause(&env, "wk", true).await;
    let t = Instant::now();
    url_get(&env, "wk", "/").await;
    assert!(t.elapsed() < Duration::from_millis(500), "cold wake at speed 0: {:?}", t.elapsed());
}

async fn gateway_pid(env: &Env, sprite: &str) -> Option<u64> {
    json(env.get(&format!("/v1/sprites/{sprite}/services/gateway")).await).await["state"]["pid"].as_u64()
}

#[tokio::test]
async fn a_cold_wake_boots_the_services_again_and_status_refuses_until_the_gateway_is_up() {
    // Gateway boot 1 s at speed 0.01; wakes 1–20 ms.
    let env = start_with(EmulatorConfig { speed: 0.01, idle_pause_secs: 600.0, ..fast() }).await;
    env.set_config(json!({"gateway_boot_ms": 100000})).await;
    env.create_public_sprite("cw").await;
    env.start_gateway("cw").await;
    assert!(
        eventually(Duration::from_secs(3), || async { url_get(&env, "cw", "/convos/status").await == 200 })
            .await
    );
    let pid = gateway_pid(&env, "cw").await.expect("the gateway runs");

    // A warm wake resumes the same process: the gateway answers at once.
    pause(&env, "cw", false).await;
    assert_eq!(url_get(&env, "cw", "/convos/status").await, 200);
    assert_eq!(gateway_pid(&env, "cw").await, Some(pid));

    // Cold: every process is gone; the waking request finds the gateway booting again.
    pause(&env, "cw", true).await;
    let state = json(env.get("/_emulator/state").await).await;
    assert_eq!(state["sprites"]["cw"]["status"], "cold");
    assert_eq!(state["sprites"]["cw"]["listening"], json!([]));
    assert_eq!(url_get(&env, "cw", "/convos/status").await, 502, "the gateway has not booted yet");
    assert_eq!(status(&env, "cw").await, "running");
    let restarted = gateway_pid(&env, "cw").await.expect("the service started again from its definition");
    assert_ne!(restarted, pid);
    assert_eq!(url_get(&env, "cw", "/convos/status").await, 502, "still booting");
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(6), || async { url_get(&env, "cw", "/convos/status").await == 200 })
            .await
    );
    assert!(t.elapsed() >= Duration::from_millis(500), "it took the gateway's boot time: {:?}", t.elapsed());

    // A stopped service stays stopped across a cold boot (a stop is sticky).
    assert_eq!(env.post("/v1/sprites/cw/services/gateway/stop", Value::Null).await.status(), 200);
    pause(&env, "cw", true).await;
    assert_eq!(url_get(&env, "cw", "/convos/status").await, 502);
    let svc = json(env.get("/v1/sprites/cw/services/gateway").await).await;
    assert_eq!(svc["state"]["status"], "stopped");
}

#[tokio::test]
async fn an_attached_session_keeps_it_running_and_a_pause_drops_open_and_detached_sessions() {
    let env = start_with(quick()).await;
    env.create_sprite("ss").await;

    // A quiet command with its client attached holds the Sprite running past the idle time.
    let mut ws = env.ws("ss", &[("cmd", "sleep"), ("cmd", "100")]).await.unwrap();
    let info = ws.next().await.unwrap().unwrap();
    assert!(info.is_text());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(status(&env, "ss").await, "running");
    // A pause drops the open socket as a VM restart does: Close(1001), no exit frame.
    pause(&env, "ss", false).await;
    let r = collect(&mut ws, false).await;
    assert_eq!(r.close_code, Some(1001), "{r:?}");
    assert_eq!(r.exit_payload, None);

    // A detached session (its command would run on forever) does not hold the Sprite, and does
    // not survive the pause.
    let mut ws =
        env.ws("ss", &[("cmd", "sleep"), ("cmd", "100"), ("max_run_after_disconnect", "0")]).await.unwrap();
    ws.next().await.unwrap().unwrap();
    drop(ws);
    let sessions = || async { json(env.get("/v1/sprites/ss/exec").await).await["count"].as_u64().unwrap() };
    assert!(eventually(Duration::from_secs(1), || async { status(&env, "ss").await == "running" }).await);
    assert_eq!(sessions().await, 1, "detached, still running");
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "ss").await == "warm" }).await);
    assert_eq!(sessions().await, 0, "dropped on the pause");

    // A detached session's output is activity: the Sprite goes warm only after its last output.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i; sleep 0.1; done; sleep 100";
    let mut ws = env
        .ws("ss", &[("cmd", "bash"), ("cmd", "-c"), ("cmd", script), ("max_run_after_disconnect", "0")])
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    drop(ws);
    let detached = Instant::now();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(status(&env, "ss").await, "running", "still printing, 900 ms after the client left");
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "ss").await == "warm" }).await);
    assert!(
        detached.elapsed() >= Duration::from_millis(1300),
        "warm {:?} after detaching",
        detached.elapsed()
    );
}

#[tokio::test]
async fn running_time_is_metered_per_sprite_and_kept_after_a_delete() {
    let env = start_with(quick()).await;
    env.create_sprite("ma").await;
    env.create_sprite("mb").await;
    env.exec("ma", &["true"]).await;
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "ma").await == "warm" }).await);
    let meter = lifecycle(&env).await;
    let ma = meter["sprites"]["ma"]["running_ms"].as_u64().unwrap();
    // Woken by the exec, idle 300 ms after its last activity, then paused: no more counted.
    assert!((300..1000).contains(&ma), "{meter}");
    assert_eq!(meter["sprites"]["mb"]["running_ms"], 0, "never woken, never billed");
    assert_eq!(meter["sprites"]["ma"]["status"], "warm");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lifecycle(&env).await["sprites"]["ma"]["running_ms"].as_u64(), Some(ma));

    // A running Sprite's meter keeps going.
    env.exec("mb", &["true"]).await;
    let first = lifecycle(&env).await["sprites"]["mb"]["running_ms"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let later = lifecycle(&env).await["sprites"]["mb"]["running_ms"].as_u64().unwrap();
    assert!(later >= first + 100, "{first} then {later}");

    assert_eq!(env.delete("/v1/sprites/ma").await.status(), 204);
    let meter = lifecycle(&env).await;
    assert_eq!(meter["retired_running_ms"].as_u64(), Some(ma));
    assert!(meter["total_running_ms"].as_u64().unwrap() >= ma + later);
}

async fn assert_limit_429(resp: reqwest::Response, current: u64) {
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body = json(resp).await;
    assert_eq!(body["error"], "concurrent_sprite_limit_exceeded", "{body}");
    assert_eq!(body["current_count"], current, "{body}");
    assert_eq!(body["limit"], 1, "{body}");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn beyond_the_running_limit_a_create_or_a_wake_is_refused_with_429() {
    let env = start_with(EmulatorConfig { running_limit: Some(1), ..quick() }).await;
    env.create_public_sprite("la").await;
    env.create_public_sprite("lb").await; // new Sprites are cold: nothing runs yet
    assert_eq!(env.exec("la", &["true"]).await.code(), 0);

    assert_limit_429(env.post("/v1/sprites", json!({"name": "lc"})).await, 1).await;
    assert_eq!(env.get("/v1/sprites/lc").await.status(), 404, "not created");
    // Waking another: by its URL, by an exec over HTTP, by an exec WebSocket.
    let by_url = env.http.get(env.url("/_sprite/lb/convos/status")).send().await.unwrap();
    assert_limit_429(by_url, 1).await;
    let by_exec =
        env.req(Method::POST, "/v1/sprites/lb/exec").query(&[("cmd", "true")]).send().await.unwrap();
    assert_limit_429(by_exec, 1).await;
    match env.ws("lb", &[("cmd", "true")]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected a 429 handshake, got {:?}", other.map(|_| ())),
    }
    assert_eq!(status(&env, "lb").await, "cold");
    // A running Sprite itself is not refused.
    assert_eq!(env.exec("la", &["true"]).await.code(), 0);

    // Once the running one pauses, the other wakes and a create goes through.
    assert!(eventually(Duration::from_secs(2), || async { status(&env, "la").await == "warm" }).await);
    assert_eq!(env.exec("lb", &["true"]).await.code(), 0);
    assert_limit_429(
        env.req(Method::GET, "/v1/sprites/la/fs/list")
            .query(&[("path", "/"), ("workingDir", "/")])
            .send()
            .await
            .unwrap(),
        1,
    )
    .await;
    pause(&env, "lb", false).await;
    assert_eq!(env.post("/v1/sprites", json!({"name": "lc"})).await.status(), 201);

    // The control API lifts the limit.
    assert_eq!(env.exec("la", &["true"]).await.code(), 0);
    env.set_config(json!({"running_limit": null})).await;
    assert_eq!(env.exec("lb", &["true"]).await.code(), 0);
    assert_eq!(lifecycle(&env).await["running_count"], 2);
}
