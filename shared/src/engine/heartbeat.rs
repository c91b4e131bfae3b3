//! The heartbeat sweep (ARCHITECTURE §6): pings every claimed and hot idle gateway and the
//! sleeping idle ones whose rare check is due (hibernation.rs), wakes the silent ones, gives
//! up on the dead. A pass has three phases: every ping at once (bounded by the concurrency
//! setting), then two statements record every answer and every silence, then the few
//! instances that need more (a recycle, a wake-up, giving up) are handled one by one.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::destroying::to_destroying;
use super::hibernation::WakeFailure;
use super::tick::crashed;
use super::{Engine, EngineError};
use crate::gateway::{GatewayError, GatewayStatus};
use crate::lifecycle::{Actor, Reason};
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
    /// Sleeping instances whose wake the running limit refused this pass (checked later).
    pub throttled: usize,
    /// Idle instances found bound to a conversation (a late answer to a timed-out claim):
    /// recycled before anyone else is handed them.
    pub recycled: Vec<String>,
    pub destroyed: Vec<String>,
    pub crashed: Vec<String>,
}

/// What one ping came to.
enum Ping {
    Answered(GatewayStatus),
    Silent,
    Throttled,
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
        let settings = self.pool_settings().await?.settings;
        // Hot idle first (issue 17): the instances claims take next are awake before they
        // are pinged, and a promoted one gets its wake-up ping in this very pass.
        self.keep_hot(&Actor::HEARTBEAT).await?;
        let targets = self.store.heartbeat_targets(self.sleep_plan(&settings)).await?;
        let targets = self.within_running_room(targets).await?;
        // A hung gateway holds its slot for the whole ping timeout. Once the hung ones fill
        // every slot the pass crawls, so the slots grow with the pool: up to a tenth of it in
        // flight keeps a pass near one timeout even with several percent of gateways hung.
        let concurrency = self.settings.heartbeat_concurrency.max(targets.len() / 10).max(1);
        let pings: Vec<(HeartbeatTarget, Ping)> = futures_util::stream::iter(targets)
            .map(|target| async move {
                let answer = self.ping(&target).await;
                (target, answer)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut report = HeartbeatReport { concurrency, pinged: pings.len(), ..Default::default() };
        let mut answered = Vec::new();
        let mut silent = Vec::new();
        for (target, ping) in pings {
            match ping {
                Ping::Answered(status) => answered.push((target, status)),
                Ping::Silent => silent.push(target),
                // The running limit refused the wake: back-pressure, not a sign of ill health.
                Ping::Throttled => report.throttled += 1,
            }
        }
        self.store.heartbeats_answered(answered.iter().map(|(target, _)| target)).await?;
        report.healthy = answered.len();
        for (target, status) in &answered {
            let bound = status.conversation.is_some();
            if target.status == Status::Idle && bound && self.recycle_bound_idle(&target.id).await? {
                report.recycled.push(target.id.clone());
            }
        }

        let counts: HashMap<String, i32> =
            self.store.heartbeats_missed(silent.iter()).await?.into_iter().collect();
        report.failed = silent.len();
        // A sleeping instance's check waited for a whole wake: one failure is enough to act.
        let over_limit = silent.into_iter().filter(|target| {
            let limit = if target.asleep { 1 } else { self.settings.heartbeat_failure_limit };
            counts.get(&target.id).is_some_and(|failures| *failures >= limit)
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

    /// Every awake target, and as many sleeping ones as `maxRunning` leaves room to wake (the
    /// longest unchecked first); the rest wait for a later pass.
    async fn within_running_room(
        &self,
        targets: Vec<HeartbeatTarget>,
    ) -> Result<Vec<HeartbeatTarget>, EngineError> {
        let Some(room) = self.running_room().await? else { return Ok(targets) };
        let mut room = room.max(0);
        Ok(targets
            .into_iter()
            // Only idle instances are ever presumed asleep (store/heartbeats.rs).
            .filter(|t| {
                let fits = !t.asleep || room > 0;
                room -= i64::from(t.asleep && fits);
                fits
            })
            .collect())
    }

    /// The gateway's status; an instance presumed asleep is given a whole wake to answer.
    async fn ping(&self, target: &HeartbeatTarget) -> Ping {
        let Some(url) = target.url.as_deref() else { return Ping::Silent };
        if target.asleep {
            let started = tokio::time::Instant::now();
            let deadline = started + self.settings.wake_budget;
            // A bound one answers too: the pass recycles it like any idle instance found bound.
            return match self.wake_and_verify(url, &target.gateway_token, deadline).await {
                Ok(status) => {
                    let ms = started.elapsed().as_millis() as u64;
                    self.note_wake((&target.id, target.status), &Actor::HEARTBEAT, "sleeping_check", ms)
                        .await;
                    Ping::Answered(status)
                }
                Err(WakeFailure::Throttled { .. }) => Ping::Throttled,
                Err(WakeFailure::Failed(_)) => Ping::Silent,
            };
        }
        self.plain_ping(url, target).await
    }

    async fn plain_ping(&self, url: &str, target: &HeartbeatTarget) -> Ping {
        let ping = self.gateway.status(url, &target.gateway_token);
        match tokio::time::timeout(self.settings.heartbeat_timeout, ping).await {
            Ok(Ok(status)) => Ping::Answered(status),
            Ok(Err(GatewayError::Throttled { .. })) => Ping::Throttled,
            _ => Ping::Silent,
        }
    }

    /// An idle instance whose gateway reports a conversation is recycled before anyone is
    /// handed it.
    async fn recycle_bound_idle(&self, id: &str) -> Result<bool, EngineError> {
        let lease = self.leases.at_rest(id, Status::Idle, &Actor::HEARTBEAT);
        let detail = Some("idle instance reported a bound conversation");
        Ok(self.begin_recycle(lease, Reason::BoundWhileIdle, detail).await?.is_some())
    }

    /// Too many failed pings in a row: wake the machine (a Sprite that went to sleep wakes on
    /// exec and its service restarts the gateway) while wake-ups are left, else give up.
    async fn escalate(&self, target: &HeartbeatTarget) -> Result<Escalation, EngineError> {
        if target.recoveries < self.settings.recovery_limit {
            let woke = self.provider.wake(&target.sprite_name).await;
            if matches!(&woke, Err(err) if matches!(err.failure, Failure::Throttled { .. })) {
                return Ok(Escalation::Skipped);
            }
            let gone = matches!(&woke, Err(err) if err.failure == Failure::Gone);
            if let Err(err) = &woke {
                tracing::warn!(instance = %target.id, error = %err, "wake-up failed");
            }
            if !gone {
                self.store.heartbeat_recovery(&target.id, target.status).await?;
                return Ok(Escalation::Woken);
            }
            return self.give_up(target, true).await;
        }
        self.give_up(target, false).await
    }

    /// Idle instances are replaced; claimed ones are kept, marked crashed, for the operator.
    /// `gone`: the wake-up found no machine at all, which is what the history then says.
    async fn give_up(&self, target: &HeartbeatTarget, gone: bool) -> Result<Escalation, EngineError> {
        let lease = self.leases.at_rest(&target.id, target.status, &Actor::HEARTBEAT);
        let (reason, detail) = if gone {
            (
                Reason::MachineGone,
                "the machine vanished from the provider (its wake-up found none)".to_string(),
            )
        } else {
            let pings = self.settings.heartbeat_failure_limit;
            (Reason::HeartbeatFailed, format!("{pings} failed pings after {} wake-ups", target.recoveries))
        };
        let idle = target.status == Status::Idle;
        let change = if idle { to_destroying(reason, Some(&detail)) } else { crashed(reason, Some(&detail)) };
        if !lease.advance(change).await? {
            return Ok(Escalation::Skipped);
        }
        Ok(if idle { Escalation::Destroyed } else { Escalation::Crashed })
    }
}
