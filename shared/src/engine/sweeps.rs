//! The background sweeps (ARCHITECTURE §6): tick and reconcile; the heartbeat has its own
//! module. Each pass runs under a sweep lease so one of a kind runs at a time across every
//! process; each returns a report that is kept for the status page.

use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Engine, EngineError, ResourceSweep, new_gateway_token};
use crate::provider::{DerivedStatus, Observed, derive_status};
use crate::store::{Fence, Move, Refill, Status, Step};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TickReport {
    /// Another process held the tick lease; nothing was done.
    pub skipped: bool,
    pub redriven: usize,
    pub stuck_destroyed: Vec<String>,
    pub stale_claims_released: Vec<String>,
    pub orphaned_claims_failed: usize,
    /// What the provider's listing showed, where one call lists the whole pool (Railway).
    pub observed: Option<ObserveReport>,
    pub replenish: Option<Refill>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ObserveReport {
    pub listed: usize,
    /// Idle or provisioning instances whose deployment failed or vanished.
    pub destroyed: Vec<String>,
    /// Claimed instances whose deployment failed: kept for the operator.
    pub crashed: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReconcileReport {
    pub skipped: bool,
    pub listed: usize,
    pub rows_removed: Vec<String>,
    pub marked_crashed: Vec<String>,
    /// Rows whose machine is gone but whose resources still need deleting.
    pub sent_to_destroy: Vec<String>,
    pub orphans_deleted: Vec<String>,
    pub orphans_waiting: Vec<String>,
    pub resources: ResourceSweep,
}

/// How long a sweep lease lasts unless renewed (every third of it while the pass runs).
const SWEEP_LEASE: Duration = Duration::from_secs(30);

impl Engine {
    /// Runs `pass` under the sweep lease of `kind`; `None` when another process holds it.
    /// The lease is short and renewed while the pass runs, so a process killed mid-pass
    /// blocks that sweep for one lease period, not for the longest pass there could be.
    pub(super) async fn swept<T: serde::Serialize>(
        &self,
        kind: &str,
        pass: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<Option<T>, EngineError> {
        let owner = self.new_owner();
        if !self.store.take_sweep(kind, &owner, SWEEP_LEASE).await? {
            return Ok(None);
        }
        let renew = async {
            loop {
                tokio::time::sleep(SWEEP_LEASE / 3).await;
                match self.store.take_sweep(kind, &owner, SWEEP_LEASE).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(sweep = kind, "sweep lease lost; the pass finishes unguarded")
                    }
                    Err(err) => tracing::warn!(sweep = kind, error = %err, "sweep lease renewal failed"),
                }
            }
        };
        let result = tokio::select! {
            result = pass => result,
            never = renew => match never {},
        };
        let report = match &result {
            Ok(report) => serde_json::to_value(report).unwrap_or_default(),
            Err(err) => serde_json::json!({ "error": err.to_string() }),
        };
        self.store.finish_sweep(kind, &owner, report).await?;
        result.map(Some)
    }

    /// Re-drives due steps, destroys stuck provisioning, releases stale claims, refills.
    pub async fn tick(&self) -> Result<TickReport, EngineError> {
        let report = self.swept("tick", self.tick_pass()).await?;
        Ok(report.unwrap_or(TickReport { skipped: true, ..Default::default() }))
    }

    async fn tick_pass(&self) -> Result<TickReport, EngineError> {
        let mut report = TickReport::default();
        for id in self.store.lingering(Status::Provisioning, self.settings.stuck_timeout).await? {
            let detail = format!("provisioning longer than {} s", self.settings.stuck_timeout.as_secs());
            let change = Move {
                to: Status::Destroying,
                step: Some(Step::Destroy),
                delay: Duration::ZERO,
                reason: "stuck",
                detail: Some(&detail),
            };
            if self.store.transition(&id, Fence::Free { status: Status::Provisioning }, change).await? {
                self.store
                    .breaker_failure(&detail, self.settings.breaker_threshold, self.settings.breaker_pause)
                    .await?;
                self.deliver(&id, 0, Duration::ZERO).await;
                report.stuck_destroyed.push(id);
            }
        }
        for id in self.store.lingering(Status::Claiming, self.settings.claim_stale).await? {
            let Some(instance) = self.store.instance(&id).await? else { continue };
            let fence = Fence::Free { status: Status::Claiming };
            let detail = "claiming for too long";
            if self
                .store
                .begin_recycle(
                    &id,
                    fence,
                    &new_gateway_token(),
                    self.recycle_start(),
                    "stale_claim",
                    Some(detail),
                )
                .await?
            {
                if let Some(claim_id) = instance.claim_id {
                    let failed = crate::store::ClaimStatus::Failed;
                    self.store.finish_claim(claim_id, failed, None, None, Some(detail)).await?;
                }
                self.deliver(&id, 0, Duration::ZERO).await;
                report.stale_claims_released.push(id);
            }
        }
        report.orphaned_claims_failed =
            self.store.fail_orphaned_claims(self.settings.claim_stale).await?.len();
        if self.provider.capabilities().observing_list {
            report.observed = self.observe().await?;
        }
        // Started from the tick, a chain begins again at hop 0.
        let due = self.store.due_steps(self.settings.redrive_batch).await?;
        report.redriven = due.len();
        for id in &due {
            self.deliver(id, 0, Duration::ZERO).await;
        }
        report.replenish = Some(self.replenish().await?);
        Ok(report)
    }

    /// Makes the rows and the provider agree: rows whose machine is gone go (or are marked
    /// crashed if someone was using them), machines of this environment no row knows are
    /// deleted once older than the grace period.
    pub async fn reconcile(&self) -> Result<ReconcileReport, EngineError> {
        let report = self.swept("reconcile", self.reconcile_pass()).await?;
        Ok(report.unwrap_or(ReconcileReport { skipped: true, ..Default::default() }))
    }

    async fn reconcile_pass(&self) -> Result<ReconcileReport, EngineError> {
        let listed_at = OffsetDateTime::now_utc();
        let prefix = self.settings.environment.sprite_prefix();
        let remote = match self.provider.list(&prefix).await {
            Ok(remote) => remote,
            Err(err) => {
                // Without a full listing nothing can be called missing.
                tracing::warn!(error = %err, "reconcile could not list machines; nothing changed");
                return Ok(ReconcileReport::default());
            }
        };
        let mut report = ReconcileReport { listed: remote.len(), ..Default::default() };
        let present: HashSet<&str> = remote.iter().map(|m| m.name.as_str()).collect();
        let all_rows = self.store.known_instances().await?;
        // Rows of another provider (a pool switched between backends) are not in this listing.
        let known: Vec<_> = all_rows.iter().filter(|row| row.provider == self.provider.kind()).collect();
        let has_resources = self.resources.any();
        for row in &known {
            // Only rows whose machine existed before the listing began can be missing from it.
            let created_before = row.sprite_created_at.is_some_and(|t| t < listed_at);
            if row.leased || !created_before || present.contains(row.sprite_name.as_str()) {
                continue;
            }
            let fence = Fence::Free { status: row.status };
            match row.status {
                Status::Claimed => {
                    let change = Move {
                        to: Status::Crashed,
                        step: None,
                        delay: Duration::ZERO,
                        reason: "machine_gone",
                        detail: None,
                    };
                    if self.store.transition(&row.id, fence, change).await? {
                        report.marked_crashed.push(row.id.clone());
                    }
                }
                Status::Crashed | Status::Claiming => {}
                // The destroy step deletes the resources, then the row.
                _ if has_resources => {
                    let change = Move {
                        to: Status::Destroying,
                        step: Some(Step::Destroy),
                        delay: Duration::ZERO,
                        reason: "machine_gone",
                        detail: None,
                    };
                    if self.store.transition(&row.id, fence, change).await? {
                        self.deliver(&row.id, 0, Duration::ZERO).await;
                        report.sent_to_destroy.push(row.id.clone());
                    }
                }
                _ => {
                    if self.store.delete_instance(&row.id, fence, "machine_gone", None).await? {
                        report.rows_removed.push(row.id.clone());
                    }
                }
            }
        }
        let names: HashSet<&str> = all_rows.iter().map(|k| k.sprite_name.as_str()).collect();
        let grace = time::Duration::try_from(self.settings.reconcile_grace).unwrap_or_default();
        for machine in &remote {
            if names.contains(machine.name.as_str()) {
                continue;
            }
            let old_enough = machine.created_at.is_some_and(|t| listed_at - t > grace);
            if !old_enough {
                report.orphans_waiting.push(machine.name.clone());
                continue;
            }
            match self.provider.destroy(&machine.name).await {
                Ok(()) => report.orphans_deleted.push(machine.name.clone()),
                Err(err) => tracing::warn!(sprite = %machine.name, error = %err, "orphan delete failed"),
            }
        }
        report.resources = self.sweep_resources(&names, self.settings.reconcile_grace).await;
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
            let fence = Fence::Free { status: row.status };
            let waiting_for_deploy = row.status == Status::Provisioning
                && matches!(row.step, Some(Step::AwaitReady | Step::VerifyClean));
            match derived {
                DerivedStatus::Dead if row.status == Status::Idle || waiting_for_deploy => {
                    let change = Move {
                        to: Status::Destroying,
                        step: Some(Step::Destroy),
                        delay: Duration::ZERO,
                        reason: "deploy_dead",
                        detail: Some("the provider reports the deployment failed or gone"),
                    };
                    if self.store.transition(&row.id, fence, change).await? {
                        self.deliver(&row.id, 0, Duration::ZERO).await;
                        report.destroyed.push(row.id);
                    }
                }
                DerivedStatus::Crashed if claimed => {
                    let change = Move {
                        to: Status::Crashed,
                        step: None,
                        delay: Duration::ZERO,
                        reason: "deploy_dead",
                        detail: Some("the provider reports the deployment failed or gone"),
                    };
                    if self.store.transition(&row.id, fence, change).await? {
                        report.crashed.push(row.id);
                    }
                }
                _ => {}
            }
        }
        Ok(Some(report))
    }
}
