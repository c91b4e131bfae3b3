//! Pool-level actions: refill, drain, and the operator's recycle and destroy of one instance.

use std::time::Duration;

use super::{Engine, EngineError, new_gateway_token, random_id};
use crate::store::{Breaker, Fence, Move, NewInstance, Refill, RefillAsk, Status, Step};

pub type ReplenishReport = Refill;

/// Counts per status and the breaker, for the status route and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub environment: String,
    pub counts: std::collections::BTreeMap<&'static str, i64>,
    pub total: i64,
    pub min_idle: u32,
    pub max_total: u32,
    pub breaker: Breaker,
}

/// Why an operator action on one instance was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("instance not found")]
    NotFound,
    #[error("instance is {0}; try again when its current step is done")]
    Busy(Status),
    #[error("instance is {0}")]
    WrongStatus(Status),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ActionError {
    fn from(err: crate::store::StoreError) -> Self {
        ActionError::Engine(err.into())
    }
}

impl Engine {
    /// Tops the pool up to `min_idle` warm instances (idle, provisioning or recycling), at
    /// most `replenish_batch` at a time, within `max_total`.
    pub async fn replenish(&self) -> Result<ReplenishReport, EngineError> {
        self.refill(None).await
    }

    /// Starts `count` more instances whatever `min_idle` says (within `max_total`): an
    /// operator warming up ahead of a launch.
    pub async fn add_instances(&self, count: u32) -> Result<ReplenishReport, EngineError> {
        self.refill(Some(count)).await
    }

    /// One round trip to the store (the `pool_refill` function), then the new instances'
    /// first steps are handed to the chain.
    async fn refill(&self, count: Option<u32>) -> Result<ReplenishReport, EngineError> {
        let settings = &self.settings;
        let ask = RefillAsk {
            max_total: settings.max_total.into(),
            min_idle: settings.min_idle.into(),
            batch: settings.replenish_batch.into(),
            count: count.map(i64::from),
            provider: self.provider.kind(),
            openclaw_git_ref: &settings.openclaw_git_ref,
            reason: "replenish",
        };
        let candidates: Vec<NewInstance> = (0..ask.most())
            .map(|_| {
                let id = random_id(12);
                NewInstance { sprite_name: self.sprite_name(&id), id, gateway_token: new_gateway_token() }
            })
            .collect();
        let refill = self.store.refill(&ask, &candidates).await?;
        for id in &refill.created {
            self.deliver(id, 0, Duration::ZERO).await;
        }
        if !refill.created.is_empty() {
            tracing::info!(
                created = refill.created.len(),
                warm = refill.warm,
                total = refill.total,
                "replenish"
            );
        }
        Ok(refill)
    }

    /// Destroys `count` idle instances (all of them when `None`), oldest first.
    pub async fn drain(&self, count: Option<u32>) -> Result<Vec<String>, EngineError> {
        let ids = self.store.drain_idle(count.map(i64::from), "drain").await?;
        for id in &ids {
            self.deliver(id, 0, Duration::ZERO).await;
        }
        Ok(ids)
    }

    /// Restores an instance to its golden state and returns it to idle; one without a golden
    /// checkpoint is destroyed instead.
    pub async fn recycle(&self, id: &str) -> Result<Status, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        if !matches!(instance.status, Status::Claimed | Status::Crashed | Status::Idle) {
            return Err(ActionError::WrongStatus(instance.status));
        }
        if instance.golden_checkpoint_id.is_none() {
            return self.destroy(id).await;
        }
        let fence = Fence::Free { status: instance.status };
        if !self
            .store
            .begin_recycle(id, fence, &new_gateway_token(), self.recycle_start(), "recycle", None)
            .await?
        {
            return Err(ActionError::Busy(instance.status));
        }
        self.deliver(id, 0, Duration::ZERO).await;
        Ok(Status::Recycling)
    }

    /// Destroys an instance whatever its status, unless a step is running on it right now.
    pub async fn destroy(&self, id: &str) -> Result<Status, ActionError> {
        let instance = self.store.instance(id).await?.ok_or(ActionError::NotFound)?;
        if instance.status == Status::Destroying {
            return Ok(Status::Destroying);
        }
        let fence = Fence::Free { status: instance.status };
        let change = Move {
            to: Status::Destroying,
            step: Some(Step::Destroy),
            delay: Duration::ZERO,
            reason: "destroy",
            detail: None,
        };
        if !self.store.transition(id, fence, change).await? {
            return Err(ActionError::Busy(instance.status));
        }
        self.deliver(id, 0, Duration::ZERO).await;
        Ok(Status::Destroying)
    }

    pub async fn status(&self) -> Result<PoolStatus, EngineError> {
        let counts = self.store.counts().await?;
        let total = counts.iter().map(|(_, n)| n).sum();
        Ok(PoolStatus {
            environment: self.settings.environment.to_string(),
            counts: counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
            total,
            min_idle: self.settings.min_idle,
            max_total: self.settings.max_total,
            breaker: self.store.breaker().await?,
        })
    }
}
