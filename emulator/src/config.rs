//! Start-up configuration and the live, control-API-editable copy of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::latency;

/// What `POST /convos/join` answers once the join delay has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JoinOutcome {
    #[default]
    Joined,
    WaitingForAcceptance,
}

/// Whether the emulated convos CLI reaches the XMTP network. `down` makes every create and
/// every join of a valid invite fail the way the real gateway does without a network
/// (convos-contracts §7): a 500 that leaves the CLI's identity and database behind, unbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum XmtpNetwork {
    #[default]
    Up,
    Down,
}

/// How an emulator starts. Everything except `token` can be changed later through
/// `PUT /_emulator/config`; `POST /_emulator/reset` goes back to these values.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The only bearer token the API (and `sprite`-auth URLs) accept.
    pub token: String,
    /// The only bearer token the Railway GraphQL API accepts.
    pub railway_token: String,
    /// The only OpenRouter management key `/api/v1/keys` accepts.
    pub openrouter_key: String,
    /// The only bearer token the AgentMail API accepts.
    pub agentmail_key: String,
    /// Multiplies every simulated latency; 0 makes them instant.
    pub speed: f64,
    /// How long the setup script runs, before `speed`.
    pub setup_secs: f64,
    /// How long the gateway takes to answer after its service started, before `speed`.
    pub gateway_boot_ms: u64,
    /// How long `POST /convos/join` waits before answering, before `speed`.
    pub join_delay_ms: u64,
    pub join_outcome: JoinOutcome,
    /// Per-route latency overrides in ms (route names as in the README); missing routes keep
    /// their defaults.
    pub latency_ms: BTreeMap<String, u64>,
    /// Wall-clock seconds without activity before a running Sprite pauses (goes `warm`);
    /// not scaled by `speed`.
    pub idle_pause_secs: f64,
    /// Wall-clock seconds a `warm` Sprite stays warm before it goes `cold`.
    pub cold_after_secs: f64,
    /// The account's limit of concurrently running Sprites; None = unlimited.
    pub running_limit: Option<u32>,
    /// Where the world is kept across restarts (`persist`): loaded at start if it exists,
    /// written every few seconds when something changed and on shutdown. None = in memory only.
    pub state_file: Option<PathBuf>,
}

/// The idle pause the reference gives (§8: "about 30 s with no activity").
pub const IDLE_PAUSE_SECS: f64 = 30.0;
/// How long a Sprite stays warm. The reference gives no figure (§8 only says a Sprite goes
/// warm first and falls to cold "if it stays idle long enough", and that the org has a
/// `warm_limit` quota besides `running_limit`, §2.3); five minutes is an assumption, ten idle
/// pauses, so that a Sprite checked on only rarely is found cold, the slow case a client
/// must handle.
pub const COLD_AFTER_SECS: f64 = 300.0;

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token: "emulator-token".to_string(),
            railway_token: "emulator-railway-token".to_string(),
            openrouter_key: "emulator-openrouter-key".to_string(),
            agentmail_key: "emulator-agentmail-key".to_string(),
            speed: 1.0,
            setup_secs: 240.0,
            gateway_boot_ms: 2000,
            join_delay_ms: 5000,
            join_outcome: JoinOutcome::Joined,
            latency_ms: BTreeMap::new(),
            idle_pause_secs: IDLE_PAUSE_SECS,
            cold_after_secs: COLD_AFTER_SECS,
            running_limit: None,
            state_file: None,
        }
    }
}

/// The live settings, as `GET /_emulator/config` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeConfig {
    pub speed: f64,
    pub latency_ms: BTreeMap<String, u64>,
    pub setup_ms: u64,
    pub gateway_boot_ms: u64,
    pub join_outcome: JoinOutcome,
    pub join_delay_ms: u64,
    pub xmtp_network: XmtpNetwork,
    pub idle_pause_ms: u64,
    pub cold_after_ms: u64,
    pub running_limit: Option<u32>,
}

fn secs_to_ms(secs: f64) -> u64 {
    if secs.is_finite() { (secs.max(0.0) * 1000.0).round() as u64 } else { 0 }
}

impl RuntimeConfig {
    pub fn from_start(config: &EmulatorConfig) -> Self {
        let mut latency_ms = latency::defaults();
        latency_ms.extend(config.latency_ms.iter().map(|(k, v)| (k.clone(), *v)));
        Self {
            speed: sanitize_speed(config.speed),
            latency_ms,
            setup_ms: secs_to_ms(config.setup_secs),
            gateway_boot_ms: config.gateway_boot_ms,
            join_outcome: config.join_outcome,
            join_delay_ms: config.join_delay_ms,
            xmtp_network: XmtpNetwork::Up,
            idle_pause_ms: secs_to_ms(config.idle_pause_secs),
            cold_after_ms: secs_to_ms(config.cold_after_secs),
            running_limit: config.running_limit,
        }
    }

    /// Applies a partial update; fields left out keep their values.
    pub fn apply(&mut self, patch: ConfigPatch) -> Result<(), String> {
        if let Some(speed) = patch.speed {
            if !speed.is_finite() || speed < 0.0 {
                return Err("speed must be a finite number >= 0".into());
            }
            self.speed = speed;
        }
        if let Some(map) = patch.latency_ms {
            self.latency_ms.extend(map);
        }
        if let Some(v) = patch.setup_ms {
            self.setup_ms = v;
        }
        if let Some(v) = patch.gateway_boot_ms {
            self.gateway_boot_ms = v;
        }
        if let Some(v) = patch.join_outcome {
            self.join_outcome = v;
        }
        if let Some(v) = patch.join_delay_ms {
            self.join_delay_ms = v;
        }
        if let Some(v) = patch.xmtp_network {
            self.xmtp_network = v;
        }
        if let Some(v) = patch.idle_pause_ms {
            self.idle_pause_ms = v;
        }
        if let Some(v) = patch.cold_after_ms {
            self.cold_after_ms = v;
        }
        if let Some(v) = patch.running_limit {
            self.running_limit = v;
        }
        Ok(())
    }

    /// The latency of a route in ms before `speed`.
    pub fn latency_of(&self, route: &str) -> u64 {
        self.latency_ms.get(route).copied().unwrap_or(0)
    }
}

/// Body of `PUT /_emulator/config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub speed: Option<f64>,
    pub latency_ms: Option<BTreeMap<String, u64>>,
    pub setup_ms: Option<u64>,
    pub gateway_boot_ms: Option<u64>,
    pub join_outcome: Option<JoinOutcome>,
    pub join_delay_ms: Option<u64>,
    pub xmtp_network: Option<XmtpNetwork>,
    pub idle_pause_ms: Option<u64>,
    pub cold_after_ms: Option<u64>,
    /// `null` lifts the limit, so a present field is `Some` even when it is `null`.
    #[serde(default, deserialize_with = "present")]
    pub running_limit: Option<Option<u32>>,
}

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn sanitize_speed(speed: f64) -> f64 {
    if speed.is_finite() && speed >= 0.0 { speed } else { 1.0 }
}
