//! Destroying: an instance's machine and resources deleted, then its row. Operators destroy one
//! instance or drain idle ones; the other units send instances here when they give up.

use std::time::Duration;

use super::outcome::Outcome;
use super::pool::ActionError;
use super::{Engine, EngineError};
use crate::lifecycle::{Actor, EventKind, Reason};
use crate::store::{Change, Instance, Status, Step};

/// The move every destroy starts with.
pub(super) fn to_destroying(reason: Reason, detail: Option<&str>) -> Change<'_> {
    Change::Move { to: Status::Destroying, step: Some(Step::Destroy), delay: Duration::ZERO, reason, detail }
}

impl Engine {
    /// The destroy step: the machine first (nothing runs on the resources any more), then the
    /// resources; the row goes when both are gone.
    pub(super) async fn destroy_step(&self, instance: &Instance) -> Outcome {
        if let Err(err) = self.provider.destroy(&instance.sprite_name).await {
            return Outcome::Failed(err);
        }
        match self.release_resources(instance).await {
            Ok(()) => Outcome::Removed,
            Err(err) => Outcome::Failed(err),
        }
    }

    /// Destroys an instance whatever its status, unless a step is running on it right now.
    pub async fn destroy(&self, id: &str, actor: &Actor) -> Result<Status, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        if instance.status == Status::Destroying {
            return Ok(Status::Destroying);
        }
        if let Some(setting) = self.unreleasable(&instance) {
            return Err(ActionError::MissingSetting(setting));
        }
        let lease = self.leases.at_rest(id, instance.status, actor);
        if !lease.advance(to_destroying(Reason::Destroy, None)).await? {
            return Err(ActionError::Busy(instance.status));
        }
        Ok(Status::Destroying)
    }

    /// `poolctl drain --idle` (the seeds' `npm run drain:all`): destroys each of `ids` that is
    /// still idle or provisioning, never one that was claimed meanwhile. Returns the ids a
    /// running step holds right now, to try again: a provisioning instance is taken when its
    /// step lets go between polls, or once it is idle.
    pub async fn drain_unclaimed(&self, ids: &[String], actor: &Actor) -> Result<Vec<String>, EngineError> {
        let mut busy = Vec::new();
        let mut drained = Vec::new();
        for id in ids {
            let Some(instance) = self.store.instance(id).await? else { continue };
            if !matches!(instance.status, Status::Idle | Status::Provisioning) {
                continue;
            }
            let lease = self.leases.at_rest(id, instance.status, actor);
            if lease.advance(to_destroying(Reason::Drain, None)).await? {
                drained.push(id.clone());
            } else {
                busy.push(id.clone());
            }
        }
        self.drained("idle", &drained, actor).await?;
        Ok(busy)
    }

    /// Destroys `count` idle instances (all of them when `None`), oldest first. One taken by a
    /// claim meanwhile is skipped.
    pub async fn drain(&self, count: Option<u32>, actor: &Actor) -> Result<Vec<String>, EngineError> {
        let mut drained = Vec::new();
        for id in self.store.idle_ids(count.map(i64::from)).await? {
            let lease = self.leases.at_rest(&id, Status::Idle, actor);
            if lease.advance(to_destroying(Reason::Drain, None)).await? {
                drained.push(id);
            }
        }
        self.drained("count", &drained, actor).await?;
        Ok(drained)
    }

    /// The audit trail's `drain` event (issue 16.2): which drain, by whom, what it destroys.
    /// Each instance's own history line names the drain too.
    pub(super) async fn drained(&self, mode: &str, ids: &[String], actor: &Actor) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(mode, drained = ids.len(), %actor, "drain");
        let detail = serde_json::json!({ "mode": mode, "instances": ids });
        Ok(self.store.pool_event(EventKind::Drain, actor, &detail).await?)
    }
}
