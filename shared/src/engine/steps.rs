//! The step runner: take the lease, hand the step to the unit of work it belongs to
//! (provisioning, recycling, claiming, destroying), and settle what it came to through the
//! lease (ARCHITECTURE §4). Failures are judged here: retried with backoff or given up.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::Instrument;

use super::lease::Lease;
use super::outcome::Outcome;
use super::{Engine, EngineError};
use crate::lifecycle::{Actor, Reason};
use crate::provider::{Failure, ProviderError};
use crate::store::{Change, Instance, Status, Step};

impl Engine {
    /// Runs the due step of one instance, if nobody else holds it. Safe to call any number of
    /// times for the same instance: only one run gets the lease.
    pub async fn run_step(&self, instance_id: &str, hop: i32) -> Result<(), EngineError> {
        let Some((lease, instance)) = self.leases.take(instance_id, hop).await? else {
            return Ok(());
        };
        let Some(step) = instance.step else {
            return Ok(());
        };
        let span =
            tracing::info_span!("step", instance = %instance.id, %step, status = %instance.status, hop);
        async {
            let outcome = tokio::select! {
                outcome = self.execute(&instance, step, &lease) => outcome?,
                never = lease.keep_alive() => match never {},
            };
            self.settle(lease, &instance, step, outcome).await
        }
        .instrument(span)
        .await
    }

    async fn execute(
        &self,
        instance: &Instance,
        step: Step,
        lease: &Lease<'_>,
    ) -> Result<Outcome, EngineError> {
        match step {
            Step::Create
            | Step::Resources
            | Step::Install
            | Step::Configure
            | Step::StartGateway
            | Step::AwaitReady
            | Step::VerifyClean
            | Step::Checkpoint => self.provisioning_step(instance, step, lease).await,
            Step::Restore | Step::RotateResources | Step::RotateToken => {
                self.recycling_step(instance, step, lease).await
            }
            Step::ClaimCreate => Ok(self.claim_interrupted()),
            Step::ClaimJoin => Ok(self.join_step(instance).await),
            Step::Destroy => Ok(self.destroy_step(instance).await),
        }
    }

    async fn settle(
        &self,
        lease: Lease<'_>,
        instance: &Instance,
        step: Step,
        outcome: Outcome,
    ) -> Result<(), EngineError> {
        let moved = match outcome {
            Outcome::LeaseLost => return Ok(()),
            Outcome::Wait(delay) => return lease.wait_until(delay).await.map(|_| ()),
            Outcome::Failed(err) => return self.step_failed(lease, instance, step, err).await,
            // provisioning -> idle also closes the circuit breaker (store/leases.rs).
            Outcome::Next { status, step: next, reason } => {
                let change =
                    Change::Move { to: status, step: next, delay: Duration::ZERO, reason, detail: None };
                lease.advance(change).await?
            }
            Outcome::Removed => {
                lease.advance(Change::Remove { reason: Reason::Destroyed, detail: None }).await?
            }
            Outcome::ClaimFailed(detail) => self.claim_step_failed(lease, instance, &detail).await?,
            Outcome::Joined(answer) => self.record_join(lease, instance, answer).await?,
        };
        if !moved {
            tracing::warn!(instance = %instance.id, %step, "lease lost before the result was recorded; dropped");
        }
        Ok(())
    }

    async fn step_failed(
        &self,
        lease: Lease<'_>,
        instance: &Instance,
        step: Step,
        err: ProviderError,
    ) -> Result<(), EngineError> {
        let message = format!("{step}: {err}");
        if let Failure::Throttled { wait } = err.failure {
            // Asked to slow down: neither this instance nor creation failed, so no attempt is
            // spent and the breaker is not told; the step runs again once the wait is over.
            let delay = wait.unwrap_or_else(|| self.settings.backoff(instance.attempts));
            tracing::info!(instance = %instance.id, %step, wait_ms = delay.as_millis() as u64, error = %err, "step throttled");
            lease.wait_until(delay).await?;
            return Ok(());
        }
        // The machine vanished under a step (deleted outside the pool, the provider reset): not
        // a failure of creation, so the breaker is not told; the instance is replaced (or its
        // claim given up) at once. A create answered "not found" is no vanished machine: it
        // counts as any refusal below.
        if err.failure == Failure::Gone && step != Step::Create && instance.status != Status::Destroying {
            return self.machine_vanished(lease, instance, step, &err).await;
        }
        tracing::warn!(instance = %instance.id, %step, attempts = instance.attempts + 1, error = %err, "step failed");
        crate::metrics::step_failure();
        let provisioning = instance.status == Status::Provisioning;
        // Only a refusal counts at once: rate limits, throttles and edge errors on a burst of
        // creates are the provider asking us to slow down, not a broken creation path. A
        // transient failure counts when the instance is given up on (below).
        if step == Step::Create && err.failure != Failure::Transient {
            self.breaker_failure(&message, &Actor::Step).await?;
        }
        // Destroying never gives up: a Sprite nobody deletes is a leak that costs money.
        let give_up = instance.status != Status::Destroying
            && (err.failure != Failure::Transient || instance.attempts + 1 >= self.settings.max_attempts);
        if !give_up {
            let delay = self.settings.backoff(instance.attempts);
            lease.advance(Change::Retry { step, error: &message, delay }).await?;
            return Ok(());
        }
        if provisioning && (step != Step::Create || err.failure == Failure::Transient) {
            self.breaker_failure(&message, &Actor::Step).await?;
        }
        let reason = match instance.status {
            Status::Provisioning => Reason::ProvisioningFailed,
            Status::Recycling => Reason::RecycleFailed,
            _ => Reason::StepFailed,
        };
        let change = Change::Move {
            to: Status::Destroying,
            step: Some(Step::Destroy),
            delay: Duration::ZERO,
            reason,
            detail: Some(&message),
        };
        lease.advance(change).await?;
        Ok(())
    }

    /// A step found the machine gone: the instance goes to destroying (its resources are still
    /// released there; deleting the machine finds nothing), without an attempt or a breaker
    /// failure, since nothing about creating machines went wrong.
    async fn machine_vanished(
        &self,
        lease: Lease<'_>,
        instance: &Instance,
        step: Step,
        err: &ProviderError,
    ) -> Result<(), EngineError> {
        let detail = format!("{step}: the machine vanished from the provider ({err})");
        tracing::warn!(instance = %instance.id, %step, error = %err, "machine vanished under a step; replacing it");
        // Claiming has no move for a vanished machine of its own; the claim fails as any step.
        let reason = match instance.status {
            Status::Claiming => Reason::StepFailed,
            _ => Reason::MachineGone,
        };
        let change = Change::Move {
            to: Status::Destroying,
            step: Some(Step::Destroy),
            delay: Duration::ZERO,
            reason,
            detail: Some(&detail),
        };
        lease.advance(change).await?;
        Ok(())
    }

    /// Counts a provisioning failure toward the circuit breaker, and says when it opens.
    pub(super) async fn breaker_failure(&self, message: &str, actor: &Actor) -> Result<(), EngineError> {
        let settings = &self.settings;
        let breaker = self
            .store
            .breaker_failure(message, settings.breaker_threshold, settings.breaker_pause, actor)
            .await?;
        if breaker.is_open(OffsetDateTime::now_utc()) {
            tracing::warn!(failures = breaker.consecutive_failures, "circuit breaker open: creation paused");
            crate::metrics::breaker_open();
        }
        Ok(())
    }
}
