use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use sprites_emulator::{CONTROL_UI_INDEX, EmulatorConfig, mint_invite_url};

use crate::common::{Env, eventually, fast, json, start, start_with};

const CONFIG: &str = "/home/sprite/.openclaw/openclaw.json";
const INSTRUCTIONS: &str = "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md";

/// A call to the Sprite URL with an optional bearer (no API token unless given).
async fn call(
    env: &Env,
    sprite: &str,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut req = env.http.request(method, env.url(&format!("/_sprite/{sprite}{path}")));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn status(env: &Env, sprite: &str, key: Option<&str>) -> Value {
    let resp = call(env, sprite, Method::GET, "/convos/status", key, None).await;
    assert_eq!(resp.status(), 200);
    json(resp).await
}

/// How many entries a directory of the Sprite holds; None when it does not exist.
async fn entries(env: &Env, sprite: &str, dir: &str) -> Option<u64> {
    let resp = env
        .req(Method::GET, &format!("/v1/sprites/{sprite}/fs/list"))
        .query(&[("path", dir), ("workingDir", "/")])
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => json(resp).await["count"].as_u64(),
        404 => None,
        s => panic!("fs list {dir}: {s}"),
    }
}

async fn configure(env: &Env, sprite: &str, convos: Value) {
    // A config the real gateway starts on (convos-contracts §7).
    let gateway = json!({"mode": "local", "reload": {"mode": "off"}, "auth": {"token": "t"}});
    let config = json!({"gateway": gateway, "channels": {"convos": convos}});
    env.write_file(sprite, CONFIG, serde_json::to_vec(&config).unwrap()).await;
}

#[tokio::test]
async fn bad_gateway_until_the_http_service_has_booted() {
    let env = start_with(EmulatorConfig { speed: 0.01, ..fast() }).await;
    env.set_config(json!({"gateway_boot_ms": 100000})).await; // 1 s at speed 0.01
    env.create_public_sprite("gw").await;
    let r = call(&env, "gw", Method::GET, "/convos/status", None, None).await;
    assert_eq!(r.status(), 502);
    assert_eq!(json(r).await, json!({"error": "bad gateway"}));
    // A service without an http_port does not carry the URL.
    env.put_service("gw", "worker", json!({"cmd": "sleep"})).await;
    assert_eq!(call(&env, "gw", Method::GET, "/convos/status", None, None).await.status(), 502);

    env.install_openclaw("gw").await;
    env.put_gateway_service("gw").await;
    assert_eq!(
        call(&env, "gw", Method::GET, "/convos/status", None, None).await.status(),
        502,
        "still booting"
    );
    let up = eventually(Duration::from_secs(6), || async {
        call(&env, "gw", Method::GET, "/convos/status", None, None).await.status() == 200
    })
    .await;
    assert!(up);
    assert_eq!(
        status(&env, "gw", None).await,
        json!({"ready": true, "conversation": null, "streaming": false})
    );
    env.post("/v1/sprites/gw/services/gateway/stop", Value::Null).await;
    assert_eq!(call(&env, "gw", Method::GET, "/convos/status", None, None).await.status(), 502);
}

#[tokio::test]
async fn sprite_auth_versus_public_and_the_pool_key() {
    let env = start().await;
    env.create_sprite("private").await;
    env.start_gateway("private").await;
    let anon = call(&env, "private", Method::GET, "/convos/status", None, None).await;
    assert_eq!(anon.status(), 401);
    let token = env.token.clone();
    assert_eq!(status(&env, "private", Some(&token)).await["ready"], true);

    env.create_public_sprite("open").await;
    configure(&env, "open", json!({"poolApiKey": "key-1", "env": "dev"})).await;
    env.start_gateway("open").await;
    let none = call(&env, "open", Method::GET, "/convos/status", None, None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(json(none).await, json!({"error": "Unauthorized"}));
    let wrong = call(&env, "open", Method::GET, "/convos/status", Some("key-2"), None).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(status(&env, "open", Some("key-1")).await["ready"], true);

    // Rotation: the gateway reads the key when it starts, so a restart is needed.
    configure(&env, "open", json!({"poolApiKey": "key-2"})).await;
    assert_eq!(status(&env, "open", Some("key-1")).await["ready"], true);
    env.post("/v1/sprites/open/services/gateway/restart", Value::Null).await;
    let old = call(&env, "open", Method::GET, "/convos/status", Some("key-1"), None).await;
    assert_eq!(old.status(), 401);
    assert_eq!(status(&env, "open", Some("key-2")).await["ready"], true);
}

#[tokio::test]
async fn wrong_methods_bad_bodies_and_unknown_paths() {
    let env = start().await;
    env.create_public_sprite("gw").await;
    env.start_gateway("gw").await;
    for (method, path) in [
        (Method::POST, "/convos/status"),
        (Method::GET, "/convos/conversation"),
        (Method::PUT, "/convos/join"),
    ] {
        let r = call(&env, "gw", method, path, None, None).await;
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(json(r).await, json!({"error": "Method Not Allowed"}));
    }
    let bad_json =
        env.http.post(env.url("/_sprite/gw/convos/conversation")).body("{not json").send().await.unwrap();
    assert_eq!(bad_json.status(), 500);
    assert!(json(bad_json).await["error"].is_string());
    let huge = env
        .http
        .post(env.url("/_sprite/gw/convos/conversation"))
        .body(format!("{{\"instructions\":\"{}\"}}", "x".repeat(1024 * 1024 + 10)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 500);
    assert!(env.read_file("gw", INSTRUCTIONS).await.is_none());
    assert_eq!(call(&env, "ghost", Method::GET, "/convos/status", None, None).await.status(), 404);
}

#[tokio::test]
async fn conversation_writes_instructions_byte_for_byte_and_binds() {
    let env = start().await;
    env.create_public_sprite("gw").await;
    configure(&env, "gw", json!({"poolApiKey": "k"})).await;
    env.start_gateway("gw").await;
    let instructions =
        "Be \"nice\" & 'calm'.\n$(rm -rf /) `id` $HOME \\n\nEOF\n<<'EOF'\n\ttabs ünïcödé 🚀\nEOF";
    let r = call(
        &env,
        "gw",
        Method::POST,
        "/convos/conversation",
        Some("k"),
        Some(json!({"name": "Agent", "instructions": instructions})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    let id = body["conversationId"].as_str().unwrap().to_string();
    let slug = body["inviteSlug"].as_str().unwrap();
    assert!(!slug.is_empty());
    assert_eq!(body["inviteUrl"], format!("https://dev.convos.org/v2?i={slug}"));
    assert_eq!(env.read_file("gw", INSTRUCTIONS).await.unwrap(), instructions.as_bytes());
    assert_eq!(
        status(&env, "gw", Some("k")).await,
        json!({"ready": true, "conversation": {"id": id}, "streaming": true})
    );
    // Binding lives in the files: openclaw.json and ~/.convos/.
    let config: Value = serde_json::from_slice(&env.read_file("gw", CONFIG).await.unwrap()).unwrap();
    assert_eq!(config["channels"]["convos"]["ownerConversationId"], id.as_str());
    assert_eq!(config["channels"]["convos"]["poolApiKey"], "k", "other keys kept");
    assert_eq!(config["gateway"]["auth"]["token"], "t");
    assert_eq!(env.exec("gw", &["test", "-d", "/home/sprite/.convos/identities"]).await.code(), 0);

    let again = call(&env, "gw", Method::POST, "/convos/conversation", Some("k"), Some(json!({}))).await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        json(again).await["error"],
        "Instance already bound to a conversation. Terminate process and provision a new one."
    );
    let join =
        call(&env, "gw", Method::POST, "/convos/join", Some("k"), Some(json!({"inviteUrl": "x"}))).await;
    assert_eq!(join.status(), 409, "bound is checked before the invite");

    // Blank instructions are not written.
    env.create_public_sprite("gw2").await;
    env.start_gateway("gw2").await;
    let r =
        call(&env, "gw2", Method::POST, "/convos/conversation", None, Some(json!({"instructions": "  \n"})))
            .await;
    assert_eq!(r.status(), 200);
    assert!(env.read_file("gw2", INSTRUCTIONS).await.is_none());
}

#[tokio::test]
async fn invite_host_follows_the_environment() {
    let env = start().await;
    for (name, convos, body, host) in [
        ("a", json!({}), json!({"env": "production"}), "popup.convos.org"),
        ("b", json!({"env": "production"}), json!({}), "popup.convos.org"),
        ("c", json!({"env": "production"}), json!({"env": "dev"}), "dev.convos.org"),
        ("d", json!({}), json!({}), "dev.convos.org"),
    ] {
        env.create_public_sprite(name).await;
        configure(&env, name, convos).await;
        env.start_gateway(name).await;
        let r = call(&env, name, Method::POST, "/convos/conversation", None, Some(body)).await;
        let url = json(r).await["inviteUrl"].as_str().unwrap().to_string();
        assert!(url.starts_with(&format!("https://{host}/v2?i=")), "{name}: {url}");
    }
}

#[tokio::test]
async fn join_validates_and_answers_as_configured() {
    let env = start().await;
    env.create_public_sprite("j").await;
    env.start_gateway("j").await;
    for body in [json!({}), json!([]), json!("x"), json!({"inviteUrl": 5}), json!({"inviteUrl": ""})] {
        let r = call(&env, "j", Method::POST, "/convos/join", None, Some(body)).await;
        assert_eq!(r.status(), 400);
        assert_eq!(json(r).await, json!({"error": "inviteUrl (string) is required"}));
    }

    env.set_config(json!({"join_outcome": "waiting_for_acceptance"})).await;
    let r = call(
        &env,
        "j",
        Method::POST,
        "/convos/join",
        None,
        Some(json!({"inviteUrl": mint_invite_url("dev"), "instructions": "hi"})),
    )
    .await;
    assert_eq!(json(r).await, json!({"status": "waiting_for_acceptance"}));
    assert_eq!(status(&env, "j", None).await["conversation"], Value::Null, "nothing persisted");
    assert_eq!(env.read_file("j", INSTRUCTIONS).await.unwrap(), b"hi");

    env.set_config(json!({"join_outcome": "joined"})).await;
    let r = call(
        &env,
        "j",
        Method::POST,
        "/convos/join",
        None,
        Some(json!({"inviteUrl": mint_invite_url("dev")})),
    )
    .await;
    let body = json(r).await;
    assert_eq!(body["status"], "joined");
    let id = body["conversationId"].as_str().unwrap();
    assert_eq!(status(&env, "j", None).await["conversation"]["id"], id);
}

#[tokio::test]
async fn join_waits_for_the_join_delay() {
    let env = start_with(EmulatorConfig {
        speed: 0.01,
        join_delay_ms: 30000, // 300 ms
        ..fast()
    })
    .await;
    env.create_public_sprite("j").await;
    env.start_gateway("j").await;
    tokio::time::sleep(Duration::from_millis(50)).await; // gateway boot at this speed: 20 ms
    let t = std::time::Instant::now();
    let body = json!({"inviteUrl": mint_invite_url("dev")});
    let r = call(&env, "j", Method::POST, "/convos/join", None, Some(body)).await;
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn restoring_a_checkpoint_taken_before_binding_unbinds() {
    let env = start().await;
    env.create_public_sprite("r").await;
    configure(&env, "r", json!({"poolApiKey": "k"})).await;
    env.start_gateway("r").await;
    let golden = env.checkpoint("r", "golden").await;
    let r =
        call(&env, "r", Method::POST, "/convos/conversation", Some("k"), Some(json!({"instructions": "x"})))
            .await;
    assert_eq!(r.status(), 200);
    assert!(status(&env, "r", Some("k")).await["conversation"].is_object());
    env.restore("r", &golden).await;
    assert_eq!(status(&env, "r", Some("k")).await["conversation"], Value::Null);
    assert!(env.read_file("r", INSTRUCTIONS).await.is_none());
    assert_eq!(env.exec("r", &["test", "-e", "/home/sprite/.convos"]).await.code(), 1);
    // And it can be claimed again.
    let again = call(&env, "r", Method::POST, "/convos/conversation", Some("k"), Some(json!({}))).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn gateway_down_until_the_next_exec() {
    let env = start().await;
    env.create_public_sprite("d").await;
    env.start_gateway("d").await;
    let down = env
        .control(
            Method::POST,
            "/_emulator/sprites/d/gateway",
            Some(json!({"down": true, "until_exec": true})),
        )
        .await;
    assert_eq!(down.status(), 200);
    assert_eq!(call(&env, "d", Method::GET, "/convos/status", None, None).await.status(), 502);
    assert_eq!(call(&env, "d", Method::GET, "/convos/status", None, None).await.status(), 502);
    assert_eq!(env.exec("d", &["true"]).await.code(), 0);
    assert_eq!(call(&env, "d", Method::GET, "/convos/status", None, None).await.status(), 200);

    env.control(Method::POST, "/_emulator/sprites/d/gateway", Some(json!({"down": true}))).await;
    env.exec("d", &["true"]).await;
    assert_eq!(
        call(&env, "d", Method::GET, "/convos/status", None, None).await.status(),
        502,
        "without until_exec an exec does not help"
    );
    env.control(Method::POST, "/_emulator/sprites/d/gateway", Some(json!({"down": false}))).await;
    assert_eq!(call(&env, "d", Method::GET, "/convos/status", None, None).await.status(), 200);
    let missing =
        env.control(Method::POST, "/_emulator/sprites/zz/gateway", Some(json!({"down": true}))).await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_restore_during_a_join_drops_it() {
    let env = start_with(EmulatorConfig {
        speed: 0.01,
        join_delay_ms: 50000, // 500 ms
        gateway_boot_ms: 0,
        ..fast()
    })
    .await;
    env.set_config(json!({"latency_ms": {"checkpoints.restore": 0, "checkpoints.create": 0}})).await;
    env.create_public_sprite("j").await;
    env.start_gateway("j").await;
    let golden = env.checkpoint("j", "golden").await;
    let (http, url) = (env.http.clone(), env.url("/_sprite/j/convos/join"));
    let invite = mint_invite_url("dev");
    let join =
        tokio::spawn(async move { http.post(url).json(&json!({"inviteUrl": invite})).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.restore("j", &golden).await;
    let resp = join.await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(status(&env, "j", None).await["conversation"], Value::Null);
}

// --- What the real gateway was seen to do (convos-contracts §7) ---

#[tokio::test]
async fn the_method_is_checked_before_auth_and_bodies_read_as_the_plugin_reads_them() {
    let env = start().await;
    env.create_public_sprite("m").await;
    configure(&env, "m", json!({"poolApiKey": "k"})).await;
    env.start_gateway("m").await;
    for (method, path, bearer) in [
        (Method::POST, "/convos/status", None),
        (Method::DELETE, "/convos/join", Some("wrong")),
        (Method::GET, "/convos/conversation", Some("k")),
    ] {
        let r = call(&env, "m", method, path, bearer, None).await;
        assert_eq!(r.status(), 405, "{path} with {bearer:?}");
        assert_eq!(json(r).await, json!({"error": "Method Not Allowed"}));
    }
    let r = call(&env, "m", Method::GET, "/convos/status", None, None).await;
    assert_eq!(r.status(), 401, "a right method still needs the key");

    let post = |body: &'static str| {
        env.http.post(env.url("/_sprite/m/convos/join")).bearer_auth("k").body(body).send()
    };
    let invalid = post("{not json").await.unwrap();
    assert_eq!(invalid.status(), 500);
    assert!(json(invalid).await["error"].as_str().unwrap().contains("JSON"));
    let null = post("null").await.unwrap();
    assert_eq!(null.status(), 500);
    for body in ["[]", "{}", "7", "\"https://dev.convos.org/v2?i=x\""] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(json(r).await, json!({"error": "inviteUrl (string) is required"}));
    }
}

#[tokio::test]
async fn unknown_paths_are_the_control_ui_without_auth_unbuilt_then_built() {
    let env = start().await;
    env.create_public_sprite("ui").await;
    configure(&env, "ui", json!({"poolApiKey": "k"})).await;
    // Without pnpm on PATH the gateway does not build its Control UI when it starts (§7).
    env.install_openclaw("ui").await;
    assert_eq!(env.exec("ui", &["rm", "/usr/bin/pnpm"]).await.code(), 0);
    env.start_gateway("ui").await;
    for path in ["/", "/nope", "/convos/nope", "/convos/status/extra"] {
        let r = call(&env, "ui", Method::GET, path, None, None).await;
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"), "{path}");
        assert!(r.text().await.unwrap().contains("pnpm ui:build"), "{path}");
    }
    let page = "<!doctype html><title>Control</title>";
    env.write_file("ui", CONTROL_UI_INDEX, page).await;
    for method in [Method::GET, Method::POST] {
        let r = call(&env, "ui", method, "/nope", None, None).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(r.text().await.unwrap(), page);
    }
    assert_eq!(call(&env, "ui", Method::GET, "/convos/status", None, None).await.status(), 401);

    // With the convos plugin off, its routes are the Control UI too.
    let config = json!({"gateway": {"mode": "local", "reload": {"mode": "off"}},
                        "channels": {"convos": {"poolApiKey": "k"}},
                        "plugins": {"entries": {"convos": {"enabled": false}}}});
    env.write_file("ui", CONFIG, serde_json::to_vec(&config).unwrap()).await;
    let r = call(&env, "ui", Method::GET, "/convos/status", None, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), page);
}

#[tokio::test]
async fn a_bogus_invite_fails_leaves_its_instructions_and_never_joins() {
    let env = start().await;
    env.create_public_sprite("b").await;
    env.start_gateway("b").await;
    for invite in ["https://dev.convos.org/v2?i=abc", "abc", "https://dev.convos.org/v2", "%%%"] {
        let body = json!({"inviteUrl": invite, "instructions": format!("for {invite}")});
        let r = call(&env, "b", Method::POST, "/convos/join", None, Some(body)).await;
        assert_eq!(r.status(), 500, "{invite}");
        let error = json(r).await["error"].as_str().unwrap().to_string();
        assert!(error.starts_with("Invalid invite"), "{invite}: {error}");
        assert_eq!(env.read_file("b", INSTRUCTIONS).await.unwrap(), format!("for {invite}").as_bytes());
    }
    assert_eq!(status(&env, "b", None).await["conversation"], Value::Null);
    assert_eq!(entries(&env, "b", "/home/sprite/.convos").await, None, "refused before any identity");
    // An invite another emulated gateway issued is one the CLI accepts.
    env.create_public_sprite("creator").await;
    env.start_gateway("creator").await;
    let created = call(&env, "creator", Method::POST, "/convos/conversation", None, Some(json!({}))).await;
    let invite = json(created).await["inviteUrl"].as_str().unwrap().to_string();
    let r = call(&env, "b", Method::POST, "/convos/join", None, Some(json!({"inviteUrl": invite}))).await;
    assert_eq!(json(r).await["status"], "joined");
}

#[tokio::test]
async fn without_the_xmtp_network_create_and_join_fail_leave_cli_state_and_stay_unbound() {
    let env = start().await;
    env.create_public_sprite("n").await;
    env.start_gateway("n").await;
    env.set_config(json!({"xmtp_network": "down"})).await;
    for attempt in 1..=2u64 {
        let body = json!({"name": "A", "instructions": "first user's instructions"});
        let r = call(&env, "n", Method::POST, "/convos/conversation", None, Some(body)).await;
        assert_eq!(r.status(), 500, "attempt {attempt}: a retry is accepted, never a 409");
        let error = json(r).await["error"].as_str().unwrap().to_string();
        assert!(error.contains("XMTP dev network") && error.contains("Usage:"), "{error}");
        assert_eq!(status(&env, "n", None).await["conversation"], Value::Null);
        assert_eq!(entries(&env, "n", "/home/sprite/.convos/identities").await, Some(attempt));
    }
    assert_eq!(entries(&env, "n", "/home/sprite/.convos/db/dev").await, Some(2));
    assert_eq!(env.read_file("n", INSTRUCTIONS).await.unwrap(), b"first user's instructions");
    let r = call(
        &env,
        "n",
        Method::POST,
        "/convos/join",
        None,
        Some(json!({"inviteUrl": mint_invite_url("dev")})),
    )
    .await;
    assert_eq!(r.status(), 500);
    assert_eq!(entries(&env, "n", "/home/sprite/.convos/identities").await, Some(3));
    assert_eq!(status(&env, "n", None).await["conversation"], Value::Null);

    env.set_config(json!({"xmtp_network": "up"})).await;
    let r = call(&env, "n", Method::POST, "/convos/conversation", None, Some(json!({}))).await;
    assert_eq!(r.status(), 200, "the leftovers do not stop a later create");
}

#[tokio::test]
async fn a_bind_rewrites_the_config_whole_and_keeps_the_previous_one() {
    let env = start().await;
    env.create_public_sprite("w").await;
    let original = serde_json::to_vec(&json!({
        "gateway": {"mode": "local", "port": 8080, "reload": {"mode": "off"}},
        "channels": {"convos": {"poolApiKey": "k", "env": "dev"}},
    }))
    .unwrap();
    env.write_file("w", CONFIG, original.clone()).await;
    env.start_gateway("w").await;
    assert!(env.read_file("w", &format!("{CONFIG}.bak")).await.is_none(), "a start writes nothing");
    let r = call(&env, "w", Method::POST, "/convos/conversation", Some("k"), Some(json!({}))).await;
    let id = json(r).await["conversationId"].as_str().unwrap().to_string();
    assert_eq!(env.read_file("w", &format!("{CONFIG}.bak")).await.unwrap(), original);
    let config: Value = serde_json::from_slice(&env.read_file("w", CONFIG).await.unwrap()).unwrap();
    assert!(config["meta"]["lastTouchedVersion"].is_string(), "{config}");
    assert!(config["meta"]["lastTouchedAt"].is_string(), "{config}");
    for key in ["commands", "messages"] {
        assert!(config[key].is_object(), "{key}: {config}");
    }
    assert!(config["agents"]["defaults"].is_object(), "{config}");
    assert_eq!(config["gateway"], json!({"mode": "local", "port": 8080, "reload": {"mode": "off"}}));
    assert_eq!(config["channels"]["convos"]["ownerConversationId"], id.as_str());
    assert_eq!(config["channels"]["convos"]["poolApiKey"], "k");
}
