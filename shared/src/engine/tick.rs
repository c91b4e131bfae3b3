//! The tick (ARCHITECTURE §6): re-drives due steps, destroys stuck provisioning, releases
//! stale claims, ends expired claims and joins never accepted, acts on what a whole-pool
//! listing shows (Railway), decides the adaptive target (sizing.rs), and refills. One tick at
//! a time across every process, under its sweep lease.

use std::time::Duration;

use time::OffsetDateTime;

use super::destroying::to_destroying;
use super::{Engine, EngineError};
use crate::lifecycle::{Actor, Reason};
use crate::provider::{DerivedStatus, Observed, derive_status};
use crate::store::{Change, Pruned, Refill, Status, Step};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TickReport {
    /// Another process held the tick lease; nothing was done.
    pub skipped: bool,
    pub redriven: usize,
    pub stuck_destroyed: Vec<String>,
    pub stale_claims_released: Vec<String>,
    pub orphaned_claims_failed: usize,
    /// Claims whose lifetime ran out and joins never accepted (claim_lifetime.rs).
    pub lifetimes: super::LifetimeReport,
    /// What the provider's listing showed, where one call lists the whole pool (Railway).
    pub observed: Option<ObserveReport>,
    /// The version rollout's pass (engine/rollout.rs).
    pub rollout: Option<super::RolloutReport>,
    /// Adaptive sizing's pass (engine/sizing.rs): the target decided, idle instances shed.
    pub sizing: Option<super::SizingReport>,
    /// Idle instances woken to restore `hotIdle` (hibernation.rs).
    pub woken: usize,
    pub replenish: Option<Refill>,
    /// Finished claims and history lines past the retention period, deleted this tick.
    pub pruned: Pruned,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ObserveReport {
    pub listed: usize,
    /// Idle or provisioning instances whose deployment failed or vanished.
    pub destroyed: Vec<String>,
    /// Claimed instances whose deployment failed: kept for the operator.
    pub crashed: Vec<String>,
}

impl Engine {
    /// Re-drives due steps, destroys stuck provisioning, releases stale claims, refills.
    pub async fn tick(&self) -> Result<TickReport, EngineError> {
        match self.leases.sweep("tick").await? {
            Some(lease) => lease.run(self.tick_pass()).await,
            None => Ok(TickReport { skipped: true, ..Default::default() }),
        }
    }

    async fn tick_pass(&self) -> Result<TickReport, EngineError> {
        let mut report = TickReport::default();
        // Read once for the whole pass; the first tick of a new pool stores the environment's
        // settings (engine/settings.rs).
        let settings = self.pool_settings().await?.settings;
        for id in self.store.lingering(Status::Provisioning, self.settings.stuck_timeout).await? {
            let detail = format!("provisioning longer than {} s", self.settings.stuck_timeout.as_secs());
            let lease = self.leases.at_rest(&id, Status::Provisioning, &Actor::TICK);
            if lease.advance(to_destroying(Reason::Stuck, Some(&detail))).await? {
                self.breaker_failure(&detail, &Actor::TICK).await?;
                report.stuck_destroyed.push(id);
            }
        }
        for id in self.store.lingering(Status::Claiming, self.settings.claim_stale).await? {
            let Some(instance) = self.store.instance(&id).await? else { continue };
            let detail = "claiming for too long";
            let lease = self.leases.at_rest(&id, Status::Claiming, &Actor::TICK);
            if self.begin_recycle(lease, Reason::StaleClaim, Some(detail)).await?.is_some() {
                if let Some(claim_id) = instance.claim_id {
                    let failed = crate::store::ClaimStatus::Failed;
                    self.store.finish_claim(claim_id, failed, None, None, Some(detail)).await?;
                }
                report.stale_claims_released.push(id);
            }
        }
        report.orphaned_claims_failed =
            self.store.fail_orphaned_claims(self.settings.claim_stale).await?.len();
        report.lifetimes = self.claim_lifetimes(&settings).await?;
        report.pruned = self.store.prune(self.settings.retention, self.settings.prune_batch).await?;
        if self.provider.capabilities().observing_list {
            report.observed = self.observe().await?;
        }
        // Started from the tick, a chain begins again at hop 0.
        let due = self.store.due_steps(self.settings.redrive_batch).await?;
        report.redriven = due.len();
        self.leases.hand_on(&due).await;
        let sizing = self.size_pool(&settings).await?;
        // The rollout keeps idle at what the refill keeps warm: the adaptive target in
        // adaptive mode.
        let sized = crate::settings::PoolSettings { min_idle: sizing.in_force, ..settings };
        report.sizing = Some(sizing);
        report.rollout = Some(self.roll_out(&sized).await?);
        // Idle instances beyond `hotIdle` are let go to sleep first, so under `maxRunning`
        // the place they free can go to a new one (hibernation.rs).
        report.woken = self.keep_hot(&Actor::TICK).await?;
        report.replenish = Some(self.replenish(&Actor::TICK).await?);
        Ok(report)
    }

    /// Acts on what one listing of the whole pool says of each machine (the old system's
    /// `deriveStatus`): a failed deployment under an idle or provisioning instance is
    /// replaced, one under a claimed instance is marked crashed. Silence is the heartbeat's
    /// business and a slow start the stuck rule's, so neither is judged here.
    async fn observe(&self) -> Result<Option<ObserveReport>, EngineError> {
        let prefix = self.settings.environment.sprite_prefix();
        let remote = match self.provider.list(&prefix).await {
            Ok(remote) => remote,
            Err(err) => {
                tracing::warn!(error = %err, "could not list machines; nothing observed this tick");
                return Ok(None);
            }
        };
        let mut report = ObserveReport { listed: remote.len(), ..Default::default() };
        let observed: std::collections::HashMap<&str, Observed> =
            remote.iter().filter_map(|m| Some((m.name.as_str(), m.observed?))).collect();
        let now = OffsetDateTime::now_utc();
        for row in self.store.known_instances().await? {
            if row.leased || row.provider != self.provider.kind() {
                continue;
            }
            // A status this code does not know says nothing either way.
            let Some(&seen) = observed.get(row.sprite_name.as_str()).filter(|o| **o != Observed::Unknown)
            else {
                continue;
            };
            let age = row.sprite_created_at.map(|t| now - t).unwrap_or_default();
            let age = Duration::try_from(age).unwrap_or_default();
            let claimed = matches!(row.status, Status::Claimed);
            let derived = derive_status(seen, None, false, claimed, age, self.settings.stuck_timeout);
            let waiting_for_deploy = row.status == Status::Provisioning
                && matches!(row.step, Some(Step::AwaitReady | Step::VerifyClean));
            let (change, list) = match derived {
                DerivedStatus::Dead if row.status == Status::Idle || waiting_for_deploy => {
                    (to_destroying(Reason::DeployDead, Some(DEPLOY_DEAD)), &mut report.destroyed)
                }
                DerivedStatus::Crashed if claimed => {
                    (crashed(Reason::DeployDead, Some(DEPLOY_DEAD)), &mut report.crashed)
                }
                _ => continue,
            };
            if self.leases.at_rest(&row.id, row.status, &Actor::TICK).advance(change).await? {
                list.push(row.id);
            }
        }
        Ok(Some(report))
    }
}

const DEPLOY_DEAD: &str = "the provider reports the deployment failed or gone";

/// A claimed instance whose machine is gone is kept, marked crashed, for the operator.
pub(super) fn crashed(reason: Reason, detail: Option<&str>) -> Change<'_> {
    Change::Move { to: Status::Crashed, step: None, delay: Duration::ZERO, reason, detail }
}
