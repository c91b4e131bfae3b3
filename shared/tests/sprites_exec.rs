//! Exec over the WebSocket: output, exit codes, stdin, environment, framing edge cases and
//! commands that outlive their socket.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use shared::sprites::{ExecRequest, SpritesError, WriteFile};
use sprites_emulator::EmulatorConfig;

#[tokio::test]
async fn output_and_exit_codes() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e1").await;

    let out = h.client.exec(&s, &ExecRequest::new(["echo", "hello", "world"])).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout_text(), "hello world\n");
    assert!(out.stderr.is_empty());

    assert_eq!(h.client.exec(&s, &ExecRequest::new(["false"])).await.unwrap().exit_code, 1);
    assert_eq!(h.client.exec(&s, &ExecRequest::new(["exit", "3"])).await.unwrap().exit_code, 3);
    assert_eq!(
        h.client.exec(&s, &ExecRequest::new(["bash", "-c", "exit 255"])).await.unwrap().exit_code,
        255
    );

    let missing = h.client.exec(&s, &ExecRequest::new(["cat", "/nope"])).await.unwrap();
    assert_ne!(missing.exit_code, 0);
    assert!(!missing.stderr.is_empty(), "errors go to stderr");
}

#[tokio::test]
async fn arguments_are_argv_not_shell() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e2").await;
    let tricky = "$(rm -rf /) `id` \"quoted\" 'single' ; && |";
    let out = h.client.exec(&s, &ExecRequest::new(["echo", tricky])).await.unwrap();
    assert_eq!(out.stdout_text(), format!("{tricky}\n"));
}

#[tokio::test]
async fn stdin_env_and_dir() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e3").await;

    let payload: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let out = h.client.exec(&s, &ExecRequest::new(["cat"]).stdin(payload.clone())).await.unwrap();
    assert_eq!(out.stdout, payload, "stdin round-trips byte for byte");

    let out = h
        .client
        .exec(&s, &ExecRequest::new(["printenv", "GREETING"]).env("GREETING", "hi there"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "hi there\n");

    h.client.exec(&s, &ExecRequest::new(["mkdir", "-p", "work/sub"])).await.unwrap();
    let out =
        h.client.exec(&s, &ExecRequest::new(["test", "-d", "sub"]).dir("/home/sprite/work")).await.unwrap();
    assert_eq!(out.exit_code, 0, "relative paths resolve against dir");
    let out = h.client.exec(&s, &ExecRequest::new(["pwd"]).dir("/home/sprite/work")).await.unwrap();
    assert_eq!(out.stdout_text(), "/home/sprite/work\n");
}

#[tokio::test]
async fn empty_exit_payload_means_zero() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e4").await;
    h.fault(json!({"route": "exec", "kind": {"type": "exec_empty_exit_payload"}})).await;
    let out = h.client.exec(&s, &ExecRequest::new(["echo", "ok"])).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout_text(), "ok\n");
}

#[tokio::test]
async fn text_frames_between_output_are_tolerated() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e5").await;
    h.client.write_file(&s, &WriteFile::new("/home/sprite/data.txt", "line one\nline two\n")).await.unwrap();
    h.fault(json!({"route": "exec", "kind": {"type": "exec_text_frames"}})).await;
    let out = h.client.exec(&s, &ExecRequest::new(["cat", "/home/sprite/data.txt"])).await.unwrap();
    assert_eq!(out.stdout_text(), "line one\nline two\n");
    assert_eq!(out.exit_code, 0);
    let out = h.client.exec(&s, &ExecRequest::new(["exit", "7"])).await.unwrap();
    assert_eq!(out.exit_code, 7);
}

#[tokio::test]
async fn close_without_exit_frame_is_a_transport_error() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e6").await;
    h.fault(json!({"route": "exec", "count": 1, "kind": {"type": "exec_close_without_exit"}})).await;
    let err = h.client.exec(&s, &ExecRequest::new(["echo", "partial"])).await.unwrap_err();
    assert!(matches!(err, SpritesError::Transport(_)), "never exit 0: {err:?}");
    assert_eq!(h.count("exec").await, 1, "not retried");
}

#[tokio::test]
async fn output_beyond_the_cap_is_cut_and_flagged() {
    const BIG: usize = 3 * 1024 * 1024 + 17;
    let contents: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();

    let h = common::start_with(EmulatorConfig { speed: 0.0, ..EmulatorConfig::default() }, |c| {
        c.exec_output_cap = 1024 * 1024;
    })
    .await;
    let s = h.sprite("convos-agent-dev-e7").await;
    h.client.write_file(&s, &WriteFile::new("/home/sprite/big.bin", contents.clone())).await.unwrap();
    let out = h.client.exec(&s, &ExecRequest::new(["cat", "/home/sprite/big.bin"])).await.unwrap();
    assert_eq!(out.exit_code, 0, "the exit code still arrives after the cap");
    assert_eq!(out.stdout.len(), 1024 * 1024);
    assert_eq!(out.stdout[..], contents[..1024 * 1024]);
    assert!(out.stdout_truncated);
    assert!(!out.stderr_truncated);

    // Under the default cap the whole multi-megabyte output arrives intact.
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-e8").await;
    h.client.write_file(&s, &WriteFile::new("/home/sprite/big.bin", contents.clone())).await.unwrap();
    let out = h.client.exec(&s, &ExecRequest::new(["cat", "/home/sprite/big.bin"])).await.unwrap();
    assert_eq!(out.stdout.len(), BIG);
    assert!(out.stdout == contents);
    assert!(!out.stdout_truncated);
}

#[tokio::test]
async fn the_client_closes_at_once_after_the_exit_frame() {
    // At full speed the emulator, like the real server, lingers 5 s before closing.
    let h = common::start_with(EmulatorConfig { speed: 1.0, ..EmulatorConfig::default() }, |_| {}).await;
    let s = h.sprite("convos-agent-dev-e9").await;
    // A new Sprite starts cold: the first exec pays its wake (1-2 s), which is not under test.
    h.client.exec(&s, &ExecRequest::new(["true"])).await.unwrap();
    let started = Instant::now();
    let out = h.client.exec(&s, &ExecRequest::new(["true"])).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn exec_on_a_missing_sprite_is_not_found() {
    let h = common::start().await;
    let err = h.client.exec("convos-agent-dev-none", &ExecRequest::new(["true"])).await.unwrap_err();
    assert!(matches!(err, SpritesError::NotFound { .. }), "{err:?}");
    let err =
        h.client.exec("convos-agent-dev-none", &ExecRequest::new(Vec::<String>::new())).await.unwrap_err();
    assert!(matches!(err, SpritesError::Protocol(_)), "no argv is refused before any call: {err:?}");
}

#[tokio::test]
async fn a_long_command_outlives_its_socket_and_is_listed_meanwhile() {
    let config = EmulatorConfig { speed: 1.0, setup_secs: 2.0, ..EmulatorConfig::default() };
    let h = common::start_with(config, |_| {}).await;
    let s = h.sprite("convos-agent-dev-e10").await;
    h.client
        // The real script: the emulator runs its installs, which take the setup time.
        .write_file(
            &s,
            &WriteFile::new("/home/sprite/sprite-setup.sh", include_str!("../../scripts/sprite-setup.sh")),
        )
        .await
        .unwrap();
    let install = ExecRequest::new(["bash", "/home/sprite/sprite-setup.sh", "/home/sprite/.setup-done"])
        .max_run_after_disconnect(Duration::from_secs(600));

    // The invoking process gives up (a Lambda timing out) long before the install ends.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), h.client.exec(&s, &install)).await;
    assert!(gave_up.is_err(), "the install takes longer than the caller waited");

    let sessions = h.client.list_exec_sessions(&s).await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|session| session.command.as_deref().is_some_and(|c| c.contains("sprite-setup.sh"))),
        "the install is still running: {sessions:?}"
    );
    assert_eq!(h.client.read_file(&s, "/home/sprite/.setup-done").await.unwrap(), None);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(marker) = h.client.read_file(&s, "/home/sprite/.setup-done").await.unwrap() {
            assert_eq!(&marker[..], b"ok\n");
            break;
        }
        assert!(Instant::now() < deadline, "the install never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sessions = h.client.list_exec_sessions(&s).await.unwrap();
    assert!(
        sessions.iter().all(|session| !session.command.as_deref().unwrap_or("").contains("sprite-setup.sh"))
    );
}
