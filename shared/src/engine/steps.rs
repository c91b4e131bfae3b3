//! The step runner: take the lease, do one step's remote work, record the result fenced on
//! the lease, deliver the next step (ARCHITECTURE §4).

use std::time::Duration;

use time::OffsetDateTime;
use tracing::Instrument;

use super::resources::EngineStepError;
use super::{Engine, EngineError};
use crate::provider::{Failure, InstanceSecrets, Progress, ProviderError};
use crate::store::{Fence, Instance, Move, Status, Step};

/// What one run of a step came to.
pub(super) enum Outcome {
    /// Move on: to `step` (and `status`), or to rest when `step` is `None`.
    Next {
        status: Status,
        step: Option<Step>,
        reason: &'static str,
    },
    /// Not finished yet; run the same step again after the delay.
    Wait(Duration),
    Failed(ProviderError),
    /// The step recorded its own result (deleted the row, bound a claim, ...).
    Settled,
}

impl Outcome {
    fn next(status: Status, step: Step) -> Self {
        Outcome::Next { status, step: Some(step), reason: "step_done" }
    }
}

impl Engine {
    /// Runs the due step of one instance, if nobody else holds it. Safe to call any number of
    /// times for the same instance: only one run gets the lease.
    pub async fn run_step(&self, instance_id: &str, hop: i32) -> Result<(), EngineError> {
        let owner = self.new_owner();
        let Some(instance) = self.store.take_lease(instance_id, &owner, self.settings.lease_ttl, hop).await?
        else {
            return Ok(());
        };
        let Some(step) = instance.step else {
            return Ok(());
        };
        let span =
            tracing::info_span!("step", instance = %instance.id, %step, status = %instance.status, hop);
        async {
            let outcome = tokio::select! {
                outcome = self.execute(&instance, step, &owner) => outcome?,
                never = self.keep_lease(&instance.id, &owner) => match never {},
            };
            self.settle(&instance, step, &owner, outcome, hop).await
        }
        .instrument(span)
        .await
    }

    /// Renews the lease while a step runs, so the lease can be short (a dead worker's steps
    /// are picked up soon) and a long step is still never run twice at once. Once renewal
    /// fails the lease is someone else's: the step finishes, its fenced writes are dropped.
    pub(super) async fn keep_lease(&self, id: &str, owner: &str) -> std::convert::Infallible {
        let ttl = self.settings.lease_ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self.store.extend_lease(id, owner, ttl).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => tracing::warn!(instance = id, error = %err, "lease renewal failed"),
            }
        }
        std::future::pending().await
    }

    async fn execute(&self, instance: &Instance, step: Step, owner: &str) -> Result<Outcome, EngineError> {
        let name = instance.sprite_name.as_str();
        let provider = &self.provider;
        let outcome = match step {
            Step::Create => {
                let breaker = self.store.breaker().await?;
                let now = OffsetDateTime::now_utc();
                if let Some(until) = breaker.open_until.filter(|until| *until > now) {
                    let pause = Duration::try_from(until - now).unwrap_or_default();
                    return Ok(Outcome::Wait(pause));
                }
                match provider.create(name).await {
                    Ok(machine) => {
                        self.store
                            .set_machine(&instance.id, owner, &machine.url, machine.provider_ref.as_deref())
                            .await?;
                        Outcome::next(Status::Provisioning, self.after_create())
                    }
                    Err(err) => Outcome::Failed(err),
                }
            }
            Step::Resources => match self.ensure_resources(instance, owner).await {
                Ok(()) => Outcome::next(Status::Provisioning, self.after_resources()),
                Err(EngineStepError::Provider(err)) => Outcome::Failed(err),
                Err(EngineStepError::LeaseLost) => Outcome::Settled,
                Err(EngineStepError::Engine(err)) => return Err(err),
            },
            Step::Install => {
                match provider.install(name, &instance.openclaw_git_ref, self.settings.install_wait).await {
                    Ok(Progress::Done) => Outcome::next(Status::Provisioning, Step::Configure),
                    Ok(Progress::Running) => Outcome::Wait(self.settings.install_poll),
                    Err(err) => Outcome::Failed(err),
                }
            }
            Step::Configure => match provider.configure(name, &secrets(instance)).await {
                Ok(()) => Outcome::next(Status::Provisioning, Step::StartGateway),
                Err(err) => Outcome::Failed(err),
            },
            Step::StartGateway => match provider.start_gateway(name).await {
                Ok(()) => Outcome::next(instance.status, Step::AwaitReady),
                Err(err) => Outcome::Failed(err),
            },
            Step::AwaitReady => self.await_ready(instance).await,
            Step::VerifyClean => self.verify_clean(instance).await,
            Step::Checkpoint => match provider.checkpoint(name, &golden_comment(&instance.id)).await {
                Ok(checkpoint) => {
                    self.store.set_checkpoint(&instance.id, owner, &checkpoint).await?;
                    Outcome::Next { status: Status::Idle, step: None, reason: "provisioned" }
                }
                Err(err) => Outcome::Failed(err),
            },
            Step::Restore => match &instance.golden_checkpoint_id {
                None => Outcome::Failed(ProviderError::permanent("no golden checkpoint to restore")),
                Some(checkpoint) => match provider.restore(name, checkpoint).await {
                    Ok(()) => Outcome::next(Status::Recycling, Step::RotateToken),
                    Err(err) => Outcome::Failed(err),
                },
            },
            Step::RotateToken => match self.rotate_token(name, &secrets(instance)).await {
                Ok(()) => Outcome::next(Status::Recycling, Step::AwaitReady),
                Err(err) => Outcome::Failed(err),
            },
            Step::ClaimCreate => self.claim_interrupted(instance, owner).await?,
            Step::ClaimJoin => self.join_step(instance, owner).await?,
            Step::Destroy => match self.destroy_all(instance).await {
                Ok(()) => {
                    let fence = Fence::Lease { owner, status: instance.status };
                    self.store.delete_instance(&instance.id, fence, "destroyed", None).await?;
                    Outcome::Settled
                }
                Err(err) => Outcome::Failed(err),
            },
        };
        Ok(outcome)
    }

    /// The restored gateway still has the golden token; give it this recycle's token.
    async fn rotate_token(&self, name: &str, secrets: &InstanceSecrets<'_>) -> Result<(), ProviderError> {
        self.provider.configure(name, secrets).await?;
        self.provider.restart_gateway(name).await
    }

    /// The resources step only where resources are configured; the install step only where
    /// the provider builds OpenClaw on the machine.
    fn after_create(&self) -> Step {
        if self.resources.any() { Step::Resources } else { self.after_resources() }
    }

    fn after_resources(&self) -> Step {
        if self.provider.capabilities().install { Step::Install } else { Step::Configure }
    }

    /// The machine first (nothing runs on the resources any more), then the resources.
    async fn destroy_all(&self, instance: &Instance) -> Result<(), ProviderError> {
        self.provider.destroy(&instance.sprite_name).await?;
        self.release_resources(instance).await
    }

    async fn await_ready(&self, instance: &Instance) -> Outcome {
        let Some(url) = instance.url.as_deref() else {
            return Outcome::Failed(ProviderError::permanent("the instance has no URL"));
        };
        let deadline = tokio::time::Instant::now() + self.settings.ready_wait;
        loop {
            // A runtime that says it is not ready yet is asked again; one that cannot be
            // asked at all is treated like a gateway that does not answer.
            let runtime_ready = self.provider.runtime_ready(url).await.unwrap_or(false);
            if runtime_ready && self.gateway.status(url, &instance.gateway_token).await.is_ok() {
                return Outcome::next(instance.status, Step::VerifyClean);
            }
            if tokio::time::Instant::now() + self.settings.ready_poll > deadline {
                break;
            }
            tokio::time::sleep(self.settings.ready_poll).await;
        }
        let waited = instance.step_started_at.map(|t| OffsetDateTime::now_utc() - t).unwrap_or_default();
        if waited > self.settings.ready_timeout {
            return Outcome::Failed(ProviderError::permanent(format!(
                "gateway not answering {} s after start",
                waited.whole_seconds()
            )));
        }
        Outcome::Wait(self.settings.ready_poll)
    }

    /// The golden state (and every recycled one) must hold no conversation: no identity on
    /// disk and an unbound gateway. A checkpoint of anything else would hand one user's
    /// conversation to the next.
    async fn verify_clean(&self, instance: &Instance) -> Outcome {
        match self.provider.has_conversation_state(&instance.sprite_name).await {
            Err(err) => return Outcome::Failed(err),
            Ok(true) => {
                return Outcome::Failed(ProviderError::permanent(
                    "conversation state on disk (~/.convos or INSTRUCTIONS.md): not clean",
                ));
            }
            Ok(false) => {}
        }
        let url = instance.url.as_deref().unwrap_or_default();
        match self.gateway.status(url, &instance.gateway_token).await {
            Ok(status) if status.conversation.is_some() => {
                Outcome::Failed(ProviderError::permanent("gateway reports a bound conversation"))
            }
            Ok(_) if instance.status == Status::Recycling => {
                Outcome::Next { status: Status::Idle, step: None, reason: "recycled" }
            }
            Ok(_) if self.provider.capabilities().checkpoints => {
                Outcome::next(Status::Provisioning, Step::Checkpoint)
            }
            Ok(_) => Outcome::Next { status: Status::Idle, step: None, reason: "provisioned" },
            Err(err) => Outcome::Failed(ProviderError::transient(format!("gateway status: {err}"))),
        }
    }

    async fn settle(
        &self,
        instance: &Instance,
        step: Step,
        owner: &str,
        outcome: Outcome,
        hop: i32,
    ) -> Result<(), EngineError> {
        let id = instance.id.as_str();
        let fence = Fence::Lease { owner, status: instance.status };
        match outcome {
            Outcome::Settled => {}
            Outcome::Next { status, step: next, reason } => {
                let change = Move { to: status, step: next, delay: Duration::ZERO, reason, detail: None };
                if !self.store.transition(id, fence, change).await? {
                    tracing::warn!(instance = id, %step, "lease lost before the result was recorded; dropped");
                    return Ok(());
                }
                if instance.status == Status::Provisioning && status == Status::Idle {
                    self.store.breaker_success().await?;
                }
                if next.is_some() {
                    self.deliver(id, hop + 1, Duration::ZERO).await;
                }
            }
            Outcome::Wait(delay) => {
                if self.store.step_wait(id, owner, delay).await? {
                    self.deliver(id, hop + 1, delay).await;
                }
            }
            Outcome::Failed(err) => self.step_failed(instance, step, owner, err, hop).await?,
        }
        Ok(())
    }

    async fn step_failed(
        &self,
        instance: &Instance,
        step: Step,
        owner: &str,
        err: ProviderError,
        hop: i32,
    ) -> Result<(), EngineError> {
        let id = instance.id.as_str();
        let message = format!("{step}: {err}");
        tracing::warn!(instance = id, %step, attempts = instance.attempts + 1, error = %err, "step failed");
        crate::metrics::step_failure();
        let provisioning = instance.status == Status::Provisioning;
        if step == Step::Create {
            let breaker = self
                .store
                .breaker_failure(&message, self.settings.breaker_threshold, self.settings.breaker_pause)
                .await?;
            if breaker.is_open(OffsetDateTime::now_utc()) {
                tracing::warn!(
                    failures = breaker.consecutive_failures,
                    "circuit breaker open: creation paused"
                );
            }
        }
        // Destroying never gives up: a Sprite nobody deletes is a leak that costs money.
        let give_up = instance.status != Status::Destroying
            && (err.failure != Failure::Transient || instance.attempts + 1 >= self.settings.max_attempts);
        if !give_up {
            let delay = self.settings.backoff(instance.attempts);
            if self.store.step_failed(id, owner, instance.status, step, &message, delay).await? {
                self.deliver(id, hop + 1, delay).await;
            }
            return Ok(());
        }
        if provisioning && step != Step::Create {
            self.store
                .breaker_failure(&message, self.settings.breaker_threshold, self.settings.breaker_pause)
                .await?;
        }
        let reason = match instance.status {
            Status::Provisioning => "provisioning_failed",
            Status::Recycling => "recycle_failed",
            _ => "step_failed",
        };
        let fence = Fence::Lease { owner, status: instance.status };
        let change = Move {
            to: Status::Destroying,
            step: Some(Step::Destroy),
            delay: Duration::ZERO,
            reason,
            detail: Some(&message),
        };
        if self.store.transition(id, fence, change).await? {
            self.deliver(id, hop + 1, Duration::ZERO).await;
        }
        Ok(())
    }
}

fn secrets(instance: &Instance) -> InstanceSecrets<'_> {
    InstanceSecrets {
        instance_id: &instance.id,
        gateway_token: &instance.gateway_token,
        openrouter_key: instance.openrouter_key.as_ref(),
        agentmail_inbox_id: instance.agentmail_inbox_id.as_deref(),
    }
}

/// Found again by this comment when a checkpoint call's answer was lost.
fn golden_comment(instance_id: &str) -> String {
    format!("golden:{instance_id}")
}
