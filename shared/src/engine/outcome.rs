//! What one run of a step came to: the step's unit of work says, the runner (steps.rs)
//! settles it through the lease.

use std::time::Duration;

use uuid::Uuid;

use crate::lifecycle::Reason;
use crate::provider::ProviderError;
use crate::store::{Status, Step};

/// What one run of a step came to.
pub(super) enum Outcome {
    /// Move on: to `step` (and `status`), or to rest when `step` is `None`.
    Next {
        status: Status,
        step: Option<Step>,
        reason: Reason,
    },
    /// Not finished yet; run the same step again after the delay.
    Wait(Duration),
    Failed(ProviderError),
    /// The destroy step is done: the row goes.
    Removed,
    /// A claim step failed: the claiming unit recycles the instance and ends or moves the claim.
    ClaimFailed(String),
    /// A join's answer, for the claiming unit to record.
    Joined(JoinAnswer),
    /// The lease was lost mid-step; nothing more is written.
    LeaseLost,
}

impl Outcome {
    pub(super) fn next(status: Status, step: Step) -> Self {
        Outcome::Next { status, step: Some(step), reason: Reason::StepDone }
    }

    pub(super) fn rest(status: Status, reason: Reason) -> Self {
        Outcome::Next { status, step: None, reason }
    }
}

/// What the join step's gateway call answered.
pub(super) struct JoinAnswer {
    pub claim_id: Uuid,
    pub reason: Reason,
    pub conversation_id: Option<String>,
}
