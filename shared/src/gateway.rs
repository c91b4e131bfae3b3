//! Client for the OpenClaw gateway's Convos routes on an instance's public URL
//! (`shared/reference/convos-contracts.md` §1): status, create a conversation, join one.
//!
//! Every call carries the instance's own bearer token (its `channels.convos.poolApiKey`): a
//! Sprite URL is public, so without it anyone who learned the URL could bind the agent.

use std::time::Duration;

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Nothing answered, or the Sprite's proxy had no gateway to route to (502–504).
    #[error("gateway not reachable: {0}")]
    Unreachable(String),
    #[error("gateway call timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request may have been sent.
    #[error("gateway connection interrupted: {0}")]
    Interrupted(String),
    /// The instance's pool key did not match: the token is wrong or the config was replaced.
    #[error("gateway refused the instance token")]
    Unauthorized,
    /// The instance is bound to a conversation already.
    #[error("gateway already bound: {0}")]
    AlreadyBound(String),
    #[error("gateway rejected the request: {0}")]
    BadRequest(String),
    /// The Sprite could not wake: the account's running limit was reached (429
    /// `concurrent_sprite_limit_exceeded`). Back-pressure: nothing reached the gateway.
    #[error("the machine could not wake: running limit reached")]
    Throttled { retry_after: Option<Duration> },
    #[error("gateway error {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("unexpected gateway response: {0}")]
    Protocol(String),
}

impl GatewayError {
    /// Whether the failure could have left the instance bound (the request may have been
    /// acted on). Such an instance must be recycled, never returned to idle unchecked.
    pub fn may_have_bound(&self) -> bool {
        matches!(
            self,
            GatewayError::Timeout(_)
                | GatewayError::Interrupted(_)
                | GatewayError::Failed { .. }
                | GatewayError::Protocol(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConversationRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayStatus {
    pub ready: bool,
    #[serde(default)]
    pub conversation: Option<ConversationRef>,
    #[serde(default)]
    pub streaming: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateConversation {
    pub name: String,
    pub profile_name: String,
    pub env: String,
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub conversation_id: String,
    pub invite_url: String,
    #[serde(default)]
    pub invite_slug: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConversation {
    pub invite_url: String,
    pub profile_name: String,
    pub env: String,
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined {
        conversation_id: String,
    },
    /// The invite's creator has not accepted yet; nothing was persisted on the instance.
    WaitingForAcceptance,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinReply {
    status: String,
    #[serde(default)]
    conversation_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: Option<String>,
}

/// Per-route timeouts. Join must outlast the gateway's own 60 s acceptance wait, or a slow
/// acceptance shows up as an abort instead of `waiting_for_acceptance`.
#[derive(Debug, Clone)]
pub struct GatewayTimeouts {
    pub status: Duration,
    pub create: Duration,
    pub join: Duration,
}

impl Default for GatewayTimeouts {
    fn default() -> Self {
        GatewayTimeouts {
            status: Duration::from_secs(5),
            create: Duration::from_secs(30),
            join: Duration::from_secs(75),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    timeouts: GatewayTimeouts,
}

impl GatewayClient {
    pub fn new(timeouts: GatewayTimeouts) -> Result<Self, GatewayError> {
        let http = crate::tls::http_client_builder()
            .map_err(|e| GatewayError::Protocol(format!("TLS setup failed: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GatewayError::Protocol(format!("HTTP client setup failed: {e}")))?;
        Ok(GatewayClient { http, timeouts })
    }

    pub async fn status(&self, base_url: &str, token: &SecretString) -> Result<GatewayStatus, GatewayError> {
        let request = self.http.get(route(base_url, "status"));
        self.send(request, token, self.timeouts.status).await
    }

    pub async fn create_conversation(
        &self,
        base_url: &str,
        token: &SecretString,
        body: &CreateConversation,
    ) -> Result<Created, GatewayError> {
        let request = self.http.post(route(base_url, "conversation")).json(body);
        self.send(request, token, self.timeouts.create).await
    }

    pub async fn join(
        &self,
        base_url: &str,
        token: &SecretString,
        body: &JoinConversation,
    ) -> Result<JoinOutcome, GatewayError> {
        let request = self.http.post(route(base_url, "join")).json(body);
        let reply: JoinReply = self.send(request, token, self.timeouts.join).await?;
        match (reply.status.as_str(), reply.conversation_id) {
            ("joined", Some(conversation_id)) => Ok(JoinOutcome::Joined { conversation_id }),
            ("waiting_for_acceptance" | "pending_acceptance", _) => Ok(JoinOutcome::WaitingForAcceptance),
            (status, _) => Err(GatewayError::Protocol(format!("join answered status {status:?}"))),
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        token: &SecretString,
        timeout: Duration,
    ) -> Result<T, GatewayError> {
        let response = request
            .bearer_auth(token.expose_secret())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = response.bytes().await.map_err(|e| transport_error(e, timeout))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| GatewayError::Protocol(format!("undecodable body: {e}")));
        }
        let message = serde_json::from_slice::<ErrorReply>(&body)
            .ok()
            .and_then(|r| r.error)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(300).collect());
        Err(match status {
            StatusCode::UNAUTHORIZED => GatewayError::Unauthorized,
            StatusCode::CONFLICT => GatewayError::AlreadyBound(message),
            StatusCode::BAD_REQUEST => GatewayError::BadRequest(message),
            StatusCode::TOO_MANY_REQUESTS => GatewayError::Throttled { retry_after },
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                GatewayError::Unreachable(format!("{status}: {message}"))
            }
            _ => GatewayError::Failed { status: status.as_u16(), message },
        })
    }
}

fn route(base_url: &str, name: &str) -> String {
    format!("{}/convos/{name}", base_url.trim_end_matches('/'))
}

/// Errors never carry the URL: it identifies the instance, and the request carried a token.
fn transport_error(err: reqwest::Error, timeout: Duration) -> GatewayError {
    if err.is_timeout() {
        GatewayError::Timeout(timeout)
    } else if err.is_connect() {
        GatewayError::Unreachable(err.without_url().to_string())
    } else {
        GatewayError::Interrupted(err.without_url().to_string())
    }
}
