//! The heartbeat sweep (ARCHITECTURE §6): pings every idle and claimed gateway, wakes the
//! silent ones, gives up on the dead. A pass has three phases: every ping at once (bounded by
//! the concurrency setting), then two statements record every answer and every silence, then
//! the few instances that need more (a recycle, a wake-up, giving up) are handled one by one.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::destroying::to_destroying;
use super::tick::crashed;
use super::{Engine, EngineError};
use crate::gateway::GatewayStatus;
use crate::lifecycle::Reason;
use crate::provider::Failure;
use crate::store::{HeartbeatTarget, Status};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HeartbeatReport {
    pub skipped: bool,
    /// Pings in flight at most: HEARTBEAT_CONCURRENCY, or a tenth of the pool if more.
    pub concurrency: usize,
    pub pinged: usize,
    pub healthy: usize,
    pub failed: usize,
    pub woken: Vec<String>,
    /// Idle instances found bound to a conversation (a late answer to a timed-out claim):
    /// recycled before anyone else is handed them.
    pub recycled: Vec<String>,
    pub destroyed: Vec<String>,
    pub crashed: Vec<String>,
}

/// What one silent instance came to.
enum Escalation {
    Woken,
    Destroyed,
    Crashed,
    /// It moved on meanwhile; nothing was done.
    Skipped,
}

impl Engine {
    pub async fn heartbeat(&self) -> Result<HeartbeatReport, EngineError> {
        match self.leases.sweep("heartbeat").await? {
            Some(lease) => lease.run(self.heartbeat_pass()).await,
            None => Ok(HeartbeatReport { skipped: true, ..Default::default() }),
        }
    }

    async fn heartbeat_pass(&self) -> Result<HeartbeatReport, EngineError> {
        let targets: Vec<HeartbeatTarget> =
            self.store.heartbeat_targets().await?.into_iter().filter(|t| t.url.is_some()).collect();
        // A hung gateway holds its slot for the whole ping timeout. Once the hung ones fill
        // every slot the pass crawls, so the slots grow with the pool: up to a tenth of it in
        // flight keeps a pass near one timeout even with several percent of gateways hung.
        let concurrency = self.settings.heartbeat_concurrency.max(targets.len() / 10).max(1);
        let pings: Vec<(HeartbeatTarget, Option<GatewayStatus>)> = futures_util::stream::iter(targets)
            .map(|target| async move {
                let answer = self.ping(&target).await;
                (target, answer)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut report = HeartbeatReport { concurrency, pinged: pings.len(), ..Default::default() };
        let (answered, silent): (Vec<_>, Vec<_>) =
            pings.into_iter().partition(|(_, answer)| answer.is_some());
        self.store.heartbeats_answered(answered.iter().map(|(target, _)| target)).await?;
        report.healthy = answered.len();
        for (target, answer) in &answered {
            let bound = answer.as_ref().is_some_and(|status| status.conversation.is_some());
            if target.status == Status::Idle && bound && self.recycle_bound_idle(&target.id).await? {
                report.recycled.push(target.id.clone());
            }
        }

        let counts: HashMap<String, i32> = self
            .store
            .heartbeats_missed(silent.iter().map(|(target, _)| target))
            .await?
            .into_iter()
            .collect();
        report.failed = silent.len();
        let over_limit = silent.into_iter().filter_map(|(target, _)| {
            let failures = *counts.get(&target.id)?;
            (failures >= self.settings.heartbeat_failure_limit).then_some(target)
        });
        let escalations: Vec<(String, Result<Escalation, EngineError>)> =
            futures_util::stream::iter(over_limit)
                .map(|target| async move { (target.id.clone(), self.escalate(&target).await) })
                .buffer_unordered(self.settings.heartbeat_concurrency.max(1))
                .collect()
                .await;
        for (id, escalation) in escalations {
            match escalation? {
                Escalation::Woken => report.woken.push(id),
                Escalation::Destroyed => report.destroyed.push(id),
                Escalation::Crashed => report.crashed.push(id),
                Escalation::Skipped => {}
            }
        }
        Ok(report)
    }

    /// The gateway's status, or `None` when it did not answer within the ping timeout.
    async fn ping(&self, target: &HeartbeatTarget) -> Option<GatewayStatus> {
        let url = target.url.as_deref()?;
        let ping = self.gateway.status(url, &target.gateway_token);
        tokio::time::timeout(self.settings.heartbeat_timeout, ping).await.ok()?.ok()
    }

    /// An idle instance whose gateway reports a conversation is recycled before anyone is
    /// handed it.
    async fn recycle_bound_idle(&self, id: &str) -> Result<bool, EngineError> {
        let lease = self.leases.at_rest(id, Status::Idle);
        self.begin_recycle(lease, Reason::BoundWhileIdle, Some("idle instance reported a bound conversation"))
            .await
    }

    /// Too many failed pings in a row: wake the machine (a Sprite that went to sleep wakes on
    /// exec and its service restarts the gateway) while wake-ups are left, else give up.
    async fn escalate(&self, target: &HeartbeatTarget) -> Result<Escalation, EngineError> {
        if target.recoveries < self.settings.recovery_limit {
            let woke = self.provider.wake(&target.sprite_name).await;
            let gone = matches!(&woke, Err(err) if err.failure == Failure::Gone);
            if let Err(err) = &woke {
                tracing::warn!(instance = %target.id, error = %err, "wake-up failed");
            }
            if !gone {
                self.store.heartbeat_recovery(&target.id, target.status).await?;
                return Ok(Escalation::Woken);
            }
        }
        self.give_up(target).await
    }

    /// Idle instances are replaced; claimed ones are kept, marked crashed, for the operator.
    async fn give_up(&self, target: &HeartbeatTarget) -> Result<Escalation, EngineError> {
        let lease = self.leases.at_rest(&target.id, target.status);
        let detail = format!(
            "{} failed pings after {} wake-ups",
            self.settings.heartbeat_failure_limit, target.recoveries
        );
        let idle = target.status == Status::Idle;
        let reason = Reason::HeartbeatFailed;
        let change = if idle { to_destroying(reason, Some(&detail)) } else { crashed(reason, Some(&detail)) };
        if !lease.advance(change).await? {
            return Ok(Escalation::Skipped);
        }
        Ok(if idle { Escalation::Destroyed } else { Escalation::Crashed })
    }
}
