//! The Sprites token never shows up in Debug output, errors or log lines, even at TRACE
//! and even when the server rejects it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use shared::sprites::{CreateSprite, ExecRequest, SpritesClient, SpritesConfig, WriteFile};
use sprites_emulator::{Emulator, EmulatorConfig};

const TOKEN: &str = "tok-very-secret-4f1c9a";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the scoped subscriber sees every event of every call.
#[tokio::test(flavor = "current_thread")]
async fn token_never_leaks() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator =
        Emulator::start(EmulatorConfig { token: TOKEN.into(), speed: 0.0, ..EmulatorConfig::default() })
            .await
            .unwrap();
    let base: url::Url = emulator.base_url().parse().unwrap();
    let good =
        SpritesClient::new(SpritesConfig::new(base.clone(), SecretString::from(TOKEN.to_string()))).unwrap();
    let wrong_token = format!("{TOKEN}-wrong");
    let bad = SpritesClient::new(SpritesConfig::new(base, SecretString::from(wrong_token.clone()))).unwrap();

    let mut seen = vec![format!("{good:?}"), format!("{:?}", good.config())];
    good.create_sprite(&CreateSprite {
        name: "convos-agent-dev-t".into(),
        url_settings: None,
        wait_for_capacity: false,
    })
    .await
    .unwrap();
    good.exec("convos-agent-dev-t", &ExecRequest::new(["echo", "hi"])).await.unwrap();
    good.write_file("convos-agent-dev-t", &WriteFile::new("/tmp/x", "x")).await.unwrap();
    for err in [
        good.get_sprite("convos-agent-dev-missing").await.unwrap_err(),
        bad.get_sprite("convos-agent-dev-t").await.unwrap_err(),
        bad.exec("convos-agent-dev-t", &ExecRequest::new(["true"])).await.unwrap_err(),
    ] {
        seen.push(err.to_string());
        seen.push(format!("{err:?}"));
    }
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("operation=\"sprites.get\"") || logs.contains("operation=sprites.get"),
        "spans are logged: {logs}"
    );
    assert!(logs.contains("status=404"), "span records the status: {logs}");
    seen.push(logs);
    for text in &seen {
        assert!(!text.contains(TOKEN), "token leaked in: {text}");
    }
}
