//! Wire shapes of the Sprites API. Everything but the identifying field is optional because
//! list entries are sparser than GET answers and the API adds fields over time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlAuth {
    /// Org members only (browser login or the org token).
    Sprite,
    /// Anyone who knows the URL.
    Public,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlSettings {
    pub auth: UrlAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_access: Option<String>,
}

impl UrlSettings {
    pub fn public() -> Self {
        UrlSettings { auth: UrlAuth::Public, private_access: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateSprite {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_settings: Option<UrlSettings>,
    pub wait_for_capacity: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateSprite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_settings: Option<UrlSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Sprite {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, alias = "org_slug")]
    pub organization: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_settings: Option<UrlSettings>,
    /// `cold`, `warm` or `running`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct ListSprites {
    pub prefix: Option<String>,
    /// 1–50; the server clamps.
    pub max_results: Option<u32>,
    pub continuation_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpritePage {
    #[serde(default)]
    pub sprites: Vec<Sprite>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_continuation_token: Option<String>,
}

/// What ran and what it printed. Output beyond the client's cap is dropped and flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: u8,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Session ids are strings on current servers and integers in older docs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SessionId {
    Text(String),
    Number(i64),
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionId::Text(s) => f.write_str(s),
            SessionId::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecSession {
    pub id: SessionId,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub tty: Option<bool>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExecSessionList {
    #[serde(default)]
    pub sessions: Vec<ExecSession>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FsEntry {
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    /// `file`, `directory` or `symlink`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub mod_time: Option<String>,
    #[serde(default)]
    pub is_dir: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FsListing {
    #[serde(default)]
    pub entries: Vec<FsEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FsWritten {
    pub path: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The binary only; arguments go in `args`.
    pub cmd: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Added to the service's base environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The Sprite URL routes here (only one service may have one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub state: Option<ServiceState>,
}

impl Service {
    pub fn is_running(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.status == "running")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceState {
    /// `stopped`, `starting`, `running`, `stopping` or `failed`.
    pub status: String,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub restart_count: Option<u32>,
}

/// One line of a service NDJSON stream.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: String,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub is_auto: Option<bool>,
    #[serde(default)]
    pub health: Option<String>,
}

/// One line of a checkpoint or restore NDJSON stream.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamMessage {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}
