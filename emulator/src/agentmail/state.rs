//! AgentMail's state as data: inboxes, the organisation's custom domains and inbox-scoped
//! keys, with the pure look-ups on them. Below the world model (`crate::state::World` holds
//! them); the handlers are `agentmail` (inboxes, domains) and `agentmail::keys`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::clock::rfc3339;

pub const DEFAULT_DOMAIN: &str = "agentmail.to";
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
pub const POD_ID: &str = "emulator-pod";

/// Serde (here and below) for the state file (`persist`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbox {
    pub inbox_id: String,
    pub display_name: Option<String>,
    pub client_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Inbox {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "pod_id": POD_ID,
            "inbox_id": self.inbox_id,
            "email": self.inbox_id,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        });
        if let Some(d) = &self.display_name {
            v["display_name"] = json!(d);
        }
        if let Some(c) = &self.client_id {
            v["client_id"] = json!(c);
        }
        v
    }
}

/// A custom domain of the organisation, as the control API registered it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Domain {
    pub domain_id: String,
    pub domain: String,
    /// `NOT_STARTED`, `PENDING`, `INVALID`, `FAILED`, `VERIFYING` or `VERIFIED`.
    pub status: String,
    pub subdomains_enabled: bool,
}

pub const DOMAIN_STATUSES: [&str; 6] =
    ["NOT_STARTED", "PENDING", "INVALID", "FAILED", "VERIFYING", "VERIFIED"];

/// Every live inbox by creation sequence (so pages are stable while others are created).
#[derive(Debug, Default)]
pub struct AgentMailWorld {
    pub inboxes: BTreeMap<u64, Inbox>,
    pub next_seq: u64,
    /// Custom domains by name (lowercase).
    pub domains: BTreeMap<String, Domain>,
    /// Every `User-Agent` the API routes saw, so a test can check what clients send.
    pub user_agents: std::collections::BTreeSet<String>,
}

impl AgentMailWorld {
    pub fn find(&self, inbox_id: &str) -> Option<u64> {
        let wanted = inbox_id.to_ascii_lowercase();
        self.inboxes.iter().find(|(_, i)| i.inbox_id == wanted).map(|(seq, _)| *seq)
    }

    /// Whether an inbox with this id (any case) is live.
    pub fn has_inbox(&self, inbox_id: &str) -> bool {
        let wanted = inbox_id.to_ascii_lowercase();
        self.inboxes.values().any(|i| i.inbox_id == wanted)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxKey {
    pub api_key_id: String,
    pub api_key: String,
    pub name: String,
    pub inbox_id: String,
    pub created_at: OffsetDateTime,
}

impl InboxKey {
    pub fn listed(&self) -> Value {
        json!({
            "api_key_id": self.api_key_id,
            "prefix": &self.api_key[..11],
            "name": self.name,
            "inbox_id": self.inbox_id,
            "created_at": rfc3339(self.created_at),
        })
    }
}

/// Every inbox-scoped key, by id.
#[derive(Debug, Default)]
pub struct InboxKeysWorld {
    pub keys: BTreeMap<String, InboxKey>,
}

/// What an `AGENTMAIL_API_KEY` can do for one inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// A key scoped to exactly this inbox, and the inbox exists.
    Inbox,
    /// The organisation's own key: it works, but for every inbox.
    Organization,
    /// Unknown, revoked, scoped to another inbox, or the inbox is gone.
    Invalid,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Inbox => "inbox",
            KeyScope::Organization => "organization",
            KeyScope::Invalid => "invalid",
        }
    }
}

impl InboxKeysWorld {
    /// What `key` is good for on `inbox_id`.
    pub fn scope_of(&self, inboxes: &AgentMailWorld, org_key: &str, key: &str, inbox_id: &str) -> KeyScope {
        if !inboxes.has_inbox(inbox_id) {
            return KeyScope::Invalid;
        }
        if key == org_key {
            return KeyScope::Organization;
        }
        let scoped =
            self.keys.values().any(|k| k.api_key == key && k.inbox_id.eq_ignore_ascii_case(inbox_id));
        if scoped { KeyScope::Inbox } else { KeyScope::Invalid }
    }
}
