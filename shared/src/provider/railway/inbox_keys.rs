//! AgentMail inbox-scoped API keys (`/v0/inboxes/{inbox_id}/api-keys`, AgentMail changelog
//! 2026-03-18) for the Railway runtime's email handler.
//!
//! Why a scoped key: the runtime needs `AGENTMAIL_API_KEY` (or a pool proxy at `POOL_URL`,
//! which this pool does not serve) to read and send its inbox's mail. The organisation's key
//! opens every inbox of the organisation and mints new ones; a key scoped to the instance's
//! inbox opens that inbox only and dies with it. So every deploy gets a fresh key scoped to
//! the instance's inbox, minted with the organisation key, which never leaves the pool.
//!
//! Kept out of `crate::resources` (another area of the code): only this provider needs it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use crate::provider::ProviderError;

/// Mints and revokes inbox-scoped keys with the organisation key.
#[derive(Clone)]
pub struct InboxKeys {
    http: reqwest::Client,
    /// AgentMail's API root, e.g. `https://api.agentmail.to/v0`.
    api_url: Url,
    org_key: SecretString,
}

impl std::fmt::Debug for InboxKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxKeys")
            .field("api_url", &self.api_url.as_str())
            .field("org_key", &"[redacted]")
            .finish()
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

impl InboxKeys {
    pub fn new(api_url: Url, org_key: SecretString, http: reqwest::Client) -> Self {
        InboxKeys { http, api_url, org_key }
    }

    /// `{api_url}/inboxes/{inbox_id}/api-keys[/{key_id}]`, each part escaped as a segment.
    fn url(&self, inbox_id: &str, key_id: Option<&str>) -> Result<Url, ProviderError> {
        let mut url = self.api_url.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| ProviderError::permanent("AGENTMAIL_API_URL cannot take a path"))?;
            segments.pop_if_empty().extend(["inboxes", inbox_id, "api-keys"]);
            if let Some(id) = key_id {
                segments.push(id);
            }
        }
        Ok(url)
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, ProviderError> {
        let response = request
            .bearer_auth(self.org_key.expose_secret())
            .header(http::header::USER_AGENT, crate::USER_AGENT)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| ProviderError::transient(format!("agentmail {what}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(body),
            408 | 429 | 500..=599 => {
                Err(ProviderError::transient(format!("agentmail {what}: HTTP {status}")))
            }
            _ => {
                let message = body.get("message").and_then(Value::as_str).unwrap_or("refused");
                let message: String = message.chars().take(200).collect();
                Err(ProviderError::permanent(format!("agentmail {what}: HTTP {status}: {message}")))
            }
        }
    }

    /// A fresh key scoped to `inbox_id`, named `name`. Keys of that name minted before (a
    /// retried or repeated deploy) are revoked first: their secrets cannot be read back, and
    /// a live credential nobody holds is one too many.
    pub async fn issue(&self, inbox_id: &str, name: &str) -> Result<SecretString, ProviderError> {
        let listed = self.send(self.http.get(self.url(inbox_id, None)?), "inbox key list").await?;
        let stale: Vec<String> = listed
            .get("api_keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|k| k.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|k| k.get("api_key_id").and_then(Value::as_str).map(str::to_string))
            .collect();
        for id in stale {
            match self.send(self.http.delete(self.url(inbox_id, Some(&id))?), "inbox key revoke").await {
                Ok(_) => {}
                // Revoked meanwhile by someone else: what we wanted.
                Err(err) if err.message.contains("HTTP 404") => {}
                Err(err) => return Err(err),
            }
        }
        let created = self
            .send(self.http.post(self.url(inbox_id, None)?).json(&json!({"name": name})), "inbox key create")
            .await?;
        created
            .get("api_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(|k| SecretString::from(k.to_string()))
            .ok_or_else(|| ProviderError::permanent("agentmail inbox key create: the answer has no api_key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_the_inbox_address() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let keys = InboxKeys::new(
            "https://api.agentmail.to/v0/".parse().unwrap(),
            SecretString::from("k".to_string()),
            reqwest::Client::new(),
        );
        assert_eq!(
            keys.url("a b@agentmail.to", None).unwrap().as_str(),
            "https://api.agentmail.to/v0/inboxes/a%20b@agentmail.to/api-keys"
        );
        assert_eq!(
            keys.url("x@y.z", Some("id1")).unwrap().as_str(),
            "https://api.agentmail.to/v0/inboxes/x@y.z/api-keys/id1"
        );
    }
}
