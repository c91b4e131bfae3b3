//! OpenRouter's state as data: every live management key, and the pure look-ups on them.
//! Below the world model (`crate::state::World` holds it); the handlers are `openrouter`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::clock::rfc3339;

/// Keys per `GET /keys` page, as documented ("the most recent 100 API keys").
pub const PAGE_SIZE: usize = 100;
pub const WORKSPACE_ID: &str = "00000000-0000-4000-8000-000000000000";

/// Serde for the state file (`persist`), which keeps every live key across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Key {
    pub hash: String,
    /// The secret, kept only so requests made with it can be authenticated.
    pub secret: String,
    pub name: String,
    /// The masked secret the real API shows as `label` (prefix and last four characters).
    pub label: String,
    pub disabled: bool,
    pub limit: Option<f64>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
}

impl Key {
    pub fn to_json(&self) -> Value {
        json!({
            "hash": self.hash,
            "name": self.name,
            "label": self.label,
            "disabled": self.disabled,
            "limit": self.limit,
            "limit_remaining": self.limit,
            "limit_reset": self.limit_reset,
            "include_byok_in_limit": self.include_byok_in_limit,
            "usage": 0.0,
            "usage_daily": 0.0,
            "usage_weekly": 0.0,
            "usage_monthly": 0.0,
            "byok_usage": 0.0,
            "byok_usage_daily": 0.0,
            "byok_usage_weekly": 0.0,
            "byok_usage_monthly": 0.0,
            "created_at": rfc3339(self.created_at),
            "updated_at": self.updated_at.map(rfc3339),
            "expires_at": self.expires_at.map(rfc3339),
            "creator_user_id": null,
            "workspace_id": WORKSPACE_ID,
        })
    }

    /// What the control API shows: no secret, not even the masked label.
    pub fn dump(&self) -> Value {
        json!({
            "hash": self.hash,
            "name": self.name,
            "disabled": self.disabled,
            "limit": self.limit,
            "limit_reset": self.limit_reset,
            "created_at": rfc3339(self.created_at),
        })
    }
}

/// Every live key, keyed by a creation sequence number so "newest first" is exact even
/// within one second.
#[derive(Debug, Default)]
pub struct OpenRouterWorld {
    pub keys: BTreeMap<u64, Key>,
    pub next_seq: u64,
    /// Every `User-Agent` the management routes saw, so a test can check what clients send.
    pub user_agents: std::collections::BTreeSet<String>,
}

impl OpenRouterWorld {
    pub fn find(&self, hash: &str) -> Option<u64> {
        self.keys.iter().find(|(_, k)| k.hash == hash).map(|(seq, _)| *seq)
    }
}
