//! The pool as a whole: its status for the status route and the dashboard, and the errors of
//! an operator's action on one instance (recycling.rs, destroying.rs).

use super::{Engine, EngineError};
use crate::store::{Breaker, Refill, Status};

pub type ReplenishReport = Refill;

/// Counts per status and the breaker, for the status route and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub environment: String,
    /// Part of every name this pool gives (naming.rs).
    pub pool_id: String,
    pub counts: std::collections::BTreeMap<&'static str, i64>,
    pub total: i64,
    pub min_idle: u32,
    pub max_total: u32,
    /// The settings in force (issue 15.1), with who changed them last.
    pub settings: crate::store::StoredSettings,
    pub breaker: Breaker,
    /// Version rollout progress (issue 15.3).
    pub rollout: super::RolloutStatus,
    /// Fixed or adaptive sizing, and adaptive's latest figures (issue 15.2).
    pub sizing: super::SizingStatus,
    /// Machines running and asleep, as the pool counts them (issue 17).
    pub running: crate::store::Running,
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
    /// The instance holds a resource this process has no client for: destroying it would
    /// leak the resource (and its spend).
    #[error("{0} is not set: this process cannot delete the instance's per-instance resources")]
    MissingSetting(&'static str),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ActionError {
    fn from(err: crate::store::StoreError) -> Self {
        ActionError::Engine(err.into())
    }
}

impl Engine {
    pub async fn status(&self) -> Result<PoolStatus, EngineError> {
        let counts = self.store.counts().await?;
        let total = counts.iter().map(|(_, n)| n).sum();
        let settings = self.pool_settings().await?;
        Ok(PoolStatus {
            environment: self.settings.environment.to_string(),
            pool_id: self.pool_id().await?.to_string(),
            counts: counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
            total,
            min_idle: settings.settings.min_idle,
            max_total: settings.settings.max_total,
            sizing: self.sizing_status(&settings.settings).await?,
            settings,
            breaker: self.store.breaker().await?,
            rollout: self.rollout_status().await?,
            running: self.store.running(self.settings.sprite_idle_pause).await?,
        })
    }
}
