//! What the API shows of an instance: never its gateway token.

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{Agent, Event, Instance, Status};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView<'a> {
    pub id: &'a str,
    pub status: Status,
    pub step: Option<&'static str>,
    pub attempts: i32,
    pub last_error: Option<&'a str>,
    pub sprite_name: &'a str,
    pub url: Option<&'a str>,
    pub agent_name: Option<&'a str>,
    pub invite_url: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub join_status: Option<&'a str>,
    pub claim_id: Option<uuid::Uuid>,
    pub heartbeat_failures: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ready_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub claimed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub status_changed_at: OffsetDateTime,
    /// When the claim the instance serves expires; `None`: it does not (or no claim).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl<'a> From<&'a Instance> for InstanceView<'a> {
    fn from(i: &'a Instance) -> Self {
        InstanceView {
            id: &i.id,
            status: i.status,
            step: i.step.map(|s| s.as_str()),
            attempts: i.attempts,
            last_error: i.last_error.as_deref(),
            sprite_name: &i.sprite_name,
            url: i.url.as_deref(),
            agent_name: i.agent_name.as_deref(),
            invite_url: i.invite_url.as_deref(),
            conversation_id: i.conversation_id.as_deref(),
            join_status: i.join_status.as_deref(),
            claim_id: i.claim_id,
            heartbeat_failures: i.heartbeat_failures,
            created_at: i.created_at,
            ready_at: i.ready_at,
            claimed_at: i.claimed_at,
            status_changed_at: i.status_changed_at,
            expires_at: i.claim_expires_at,
        }
    }
}

/// A live agent for `/api/pool/agents`: who it is, what it was told, where to join it. Its
/// QR code is a route of its own (`/api/pool/agents/{id}/qr`), so a page of agents stays small.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView<'a> {
    pub instance_id: &'a str,
    pub agent_name: Option<&'a str>,
    pub instructions: Option<&'a str>,
    pub invite_url: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub join_status: Option<&'a str>,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339::option")]
    pub claimed_at: Option<OffsetDateTime>,
}

impl<'a> From<&'a Agent> for AgentView<'a> {
    fn from(a: &'a Agent) -> Self {
        AgentView {
            instance_id: &a.id,
            agent_name: a.agent_name.as_deref(),
            instructions: a.instructions.as_deref(),
            invite_url: a.invite_url.as_deref(),
            conversation_id: a.conversation_id.as_deref(),
            join_status: a.join_status.as_deref(),
            status: a.status,
            claimed_at: a.claimed_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail<'a> {
    #[serde(flatten)]
    pub instance: InstanceView<'a>,
    /// Newest first.
    pub events: &'a [Event],
}
