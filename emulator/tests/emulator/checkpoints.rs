use futures_util::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{collect, json, ndjson, start};

#[tokio::test]
async fn create_list_get_and_ndjson_shape() {
    let env = start().await;
    env.create_sprite("cp").await;
    let resp = env.post("/v1/sprites/cp/checkpoint", json!({"comment": "golden"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"].to_str().unwrap(), "application/x-ndjson");
    let lines = ndjson(resp).await;
    assert!(lines.len() >= 2);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["type"] == "info"));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "complete");
    assert_eq!(last["data"], "Checkpoint v1 created");
    for l in &lines {
        assert!(OffsetDateTime::parse(l["time"].as_str().unwrap(), &Rfc3339).is_ok());
    }

    // An empty body is allowed too.
    let resp = env.req(reqwest::Method::POST, "/v1/sprites/cp/checkpoint").send().await.unwrap();
    assert_eq!(ndjson(resp).await.last().unwrap()["data"], "Checkpoint v2 created");

    let list = json(env.get("/v1/sprites/cp/checkpoints").await).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let v1 = &list[0];
    assert_eq!(v1["id"], "v1");
    assert_eq!(v1["comment"], "golden");
    assert_eq!(v1["source_id"], "");
    assert_eq!(v1["history"], json!([]));
    assert_eq!(v1["is_auto"], false);
    assert_eq!(v1["health"], "");
    assert!(OffsetDateTime::parse(v1["create_time"].as_str().unwrap(), &Rfc3339).is_ok());
    assert_eq!(list[1]["id"], "v2");
    assert_eq!(list[1]["source_id"], "v1");
    assert_eq!(list[1]["history"], json!(["v1"]));

    let v2 = env.get("/v1/sprites/cp/checkpoints/v2").await;
    assert_eq!(v2.status(), 200);
    assert_eq!(json(v2).await["id"], "v2");
    assert_eq!(env.get("/v1/sprites/cp/checkpoints/v9").await.status(), 404);
    assert_eq!(env.get("/v1/sprites/none/checkpoints").await.status(), 404);
}

#[tokio::test]
async fn restore_replaces_files_ends_sessions_and_restarts_services() {
    let env = start().await;
    env.create_sprite("cp").await;
    env.write_file("cp", "/home/sprite/a.txt", "one").await;
    env.start_gateway("cp").await;
    let pid_before = json(env.get("/v1/sprites/cp/services/gateway").await).await["state"]["pid"].clone();
    let golden = env.checkpoint("cp", "golden").await;
    assert_eq!(golden, "v1");

    env.write_file("cp", "/home/sprite/a.txt", "two").await;
    env.write_file("cp", "/home/sprite/b.txt", "later").await;
    env.delete("/v1/sprites/cp/services/gateway").await;
    env.put_service("cp", "extra", json!({"cmd": "sleep", "args": ["inf"]})).await;

    // A long exec is running when the restore happens.
    let mut ws = env.ws("cp", &[("cmd", "sleep"), ("cmd", "30")]).await.unwrap();
    let _info = ws.next().await.unwrap().unwrap();
    assert_eq!(json(env.get("/v1/sprites/cp/exec").await).await["count"], 1);

    let lines = env.restore("cp", &golden).await;
    assert_eq!(lines.last().unwrap()["type"], "complete");
    assert!(lines.last().unwrap()["data"].as_str().unwrap().contains("v1"));

    assert_eq!(env.read_file("cp", "/home/sprite/a.txt").await.unwrap(), b"one");
    assert_eq!(env.read_file("cp", "/home/sprite/b.txt").await, None);

    // The session ends with no exit frame (the VM restarted under it).
    let r = collect(&mut ws, true).await;
    assert_eq!(r.exit_payload, None);
    assert_eq!(r.close_code, Some(1001));
    assert_eq!(json(env.get("/v1/sprites/cp/exec").await).await["count"], 0);

    let services = json(env.get("/v1/sprites/cp/services").await).await;
    let names: Vec<&str> = services.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["gateway"], "saved definitions come back");
    assert_eq!(services[0]["state"]["status"], "running");
    assert_ne!(services[0]["state"]["pid"], pid_before, "started again");
    assert_eq!(
        json(env.get("/_sprite/cp/convos/status").await).await["ready"],
        true,
        "the gateway boots again"
    );
}

#[tokio::test]
async fn delete_refuses_the_last_restored_checkpoint() {
    let env = start().await;
    env.create_sprite("cp").await;
    let v1 = env.checkpoint("cp", "one").await;
    let v2 = env.checkpoint("cp", "two").await;
    let v3 = env.checkpoint("cp", "three").await;
    env.restore("cp", &v2).await;
    let refused = env.delete(&format!("/v1/sprites/cp/checkpoints/{v2}")).await;
    assert_eq!(refused.status(), 409);
    assert!(json(refused).await["error"].is_string());
    assert_eq!(env.delete(&format!("/v1/sprites/cp/checkpoints/{v1}")).await.status(), 204);
    assert_eq!(env.delete(&format!("/v1/sprites/cp/checkpoints/{v1}")).await.status(), 404);
    let ids: Vec<Value> = json(env.get("/v1/sprites/cp/checkpoints").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(v2), json!(v3)]);
    // A checkpoint after a restore descends from the restored one; ids keep counting.
    let v4 = env.checkpoint("cp", "four").await;
    assert_eq!(v4, "v4");
    let cp = json(env.get("/v1/sprites/cp/checkpoints/v4").await).await;
    assert_eq!(cp["source_id"], "v2");
    assert_eq!(cp["history"], json!(["v1", "v2"]));
    assert_eq!(env.post("/v1/sprites/cp/checkpoints/v9/restore", Value::Null).await.status(), 404);
}

#[tokio::test]
async fn a_restore_cuts_a_plain_http_exec_short() {
    let env = start().await;
    env.create_sprite("cp").await;
    let golden = env.checkpoint("cp", "golden").await;
    let req = env.req(reqwest::Method::POST, "/v1/sprites/cp/exec").query(&[
        ("cmd", "bash"),
        ("cmd", "-c"),
        ("cmd", "echo started; sleep 30"),
    ]);
    let exec = tokio::spawn(async move { req.send().await.unwrap().bytes().await });
    let running = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        json(env.get("/v1/sprites/cp/exec").await).await["count"] == 1
    })
    .await;
    assert!(running);
    env.restore("cp", &golden).await;
    let body = exec.await.unwrap().map(|b| b.to_vec()).unwrap_or_default();
    assert_eq!(body, b"\x01started\n".to_vec(), "no 0x03 exit bytes");
}
