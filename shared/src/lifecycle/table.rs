//! The moves the pool makes, and which steps run in which status. Adding a status or a move
//! (rollout, claim TTL, hibernation) means adding rows here; the lease handle refuses anything
//! else before it writes.

use super::{Reason, Status, Step};

use Reason::*;
use Status::*;

/// Every allowed move: from (`None`: a new row), to (`None`: the row deleted), and the reasons
/// that may carry it.
const MOVES: &[(Option<Status>, Option<Status>, &[Reason])] = &[
    (None, Some(Provisioning), &[Replenish]),
    // A step done or an attempt failed within a working status.
    (Some(Provisioning), Some(Provisioning), &[StepDone, StepFailed]),
    (Some(Recycling), Some(Recycling), &[StepDone, StepFailed]),
    (Some(Claiming), Some(Claiming), &[StepFailed]),
    (Some(Destroying), Some(Destroying), &[StepFailed, MachineGone]),
    (Some(Provisioning), Some(Idle), &[Provisioned]),
    // Drain: `poolctl drain --idle` rebuilds every unclaimed instance (the seeds' drain:all).
    (
        Some(Provisioning),
        Some(Destroying),
        &[ProvisioningFailed, Stuck, DeployDead, MachineGone, Destroy, Drain],
    ),
    (Some(Provisioning), None, &[MachineGone]),
    (Some(Idle), Some(Claiming), &[Claim]),
    // A recycle starts in `recycling` where the provider has checkpoints, else in `destroying`
    // (the replacement is a new instance).
    (Some(Idle), Some(Recycling), &[BoundWhileIdle, Recycle]),
    (
        Some(Idle),
        Some(Destroying),
        &[
            BoundWhileIdle,
            Recycle,
            Destroy,
            Drain,
            DeployDead,
            MachineGone,
            HeartbeatFailed,
            Rollout,
            ScaleDown,
        ],
    ),
    (Some(Idle), None, &[MachineGone]),
    (Some(Claiming), Some(Claimed), &[Created, Joined, WaitingForAcceptance]),
    // Nothing reached the gateway: the running limit refused the wake (engine/hibernation.rs).
    (Some(Claiming), Some(Idle), &[WakeRefused]),
    (Some(Claiming), Some(Recycling), &[ClaimFailed, StaleClaim]),
    (Some(Claiming), Some(Destroying), &[ClaimFailed, StaleClaim, StepFailed, Destroy]),
    // The tick ends a claim whose lifetime ran out, or whose invite was never accepted.
    (Some(Claimed), Some(Recycling), &[Recycle, ClaimExpired, JoinNotAccepted]),
    // A stale instance released is rebuilt, not restored (engine/recycling.rs).
    (Some(Claimed), Some(Destroying), &[Recycle, Destroy, ClaimExpired, JoinNotAccepted, Rollout]),
    (Some(Claimed), Some(Crashed), &[MachineGone, DeployDead, HeartbeatFailed]),
    (Some(Recycling), Some(Idle), &[Recycled]),
    (Some(Recycling), Some(Destroying), &[RecycleFailed, MachineGone, Destroy]),
    (Some(Recycling), None, &[MachineGone]),
    (Some(Crashed), Some(Recycling), &[Recycle]),
    (Some(Crashed), Some(Destroying), &[Recycle, Destroy, Rollout]),
    (Some(Destroying), None, &[Destroyed, MachineGone]),
];

/// Whether the pool may move an instance from `from` to `to` for `reason`.
pub fn allows(from: Option<Status>, to: Option<Status>, reason: Reason) -> bool {
    MOVES.iter().any(|(f, t, reasons)| *f == from && *t == to && reasons.contains(&reason))
}

/// Whether `step` runs in `status` (the statuses at rest run none).
pub fn step_belongs(step: Step, status: Status) -> bool {
    use Step::*;
    match status {
        Provisioning => matches!(
            step,
            Create | Resources | Install | Configure | StartGateway | AwaitReady | VerifyClean | Checkpoint
        ),
        Recycling => matches!(step, Restore | RotateResources | RotateToken | AwaitReady | VerifyClean),
        Claiming => matches!(step, ClaimCreate | ClaimJoin),
        Destroying => step == Destroy,
        Idle | Claimed | Crashed => false,
    }
}

#[cfg(test)]
pub(super) fn moves() -> &'static [(Option<Status>, Option<Status>, &'static [Reason])] {
    MOVES
}
