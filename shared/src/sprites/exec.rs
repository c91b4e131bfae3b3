//! Running a command in a Sprite over the exec WebSocket, non-TTY (§3 of the reference).
//!
//! Framing: every binary message starts with a stream id — 0x00 stdin, 0x01 stdout,
//! 0x02 stderr, 0x03 exit (one code byte; empty means 0), 0x04 stdin EOF. The exit frame is
//! final: the client closes at once instead of waiting the ~5 s the server lingers. A socket
//! that ends without an exit frame is a transport error, never a success, because the command
//! may still be running or may have died. There is deliberately no idle-output timeout
//! (quiet installs are normal); liveness comes from WebSocket pings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, connect_async_tls_with_config};
use tracing::Instrument;

use super::error::{ConflictMeaning, classify};
use super::types::ExecSessionList;
use super::{ExecOutput, ExecSession, SpritesClient, SpritesError};

const STDIN: u8 = 0x00;
const STDOUT: u8 = 0x01;
const STDERR: u8 = 0x02;
const EXIT: u8 = 0x03;
const STDIN_EOF: u8 = 0x04;

const PING_EVERY: Duration = Duration::from_secs(15);
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
const STDIN_CHUNK: usize = 64 * 1024;
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A command to run: `argv[0]` is the program. Arguments travel as separate `cmd` query
/// values, so no shell ever parses them.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// When non-empty, replaces the command's whole environment (include PATH and HOME).
    pub env: Vec<(String, String)>,
    pub dir: Option<String>,
    pub stdin: Option<Vec<u8>>,
    /// How long the command may outlive a dropped socket (server default 10 s).
    pub max_run_after_disconnect: Option<Duration>,
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest { argv: argv.into_iter().map(Into::into).collect(), ..ExecRequest::default() }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn dir(mut self, dir: impl Into<String>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn max_run_after_disconnect(mut self, limit: Duration) -> Self {
        self.max_run_after_disconnect = Some(limit);
        self
    }
}

/// A Go duration string, as the server parses it.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

#[derive(Deserialize)]
struct TextFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    exit_code: Option<i64>,
}

/// Output kept up to a cap; what is beyond is counted as truncation, not stored.
struct Capture {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture { bytes: Vec::new(), cap, truncated: false }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.cap.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

impl SpritesClient {
    /// Runs `request` to completion and returns its exit code and output. Never retried: a
    /// command whose socket failed may have run, so the caller checks before running it again.
    pub async fn exec(&self, sprite: &str, request: &ExecRequest) -> Result<ExecOutput, SpritesError> {
        let span = tracing::info_span!(
            "sprites",
            operation = "exec",
            sprite,
            program = request.argv.first().map(String::as_str).unwrap_or(""),
            status = tracing::field::Empty,
            exit_code = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            let result = self.exec_inner(sprite, request).await;
            let span = tracing::Span::current();
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &result {
                Ok(output) => {
                    span.record("status", 101);
                    span.record("exit_code", output.exit_code);
                    tracing::debug!("exec finished");
                }
                Err(err) => tracing::warn!(error = %err, "exec failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn exec_inner(&self, sprite: &str, request: &ExecRequest) -> Result<ExecOutput, SpritesError> {
        let Some(program) = request.argv.first() else {
            return Err(SpritesError::Protocol("exec needs a program (argv[0])".into()));
        };
        let mut url = self.sprite_url(sprite, &["exec"]);
        let ws_scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(ws_scheme)
            .map_err(|_| SpritesError::Protocol("cannot derive the WebSocket URL".into()))?;
        {
            let mut query = url.query_pairs_mut();
            for arg in &request.argv {
                query.append_pair("cmd", arg);
            }
            query.append_pair("path", program);
            for (key, value) in &request.env {
                query.append_pair("env", &format!("{key}={value}"));
            }
            if let Some(dir) = &request.dir {
                query.append_pair("dir", dir);
            }
            query.append_pair("stdin", if request.stdin.is_some() { "true" } else { "false" });
            if let Some(limit) = request.max_run_after_disconnect {
                query.append_pair("max_run_after_disconnect", &go_duration(limit));
            }
        }

        let mut upgrade = url
            .as_str()
            .into_client_request()
            .map_err(|e| SpritesError::Protocol(format!("bad exec request: {e}")))?;
        upgrade.headers_mut().insert(header::AUTHORIZATION, self.inner.auth.clone());
        let ws_config =
            WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(16 << 20));
        let connector = Connector::Rustls(Arc::clone(&self.inner.ws_tls));
        let handshake_timeout = self.config().ws_handshake_timeout;
        let connect = connect_async_tls_with_config(upgrade, Some(ws_config), true, Some(connector));
        let (mut ws, _) = match tokio::time::timeout(handshake_timeout, connect).await {
            Err(_) => {
                return Err(SpritesError::Transport(format!(
                    "exec handshake timed out after {}s",
                    handshake_timeout.as_secs()
                )));
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
                let body = response.body().as_deref().unwrap_or_default();
                return Err(classify(
                    response.status().as_u16(),
                    body,
                    retry_after,
                    ConflictMeaning::StateConflict,
                ));
            }
            Ok(Err(e)) => return Err(SpritesError::Transport(format!("exec handshake failed: {e}"))),
            Ok(Ok(pair)) => pair,
        };

        let send_error = |e: tungstenite::Error| SpritesError::Transport(format!("exec stream failed: {e}"));
        if let Some(stdin) = &request.stdin {
            for chunk in stdin.chunks(STDIN_CHUNK) {
                let mut frame = Vec::with_capacity(chunk.len() + 1);
                frame.push(STDIN);
                frame.extend_from_slice(chunk);
                ws.send(Message::Binary(frame.into())).await.map_err(send_error)?;
            }
        }
        // Without EOF a command reading stdin would wait forever; send it even with no stdin.
        ws.send(Message::Binary(Bytes::from_static(&[STDIN_EOF]))).await.map_err(send_error)?;

        let cap = self.config().exec_output_cap;
        let (mut stdout, mut stderr) = (Capture::new(cap), Capture::new(cap));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        let exit_code = loop {
            tokio::select! {
                message = ws.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Binary(frame))) => match frame.first() {
                            Some(&STDOUT) => stdout.push(&frame[1..]),
                            Some(&STDERR) => stderr.push(&frame[1..]),
                            Some(&EXIT) => break frame.get(1).copied().unwrap_or(0),
                            _ => {}
                        },
                        Some(Ok(Message::Text(text))) => {
                            // session_info, port notices; a JSON exit is final like the binary one.
                            if let Ok(TextFrame { kind, exit_code: Some(code) }) = serde_json::from_str(text.as_str())
                                && kind == "exit"
                            {
                                break u8::try_from(code).unwrap_or(u8::MAX);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map(|f| u16::from(f.code).to_string()).unwrap_or_else(|| "none".into());
                            return Err(SpritesError::Transport(format!(
                                "exec socket closed (code {code}) before the command's exit code arrived"
                            )));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(SpritesError::Transport(format!("exec stream failed: {e}"))),
                        None => {
                            return Err(SpritesError::Transport(
                                "exec connection ended before the command's exit code arrived".into(),
                            ));
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        return Err(SpritesError::Transport(format!(
                            "exec connection silent for {}s (no output, no pong)",
                            SILENCE_LIMIT.as_secs()
                        )));
                    }
                    ws.send(Message::Ping(Bytes::new())).await.map_err(send_error)?;
                }
            }
        };
        // The exit frame is final; close now rather than wait for the server's lingering close.
        let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
        Ok(ExecOutput {
            exit_code,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
        })
    }

    /// Commands still running in the Sprite (for example an install that outlived the
    /// process that started it).
    pub async fn list_exec_sessions(&self, sprite: &str) -> Result<Vec<ExecSession>, SpritesError> {
        let url = self.sprite_url(sprite, &["exec"]);
        let list: ExecSessionList = self
            .call(self.call_for("exec.sessions", Some(sprite)), |http| http.get(url.clone()))
            .await?
            .json()?;
        Ok(list.sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_up_to_cap_and_flags_the_rest() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        assert!(!c.truncated);
        c.push(b"defg");
        assert_eq!(c.bytes, b"abcde");
        assert!(c.truncated);
        c.push(b"h");
        assert_eq!(c.bytes.len(), 5);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(1800)), "1800s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }
}
