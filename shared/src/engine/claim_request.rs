//! A claim request, checked field by field so a 400 can name the field: the agent's name, its
//! instructions, an invite URL of this environment, a lifetime.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use url::Url;

use crate::config::PoolEnvironment;

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

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { field, message: message.into() }
}

/// The client's Idempotency-Key and what it was sent with (claim_dedupe.rs): the same key with
/// another request is refused.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// SHA-256 (hex) of the validated request's fields.
    pub digest: String,
}

/// A validated claim request.
#[derive(Clone)]
pub struct ClaimRequest {
    pub agent_name: String,
    pub instructions: String,
    pub join_url: Option<String>,
    /// The client's Idempotency-Key and the digest of this request (claim_dedupe.rs).
    pub idempotency: Option<Idempotency>,
    /// How long the claim lives (`ttlSeconds`); `None`: the pool's `claimTtlSeconds`, if set.
    pub ttl_seconds: Option<u32>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("agent_name", &self.agent_name)
            .field("instructions_bytes", &self.instructions.len())
            .field("join_url", &self.join_url)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

impl ClaimRequest {
    /// Parses `{agentName, instructions, joinUrl?, ttlSeconds?}`; every rule names its field.
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
        let request = ClaimRequest::new(agent_name, instructions, join_url, environment)?;
        match object.get("ttlSeconds") {
            None | Some(serde_json::Value::Null) => Ok(request),
            Some(ttl) => request.with_ttl(ttl),
        }
    }

    /// This request expiring `ttl` seconds (60 s to 30 days) after it takes an instance.
    pub fn with_ttl(mut self, ttl: &serde_json::Value) -> Result<Self, Invalid> {
        self.ttl_seconds = Some(crate::settings::lifetime(ttl).map_err(|m| invalid("ttlSeconds", m))?);
        Ok(self)
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
        // Bidi overrides and zero-width characters make a name read as something it is not.
        if agent_name.chars().any(|c| c.general_category() == GeneralCategory::Format) {
            return Err(invalid("agentName", "must not contain invisible formatting characters"));
        }
        if instructions.len() > MAX_INSTRUCTIONS_BYTES {
            return Err(invalid("instructions", format!("must be at most {MAX_INSTRUCTIONS_BYTES} bytes")));
        }
        // Postgres text cannot hold NUL; refused here it is the caller's 400, not our 500.
        if instructions.contains('\0') {
            return Err(invalid("instructions", "must not contain NUL bytes"));
        }
        let join_url = match join_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => Some(check_join_url(&raw, environment)?),
        };
        Ok(ClaimRequest { agent_name, instructions, join_url, idempotency: None, ttl_seconds: None })
    }
}

/// A join URL must be an invite of this environment's Convos app: a production pool joining
/// a dev conversation (or the reverse) can never work.
fn check_join_url(raw: &str, environment: PoolEnvironment) -> Result<String, Invalid> {
    if raw.len() > MAX_JOIN_URL_BYTES {
        return Err(invalid("joinUrl", format!("must be at most {MAX_JOIN_URL_BYTES} bytes")));
    }
    if raw.contains('\0') {
        return Err(invalid("joinUrl", "must not contain NUL bytes"));
    }
    let url = Url::parse(raw).map_err(|_| invalid("joinUrl", "must be a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid("joinUrl", "must be an https URL"));
    }
    // What the parser accepts but a reader would misread: `https://evil@dev.convos.org`, a host
    // spelled with percent escapes, a port. The authority as written must be the bare host.
    let authority = raw.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains(['@', '%', ':']) {
        return Err(invalid("joinUrl", "must name its host alone: no user, port or escapes"));
    }
    let expected = environment.invite_host();
    if url.host_str() != Some(expected) {
        return Err(invalid(
            "joinUrl",
            format!("must be an invite on {expected} for the {environment} pool"),
        ));
    }
    // Stored and forwarded as the parser understood it, never as sent.
    Ok(url.into())
}
