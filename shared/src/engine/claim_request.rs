//! What a claim asks and what it answers (ARCHITECTURE §5): the request checked field by
//! field, the result, and the ways a claim fails. The claiming unit (claiming.rs) does the work.

use std::time::Duration;

use url::Url;
use uuid::Uuid;

use super::EngineError;
use crate::config::PoolEnvironment;
use crate::store::{Claim, ClaimStatus, StoreError};

pub const MAX_AGENT_NAME_CHARS: usize = 100;
pub const MAX_INSTRUCTIONS_BYTES: usize = 64 * 1024;
pub const MAX_JOIN_URL_BYTES: usize = 2048;

/// A field the caller got wrong, named so the 400 can say which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { field, message: message.into() }
}

/// A validated claim request.
#[derive(Clone)]
pub struct ClaimRequest {
    pub agent_name: String,
    pub instructions: String,
    pub join_url: Option<String>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("agent_name", &self.agent_name)
            .field("instructions_bytes", &self.instructions.len())
            .field("join_url", &self.join_url)
            .finish()
    }
}

impl ClaimRequest {
    /// Parses `{agentName, instructions, joinUrl?}`; every rule names its field.
    pub fn from_json(body: &[u8], environment: PoolEnvironment) -> Result<Self, Invalid> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| invalid("body", format!("not valid JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
        let string = |field: &'static str| -> Result<Option<String>, Invalid> {
            match object.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(field, "must be a string")),
            }
        };
        let agent_name = string("agentName")?.ok_or_else(|| invalid("agentName", "is required"))?;
        let instructions = string("instructions")?.ok_or_else(|| invalid("instructions", "is required"))?;
        let join_url = string("joinUrl")?;
        ClaimRequest::new(agent_name, instructions, join_url, environment)
    }

    pub fn new(
        agent_name: String,
        instructions: String,
        join_url: Option<String>,
        environment: PoolEnvironment,
    ) -> Result<Self, Invalid> {
        let agent_name = agent_name.trim().to_string();
        if agent_name.is_empty() {
            return Err(invalid("agentName", "must not be blank"));
        }
        if agent_name.chars().count() > MAX_AGENT_NAME_CHARS {
            return Err(invalid("agentName", format!("must be at most {MAX_AGENT_NAME_CHARS} characters")));
        }
        if agent_name.chars().any(char::is_control) {
            return Err(invalid("agentName", "must not contain control characters"));
        }
        if instructions.len() > MAX_INSTRUCTIONS_BYTES {
            return Err(invalid("instructions", format!("must be at most {MAX_INSTRUCTIONS_BYTES} bytes")));
        }
        let join_url = match join_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => Some(check_join_url(&raw, environment)?),
        };
        Ok(ClaimRequest { agent_name, instructions, join_url })
    }
}

/// A join URL must be an invite of this environment's Convos app: a production pool joining
/// a dev conversation (or the reverse) can never work.
fn check_join_url(raw: &str, environment: PoolEnvironment) -> Result<String, Invalid> {
    if raw.len() > MAX_JOIN_URL_BYTES {
        return Err(invalid("joinUrl", format!("must be at most {MAX_JOIN_URL_BYTES} bytes")));
    }
    let url = Url::parse(raw).map_err(|_| invalid("joinUrl", "must be a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid("joinUrl", "must be an https URL"));
    }
    let expected = environment.invite_host();
    if url.host_str() != Some(expected) {
        return Err(invalid(
            "joinUrl",
            format!("must be an invite on {expected} for the {environment} pool"),
        ));
    }
    Ok(raw.to_string())
}

/// How a finished claim ended.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResult {
    pub claim_id: Uuid,
    pub instance_id: Option<String>,
    pub status: ClaimStatus,
    pub joined: bool,
    pub conversation_id: Option<String>,
    pub invite_url: Option<String>,
    pub agent_name: String,
    pub error: Option<String>,
}

impl From<&Claim> for ClaimResult {
    fn from(claim: &Claim) -> Self {
        ClaimResult {
            claim_id: claim.id,
            instance_id: claim.instance_id.clone(),
            status: claim.status,
            joined: claim.status == ClaimStatus::Joined,
            conversation_id: claim.conversation_id.clone(),
            invite_url: claim.invite_url.clone(),
            agent_name: claim.agent_name.clone(),
            error: claim.error.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// Created, joined, or waiting for the invite's creator to accept.
    Done(ClaimResult),
    /// The join is still running; the claim id gives its status later.
    Accepted { claim_id: Uuid, instance_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("No idle instances available. Try again in a few minutes.")]
    NoIdle { retry_after: Duration },
    /// Every attempt failed; the instances involved are being recycled.
    #[error("claim failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for ClaimError {
    fn from(err: StoreError) -> Self {
        ClaimError::Engine(err.into())
    }
}
