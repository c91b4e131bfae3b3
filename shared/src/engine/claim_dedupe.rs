//! Claims that must not take a second instance (issue 15.5): a repeat carrying the same
//! Idempotency-Key within 24 hours, and a claim for an invite that a live claim already serves
//! (the successor pool's dedupe per joinUrl). Both are answered with the earlier claim as it
//! stands now. The dedupe indexes make the race safe too: the statement that takes an instance
//! fails as a whole for the loser (store/leases.rs), which then answers with the winner's claim.

use sha2::{Digest, Sha256};

use super::Engine;
use super::claiming::{ClaimError, ClaimOutcome, ClaimRequest, ClaimResult, Idempotency, Invalid, invalid};
use crate::store::{Claim, ClaimStatus, Status};

/// Longest Idempotency-Key accepted.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

impl ClaimRequest {
    /// This request under the client's `Idempotency-Key` header value.
    pub fn with_idempotency_key(mut self, key: &str) -> Result<Self, Invalid> {
        let printable = key.bytes().all(|b| b.is_ascii_graphic());
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS || !printable {
            return Err(invalid(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
            ));
        }
        // A lifetime joins the digest only when given, so a key's digest from before
        // ttlSeconds existed still matches the same request.
        let mut fields = serde_json::json!([self.agent_name, self.instructions, self.join_url]);
        if let (Some(ttl), Some(fields)) = (self.ttl_seconds, fields.as_array_mut()) {
            fields.push(ttl.into());
        }
        let digest = Sha256::digest(fields.to_string().as_bytes());
        let digest = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.idempotency = Some(Idempotency { key: key.to_string(), digest });
        Ok(self)
    }
}

impl Engine {
    /// The earlier claim this request repeats, if any.
    pub(super) async fn earlier_claim(
        &self,
        request: &ClaimRequest,
    ) -> Result<Option<ClaimOutcome>, ClaimError> {
        if let Some(idempotency) = &request.idempotency
            && let Some(keyed) = self.store.claim_by_key(&idempotency.key).await?
        {
            if keyed.request_digest.as_deref() != Some(idempotency.digest.as_str()) {
                return Err(ClaimError::KeyReused);
            }
            return Ok(Some(self.settled(keyed.claim).await?));
        }
        if let Some(join_url) = &request.join_url
            && let Some(claim) = self.store.live_claim_for_join_url(join_url).await?
        {
            return Ok(Some(self.settled(claim).await?));
        }
        Ok(None)
    }

    /// After a 503: a concurrent request with the same key (or invite) locks the idle
    /// instances it skips while its statement runs, so the others may find none free for a
    /// moment. Its claim is committed within that statement; look for it a few times.
    pub(super) async fn earlier_claim_after_refusal(
        &self,
        request: &ClaimRequest,
    ) -> Result<Option<ClaimOutcome>, ClaimError> {
        for _ in 0..REFUSAL_LOOKS {
            if let Some(earlier) = self.earlier_claim(request).await? {
                return Ok(Some(earlier));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        Ok(None)
    }

    /// A repeat that arrives while the first claim is still running waits for its end as the
    /// first caller does (at most `claim_wait`), so both get the same answer.
    async fn settled(&self, mut claim: Claim) -> Result<ClaimOutcome, ClaimError> {
        let deadline = tokio::time::Instant::now() + self.settings.claim_wait;
        while claim.status == ClaimStatus::Pending && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SETTLE_POLL).await;
            match self.store.claim(claim.id).await? {
                Some(now) => claim = now,
                None => break,
            }
        }
        let outcome = outcome_of(&claim);
        let ClaimOutcome::Done(result) = outcome else { return Ok(outcome) };
        // The repeat is the claim's own answer: it carries the gateway while the claim holds it.
        if let Some(id) = &claim.instance_id
            && let Some(instance) = self.store.instance(id).await?
            && instance.claim_id == Some(claim.id)
            && instance.status == Status::Claimed
        {
            return Ok(ClaimOutcome::Done(result.with_gateway(&instance)));
        }
        Ok(ClaimOutcome::Done(result))
    }
}

/// How many times a refused request looks for a racing repeat's claim (a second in all).
const REFUSAL_LOOKS: usize = 20;

/// How often a repeat looks at the first claim while it runs.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The answer the earlier claim gives now: still joining is a 202, anything else its result.
fn outcome_of(claim: &Claim) -> ClaimOutcome {
    match (claim.status, &claim.instance_id) {
        (ClaimStatus::Pending, Some(instance_id)) => {
            ClaimOutcome::Accepted { claim_id: claim.id, instance_id: instance_id.clone() }
        }
        _ => ClaimOutcome::Done(ClaimResult::from(claim)),
    }
}
