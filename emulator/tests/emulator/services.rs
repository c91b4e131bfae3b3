use serde_json::{Value, json};

use crate::common::{json, ndjson, start};

fn kinds(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn put_list_get_stop_start_restart_delete() {
    let env = start().await;
    env.create_sprite("svc").await;
    assert_eq!(env.exec("svc", &["mkdir", "-p", "/home/sprite/app"]).await.code(), 0);
    let put = env
        .put_service(
            "svc",
            "web",
            json!({"cmd": "sleep", "args": ["3600"], "env": {"PORT": "8080"}, "dir": "/home/sprite/app", "http_port": 8080}),
        )
        .await;
    assert_eq!(put.status(), 200);
    assert_eq!(put.headers()["content-type"].to_str().unwrap(), "application/x-ndjson");
    let lines = ndjson(put).await;
    assert_eq!(kinds(&lines), vec!["started", "complete"]);
    assert!(lines[0]["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(lines[1]["log_files"]["stdout"], "/.sprite/logs/services/web.log");

    let list = json(env.get("/v1/sprites/svc/services").await).await;
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1);
    let web = &list[0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["cmd"], "sleep");
    assert_eq!(web["args"], json!(["3600"]));
    assert_eq!(web["http_port"], 8080);
    assert_eq!(web["env"], json!({"PORT": "8080"}));
    assert_eq!(web["dir"], "/home/sprite/app");
    assert_eq!(web["needs"], json!([]));
    assert_eq!(web["state"]["name"], "web");
    assert_eq!(web["state"]["status"], "running");
    assert!(web["state"]["pid"].as_u64().is_some());
    assert!(web["state"]["started_at"].as_str().is_some());
    assert_eq!(web["state"]["restart_count"], 0);

    let one = env.get("/v1/sprites/svc/services/web").await;
    assert_eq!(one.status(), 200);
    assert_eq!(&json(one).await, web);
    assert_eq!(env.get("/v1/sprites/svc/services/nope").await.status(), 404);

    let stop = env.post("/v1/sprites/svc/services/web/stop", Value::Null).await;
    assert_eq!(stop.status(), 200);
    assert_eq!(kinds(&ndjson(stop).await), vec!["stopping", "stopped", "complete"]);
    let state = json(env.get("/v1/sprites/svc/services/web").await).await;
    assert_eq!(state["state"]["status"], "stopped");
    assert!(state["state"]["pid"].is_null());
    let again = env.post("/v1/sprites/svc/services/web/stop", Value::Null).await;
    assert_eq!(again.status(), 409);

    let start = env.post("/v1/sprites/svc/services/web/start", Value::Null).await;
    assert_eq!(kinds(&ndjson(start).await), vec!["started", "complete"]);
    let pid1 = json(env.get("/v1/sprites/svc/services/web").await).await["state"]["pid"].clone();
    let restart = env.post("/v1/sprites/svc/services/web/restart", Value::Null).await;
    assert_eq!(kinds(&ndjson(restart).await), vec!["stopping", "stopped", "started", "complete"]);
    let after = json(env.get("/v1/sprites/svc/services/web").await).await;
    assert_eq!(after["state"]["status"], "running");
    assert_ne!(after["state"]["pid"], pid1, "a restart is a new process");
    assert_eq!(env.post("/v1/sprites/svc/services/nope/start", Value::Null).await.status(), 404);

    let logs = env.get("/v1/sprites/svc/services/web/logs").await;
    assert_eq!(logs.status(), 200);
    assert!(kinds(&ndjson(logs).await).contains(&"stopped"));

    let del = env.delete("/v1/sprites/svc/services/web").await;
    assert_eq!(del.status(), 204);
    assert_eq!(env.get("/v1/sprites/svc/services/web").await.status(), 404);
    assert_eq!(env.delete("/v1/sprites/svc/services/web").await.status(), 404);
    assert_eq!(json(env.get("/v1/sprites/svc/services").await).await, json!([]));
}

#[tokio::test]
async fn only_one_service_may_have_an_http_port() {
    let env = start().await;
    env.create_sprite("svc").await;
    env.start_gateway("svc").await;
    let second = env.put_service("svc", "other", json!({"cmd": "python3", "http_port": 9000})).await;
    assert_eq!(second.status(), 409);
    assert!(json(second).await["error"].as_str().unwrap().contains("HTTP port"));
    // Without a port it is fine, and re-putting the port owner is fine too.
    assert_eq!(
        env.put_service("svc", "worker", json!({"cmd": "python3", "needs": ["gateway"]})).await.status(),
        200
    );
    assert_eq!(
        env.put_service("svc", "gateway", json!({"cmd": "openclaw", "http_port": 8081})).await.status(),
        200
    );
    // `needs` protects the dependency.
    assert_eq!(env.delete("/v1/sprites/svc/services/gateway").await.status(), 409);
    let bad = env.put_service("svc", "x", json!({"args": ["no cmd"]})).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn signals_restart_on_fatal_ones() {
    let env = start().await;
    env.create_sprite("svc").await;
    env.start_gateway("svc").await;
    let hup = env.post("/v1/sprites/svc/services/signal", json!({"name": "gateway", "signal": "HUP"})).await;
    assert_eq!(hup.status(), 204);
    let s = json(env.get("/v1/sprites/svc/services/gateway").await).await;
    assert_eq!(s["state"]["restart_count"], 0);
    let term =
        env.post("/v1/sprites/svc/services/signal", json!({"name": "gateway", "signal": "SIGTERM"})).await;
    assert_eq!(term.status(), 204);
    let s = json(env.get("/v1/sprites/svc/services/gateway").await).await;
    assert_eq!(s["state"]["restart_count"], 1);
    assert_eq!(s["state"]["status"], "running");
    let bad =
        env.post("/v1/sprites/svc/services/signal", json!({"name": "gateway", "signal": "BOGUS"})).await;
    assert_eq!(bad.status(), 400);
    let missing =
        env.post("/v1/sprites/svc/services/signal", json!({"name": "nope", "signal": "TERM"})).await;
    assert_eq!(missing.status(), 404);
    env.post("/v1/sprites/svc/services/gateway/stop", Value::Null).await;
    let stopped =
        env.post("/v1/sprites/svc/services/signal", json!({"name": "gateway", "signal": "TERM"})).await;
    assert_eq!(stopped.status(), 409);
}
