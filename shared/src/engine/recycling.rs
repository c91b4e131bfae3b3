//! Recycling: an instance back to its golden state for the next tenant. A recycle begins by
//! forgetting the tenant (a new gateway token, the conversation and resources dropped) and
//! runs restore, rotate_resources, rotate_token, then the readiness steps of provisioning.

use super::destroying::to_destroying;
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
    /// Starts a recycle of the instance `lease` holds (or finds at rest): `false` when someone
    /// moved it first. Where the provider has no checkpoints the instance is destroyed instead
    /// and replenish makes a fresh one.
    pub(super) async fn begin_recycle(
        &self,
        lease: Lease<'_>,
        reason: Reason,
        detail: Option<&str>,
    ) -> Result<bool, EngineError> {
        self.begin_recycle_ending(lease, reason, detail, None).await
    }

    /// [`Engine::begin_recycle`] that also ends the claim the instance served, in the same
    /// write (claim_lifetime.rs).
    pub(super) async fn begin_recycle_ending(
        &self,
        lease: Lease<'_>,
        reason: Reason,
        detail: Option<&str>,
        ends: Option<ClaimEnd>,
    ) -> Result<bool, EngineError> {
        let first = if self.provider.capabilities().checkpoints {
            (Status::Recycling, Step::Restore)
        } else {
            (Status::Destroying, Step::Destroy)
        };
        let token = new_gateway_token();
        lease.advance(Change::Recycle { first, token: &token, reason, detail, ends }).await
    }

    /// Restores an instance to its golden state and returns it to idle; one without a golden
    /// checkpoint is destroyed instead.
    pub async fn recycle(&self, id: &str, actor: &Actor) -> Result<Status, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        if !matches!(instance.status, Status::Claimed | Status::Crashed | Status::Idle) {
            return Err(ActionError::WrongStatus(instance.status));
        }
        let lease = self.leases.at_rest(id, instance.status, actor);
        // Restoring would bring back the old build: a stale instance is rebuilt instead (the
        // tick's refill starts a current one).
        if self.is_stale(id).await? {
            if let Some(setting) = self.unreleasable(&instance) {
                return Err(ActionError::MissingSetting(setting));
            }
            if !lease.advance(to_destroying(Reason::Rollout, Some(REBUILD_DETAIL))).await? {
                return Err(ActionError::Busy(instance.status));
            }
            return Ok(Status::Destroying);
        }
        if instance.golden_checkpoint_id.is_none() {
            return self.destroy(id, actor).await;
        }
        if !self.begin_recycle(lease, Reason::Recycle, None).await? {
            return Err(ActionError::Busy(instance.status));
        }
        Ok(Status::Recycling)
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
