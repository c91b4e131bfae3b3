//! Provisioning: refills that start new instances, and the steps that take one from nothing to
//! idle (create, resources, install, configure, start_gateway, await_ready, verify_clean,
//! checkpoint). A recycle ends with the same two readiness steps, so they live here too.

use std::time::Duration;

use time::OffsetDateTime;

use super::lease::Lease;
use super::outcome::Outcome;
use super::{Engine, EngineError, ReplenishReport, new_gateway_token, random_id};
use crate::lifecycle::{Actor, Reason};
use crate::provider::{InstanceSecrets, Progress, ProviderError};
use crate::store::{Instance, NewInstance, Record, RefillAsk, Status, Step};

impl Engine {
    /// Tops the pool up to `min_idle` warm instances (idle, provisioning or recycling), at
    /// most `replenish_batch` at a time, within `max_total`.
    /// `actor` is named on each new instance's first history line.
    pub async fn replenish(&self, actor: &Actor) -> Result<ReplenishReport, EngineError> {
        self.refill(None, actor).await
    }

    /// Starts `count` more instances whatever `min_idle` says (within `max_total`): an
    /// operator warming up ahead of a launch.
    pub async fn add_instances(&self, count: u32, actor: &Actor) -> Result<ReplenishReport, EngineError> {
        self.refill(Some(count), actor).await
    }

    /// One round trip to the store (the `pool_refill` function, which writes each new row and
    /// its `new -> provisioning` history line), then the new instances' first steps are handed
    /// to the chain.
    pub(super) async fn refill(
        &self,
        count: Option<u32>,
        actor: &Actor,
    ) -> Result<ReplenishReport, EngineError> {
        let settings = &self.settings;
        let build = self.build_suffix();
        let image = self.provider.runtime_image();
        // Under `maxRunning` a new machine must have room to run (issue 17.2): the rest wait
        // until sleeping ones free theirs.
        let room = self.running_room().await?.map(|room| room.max(0));
        if room == Some(0) {
            tracing::debug!("replenish waits: maxRunning machines are running");
        }
        let ask = RefillAsk {
            max_total: settings.max_total.into(),
            min_idle: settings.min_idle.into(),
            batch: room
                .map_or(settings.replenish_batch.into(), |room| room.min(settings.replenish_batch.into())),
            count: count.map(|n| room.map_or(n.into(), |room| room.min(n.into()))),
            provider: self.provider.kind(),
            openclaw_git_ref: &settings.openclaw_git_ref,
            reason: Reason::Replenish.as_str(),
            build: &build,
            image: image.as_deref(),
            actor,
        };
        let names = self.names().await?;
        let candidates: Vec<NewInstance> = (0..ask.most())
            .map(|_| {
                let id = random_id(12);
                NewInstance { sprite_name: names.instance(&id), id, gateway_token: new_gateway_token() }
            })
            .collect();
        let refill = self.store.refill(&ask, &candidates).await?;
        self.leases.hand_on(&refill.created).await;
        if !refill.created.is_empty() {
            tracing::info!(
                created = refill.created.len(),
                warm = refill.warm,
                total = refill.total,
                %actor,
                "replenish"
            );
        }
        Ok(refill)
    }

    pub(super) async fn provisioning_step(
        &self,
        instance: &Instance,
        step: Step,
        lease: &Lease<'_>,
    ) -> Result<Outcome, EngineError> {
        let name = instance.sprite_name.as_str();
        let provider = &self.provider;
        let outcome = match step {
            Step::Create => {
                let breaker = self.store.breaker().await?;
                let now = OffsetDateTime::now_utc();
                if let Some(until) = breaker.open_until.filter(|until| *until > now) {
                    return Ok(Outcome::Wait(Duration::try_from(until - now).unwrap_or_default()));
                }
                match provider.create(name).await {
                    Ok(machine) => {
                        let record = Record::Machine {
                            url: &machine.url,
                            provider_ref: machine.provider_ref.as_deref(),
                        };
                        if !lease.record(record).await? {
                            return Ok(Outcome::LeaseLost);
                        }
                        Outcome::next(Status::Provisioning, self.after_create())
                    }
                    Err(err) => Outcome::Failed(err),
                }
            }
            Step::Resources => match self.ensure_resources(instance, lease).await {
                Ok(()) => Outcome::next(Status::Provisioning, self.after_resources()),
                Err(err) => err.into_outcome()?,
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
                    if !lease.record(Record::Checkpoint(&checkpoint)).await? {
                        return Ok(Outcome::LeaseLost);
                    }
                    Outcome::rest(Status::Idle, Reason::Provisioned)
                }
                Err(err) => Outcome::Failed(err),
            },
            other => unreachable!("{other} is not a provisioning step"),
        };
        Ok(outcome)
    }

    /// The resources step only where resources are configured; the install step only where
    /// the provider builds OpenClaw on the machine.
    fn after_create(&self) -> Step {
        if self.resources.any() { Step::Resources } else { self.after_resources() }
    }

    fn after_resources(&self) -> Step {
        if self.provider.capabilities().install { Step::Install } else { Step::Configure }
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
            Ok(_) if instance.status == Status::Recycling => Outcome::rest(Status::Idle, Reason::Recycled),
            Ok(_) if self.provider.capabilities().checkpoints => {
                Outcome::next(Status::Provisioning, Step::Checkpoint)
            }
            Ok(_) => Outcome::rest(Status::Idle, Reason::Provisioned),
            Err(err) => Outcome::Failed(ProviderError::transient(format!("gateway status: {err}"))),
        }
    }
}

/// What the instance's configuration carries.
pub(super) fn secrets(instance: &Instance) -> InstanceSecrets<'_> {
    InstanceSecrets {
        instance_id: &instance.id,
        gateway_token: &instance.gateway_token,
        openrouter_key: instance.openrouter_key.as_deref(),
        agentmail_inbox_id: instance.agentmail_inbox_id.as_deref(),
        runtime_image: instance.runtime_image.as_deref(),
    }
}

/// Found again by this comment when a checkpoint call's answer was lost.
fn golden_comment(instance_id: &str) -> String {
    format!("golden:{instance_id}")
}
