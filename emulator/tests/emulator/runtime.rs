//! What runs inside a Sprite: service processes that really run their command and restart
//! when they exit, `sprite-env services` sharing state with the REST routes, the URL going to
//! the `http_port` service's port or 8080, and the pool's debug probes answering from it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Env, OPENCLAW_CONFIG as CONFIG, OPENCLAW_DIR, eventually, gateway_config, json, ndjson, start,
};

async fn url_status(env: &Env, sprite: &str) -> u16 {
    env.http.get(env.url(&format!("/_sprite/{sprite}/convos/status"))).send().await.unwrap().status().as_u16()
}

async fn service(env: &Env, sprite: &str, svc: &str) -> Value {
    json(env.get(&format!("/v1/sprites/{sprite}/services/{svc}")).await).await
}

#[tokio::test]
async fn sprite_env_services_share_state_with_the_rest_routes() {
    let env = start().await;
    env.create_sprite("se").await;
    let created = env
        .exec(
            "se",
            &[
                "sprite-env",
                "services",
                "create",
                "worker",
                "--cmd",
                "sleep",
                "--args",
                "3600",
                "--dir",
                "/home/sprite",
            ],
        )
        .await;
    assert_eq!(created.code(), 0, "{}", created.err());
    let lines: Vec<Value> = created.out().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines.iter().map(|l| l["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["started", "complete"]
    );

    let rest = service(&env, "se", "worker").await;
    assert_eq!(rest["cmd"], "sleep");
    assert_eq!(rest["args"], json!(["3600"]));
    assert_eq!(rest["state"]["status"], "running");

    // Stopped over REST, seen stopped inside; listed inside as the REST list has it.
    assert_eq!(env.post("/v1/sprites/se/services/worker/stop", Value::Null).await.status(), 200);
    let inside = env.exec("se", &["sprite-env", "services", "get", "worker"]).await;
    let inside: Value = serde_json::from_str(&inside.out()).unwrap();
    assert_eq!(inside["state"]["status"], "stopped");
    let list = env.exec("se", &["sprite-env", "services", "list"]).await;
    let list: Value = serde_json::from_str(&list.out()).unwrap();
    assert_eq!(list, json(env.get("/v1/sprites/se/services").await).await);

    // Started and deleted inside, gone over REST.
    assert_eq!(env.exec("se", &["sprite-env", "services", "start", "worker"]).await.code(), 0);
    assert_eq!(service(&env, "se", "worker").await["state"]["status"], "running");
    assert_eq!(env.exec("se", &["sprite-env", "services", "delete", "worker"]).await.code(), 0);
    assert_eq!(env.get("/v1/sprites/se/services/worker").await.status(), 404);

    // Refusals are errors, not silent successes.
    let no_cmd = env.exec("se", &["sprite-env", "services", "create", "x"]).await;
    assert_eq!(no_cmd.code(), 2);
    assert!(no_cmd.err().contains("cmd"), "{}", no_cmd.err());
    let missing = env.exec("se", &["sprite-env", "services", "stop", "nope"]).await;
    assert_eq!(missing.code(), 1);
    assert!(missing.err().contains("service not found: nope"), "{}", missing.err());
    let raw = env
        .exec(
            "se",
            &[
                "sprite-env",
                "curl",
                "-X",
                "PUT",
                "/v1/services/raw",
                "-d",
                r#"{"cmd":"sleep","args":["60"]}"#,
            ],
        )
        .await;
    assert_eq!(raw.code(), 0, "{}", raw.err());
    assert_eq!(service(&env, "se", "raw").await["state"]["status"], "running");
}

#[tokio::test]
async fn the_url_goes_to_the_http_port_service_else_to_8080() {
    let env = start().await;
    env.create_public_sprite("u").await;
    env.install_openclaw("u").await;
    env.write_file("u", CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
    // A gateway on 9000 with no http_port anywhere: the URL goes to 8080, where nothing listens.
    let on_9000 =
        json!({"cmd": "node", "args": ["openclaw.mjs", "gateway", "--port", "9000"], "dir": OPENCLAW_DIR});
    assert_eq!(env.put_service("u", "gw", on_9000.clone()).await.status(), 200);
    assert!(env.wait_listening("u", 9000).await);
    assert_eq!(url_status(&env, "u").await, 502);
    // Declared as the http_port service, its port carries the URL.
    let mut with_port = on_9000;
    with_port["http_port"] = json!(9000);
    assert_eq!(env.put_service("u", "gw", with_port).await.status(), 200);
    assert!(env.wait_listening("u", 9000).await);
    assert!(eventually(Duration::from_secs(5), || async { url_status(&env, "u").await == 200 }).await);

    // Without http_port, a gateway on 8080 carries the URL.
    env.delete("/v1/sprites/u/services/gw").await;
    assert_eq!(url_status(&env, "u").await, 502, "a deleted service's process is gone");
    let on_8080 =
        json!({"cmd": "node", "args": ["openclaw.mjs", "gateway", "--port", "8080"], "dir": OPENCLAW_DIR});
    assert_eq!(env.put_service("u", "plain", on_8080).await.status(), 200);
    assert!(env.wait_listening("u", 8080).await);
    assert_eq!(url_status(&env, "u").await, 200);
}

#[tokio::test]
async fn gateway_run_swallows_its_options_and_uses_the_config() {
    let env = start().await;
    env.create_public_sprite("sw").await;
    env.install_openclaw("sw").await;
    env.write_file("sw", CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
    let svc = json!({"cmd": "node", "args": ["openclaw.mjs", "gateway", "run", "--port", "9100", "--bind", "loopback"], "dir": OPENCLAW_DIR, "http_port": 8080});
    assert_eq!(env.put_service("sw", "gateway", svc).await.status(), 200);
    assert!(env.wait_listening("sw", 8080).await, "the config's port, not --port");
    let ss = env.exec("sw", &["ss", "-ltn"]).await;
    assert!(ss.out().contains("0.0.0.0:8080"), "the config's bind: {}", ss.out());
    assert!(!ss.out().contains("9100"));
}

#[tokio::test]
async fn a_service_whose_process_exits_is_restarted_with_restart_count() {
    let env = start().await;
    env.create_sprite("cr").await;
    let svc = json!({"cmd": "bash", "args": ["-c", "echo booting; echo boom >&2; exit 3"]});
    assert_eq!(env.put_service("cr", "flaky", svc).await.status(), 200);
    let restarted = eventually(Duration::from_secs(5), || async {
        service(&env, "cr", "flaky").await["state"]["restart_count"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert!(restarted);
    let logs = ndjson(env.get("/v1/sprites/cr/services/flaky/logs").await).await;
    let first_exit = logs.iter().position(|l| l["type"] == "exit").expect("an exit line");
    assert_eq!(logs[first_exit]["exit_code"], 3);
    assert!(logs[..first_exit].iter().any(|l| l["type"] == "stdout" && l["data"] == "booting\n"));
    assert!(logs[..first_exit].iter().any(|l| l["type"] == "stderr" && l["data"] == "boom\n"));
    assert_eq!(logs[first_exit + 1]["type"], "started", "{logs:?}");
    let log_file = env.read_file("cr", "/.sprite/logs/services/flaky.log").await.unwrap();
    assert!(String::from_utf8_lossy(&log_file).contains("booting\nboom\n"));

    // A stop is sticky: no more restarts.
    assert_eq!(env.post("/v1/sprites/cr/services/flaky/stop", Value::Null).await.status(), 200);
    let count = service(&env, "cr", "flaky").await["state"]["restart_count"].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = service(&env, "cr", "flaky").await;
    assert_eq!(after["state"]["restart_count"], count);
    assert_eq!(after["state"]["status"], "stopped");
}

#[tokio::test]
async fn debug_probes_answer_from_what_runs() {
    let env = start().await;
    env.create_public_sprite("p").await;
    let curl = [
        "curl",
        "-s",
        "-m",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:8080/convos/status",
    ];
    let down = env.exec("p", &curl).await;
    assert_eq!((down.code(), down.out()), (7, "000".to_string()));
    let ss = env.exec("p", &["ss", "-ltn"]).await;
    assert_eq!(ss.code(), 0);
    assert_eq!(ss.out().lines().count(), 1, "only the header: {}", ss.out());
    assert_eq!(env.exec("p", &["test", "-s", CONFIG]).await.code(), 1);

    env.start_gateway("p").await;
    let up = env.exec("p", &curl).await;
    assert_eq!((up.code(), up.out()), (0, "200".to_string()));
    let ss = env.exec("p", &["ss", "-ltn"]).await;
    assert!(ss.out().lines().any(|l| l.starts_with("LISTEN") && l.contains("0.0.0.0:8080")), "{}", ss.out());
    let ps = env.exec("p", &["ps", "-eo", "pid,etime,rss,args"]).await;
    assert_eq!(ps.code(), 0);
    let text = ps.out();
    assert!(text.lines().next().unwrap().contains("PID") && text.contains("COMMAND"), "{text}");
    assert!(text.contains("node openclaw.mjs gateway --port 8080 --bind lan"), "{text}");
    assert!(text.contains("openclaw-gateway"), "{text}");
    assert!(text.contains("ps -eo pid,etime,rss,args"), "the probe sees itself: {text}");
    let pid = service(&env, "p", "gateway").await["state"]["pid"].as_u64().unwrap();
    assert!(text.lines().any(|l| l.split_whitespace().next() == Some(&pid.to_string())), "{text}");
    assert_eq!(env.exec("p", &["test", "-s", CONFIG]).await.code(), 0);
    // What is not simulated says so.
    let aux = env.exec("p", &["ps", "aux"]).await;
    assert_eq!(aux.code(), 1);
    assert!(aux.err().contains("unsupported"), "{}", aux.err());
    assert_eq!(env.exec("p", &["ss", "-u"]).await.code(), 1);

    // Stopped, the gateway's port is free at once.
    env.post("/v1/sprites/p/services/gateway/stop", Value::Null).await;
    let down = env.exec("p", &curl).await;
    assert_eq!((down.code(), down.out()), (7, "000".to_string()));
}

#[tokio::test]
async fn restore_and_restart_bring_the_gateway_back() {
    let env = start().await;
    env.create_public_sprite("rs").await;
    env.start_gateway("rs").await;
    let cp = env.checkpoint("rs", "golden").await;
    env.restore("rs", &cp).await;
    assert!(env.wait_listening("rs", 8080).await, "services come back from their definitions");
    assert_eq!(url_status(&env, "rs").await, 200);
    let restarted = env.post("/v1/sprites/rs/services/gateway/restart", Value::Null).await;
    assert_eq!(restarted.status(), 200);
    assert!(env.wait_listening("rs", 8080).await);
    assert!(eventually(Duration::from_secs(5), || async { url_status(&env, "rs").await == 200 }).await);
    let state = service(&env, "rs", "gateway").await;
    assert_eq!(state["state"]["restart_count"], 0, "a restart asked for is not a crash");
    // A request with the wrong method still reaches the gateway through a local curl.
    let post = env.exec("rs", &["curl", "-s", "-X", "POST", "http://localhost:8080/convos/status"]).await;
    assert_eq!(post.code(), 0);
    assert_eq!(serde_json::from_str::<Value>(&post.out()).unwrap(), json!({"error": "Method Not Allowed"}));
}

#[tokio::test]
async fn a_gateway_on_a_config_the_real_one_refuses_crash_loops() {
    let env = start().await;
    env.create_public_sprite("bad").await;
    env.install_openclaw("bad").await;
    // What the pool wrote before issue 18: no gateway.mode.
    let config = json!({"gateway": {"port": 8080, "bind": "lan", "reload": {"mode": "off"}}});
    env.write_file("bad", CONFIG, serde_json::to_vec(&config).unwrap()).await;
    env.put_gateway_service("bad").await;
    let looping = eventually(Duration::from_secs(5), || async {
        service(&env, "bad", "gateway").await["state"]["restart_count"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(looping);
    assert_eq!(url_status(&env, "bad").await, 502);
    let logs = ndjson(env.get("/v1/sprites/bad/services/gateway/logs").await).await;
    let blocked =
        "Gateway start blocked: set gateway.mode=local (current: unset) or pass --allow-unconfigured.\n";
    assert!(logs.iter().any(|l| l["type"] == "stderr" && l["data"] == blocked), "{logs:?}");
    assert!(logs.iter().any(|l| l["type"] == "exit" && l["exit_code"] == 1), "{logs:?}");

    // Fixed and restarted, it comes up; with pnpm on PATH its first start built the Control UI.
    env.write_file("bad", CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
    env.post("/v1/sprites/bad/services/gateway/restart", Value::Null).await;
    assert!(env.wait_listening("bad", 8080).await);
    assert_eq!(url_status(&env, "bad").await, 200);
    let index = format!("{OPENCLAW_DIR}/dist/control-ui/index.html");
    assert!(env.read_file("bad", &index).await.is_some());
}
