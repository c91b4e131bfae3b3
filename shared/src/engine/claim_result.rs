//! What a claim answers: the Node pool's fields plus those the Railway pool added (issue 16.6).

use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

use crate::store::{Claim, ClaimStatus, Instance};

/// How a finished claim ended, in the field names the Node and Railway pools answered with.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResult {
    pub claim_id: Uuid,
    pub instance_id: Option<String>,
    pub status: ClaimStatus,
    pub joined: bool,
    /// `status` is `waiting_for_acceptance`, as a flag the Railway pool's clients read.
    pub waiting_for_acceptance: bool,
    pub conversation_id: Option<String>,
    pub invite_url: Option<String>,
    /// The invite URL's `i` parameter.
    pub invite_slug: Option<String>,
    pub agent_name: String,
    pub error: Option<String>,
    /// When the claim expires (or expired); `None`: never (issue 15.4).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<time::OffsetDateTime>,
    /// The instance's public URL and its gateway token: only in the answer of the claim
    /// itself (a claim's status later carries neither). A recycle rotates the token, so it
    /// dies with the claim. Debug shows it redacted, so no log line carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_token")]
    pub gateway_token: Option<SecretString>,
}

impl ClaimResult {
    /// What a claim row says, without the instance's URL and token.
    pub(super) fn new(
        claim_id: Uuid,
        instance_id: Option<String>,
        status: ClaimStatus,
        agent_name: String,
    ) -> Self {
        ClaimResult {
            claim_id,
            instance_id,
            status,
            joined: status == ClaimStatus::Joined,
            waiting_for_acceptance: status == ClaimStatus::WaitingForAcceptance,
            conversation_id: None,
            invite_url: None,
            invite_slug: None,
            agent_name,
            error: None,
            expires_at: None,
            gateway_url: None,
            gateway_token: None,
        }
    }

    pub(super) fn with_invite(mut self, conversation_id: Option<String>, invite_url: Option<String>) -> Self {
        self.invite_slug = invite_url.as_deref().and_then(invite_slug);
        self.conversation_id = conversation_id;
        self.invite_url = invite_url;
        self
    }

    pub(super) fn with_expiry(mut self, expires_at: Option<time::OffsetDateTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The claimed instance's gateway, for the claim's own answer.
    pub(super) fn with_gateway(mut self, instance: &Instance) -> Self {
        self.gateway_url = instance.url.clone();
        self.gateway_token = Some(SecretString::clone(&instance.gateway_token));
        self
    }
}

/// `https://dev.convos.org/v2?i=<slug>` → `<slug>` (the invite shape of convos-node-sdk).
fn invite_slug(invite_url: &str) -> Option<String> {
    let url = Url::parse(invite_url).ok()?;
    let slug = url.query_pairs().find(|(key, _)| key == "i").map(|(_, value)| value.into_owned())?;
    (!slug.is_empty()).then_some(slug)
}

fn expose_token<S: serde::Serializer>(
    token: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match token {
        Some(token) => serializer.serialize_str(token.expose_secret()),
        None => serializer.serialize_none(),
    }
}

impl From<&Claim> for ClaimResult {
    fn from(claim: &Claim) -> Self {
        let mut result =
            ClaimResult::new(claim.id, claim.instance_id.clone(), claim.status, claim.agent_name.clone())
                .with_invite(claim.conversation_id.clone(), claim.invite_url.clone());
        result.error = claim.error.clone();
        result.expires_at = claim.expires_at;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::invite_slug;

    #[test]
    fn the_slug_is_the_invite_urls_i_parameter() {
        assert_eq!(invite_slug("https://dev.convos.org/v2?i=abc-123_x").as_deref(), Some("abc-123_x"));
        assert_eq!(invite_slug("https://popup.convos.org/v2?x=1&i=a%2Bb").as_deref(), Some("a+b"));
        for none in ["https://dev.convos.org/v2", "https://dev.convos.org/v2?i=", "not a url"] {
            assert_eq!(invite_slug(none), None, "{none}");
        }
    }
}
