use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use sprites_emulator::EmulatorConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{collect, eventually, fast, json, send_eof, send_stdin, start, start_with};

#[tokio::test]
async fn session_info_first_then_stdout_and_exit_frames() {
    let env = start().await;
    env.create_sprite("ex").await;
    let r = env.exec("ex", &["echo", "hello", "world"]).await;
    let info = r.session_info.as_ref().expect("session_info first");
    assert_eq!(info["type"], "session_info");
    assert!(info["session_id"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(info["tty"], false);
    assert_eq!(info["is_owner"], true);
    assert_eq!(info["command"], "echo hello world");
    assert_eq!(r.frames[0], b"\x01hello world\n".to_vec());
    assert_eq!(r.frames.last().unwrap(), &vec![3u8, 0]);
    assert_eq!(r.out(), "hello world\n");
    assert!(r.texts.is_empty(), "no other text frames: {:?}", r.texts);
}

#[tokio::test]
async fn stderr_and_exit_codes() {
    let env = start().await;
    env.create_sprite("ex").await;
    let r = env.exec("ex", &["bash", "-c", "echo out; echo err >&2; exit 3"]).await;
    assert_eq!(r.out(), "out\n");
    assert_eq!(r.err(), "err\n");
    assert_eq!(r.exit_payload, Some(vec![3]));

    assert_eq!(env.exec("ex", &["exit", "3"]).await.code(), 3);
    assert_eq!(env.exec("ex", &["false"]).await.code(), 1);
    assert_eq!(env.exec("ex", &["true"]).await.code(), 0);
    let missing = env.exec("ex", &["cat", "/nope"]).await;
    assert_eq!(missing.code(), 1);
    assert_eq!(missing.err(), "cat: /nope: No such file or directory\n");
    let syntax = env.exec("ex", &["bash", "-c", "echo before; sleep 1 &"]).await;
    assert_eq!((syntax.code(), syntax.out()), (2, String::new()), "refused before anything runs");
    assert!(syntax.err().contains("unsupported shell syntax: background jobs"), "{}", syntax.err());
    // Nothing unknown pretends to work: bash's "command not found", 127.
    let unknown = env.exec("ex", &["frobnicate", "--all"]).await;
    assert_eq!((unknown.code(), unknown.out()), (127, String::new()));
    assert_eq!(unknown.err(), "bash: frobnicate: command not found\n");
}

#[tokio::test]
async fn stdin_is_forwarded_until_eof_only_when_enabled() {
    let env = start().await;
    env.create_sprite("ex").await;
    let mut ws = env.ws("ex", &[("cmd", "cat"), ("stdin", "true")]).await.unwrap();
    send_stdin(&mut ws, b"hello ").await;
    send_stdin(&mut ws, b"world\n").await;
    send_eof(&mut ws).await;
    let r = collect(&mut ws, true).await;
    assert_eq!(r.out(), "hello world\n");
    assert_eq!(r.code(), 0);

    // stdin=false (the non-TTY default): cat sees EOF at once and ignores what we send.
    let mut ws = env.ws("ex", &[("cmd", "cat")]).await.unwrap();
    send_stdin(&mut ws, b"ignored").await;
    let r = collect(&mut ws, true).await;
    assert_eq!((r.out(), r.code()), (String::new(), 0));
}

#[tokio::test]
async fn filesystem_commands_and_relative_paths() {
    let env = start().await;
    env.create_sprite("ex").await;
    let r = env.exec("ex", &["bash", "-c", "mkdir -p a && touch a/b"]).await;
    assert_eq!(r.code(), 0, "{}", r.err());
    assert_eq!(env.read_file("ex", "/home/sprite/a/b").await, Some(vec![]));
    assert_eq!(env.exec("ex", &["test", "-f", "a/b"]).await.code(), 0);
    assert_eq!(env.exec("ex", &["test", "-d", "a"]).await.code(), 0);
    assert_eq!(env.exec("ex", &["test", "-f", "a"]).await.code(), 1);
    assert_eq!(env.exec("ex", &["[", "-e", "/home/sprite/a/b", "]"]).await.code(), 0);
    assert_eq!(
        env.exec_with("ex", &["test", "-f", "b"], &[("dir", "/home/sprite/a")]).await.code(),
        0,
        "relative to dir"
    );
    let pwd = env.exec_with("ex", &["pwd"], &[("dir", "/tmp")]).await;
    assert_eq!(pwd.out(), "/tmp\n");
    assert_eq!(env.exec("ex", &["pwd"]).await.out(), "/home/sprite\n");
    let ls = env.exec("ex", &["ls", "a"]).await;
    assert_eq!(ls.out(), "b\n");
    let r = env
        .exec(
            "ex",
            &[
                "bash",
                "-c",
                "cd a && echo 'x y' > c.txt && cat c.txt; rm -rf /home/sprite/a; test -e a || echo gone",
            ],
        )
        .await;
    assert_eq!(r.out(), "x y\ngone\n");
    assert_eq!(env.read_file("ex", "/home/sprite/a/c.txt").await, None);
    let bad_dir = env.exec_with("ex", &["true"], &[("dir", "/missing")]).await;
    assert_eq!(bad_dir.code(), 1);
}

#[tokio::test]
async fn env_parameter_replaces_the_environment() {
    let env = start().await;
    env.create_sprite("ex").await;
    assert_eq!(env.exec("ex", &["printenv", "HOME"]).await.out(), "/home/sprite\n");
    let r = env.exec_with("ex", &["printenv", "FOO"], &[("env", "FOO=bar=baz")]).await;
    assert_eq!((r.out(), r.code()), ("bar=baz\n".to_string(), 0));
    let r = env.exec_with("ex", &["printenv", "HOME"], &[("env", "FOO=bar")]).await;
    assert_eq!(r.code(), 1, "HOME is gone once env replaces the environment");
    let r = env.exec_with("ex", &["bash", "-c", "echo \"$A-$B\""], &[("env", "A=1"), ("env", "B=2")]).await;
    assert_eq!(r.out(), "1-2\n");
}

#[tokio::test]
async fn large_output_is_chunked() {
    let env = start().await;
    env.create_sprite("ex").await;
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    env.write_file("ex", "/home/sprite/big.bin", big.clone()).await;
    let r = env.exec("ex", &["cat", "big.bin"]).await;
    assert_eq!(r.code(), 0);
    assert_eq!(r.stdout.len(), big.len());
    assert!(r.stdout == big, "content survives chunking");
    let out_frames: Vec<_> = r.frames.iter().filter(|f| f[0] == 1).collect();
    assert!(out_frames.len() >= 48, "{} frames", out_frames.len());
    assert!(out_frames.iter().all(|f| f.len() <= 64 * 1024 + 1));
}

#[tokio::test]
async fn exec_quirk_faults() {
    let env = start().await;
    env.create_sprite("ex").await;

    env.add_fault(json!({"route": "exec", "count": 1, "kind": {"type": "exec_close_without_exit"}})).await;
    let mut ws = env.ws("ex", &[("cmd", "echo"), ("cmd", "hi")]).await.unwrap();
    let r = collect(&mut ws, true).await;
    assert_eq!(r.out(), "hi\n");
    assert_eq!(r.exit_payload, None, "no exit frame");
    assert_eq!(r.close_code, Some(1000));

    env.add_fault(json!({"route": "exec", "count": 2, "kind": {"type": "exec_empty_exit_payload"}})).await;
    let r = env.exec("ex", &["true"]).await;
    assert_eq!(r.frames.last().unwrap(), &vec![3u8], "bare exit frame for code 0");
    let r = env.exec("ex", &["exit", "5"]).await;
    assert_eq!(r.exit_payload, Some(vec![5]), "non-zero codes keep their byte");

    env.add_fault(json!({"route": "exec", "count": 1, "kind": {"type": "exec_text_frames"}})).await;
    let r = env.exec("ex", &["echo", "x"]).await;
    assert_eq!(r.session_info.as_ref().unwrap()["type"], "session_info");
    assert!(!r.texts.is_empty());
    assert!(r.texts.iter().any(|t| t["type"] == "port_opened"));
    assert_eq!((r.out(), r.code()), ("x\n".to_string(), 0));

    // Quirks are used up: a normal exec again.
    let r = env.exec("ex", &["echo", "y"]).await;
    assert!(r.texts.is_empty());
    assert_eq!(r.frames.last().unwrap(), &vec![3u8, 0]);
}

fn slow_setup() -> EmulatorConfig {
    // 0.6 s of setup at speed 0.01 (60 s before speed); other latencies ~0.
    EmulatorConfig { speed: 0.01, setup_secs: 60.0, ..fast() }
}

const SETUP: &str = "/home/sprite/sprite-setup.sh";
const MARKER: &str = "/home/sprite/.setup-done";

#[tokio::test]
async fn setup_script_keeps_running_after_disconnect() {
    let env = start_with(slow_setup()).await;
    env.create_sprite("ex").await;
    env.write_file("ex", SETUP, "#!/bin/bash\n").await;
    let started = Instant::now();
    let mut ws = env
        .ws("ex", &[("cmd", "bash"), ("cmd", SETUP), ("cmd", MARKER), ("max_run_after_disconnect", "30m")])
        .await
        .unwrap();
    // session_info, then the first progress line; then the client goes away.
    let first = ws.next().await.unwrap().unwrap();
    assert!(matches!(first, Message::Text(_)));
    let progress = ws.next().await.unwrap().unwrap();
    assert!(matches!(&progress, Message::Binary(b) if b[0] == 1 && b.len() > 1));
    drop(ws);

    let sessions = json(env.get("/v1/sprites/ex/exec").await).await;
    assert_eq!(sessions["count"], 1);
    let s = &sessions["sessions"][0];
    assert_eq!(s["command"], format!("bash {SETUP} {MARKER}"));
    assert_eq!(s["workdir"], "/home/sprite");
    assert_eq!(s["tty"], false);
    assert_eq!(env.read_file("ex", MARKER).await, None, "not done yet");

    let done =
        eventually(Duration::from_secs(5), || async { env.read_file("ex", MARKER).await.is_some() }).await;
    assert!(done, "the marker appears although the socket was dropped");
    assert!(started.elapsed() >= Duration::from_millis(500), "it took the setup time");
    assert_eq!(env.read_file("ex", MARKER).await.unwrap(), b"ok\n");
    let sessions = json(env.get("/v1/sprites/ex/exec").await).await;
    assert_eq!(sessions["count"], 0, "finished sessions leave the list");
}

#[tokio::test]
async fn setup_script_is_killed_when_max_run_after_disconnect_is_shorter() {
    let env = start_with(slow_setup()).await;
    env.create_sprite("ex").await;
    env.write_file("ex", SETUP, "#!/bin/bash\n").await;
    let mut ws = env
        .ws("ex", &[("cmd", "bash"), ("cmd", SETUP), ("cmd", MARKER), ("max_run_after_disconnect", "100ms")])
        .await
        .unwrap();
    let _ = ws.next().await;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(env.read_file("ex", MARKER).await, None, "killed before the marker");
    let sessions = json(env.get("/v1/sprites/ex/exec").await).await;
    assert_eq!(sessions["count"], 0);

    // Staying connected, the same script completes and reports its progress.
    let r = env.exec("ex", &["bash", SETUP, MARKER]).await;
    assert_eq!(r.code(), 0);
    assert!(r.out().contains("[sprite-setup] done"));
    assert_eq!(env.read_file("ex", MARKER).await.unwrap(), b"ok\n");

    let missing = env.exec("ex", &["bash", "/home/sprite/nope/sprite-setup.sh"]).await;
    assert_eq!(missing.code(), 127);
}

#[tokio::test]
async fn socket_stays_open_after_exit_then_closes_normally() {
    let env = start_with(EmulatorConfig {
        speed: 0.06, // hold = 300 ms
        ..fast()
    })
    .await;
    env.create_sprite("ex").await;
    let mut ws = env.ws("ex", &[("cmd", "true")]).await.unwrap();
    let r = collect(&mut ws, true).await;
    assert_eq!(r.code(), 0);
    let after_exit = Instant::now();
    let rest = collect(&mut ws, false).await;
    assert_eq!(rest.close_code, Some(1000));
    let held = after_exit.elapsed();
    assert!(held >= Duration::from_millis(250), "held {held:?}");
    assert!(held < Duration::from_secs(3), "held {held:?}");
}

#[tokio::test]
async fn plain_http_exec_streams_concatenated_frames() {
    let env = start().await;
    env.create_sprite("ex").await;
    let body = env
        .req(Method::POST, "/v1/sprites/ex/exec")
        .query(&[("cmd", "bash"), ("cmd", "-c"), ("cmd", "echo hi; echo no >&2; exit 4")])
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.headers()["content-type"].to_str().unwrap(), "application/octet-stream");
    assert_eq!(body.bytes().await.unwrap().to_vec(), b"\x01hi\n\x02no\n\x03\x04".to_vec());

    let cat = env
        .req(Method::POST, "/v1/sprites/ex/exec")
        .query(&[("cmd", "cat"), ("stdin", "true")])
        .body("from the body")
        .send()
        .await
        .unwrap();
    assert_eq!(cat.bytes().await.unwrap().to_vec(), b"\x01from the body\x03\x00".to_vec());

    for p in ["tty", "id", "detachable", "cc"] {
        let resp = env
            .req(Method::POST, "/v1/sprites/ex/exec")
            .query(&[("cmd", "true"), (p, "true")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{p}");
    }
    let missing =
        env.req(Method::POST, "/v1/sprites/none/exec").query(&[("cmd", "true")]).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn sessions_list_and_kill() {
    let env = start().await;
    env.create_sprite("ex").await;
    let mut ws = env.ws("ex", &[("cmd", "sleep"), ("cmd", "30")]).await.unwrap();
    let info = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    let id = info["session_id"].as_str().unwrap().to_string();
    let list = json(env.get("/v1/sprites/ex/exec").await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["sessions"][0]["id"], id.as_str());
    assert_eq!(list["sessions"][0]["command"], "sleep 30");
    assert_eq!(list["sessions"][0]["is_active"], true);

    let kill = env.post(&format!("/v1/sprites/ex/exec/{id}/kill"), serde_json::Value::Null).await;
    assert_eq!(kill.status(), 200);
    assert_eq!(kill.headers()["content-type"].to_str().unwrap(), "application/x-ndjson");
    let lines = crate::common::ndjson(kill).await;
    assert_eq!(lines.last().unwrap()["type"], "complete");
    assert_eq!(lines.last().unwrap()["exit_code"], 143);
    let r = collect(&mut ws, true).await;
    assert_eq!(r.exit_payload, Some(vec![143]));
    assert_eq!(json(env.get("/v1/sprites/ex/exec").await).await["count"], 0);
    let gone = env.post(&format!("/v1/sprites/ex/exec/{id}/kill"), serde_json::Value::Null).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.text().await.unwrap(), format!("session not found: {id}"));
}

#[tokio::test]
async fn exec_on_a_missing_sprite_is_a_404_handshake() {
    let env = start().await;
    match env.ws("ghost", &[("cmd", "true")]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn tty_mode_sends_raw_bytes_and_a_json_exit() {
    let env = start().await;
    env.create_sprite("ex").await;
    let mut ws = env
        .ws("ex", &[("cmd", "bash"), ("cmd", "-c"), ("cmd", "echo hi; exit 2"), ("tty", "true")])
        .await
        .unwrap();
    let r = collect(&mut ws, false).await;
    assert_eq!(r.session_info.as_ref().unwrap()["tty"], true);
    assert_eq!(r.frames, vec![b"hi\n".to_vec()], "no stream-id prefix in TTY mode");
    assert_eq!(r.texts, vec![json!({"type": "exit", "exit_code": 2})]);
    assert_eq!(r.close_code, Some(1000));
}

#[tokio::test]
async fn an_exec_wakes_a_cold_sprite() {
    let env = start().await;
    env.create_sprite("ex").await;
    assert_eq!(json(env.get("/v1/sprites/ex").await).await["status"], "cold");
    env.exec("ex", &["true"]).await;
    let s = json(env.get("/v1/sprites/ex").await).await;
    assert_eq!(s["status"], "running");
    assert!(s["last_active_at"].is_string());
}
