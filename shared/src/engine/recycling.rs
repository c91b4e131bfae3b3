//! Recycling: an instance back to its golden state for the next tenant. A recycle begins by
//! forgetting the tenant (a new gateway token, the conversation and resources dropped) and
//! runs restore, rotate_resources, rotate_token, then the readiness steps of provisioning.

use super::lease::Lease;
use super::outcome::Outcome;
use super::pool::ActionError;
use super::provisioning::secrets;
use super::rollout::REBUILD_DETAIL;
use super::{Engine, EngineError, new_gateway_token};
use crate::lifecycle::{Actor, EventKind, Reason};
use crate::provider::{InstanceSecrets, ProviderError};
use crate::store::{Change, ClaimEnd, Instance, Status, Step};

impl Engine {
    /// Starts a recycle of the instance `lease` holds (or finds at rest): `None` when someone
    /// moved it first, else where it went (see [`Engine::begin_recycle_ending`]).
    pub(super) async fn begin_recycle(
        &self,
        lease: Lease<'_>,
        reason: Reason,
        detail: Option<&str>,
    ) -> Result<Option<Status>, EngineError> {
        self.begin_recycle_ending(lease, reason, detail, None).await
    }

    /// [`Engine::begin_recycle`] that also ends the claim the instance served, in the same
    /// write (claim_lifetime.rs). The one place that decides between restoring and rebuilding,
    /// for every path that gives an instance back (an operator's recycle, an expired claim, a
    /// join never accepted, a failed or abandoned claim, a bound idle instance):
    /// - built from an older version: rebuilt (`destroying`), since restoring would bring the
    ///   old build back; the tick's refill starts a current one. A tenant's instance (claimed
    ///   or crashed) goes with reason `rollout` and the caller's reason in the detail; one that
    ///   never reached a tenant (a failed claim, a bound idle one) keeps the caller's reason, so
    ///   a failure is still counted as one, with the rebuild in the detail;
    /// - no checkpoints (Railway): destroyed, and replenish makes a fresh one;
    /// - else restored from its golden checkpoint (`recycling`).
    pub(super) async fn begin_recycle_ending(
        &self,
        lease: Lease<'_>,
        reason: Reason,
        detail: Option<&str>,
        ends: Option<ClaimEnd>,
    ) -> Result<Option<Status>, EngineError> {
        let rebuild;
        let (first, reason, detail) = if self.is_stale(lease.id()).await? {
            let released = matches!(lease.status(), Status::Claimed | Status::Crashed);
            rebuild = match (released, detail) {
                (true, Some(detail)) => format!("{reason}: {detail}; {REBUILD_DETAIL}"),
                (true, None) => format!("{reason}; {REBUILD_DETAIL}"),
                (false, Some(detail)) => format!("{detail}; {REBUILD_DETAIL}"),
                (false, None) => REBUILD_DETAIL.to_string(),
            };
            let reason = if released { Reason::Rollout } else { reason };
            ((Status::Destroying, Step::Destroy), reason, Some(rebuild.as_str()))
        } else if self.provider.capabilities().checkpoints {
            ((Status::Recycling, Step::Restore), reason, detail)
        } else {
            ((Status::Destroying, Step::Destroy), reason, detail)
        };
        let token = new_gateway_token();
        let moved = lease.advance(Change::Recycle { first, token: &token, reason, detail, ends }).await?;
        Ok(moved.then_some(first.0))
    }

    /// Gives an instance back for the next tenant: restored to its golden state, or rebuilt
    /// (see [`Engine::begin_recycle_ending`]); one without a golden checkpoint is destroyed.
    pub async fn recycle(&self, id: &str, actor: &Actor) -> Result<Status, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        if !matches!(instance.status, Status::Claimed | Status::Crashed | Status::Idle) {
            return Err(ActionError::WrongStatus(instance.status));
        }
        let stale = self.is_stale(id).await?;
        if instance.golden_checkpoint_id.is_none() && !stale {
            return self.destroy(id, actor).await;
        }
        // A rebuild releases the instance's resources, as a destroy does.
        if stale && let Some(setting) = self.unreleasable(&instance) {
            return Err(ActionError::MissingSetting(setting));
        }
        let lease = self.leases.at_rest(id, instance.status, actor);
        match self.begin_recycle(lease, Reason::Recycle, None).await? {
            Some(status) => Ok(status),
            None => Err(ActionError::Busy(instance.status)),
        }
    }

    pub(super) async fn recycling_step(
        &self,
        instance: &Instance,
        step: Step,
        lease: &Lease<'_>,
    ) -> Result<Outcome, EngineError> {
        let name = instance.sprite_name.as_str();
        let outcome = match step {
            Step::Restore => match &instance.golden_checkpoint_id {
                None => Outcome::Failed(ProviderError::permanent("no golden checkpoint to restore")),
                Some(checkpoint) => match self.provider.restore(name, checkpoint).await {
                    Ok(()) => Outcome::next(Status::Recycling, self.after_restore()),
                    Err(err) => Outcome::Failed(err),
                },
            },
            Step::RotateResources => match self.rotate_resources(instance, lease).await {
                Ok(()) => {
                    let detail = "the previous tenant's OpenRouter key and inbox deleted, new ones made";
                    lease.note(EventKind::ResourcesRotated, "recycle", Some(detail)).await?;
                    Outcome::next(Status::Recycling, Step::RotateToken)
                }
                Err(err) => err.into_outcome()?,
            },
            Step::RotateToken => match self.rotate_token(name, &secrets(instance)).await {
                Ok(()) => Outcome::next(Status::Recycling, Step::AwaitReady),
                Err(err) => Outcome::Failed(err),
            },
            other => unreachable!("{other} is not a recycling step"),
        };
        Ok(outcome)
    }

    /// A restored instance gets new resources (where configured) before its new token, whose
    /// configuration write carries them into the instance.
    fn after_restore(&self) -> Step {
        if self.resources.any() { Step::RotateResources } else { Step::RotateToken }
    }

    /// The restored gateway still has the golden token; give it this recycle's token.
    async fn rotate_token(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError> {
        self.provider.configure(name, secrets).await?;
        self.provider.restart_gateway(name).await
    }
}
