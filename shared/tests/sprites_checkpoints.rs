//! Checkpoints: create (id from the stream), list, get, restore semantics, delete.

mod common;

use std::time::{Duration, Instant};

use shared::sprites::{ExecRequest, ServiceSpec, SpritesError, WriteFile};
use sprites_emulator::EmulatorConfig;

#[tokio::test]
async fn create_list_get_delete() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-c1").await;
    let first = h.client.create_checkpoint(&s, "golden inst-1").await.unwrap();
    let second = h.client.create_checkpoint(&s, "second").await.unwrap();
    assert_ne!(first, second);
    assert!(first.starts_with('v') && second.starts_with('v'), "{first} {second}");

    let listed = h.client.list_checkpoints(&s).await.unwrap();
    let golden = listed.iter().find(|c| c.id == first).expect("listed");
    assert_eq!(golden.comment.as_deref(), Some("golden inst-1"));
    assert!(golden.create_time.is_some());

    assert_eq!(h.client.get_checkpoint(&s, &second).await.unwrap().comment.as_deref(), Some("second"));
    assert!(h.client.delete_checkpoint(&s, &second).await.unwrap());
    assert!(!h.client.delete_checkpoint(&s, &second).await.unwrap());
    assert!(h.client.get_checkpoint(&s, &second).await.unwrap_err().is_not_found());
    assert!(h.client.restore_checkpoint(&s, "v999").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn restore_replaces_files_and_brings_services_back() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-c2").await;
    h.client
        .write_file(&s, &WriteFile::new("/home/sprite/.openclaw/openclaw.json", "{\"v\":1}"))
        .await
        .unwrap();
    // A service that runs until stopped (the emulator runs its command).
    let gateway = ServiceSpec {
        cmd: "sleep".into(),
        args: vec!["3600".into()],
        http_port: Some(8080),
        ..ServiceSpec::default()
    };
    h.client.put_service(&s, "gateway", &gateway).await.unwrap();
    let golden = h.client.create_checkpoint(&s, "golden").await.unwrap();

    // What a claim leaves behind, plus a stopped gateway.
    h.client
        .write_file(&s, &WriteFile::new("/home/sprite/.openclaw/openclaw.json", "{\"v\":2}"))
        .await
        .unwrap();
    h.client.write_file(&s, &WriteFile::new("/home/sprite/.convos/identities/x.json", "{}")).await.unwrap();
    h.client.stop_service(&s, "gateway").await.unwrap();

    let messages = h.client.restore_checkpoint(&s, &golden).await.unwrap();
    assert!(messages.iter().any(|m| m.kind == "complete"), "{messages:?}");

    let config = h.client.read_file(&s, "/home/sprite/.openclaw/openclaw.json").await.unwrap().unwrap();
    assert_eq!(&config[..], b"{\"v\":1}");
    assert_eq!(h.client.list_dir(&s, "/home/sprite/.convos").await.unwrap(), None);
    assert!(
        h.client.get_service(&s, "gateway").await.unwrap().is_running(),
        "services come back as after a boot"
    );
    let out = h.client.exec(&s, &ExecRequest::new(["test", "-e", "/home/sprite/.convos"])).await.unwrap();
    assert_eq!(out.exit_code, 1);
}

#[tokio::test]
async fn restore_ends_running_exec_sessions() {
    let config = EmulatorConfig { speed: 1.0, setup_secs: 30.0, ..EmulatorConfig::default() };
    let h = common::start_with(config, |_| {}).await;
    h.configure(serde_json::json!({"latency_ms": {"checkpoints.restore": 0, "checkpoints.create": 0, "sprites.create": 0}}))
        .await;
    let s = h.sprite("convos-agent-dev-c3").await;
    let golden = h.client.create_checkpoint(&s, "golden").await.unwrap();
    let client = h.client.clone();
    let sprite = s.clone();
    let long = tokio::spawn(async move {
        client.exec(&sprite, &ExecRequest::new(["bash", "-c", "sleep 30; touch /home/sprite/.done"])).await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.client.list_exec_sessions(&s).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the long command never showed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.client.restore_checkpoint(&s, &golden).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), long).await.expect("the session ended").unwrap();
    match ended {
        Err(SpritesError::Transport(_)) => {}
        Ok(out) => assert_ne!(out.exit_code, 0, "a killed command does not succeed"),
        Err(other) => panic!("unexpected {other:?}"),
    }
    assert!(h.client.list_exec_sessions(&s).await.unwrap().is_empty());
    assert_eq!(h.client.read_file(&s, "/home/sprite/.done").await.unwrap(), None);
}

#[tokio::test]
async fn error_lines_in_a_200_stream_are_failures() {
    let h = common::start().await;
    let s = h.sprite("convos-agent-dev-c4").await;
    let golden = h.client.create_checkpoint(&s, "golden").await.unwrap();

    h.fault(serde_json::json!({"route": "checkpoints.create", "count": 1, "kind": {"type": "stream_error", "message": "disk full"}}))
        .await;
    let err = h.client.create_checkpoint(&s, "second").await.unwrap_err();
    assert!(matches!(&err, SpritesError::OperationFailed(m) if m == "disk full"), "{err:?}");
    assert_eq!(h.count("checkpoints.create").await, 2, "not retried");

    h.fault(serde_json::json!({"route": "checkpoints.restore", "count": 1, "kind": {"type": "stream_error", "message": "restore failed"}}))
        .await;
    let err = h.client.restore_checkpoint(&s, &golden).await.unwrap_err();
    assert!(matches!(&err, SpritesError::OperationFailed(m) if m == "restore failed"), "{err:?}");

    h.fault(serde_json::json!({"route": "services.put", "count": 1, "kind": {"type": "stream_error", "message": "exec format error"}}))
        .await;
    let gateway = ServiceSpec { cmd: "openclaw".into(), http_port: Some(8080), ..ServiceSpec::default() };
    let err = h.client.put_service(&s, "gateway", &gateway).await.unwrap_err();
    assert!(matches!(&err, SpritesError::OperationFailed(m) if m.contains("exec format error")), "{err:?}");
}
