//! Reconcile (ARCHITECTURE §6): makes the rows and the provider agree. Rows whose machine is
//! gone go (or are marked crashed if someone was using them); machines this pool named that no
//! row knows are deleted once older than the grace period; so are orphaned resources. Machines
//! of this environment named by another pool, or before pool ids, are only reported (naming.rs).

use std::collections::HashSet;

use time::OffsetDateTime;

use super::destroying::to_destroying;
use super::tick::crashed;
use super::{Engine, EngineError, ResourceSweep, Unrecognised};
use crate::lifecycle::{Actor, EventKind, Reason};
use crate::store::{Change, Status};

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub skipped: bool,
    pub listed: usize,
    pub rows_removed: Vec<String>,
    pub marked_crashed: Vec<String>,
    /// Rows whose machine is gone but whose resources still need deleting.
    pub sent_to_destroy: Vec<String>,
    pub orphans_deleted: Vec<String>,
    pub orphans_waiting: Vec<String>,
    /// Machines of this environment no row knows and without this pool's id: never deleted.
    pub unrecognised: Unrecognised,
    pub resources: ResourceSweep,
}

impl Engine {
    /// Makes the rows and the provider agree: rows whose machine is gone go (or are marked
    /// crashed if someone was using them), machines this pool named that no row knows are
    /// deleted once older than the grace period.
    /// `actor`: the reconcile sweep, or an operator asking for a pass now.
    pub async fn reconcile(&self, actor: &Actor) -> Result<ReconcileReport, EngineError> {
        match self.leases.sweep("reconcile").await? {
            Some(lease) => lease.run(self.reconcile_pass(actor)).await,
            None => Ok(ReconcileReport { skipped: true, ..Default::default() }),
        }
    }

    async fn reconcile_pass(&self, actor: &Actor) -> Result<ReconcileReport, EngineError> {
        let listed_at = OffsetDateTime::now_utc();
        let pool_names = self.names().await?;
        let remote = match self.provider.list(pool_names.environment_prefix()).await {
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
            let lease = self.leases.at_rest(&row.id, row.status, actor);
            match row.status {
                Status::Claimed => {
                    if lease.advance(crashed(Reason::MachineGone, Some(VANISHED))).await? {
                        report.marked_crashed.push(row.id.clone());
                    }
                }
                Status::Crashed | Status::Claiming => {}
                // The destroy step deletes the resources, then the row.
                _ if has_resources => {
                    if lease.advance(to_destroying(Reason::MachineGone, Some(VANISHED))).await? {
                        report.sent_to_destroy.push(row.id.clone());
                    }
                }
                _ => {
                    let gone = Change::Remove { reason: Reason::MachineGone, detail: Some(VANISHED) };
                    if lease.advance(gone).await? {
                        report.rows_removed.push(row.id.clone());
                    }
                }
            }
        }
        let still_listed = known.iter().filter(|row| present.contains(row.sprite_name.as_str())).count();
        report_vanished(&report, still_listed);
        let names: HashSet<&str> = all_rows.iter().map(|k| k.sprite_name.as_str()).collect();
        let grace = time::Duration::try_from(self.settings.reconcile_grace).unwrap_or_default();
        for machine in &remote {
            if names.contains(machine.name.as_str()) {
                continue;
            }
            if !pool_names.is_ours(&machine.name) {
                report.unrecognised.add(&machine.name);
                continue;
            }
            let old_enough = machine.created_at.is_some_and(|t| listed_at - t > grace);
            if !old_enough {
                report.orphans_waiting.push(machine.name.clone());
                continue;
            }
            match self.provider.destroy(&machine.name).await {
                Ok(()) => {
                    self.orphan_deleted("machine", &machine.name, actor).await?;
                    report.orphans_deleted.push(machine.name.clone());
                }
                Err(err) => tracing::warn!(sprite = %machine.name, error = %err, "orphan delete failed"),
            }
        }
        report.resources = self.sweep_resources(pool_names, &names, self.settings.reconcile_grace).await;
        for key in &report.resources.keys_deleted {
            self.orphan_deleted("openrouter_key", key, actor).await?;
        }
        for inbox in &report.resources.inboxes_deleted {
            self.orphan_deleted("agentmail_inbox", inbox, actor).await?;
        }
        Ok(report)
    }

    /// One line and one `orphan_deleted` event (issue 16.2) for something this pool named that
    /// no row knew, deleted: a machine, an OpenRouter key, an AgentMail inbox.
    pub(super) async fn orphan_deleted(
        &self,
        resource: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        tracing::info!(resource, name, %actor, "orphan deleted: this pool named it and no row knows it");
        let detail = serde_json::json!({ "resource": resource, "name": name });
        Ok(self.store.pool_event(EventKind::OrphanDeleted, actor, &detail).await?)
    }
}

const VANISHED: &str = "the machine vanished from the provider";

/// One line for what a pass found missing, besides each instance's own status line. `none_left`:
/// not one machine the rows know is listed any more, as after a provider reset.
fn report_vanished(report: &ReconcileReport, still_listed: usize) {
    let replaced = report.rows_removed.len() + report.sent_to_destroy.len();
    let crashed = report.marked_crashed.len();
    if replaced + crashed > 0 {
        let none_left = still_listed == 0;
        tracing::warn!(replaced, crashed, none_left, "machines vanished from the provider");
    }
}
