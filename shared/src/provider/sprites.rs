//! The Sprites provider: one Sprite per instance, OpenClaw installed by `sprite-setup.sh`, the
//! gateway run as a Sprite service on port 8080 (it comes back by itself when the Sprite
//! wakes), golden checkpoints for recycling.
//!
//! Everything reaches the Sprite as files through the fs API or as exec argv; no value is ever
//! spliced into a shell string.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Capabilities, Failure, InstanceSecrets, Machine, Progress, Provider, ProviderError, RemoteMachine,
};
use crate::sprites::{
    CreateSprite, ExecRequest, ServiceSpec, SpritesClient, SpritesError, UpdateSprite, UrlAuth, UrlSettings,
    WriteFile,
};

const HOME: &str = "/home/sprite";
const SETUP_SCRIPT: &str = "/home/sprite/.pool/sprite-setup.sh";
const SETUP_MARKER: &str = "/home/sprite/.pool/setup-done";
const GATEWAY_LAUNCHER: &str = "/home/sprite/.pool/run-gateway.sh";
const OPENCLAW_CONFIG: &str = "/home/sprite/.openclaw/openclaw.json";
const OPENCLAW_ENV: &str = "/home/sprite/.openclaw/.env";
const CONVOS_STATE: &str = "/home/sprite/.convos";
/// Written by the gateway before the convos CLI runs, so a failed create or join leaves it
/// behind even when the CLI made nothing (convos-contracts §7).
const INSTRUCTIONS: &str = "/home/sprite/.openclaw/workspace/INSTRUCTIONS.md";
const GATEWAY_SERVICE: &str = "openclaw-gateway";
const GATEWAY_PORT: u16 = 8080;
const PATH: &str = "/home/sprite/.local/bin:/home/sprite/.bun/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent's model when the instance has its own OpenRouter key, which is then its model
/// credential: OpenRouter's router (`openrouter/auto`, in OpenClaw's `provider/model` form), so
/// no model id goes stale in a deployed pool. Without the key OpenClaw keeps its own default.
const OPENROUTER_MODEL: &str = "openrouter/openrouter/auto";

/// The script is part of this build, so a deployed pool installs what it was tested with.
const SETUP_SCRIPT_BODY: &str = include_str!("../../../scripts/sprite-setup.sh");

#[derive(Clone)]
pub struct SpritesProviderSettings {
    /// `channels.convos.env` of every instance (dev or production XMTP network).
    pub xmtp_env: String,
    /// The organisation's key, written into every instance's `.env` when set (optional; see
    /// `Config::instance_anthropic_api_key`).
    pub anthropic_api_key: Option<SecretString>,
    /// How long an install may go on after the process that started it is gone.
    pub install_detach_limit: Duration,
}

pub struct SpritesProvider {
    client: SpritesClient,
    settings: SpritesProviderSettings,
}

impl SpritesProvider {
    pub fn new(client: SpritesClient, settings: SpritesProviderSettings) -> Self {
        SpritesProvider { client, settings }
    }

    /// The OpenClaw configuration (convos-contracts §7): `mode: local` or the gateway refuses
    /// to start at all; reload off because the gateway's own config write at the first bind
    /// would otherwise restart it (SIGUSR1) and refuse connections meanwhile; port and bind
    /// here, since the launcher may pass none. The per-instance token guards both the gateway
    /// and the Convos routes (`poolApiKey`). An instance with its own OpenRouter key calls its
    /// model through it.
    fn openclaw_config(&self, secrets: &InstanceSecrets<'_>) -> Vec<u8> {
        let token = secrets.gateway_token;
        let mut config = serde_json::json!({
            "gateway": {
                "mode": "local",
                "port": GATEWAY_PORT,
                "bind": "lan",
                "reload": { "mode": "off" },
                "auth": { "mode": "token", "token": token.expose_secret() },
            },
            "channels": {
                "convos": {
                    "enabled": true,
                    "env": self.settings.xmtp_env,
                    "poolApiKey": token.expose_secret(),
                },
            },
            "plugins": { "entries": { "convos": { "enabled": true } } },
        });
        if secrets.openrouter_key.is_some() {
            config["agents"] =
                serde_json::json!({ "defaults": { "model": { "primary": OPENROUTER_MODEL } } });
        }
        serde_json::to_vec_pretty(&config).expect("a JSON value serialises")
    }

    fn env_file(&self, secrets: &InstanceSecrets<'_>) -> Result<Vec<u8>, ProviderError> {
        let mut lines = Vec::new();
        if let Some(key) = &self.settings.anthropic_api_key {
            lines.push(("ANTHROPIC_API_KEY", key.expose_secret()));
        }
        if let Some(key) = secrets.openrouter_key {
            lines.push(("OPENROUTER_API_KEY", key.expose_secret()));
        }
        if let Some(inbox) = secrets.agentmail_inbox_id {
            lines.push(("AGENTMAIL_INBOX_ID", inbox));
        }
        let mut env = String::new();
        for (name, value) in lines {
            // A value with a line break would add variables of its own to the file.
            if value.chars().any(char::is_control) {
                return Err(ProviderError::permanent(format!("{name} holds a control character")));
            }
            env.push_str(&format!("{name}={value}\n"));
        }
        Ok(env.into_bytes())
    }

    async fn install_running(&self, name: &str) -> Result<bool, ProviderError> {
        let sessions = self.client.list_exec_sessions(name).await.map_err(from_sprites)?;
        Ok(sessions.iter().any(|s| {
            s.is_active != Some(false) && s.command.as_deref().is_some_and(|c| c.contains("sprite-setup.sh"))
        }))
    }

    async fn marker_present(&self, name: &str) -> Result<bool, ProviderError> {
        Ok(self.client.read_file(name, SETUP_MARKER).await.map_err(from_sprites)?.is_some())
    }
}

#[async_trait]
impl Provider for SpritesProvider {
    fn kind(&self) -> &'static str {
        "sprites"
    }

    fn build_identity(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(SETUP_SCRIPT_BODY.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("setup:{hex}")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { install: true, checkpoints: true, observing_list: false, hibernates: true }
    }

    async fn create(&self, name: &str) -> Result<Machine, ProviderError> {
        // Not waiting for capacity: a full region is a transient failure the step backs off from.
        let request = CreateSprite {
            name: name.to_string(),
            url_settings: Some(UrlSettings::public()),
            wait_for_capacity: false,
        };
        let sprite = match self.client.create_sprite(&request).await {
            Ok(sprite) => sprite,
            Err(SpritesError::AlreadyExists { .. }) => {
                let existing = self.client.get_sprite(name).await.map_err(from_sprites)?;
                let public = existing.url_settings.as_ref().is_some_and(|s| s.auth == UrlAuth::Public);
                if public {
                    existing
                } else {
                    let update =
                        UpdateSprite { url_settings: Some(UrlSettings::public()), ..Default::default() };
                    self.client.update_sprite(name, &update).await.map_err(from_sprites)?
                }
            }
            Err(err) => return Err(from_sprites(err)),
        };
        let url = sprite.url.ok_or_else(|| ProviderError::transient("the Sprite has no URL yet"))?;
        Ok(Machine { url, provider_ref: sprite.id })
    }

    async fn install(&self, name: &str, git_ref: &str, wait: Duration) -> Result<Progress, ProviderError> {
        if self.marker_present(name).await? {
            return Ok(Progress::Done);
        }
        if self.install_running(name).await? {
            return Ok(Progress::Running);
        }
        let script = WriteFile::new(SETUP_SCRIPT, SETUP_SCRIPT_BODY.as_bytes().to_vec()).mode(0o755);
        self.client.write_file(name, &script).await.map_err(from_sprites)?;
        let request = ExecRequest::new(["bash", SETUP_SCRIPT, SETUP_MARKER])
            .env("HOME", HOME)
            .env("PATH", PATH)
            .env("OPENCLAW_GIT_REF", git_ref)
            .dir(HOME)
            .max_run_after_disconnect(self.settings.install_detach_limit);
        // Past `wait` the socket is dropped; the script runs on for the detach limit and the
        // next look finds it in the session list or finds its marker.
        let Ok(result) = tokio::time::timeout(wait, self.client.exec(name, &request)).await else {
            return Ok(Progress::Running);
        };
        let output = result.map_err(from_sprites)?;
        if !output.success() {
            // The last 400 characters: where a failing script says why.
            return Err(ProviderError::transient(format!(
                "sprite-setup.sh exited {}: {}",
                output.exit_code,
                tail(&output.stderr_text(), 400).trim()
            )));
        }
        if self.marker_present(name).await? {
            Ok(Progress::Done)
        } else {
            Err(ProviderError::permanent("sprite-setup.sh succeeded but left no marker"))
        }
    }

    async fn configure(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError> {
        let env = self.env_file(secrets)?;
        let config = WriteFile::new(OPENCLAW_CONFIG, self.openclaw_config(secrets)).mode(0o600);
        self.client.write_file(name, &config).await.map_err(from_sprites)?;
        let env = WriteFile::new(OPENCLAW_ENV, env).mode(0o600);
        self.client.write_file(name, &env).await.map_err(from_sprites)?;
        Ok(())
    }

    async fn start_gateway(&self, name: &str) -> Result<(), ProviderError> {
        let spec = ServiceSpec {
            cmd: "bash".into(),
            args: vec![GATEWAY_LAUNCHER.into()],
            dir: Some(HOME.into()),
            http_port: Some(GATEWAY_PORT),
            ..Default::default()
        };
        self.client.put_service(name, GATEWAY_SERVICE, &spec).await.map_err(from_sprites)?;
        Ok(())
    }

    async fn restart_gateway(&self, name: &str) -> Result<(), ProviderError> {
        match self.client.restart_service(name, GATEWAY_SERVICE).await {
            Ok(_) => Ok(()),
            // A checkpoint without the service (or a hand-deleted one): define it again.
            Err(SpritesError::NotFound { .. }) => self.start_gateway(name).await,
            Err(err) => Err(from_sprites(err)),
        }
    }

    /// Anything a create or join leaves, even a failed one: the CLI's `~/.convos` (identity,
    /// database) or the user's INSTRUCTIONS.md. A golden or recycled instance has neither.
    async fn has_conversation_state(&self, name: &str) -> Result<bool, ProviderError> {
        let listing = self.client.list_dir(name, CONVOS_STATE).await.map_err(from_sprites)?;
        if listing.is_some() {
            return Ok(true);
        }
        Ok(self.client.read_file(name, INSTRUCTIONS).await.map_err(from_sprites)?.is_some())
    }

    async fn checkpoint(&self, name: &str, comment: &str) -> Result<String, ProviderError> {
        let existing = self.client.list_checkpoints(name).await.map_err(from_sprites)?;
        if let Some(found) = existing.into_iter().find(|c| c.comment.as_deref() == Some(comment)) {
            return Ok(found.id);
        }
        self.client.create_checkpoint(name, comment).await.map_err(from_sprites)
    }

    async fn restore(&self, name: &str, checkpoint: &str) -> Result<(), ProviderError> {
        self.client.restore_checkpoint(name, checkpoint).await.map_err(from_sprites)?;
        Ok(())
    }

    async fn wake(&self, name: &str) -> Result<(), ProviderError> {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            self.client.exec(name, &ExecRequest::new(["true"])),
        )
        .await
        .map_err(|_| ProviderError::transient("wake-up exec timed out"))?
        .map_err(from_sprites)?;
        if output.success() {
            Ok(())
        } else {
            Err(ProviderError::transient(format!("wake-up exec exited {}", output.exit_code)))
        }
    }

    async fn destroy(&self, name: &str) -> Result<(), ProviderError> {
        self.client.delete_sprite(name).await.map_err(from_sprites)?;
        Ok(())
    }

    async fn diagnose(
        &self,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<serde_json::Value, ProviderError> {
        let unfinished = || serde_json::json!({ "error": "did not finish within the debug budget" });
        let (sprite, services) = tokio::join!(
            tokio::time::timeout_at(deadline, self.client.get_sprite(name)),
            tokio::time::timeout_at(deadline, self.client.list_services(name)),
        );
        let sprite = match sprite {
            Ok(found) => found.map_err(from_sprites)?,
            Err(_) => {
                return Err(ProviderError::transient("the Sprite did not answer within the debug budget"));
            }
        };
        let services = match services {
            Ok(Ok(services)) => serde_json::Value::Array(
                services
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "httpPort": s.http_port,
                            "status": s.state.as_ref().map(|st| st.status.as_str()),
                        })
                    })
                    .collect(),
            ),
            Ok(Err(err)) => serde_json::json!({ "error": err.to_string() }),
            Err(_) => unfinished(),
        };
        let local_status = format!("http://127.0.0.1:{GATEWAY_PORT}/convos/status");
        // Fixed argv only: nothing from a request reaches the Sprite.
        let probes: [(&str, Vec<&str>); 4] = [
            ("processes", vec!["ps", "-eo", "pid,etime,rss,args"]),
            ("listeningPorts", vec!["ss", "-ltn"]),
            (
                "localGateway",
                vec!["curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", &local_status],
            ),
            ("configPresent", vec!["test", "-s", OPENCLAW_CONFIG]),
        ];
        // All at once under one deadline: the answer must beat the function's own timeout.
        let runs = probes.into_iter().map(|(key, argv)| async move {
            let request = ExecRequest::new(argv);
            let value = match tokio::time::timeout_at(deadline, self.client.exec(name, &request)).await {
                Err(_) => unfinished(),
                Ok(Err(err)) => serde_json::json!({ "error": err.to_string() }),
                Ok(Ok(output)) => serde_json::json!({
                    "exitCode": output.exit_code,
                    "stdout": tail(&output.stdout_text(), 4096),
                    "stderr": tail(&output.stderr_text(), 1024),
                }),
            };
            (key, value)
        });
        let mut report = serde_json::Map::new();
        report.insert(
            "sprite".into(),
            serde_json::json!({
                "name": sprite.name,
                "status": sprite.status,
                "url": sprite.url,
                "createdAt": sprite.created_at,
                "updatedAt": sprite.updated_at,
            }),
        );
        report.insert("services".into(), services);
        for (key, value) in futures_util::future::join_all(runs).await {
            report.insert(key.into(), value);
        }
        Ok(serde_json::Value::Object(report))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<RemoteMachine>, ProviderError> {
        let sprites = self.client.list_all_sprites(prefix).await.map_err(from_sprites)?;
        Ok(sprites
            .into_iter()
            .map(|s| RemoteMachine {
                created_at: s.created_at.as_deref().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
                name: s.name,
                observed: None,
            })
            .collect())
    }
}

fn from_sprites(err: SpritesError) -> ProviderError {
    let failure = match &err {
        // A missing file is answered as `Ok(None)` by the client; a NotFound here is the Sprite.
        SpritesError::NotFound { code: None, .. } => Failure::Gone,
        SpritesError::RateLimited { retry_after, .. } => Failure::Throttled { wait: *retry_after },
        SpritesError::Api { status, .. } if *status >= 500 => Failure::Transient,
        SpritesError::Unauthorized | SpritesError::Api { .. } | SpritesError::NotFound { .. } => {
            Failure::Permanent
        }
        _ => Failure::Transient,
    };
    ProviderError { failure, message: err.to_string() }
}

/// The last `chars` characters of `text`.
fn tail(text: &str, chars: usize) -> &str {
    let start = text.char_indices().rev().nth(chars.saturating_sub(1)).map_or(0, |(i, _)| i);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sprites::SpritesConfig;

    fn provider(anthropic_api_key: Option<&str>) -> SpritesProvider {
        let config = SpritesConfig::new("http://127.0.0.1:9".parse().unwrap(), SecretString::from("t"));
        SpritesProvider::new(
            SpritesClient::new(config).unwrap(),
            SpritesProviderSettings {
                xmtp_env: "dev".into(),
                anthropic_api_key: anthropic_api_key.map(SecretString::from),
                install_detach_limit: Duration::from_secs(1),
            },
        )
    }

    fn secrets<'a>(token: &'a SecretString, openrouter_key: Option<&'a SecretString>) -> InstanceSecrets<'a> {
        InstanceSecrets {
            instance_id: "i1",
            gateway_token: token,
            openrouter_key,
            agentmail_inbox_id: None,
            runtime_image: None,
        }
    }

    /// The config and the launcher must say the same, and say what the real gateway needs
    /// (convos-contracts §7): it refuses to start without `mode: local`, restarts itself on
    /// its own config write unless reload is off, and reads options only right after `gateway`.
    #[test]
    fn the_config_and_the_launcher_agree_with_what_the_gateway_needs() {
        let provider = provider(None);
        let token = SecretString::from("instance-token");
        let config: serde_json::Value =
            serde_json::from_slice(&provider.openclaw_config(&secrets(&token, None))).unwrap();
        let gateway = &config["gateway"];
        assert_eq!(gateway["mode"], "local");
        assert_eq!(gateway["reload"]["mode"], "off");
        assert_eq!(gateway["port"], GATEWAY_PORT);
        assert_eq!(gateway["bind"], "lan");
        let launch = format!("exec node openclaw.mjs gateway --port {GATEWAY_PORT} --bind lan");
        assert!(
            SETUP_SCRIPT_BODY.lines().any(|l| l == launch),
            "the launcher starts the gateway as configured"
        );
        assert!(!SETUP_SCRIPT_BODY.lines().any(|l| l.starts_with("exec ") && l.contains("gateway run")));
    }

    /// Issue 14.2: the instance's own OpenRouter key is its model credential; the
    /// organisation's Anthropic key reaches the instance only when the pool is given one.
    #[test]
    fn the_model_credential_is_the_instances_own_key_and_the_shared_one_only_when_set() {
        let token = SecretString::from("instance-token");
        let own = SecretString::from("sk-or-v1-instance");
        let model = |provider: &SpritesProvider, key| {
            let config: serde_json::Value =
                serde_json::from_slice(&provider.openclaw_config(&secrets(&token, key))).unwrap();
            config["agents"]["defaults"]["model"]["primary"].clone()
        };
        let env = |provider: &SpritesProvider, key| {
            String::from_utf8(provider.env_file(&secrets(&token, key)).unwrap()).unwrap()
        };

        let without_shared = provider(None);
        assert_eq!(env(&without_shared, Some(&own)), "OPENROUTER_API_KEY=sk-or-v1-instance\n");
        assert_eq!(model(&without_shared, Some(&own)), OPENROUTER_MODEL);
        assert_eq!(env(&without_shared, None), "", "no key of any kind without resources");
        assert_eq!(model(&without_shared, None), serde_json::Value::Null, "OpenClaw's own default");

        let with_shared = provider(Some("sk-ant-org"));
        assert_eq!(
            env(&with_shared, Some(&own)),
            "ANTHROPIC_API_KEY=sk-ant-org\nOPENROUTER_API_KEY=sk-or-v1-instance\n"
        );
        assert_eq!(model(&with_shared, Some(&own)), OPENROUTER_MODEL, "the own key stays the default");
        assert_eq!(env(&with_shared, None), "ANTHROPIC_API_KEY=sk-ant-org\n");
    }
}
