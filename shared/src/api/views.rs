//! What the API shows of an instance: never its gateway token.

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{Event, Instance, Status};

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
        }
    }
}

/// A live agent for `/api/pool/agents`: who it is, what it was told, where to join it.
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
    /// The invite URL as a QR code (SVG), drawn here: invite URLs are private, so no outside
    /// QR service ever sees one.
    pub invite_qr_svg: Option<String>,
}

impl<'a> From<&'a Instance> for AgentView<'a> {
    fn from(i: &'a Instance) -> Self {
        AgentView {
            instance_id: &i.id,
            agent_name: i.agent_name.as_deref(),
            instructions: i.instructions.as_deref(),
            invite_url: i.invite_url.as_deref(),
            conversation_id: i.conversation_id.as_deref(),
            join_status: i.join_status.as_deref(),
            status: i.status,
            claimed_at: i.claimed_at,
            invite_qr_svg: i.invite_url.as_deref().and_then(qr_svg),
        }
    }
}

fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).quiet_zone(true).build())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail<'a> {
    #[serde(flatten)]
    pub instance: InstanceView<'a>,
    /// Newest first.
    pub events: &'a [Event],
}
