//! Issue 16.3: the state file. An emulator stopped and started again on the same file has the
//! same world, as a real machine restart leaves it: the Sprite's files, service, checkpoint,
//! URL and gateway binding survive; it is cold, and its service starts again on the first
//! wake; the OpenRouter key and AgentMail inbox are still there. A file that is not a state
//! file of this version is refused with a message that says so, never half-read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sprites_emulator::{EmulatorConfig, Loaded, STATE_FORMAT_VERSION, STATE_SAVE_PERIOD};

use crate::common::{Env, eventually, fast, json, start_with};

const CONFIG: &str = "/home/sprite/.openclaw/openclaw.json";

/// A fresh directory of the test's own under the system's temp dir.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emulator-state-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_state(path: &std::path::Path) -> EmulatorConfig {
    EmulatorConfig { state_file: Some(path.to_path_buf()), ..fast() }
}

/// Starts on `addr` (the port of the previous run: Sprite URLs name it).
async fn start_on(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<sprites_emulator::Emulator> {
    sprites_emulator::Emulator::start_on(addr, config).await
}

async fn gateway_status(env: &Env, sprite: &str) -> reqwest::Response {
    env.http.get(env.url(&format!("/_sprite/{sprite}/convos/status"))).bearer_auth("k").send().await.unwrap()
}

#[tokio::test]
async fn a_restart_on_the_state_file_brings_the_world_back_cold() {
    let dir = temp_dir();
    let path = dir.join("state.json");
    let env = start_with(with_state(&path)).await;
    assert_eq!(env.emu.loaded(), Some(&Loaded::Fresh));

    env.create_public_sprite("keep").await;
    let config = json!({
        "gateway": {"mode": "local", "port": 8080, "bind": "lan", "reload": {"mode": "off"}, "auth": {"token": "t"}},
        "channels": {"convos": {"poolApiKey": "k"}},
    });
    env.write_file("keep", CONFIG, serde_json::to_vec(&config).unwrap()).await;
    env.start_gateway("keep").await;
    env.write_file("keep", "/home/sprite/notes/a.bin", vec![0u8, 159, 146, 150, 255]).await;
    let checkpoint = env.checkpoint("keep", "before the bind").await;
    let bound = env
        .http
        .post(env.url("/_sprite/keep/convos/conversation"))
        .bearer_auth("k")
        .json(&json!({"name": "Agent", "instructions": "Be kind."}))
        .send()
        .await
        .unwrap();
    assert_eq!(bound.status(), 200);
    let conversation = json(bound).await["conversationId"].as_str().unwrap().to_string();
    let key = env
        .http
        .post(env.url("/api/v1/keys"))
        .bearer_auth(&env.emu.config().openrouter_key)
        .json(&json!({"name": "convos-agent-keep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 201);
    let hash = json(key).await["data"]["hash"].as_str().unwrap().to_string();
    let inbox = env
        .http
        .post(env.url("/v0/inboxes"))
        .bearer_auth(&env.emu.config().agentmail_key)
        .json(&json!({"username": "keep"}))
        .send()
        .await
        .unwrap();
    assert!(inbox.status().is_success());
    let inbox = json(inbox).await["inbox_id"].as_str().unwrap().to_string();
    let before = json(env.get("/v1/sprites/keep").await).await;

    // Written periodically, not only on shutdown: a kill -9 loses at most one period.
    let saved = eventually(STATE_SAVE_PERIOD * 3, || async {
        std::fs::read_to_string(&path).is_ok_and(|text| text.contains(&hash) && text.contains("keep"))
    })
    .await;
    assert!(saved, "the state file is written while the emulator runs");

    let addr = env.emu.addr();
    env.emu.shutdown().await;
    assert!(!dir.join("state.json.tmp").exists(), "the temporary file was renamed");
    let emu = start_on(addr, with_state(&path)).await.expect("starts on its state file");
    let Some(Loaded::Restored(restored)) = emu.loaded() else { panic!("restored: {:?}", emu.loaded()) };
    assert_eq!((restored.sprites, restored.openrouter_keys, restored.agentmail_inboxes), (1, 1, 1));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let env = Env { base: emu.base_url(), token: emu.token().to_string(), emu, http };

    // Cold: nothing runs until something wakes it (the management API does not).
    let after = json(env.get("/v1/sprites/keep").await).await;
    assert_eq!(after["status"], "cold");
    for field in ["id", "url", "url_settings", "created_at"] {
        assert_eq!(after[field], before[field], "{field} survives");
    }
    let state = json(env.get("/_emulator/state").await).await;
    assert_eq!(state["sprites"]["keep"]["listening"], json!([]), "no process survives");

    // The first request to its URL wakes it cold; the gateway service starts again from its
    // definition and answers with the same binding.
    let answered =
        eventually(Duration::from_secs(5), || async { gateway_status(&env, "keep").await.status() == 200 })
            .await;
    assert!(answered, "the gateway boots again on the wake");
    let status = json(gateway_status(&env, "keep").await).await;
    assert_eq!(status["conversation"]["id"], conversation.as_str());
    let lifecycle = json(env.control(Method::GET, "/_emulator/lifecycle", None).await).await;
    assert_eq!(lifecycle["sprites"]["keep"]["status"], "running");
    let services = json(env.get("/v1/sprites/keep/services").await).await;
    let gateway = services.as_array().unwrap().iter().find(|s| s["name"] == "gateway").unwrap().clone();
    assert_eq!(gateway["state"]["status"], "running", "{gateway}");

    assert_eq!(
        env.read_file("keep", "/home/sprite/notes/a.bin").await.unwrap(),
        vec![0u8, 159, 146, 150, 255]
    );
    let checkpoints = json(env.get("/v1/sprites/keep/checkpoints").await).await;
    assert!(checkpoints.as_array().unwrap().iter().any(|c| c["id"] == checkpoint.as_str()), "{checkpoints}");
    // The checkpoint still holds the unbound files: restoring it unbinds.
    env.restore("keep", &checkpoint).await;
    let unbound = eventually(Duration::from_secs(5), || async {
        let resp = gateway_status(&env, "keep").await;
        resp.status() == 200 && json(resp).await["conversation"].is_null()
    })
    .await;
    assert!(unbound, "the restored checkpoint is the one taken before the bind");

    let key = env
        .http
        .get(env.url(&format!("/api/v1/keys/{hash}")))
        .bearer_auth(&env.emu.config().openrouter_key)
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 200);
    let inbox = env
        .http
        .get(env.url(&format!("/v0/inboxes/{inbox}")))
        .bearer_auth(&env.emu.config().agentmail_key)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), 200);
    env.emu.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `Emulator::start` says about a state file it will not read.
async fn refusal(content: &str) -> String {
    let dir = temp_dir();
    let path = dir.join("state.json");
    std::fs::write(&path, content).unwrap();
    let err = sprites_emulator::Emulator::start(with_state(&path)).await.err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content, "a refused file is left as it was");
    std::fs::remove_dir_all(&dir).unwrap();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "names the file: {message}");
    assert!(message.contains("delete it to start empty"), "says what to do: {message}");
    message
}

#[tokio::test]
async fn a_corrupt_old_or_foreign_file_is_refused_with_a_clear_message() {
    let torn = refusal(r#"{"format":"sprites-emulator-state","version":1,"world":{"spr"#).await;
    assert!(torn.contains("not a readable state file"), "{torn}");
    let old = refusal(r#"{"format":"sprites-emulator-state","version":0,"world":{}}"#).await;
    let expected = format!("version 0, this emulator reads version {STATE_FORMAT_VERSION}");
    assert!(old.contains(&expected), "{old}");
    let foreign = refusal(&json!({"sprites": []}).to_string()).await;
    assert!(foreign.contains("not a Sprites emulator state file"), "{foreign}");
    let version = STATE_FORMAT_VERSION;
    let broken =
        refusal(&format!(r#"{{"format":"sprites-emulator-state","version":{version},"world":[]}}"#)).await;
    assert!(broken.contains("corrupt"), "{broken}");
}
