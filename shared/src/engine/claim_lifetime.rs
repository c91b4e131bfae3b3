//! Claim lifetime (issue 15.4). A claim may expire: its own `ttlSeconds`, else the pool's
//! `claimTtlSeconds` setting, fixed when it takes an instance and moved only by an extension
//! (`PATCH /api/pool/claims/{id}`). The tick recycles a claimed instance whose claim expired,
//! and one whose join has waited for the invite's acceptance longer than
//! `joinAcceptTimeoutSeconds` unless its gateway now reports the conversation bound. Either way
//! the claim ends `expired` in the same write as the recycle, with the reason in the history.

use std::time::Duration;

use futures_util::StreamExt;
use uuid::Uuid;

use super::claiming::{ClaimResult, Invalid, invalid};
use super::{Engine, EngineError};
use crate::gateway::GatewayStatus;
use crate::lifecycle::{Actor, Reason};
use crate::settings::PoolSettings;
use crate::store::{ClaimEnd, ClaimStatus, Extended, LifetimeTarget, Status};

/// Instances each rule ends in one tick pass at most; the next pass takes the rest.
const LIFETIME_BATCH: i64 = 100;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LifetimeReport {
    /// Claimed instances recycled because their claim expired.
    pub expired: Vec<String>,
    /// Joins recycled because the invite was not accepted in time.
    pub not_accepted: Vec<String>,
    /// Waiting joins the gateway reported bound after all: kept, now `joined`.
    pub accepted: Vec<String>,
    /// Waiting joins whose gateway did not answer: left for the next pass (a silent gateway is
    /// the heartbeat's business; it may be bound).
    pub unanswered: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtendError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no such claim")]
    NotFound,
    /// Failed, expired, or its instance was recycled or destroyed.
    #[error("the claim is no longer live: no instance serves it")]
    NotLive,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// The tick's lifetime rules, each bounded to [`LIFETIME_BATCH`] instances a pass.
    pub(super) async fn claim_lifetimes(
        &self,
        settings: &PoolSettings,
    ) -> Result<LifetimeReport, EngineError> {
        let mut report = LifetimeReport::default();
        for target in self.store.expired_claims(LIFETIME_BATCH).await? {
            let ends =
                ClaimEnd { claim_id: target.claim_id, status: ClaimStatus::Expired, only_if_expired: true };
            if self.end_claim(&target, Reason::ClaimExpired, "the claim's lifetime ran out", ends).await? {
                report.expired.push(target.id);
            }
        }
        let timeout = settings.join_accept_timeout_seconds;
        let waiting =
            self.store.unaccepted_joins(Duration::from_secs(timeout.into()), LIFETIME_BATCH).await?;
        let concurrency = self.settings.heartbeat_concurrency.max(1);
        let checked: Vec<(LifetimeTarget, Option<GatewayStatus>)> = futures_util::stream::iter(waiting)
            .map(|target| async move {
                let answer = self.gateway_status(&target).await;
                (target, answer)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (target, answer) in checked {
            match answer.map(|status| status.conversation) {
                None => report.unanswered += 1,
                Some(Some(conversation)) => {
                    if self.store.record_accepted(&target.id, target.claim_id, &conversation.id).await? {
                        tracing::info!(instance = %target.id, claim = %target.claim_id, "waiting join accepted");
                        report.accepted.push(target.id);
                    }
                }
                Some(None) => {
                    let detail = format!("the invite was not accepted within {timeout} s");
                    let ends = ClaimEnd {
                        claim_id: target.claim_id,
                        status: ClaimStatus::Expired,
                        only_if_expired: false,
                    };
                    if self.end_claim(&target, Reason::JoinNotAccepted, &detail, ends).await? {
                        report.not_accepted.push(target.id);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Recycles a claimed instance at rest and ends its claim; `false`: it moved on first.
    async fn end_claim(
        &self,
        target: &LifetimeTarget,
        reason: Reason,
        detail: &str,
        ends: ClaimEnd,
    ) -> Result<bool, EngineError> {
        let lease = self.leases.at_rest(&target.id, Status::Claimed, &Actor::TICK);
        Ok(self.begin_recycle_ending(lease, reason, Some(detail), Some(ends)).await?.is_some())
    }

    /// The gateway's status, or `None` when it did not answer within the heartbeat's timeout.
    async fn gateway_status(&self, target: &LifetimeTarget) -> Option<GatewayStatus> {
        let url = target.url.as_deref()?;
        let ask = self.gateway.status(url, &target.gateway_token);
        match tokio::time::timeout(self.settings.heartbeat_timeout, ask).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(err)) => {
                tracing::warn!(instance = %target.id, error = %err, "waiting join: gateway status failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Sets a live claim to expire `ttl_seconds` (60 s to 30 days) from now.
    pub async fn extend_claim(
        &self,
        claim_id: Uuid,
        ttl_seconds: &serde_json::Value,
    ) -> Result<ClaimResult, ExtendError> {
        let ttl = crate::settings::lifetime(ttl_seconds).map_err(|m| invalid("ttlSeconds", m))?;
        let extended = self.store.extend_claim(claim_id, Duration::from_secs(ttl.into())).await;
        match extended.map_err(EngineError::from)? {
            Extended::To(at) => tracing::info!(claim = %claim_id, ttl, expires_at = %at, "claim extended"),
            Extended::NotLive => return Err(ExtendError::NotLive),
            Extended::NotFound => return Err(ExtendError::NotFound),
        }
        let claim = self.store.claim(claim_id).await.map_err(EngineError::from)?;
        claim.as_ref().map(ClaimResult::from).ok_or(ExtendError::NotFound)
    }
}
