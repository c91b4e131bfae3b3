//! An instance's life without I/O (ARCHITECTURE §3, docs/lifecycle.md): where it can be
//! ([`Status`]), the durable steps that move it ([`Step`]), why it moved ([`Reason`]) and the
//! table of the moves the pool makes ([`allows`]). The store persists these enums as text; the
//! engine's lease handle checks every move against the table before it writes one.

mod actor;
mod table;
#[cfg(test)]
mod tests;
mod text_enum;

pub(crate) use text_enum::text_enum;

pub use actor::{Actor, Sweep};
pub use table::{allows, step_belongs};

text_enum! {
    /// Where an instance is in its life (ARCHITECTURE §3).
    pub enum Status {
        Provisioning = "provisioning",
        Idle = "idle",
        Claiming = "claiming",
        Claimed = "claimed",
        Recycling = "recycling",
        Destroying = "destroying",
        Crashed = "crashed",
    }
}

impl Status {
    /// At rest: no step runs on an instance in this status (the schema holds `step` NULL).
    pub fn at_rest(self) -> bool {
        matches!(self, Status::Idle | Status::Claimed | Status::Crashed)
    }
}

text_enum! {
    /// The durable steps (ARCHITECTURE §4). Each is idempotent: running it twice, or after a
    /// process died halfway through it, ends in the same place as running it once.
    pub enum Step {
        Create = "create",
        Install = "install",
        Configure = "configure",
        StartGateway = "start_gateway",
        AwaitReady = "await_ready",
        VerifyClean = "verify_clean",
        Checkpoint = "checkpoint",
        Restore = "restore",
        RotateToken = "rotate_token",
        /// The API process creating a conversation holds this; met by anyone else it means that
        /// process died mid-call, so the instance may be half-bound.
        ClaimCreate = "claim_create",
        ClaimJoin = "claim_join",
        Destroy = "destroy",
        /// The instance's own OpenRouter key and AgentMail inbox, when configured.
        Resources = "resources",
        /// A recycle's new key and inbox, the previous tenant's deleted (issue 14.3).
        RotateResources = "rotate_resources",
    }
}

text_enum! {
    /// Why an instance moved, as its history records it (`instance_events.reason`).
    pub enum Reason {
        /// Created by a refill (the `pool_refill` function writes this one).
        Replenish = "replenish",
        /// A step finished and the next one of the same status begins.
        StepDone = "step_done",
        /// An attempt failed and will be retried, or the last one failed and the instance is
        /// given up (from a status without a reason of its own).
        StepFailed = "step_failed",
        Provisioned = "provisioned",
        ProvisioningFailed = "provisioning_failed",
        Recycled = "recycled",
        RecycleFailed = "recycle_failed",
        /// Taken for a claim (written by the claim's own statement).
        Claim = "claim",
        /// The claim's conversation was created.
        Created = "created",
        Joined = "joined",
        /// Joined an invite whose creator has not accepted yet.
        WaitingForAcceptance = "waiting_for_acceptance",
        ClaimFailed = "claim_failed",
        /// A claim could not wake its sleeping instance (the account's running limit) and
        /// gave it back untouched (issue 17.2).
        WakeRefused = "wake_refused",
        /// Claiming for longer than a claim can take: its process died.
        StaleClaim = "stale_claim",
        /// An idle gateway reported a conversation.
        BoundWhileIdle = "bound_while_idle",
        /// An operator asked for a recycle.
        Recycle = "recycle",
        /// The claim's lifetime (its `ttlSeconds`, or the pool's `claimTtlSeconds`) ran out.
        ClaimExpired = "claim_expired",
        /// A join left waiting for the invite's creator longer than `joinAcceptTimeoutSeconds`,
        /// and the gateway still reports no conversation.
        JoinNotAccepted = "join_not_accepted",
        /// An operator asked for a destroy.
        Destroy = "destroy",
        /// An operator drained idle instances.
        Drain = "drain",
        /// Built from a version other than the desired one: replaced (engine/rollout.rs). The
        /// webhook outbox announces reasons starting with `rollout` as `instance.rollout`.
        Rollout = "rollout",
        /// Adaptive sizing (issue 15.2): idle beyond the target once its cooldown passed.
        /// Only ever an idle instance: a claimed one is never shed.
        ScaleDown = "scale_down",
        /// Provisioning for longer than the stuck timeout.
        Stuck = "stuck",
        /// Reconcile found the machine gone.
        MachineGone = "machine_gone",
        /// The provider reports the deployment failed or gone.
        DeployDead = "deploy_dead",
        HeartbeatFailed = "heartbeat_failed",
        /// The destroy step finished: the row is deleted.
        Destroyed = "destroyed",
    }
}

/// One move of an instance: from a status (`None`: the row is new) to a status (`None`: the row
/// is deleted), with the step that comes with it and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Status>,
    pub to: Option<Status>,
    pub step: Option<Step>,
    pub reason: Reason,
}

/// A move the table does not allow: a bug in the caller, refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transition not allowed: {from} -> {to} ({step}) for {reason}", from = place(self.0.from), to = place(self.0.to), step = self.0.step.map_or("no step", Step::as_str), reason = self.0.reason)]
pub struct Refused(pub Transition);

fn place(status: Option<Status>) -> &'static str {
    status.map_or("none", Status::as_str)
}

impl Transition {
    /// `Ok` when the table allows this move and its step fits where it leads.
    pub fn check(self) -> Result<Self, Refused> {
        let step_fits = match (self.to, self.step) {
            (None, step) => step.is_none(),
            (Some(to), None) => to.at_rest(),
            (Some(to), Some(step)) => step_belongs(step, to),
        };
        if step_fits && allows(self.from, self.to, self.reason) { Ok(self) } else { Err(Refused(self)) }
    }
}

text_enum! {
    /// What a line of the audit trail records (GET /api/pool/events `kind`): the first four
    /// are an instance's history lines, the rest the pool's own events.
    pub enum EventKind {
        /// A move from one status to another.
        Status = "status",
        /// A failed attempt of a step, retried later.
        StepFailed = "step_failed",
        /// A sleeping instance woken: for a claim, to be kept hot, or for its rare check.
        Wake = "wake",
        /// A recycle gave the instance a new OpenRouter key and inbox, the old ones deleted.
        ResourcesRotated = "resources_rotated",
        /// A settings change, with each field's old and new value.
        Settings = "settings",
        /// The creation breaker opened or closed.
        Breaker = "breaker",
        /// An operator drained instances.
        Drain = "drain",
        /// Something this pool created and no row knows was deleted (reconcile, the resource
        /// sweep).
        OrphanDeleted = "orphan_deleted",
    }
}
