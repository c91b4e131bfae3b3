//! What the batched listing and the runtime say of a Railway instance: [`Observed`] from the
//! latest deployment, and the pool-level [`DerivedStatus`] (the old system's `deriveStatus`).

use std::time::Duration;

use crate::railway::DeployStatus;

/// What the batched listing says of a service, from its latest deployment alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    Starting,
    Running,
    Sleeping,
    Dead,
    /// No deployment yet, or a status this code does not know.
    Unknown,
}

impl Observed {
    pub fn from_deploy(status: Option<&DeployStatus>) -> Observed {
        match status {
            Some(DeployStatus::Success) => Observed::Running,
            Some(DeployStatus::Sleeping) => Observed::Sleeping,
            Some(
                DeployStatus::Failed | DeployStatus::Crashed | DeployStatus::Removed | DeployStatus::Skipped,
            ) => Observed::Dead,
            Some(
                DeployStatus::Queued
                | DeployStatus::Waiting
                | DeployStatus::Initializing
                | DeployStatus::Building
                | DeployStatus::Deploying,
            ) => Observed::Starting,
            Some(DeployStatus::Removing | DeployStatus::Other(_)) | None => Observed::Unknown,
        }
    }
}

/// The pool-level status of a Railway instance (the old system's `deriveStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedStatus {
    Starting,
    Idle,
    Claimed,
    Sleeping,
    /// Gone or failed, nobody using it: replace it.
    Dead,
    /// Gone or failed while someone was using it: keep it for the operator.
    Crashed,
}

/// Derives an instance's status from what its latest deployment says, whether its runtime answered
/// (`None`: not asked), whether it holds a conversation, whether a claim is recorded on it, and
/// its age. A deployment that succeeded but never answers is given `stuck_timeout` before it is
/// called dead.
pub fn derive_status(
    observed: Observed,
    reachable: Option<bool>,
    conversation: bool,
    claimed: bool,
    age: Duration,
    stuck_timeout: Duration,
) -> DerivedStatus {
    let in_use = claimed || conversation;
    let young = age < stuck_timeout;
    match observed {
        Observed::Sleeping => DerivedStatus::Sleeping,
        Observed::Dead if in_use => DerivedStatus::Crashed,
        Observed::Dead => DerivedStatus::Dead,
        Observed::Starting if in_use => DerivedStatus::Claimed,
        Observed::Starting => DerivedStatus::Starting,
        _ if in_use => DerivedStatus::Claimed,
        Observed::Running if reachable != Some(false) => DerivedStatus::Idle,
        _ if reachable == Some(true) => DerivedStatus::Idle,
        _ if young => DerivedStatus::Starting,
        _ => DerivedStatus::Dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: Duration = Duration::from_secs(15 * 60);
    const YOUNG: Duration = Duration::from_secs(60);
    const OLD: Duration = Duration::from_secs(16 * 60);

    fn derive(
        deploy: Option<DeployStatus>,
        reachable: Option<bool>,
        conversation: bool,
        claimed: bool,
        age: Duration,
    ) -> DerivedStatus {
        derive_status(Observed::from_deploy(deploy.as_ref()), reachable, conversation, claimed, age, STUCK)
    }

    #[test]
    fn deploys_in_progress_are_starting() {
        for status in
            [DeployStatus::Building, DeployStatus::Deploying, DeployStatus::Queued, DeployStatus::Waiting]
        {
            assert_eq!(derive(Some(status), None, false, false, YOUNG), DerivedStatus::Starting);
        }
    }

    #[test]
    fn failed_deploys_are_dead() {
        for status in
            [DeployStatus::Failed, DeployStatus::Crashed, DeployStatus::Removed, DeployStatus::Skipped]
        {
            assert_eq!(derive(Some(status), None, false, false, YOUNG), DerivedStatus::Dead);
        }
    }

    #[test]
    fn sleeping_is_sleeping() {
        assert_eq!(derive(Some(DeployStatus::Sleeping), None, false, false, YOUNG), DerivedStatus::Sleeping);
    }

    #[test]
    fn success_and_ready_without_conversation_is_idle() {
        assert_eq!(derive(Some(DeployStatus::Success), Some(true), false, false, YOUNG), DerivedStatus::Idle);
    }

    #[test]
    fn success_with_a_conversation_is_claimed() {
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(true), true, false, YOUNG),
            DerivedStatus::Claimed
        );
    }

    #[test]
    fn success_but_unreachable_is_starting_until_the_stuck_timeout() {
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, YOUNG),
            DerivedStatus::Starting
        );
        assert_eq!(derive(Some(DeployStatus::Success), Some(false), false, false, OLD), DerivedStatus::Dead);
    }

    #[test]
    fn no_deploy_status_follows_the_age_rule() {
        assert_eq!(derive(None, None, false, false, YOUNG), DerivedStatus::Starting);
        assert_eq!(derive(None, None, false, false, OLD), DerivedStatus::Dead);
        assert_eq!(derive(None, Some(true), false, false, OLD), DerivedStatus::Idle);
    }

    #[test]
    fn a_claimed_instance_stays_claimed_through_deploys_and_silence() {
        for status in [DeployStatus::Building, DeployStatus::Deploying] {
            assert_eq!(derive(Some(status), None, false, true, YOUNG), DerivedStatus::Claimed);
        }
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, true, OLD),
            DerivedStatus::Claimed
        );
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(true), false, true, YOUNG),
            DerivedStatus::Claimed
        );
    }

    #[test]
    fn a_claimed_instance_whose_deploy_failed_is_crashed() {
        assert_eq!(derive(Some(DeployStatus::Failed), None, false, true, YOUNG), DerivedStatus::Crashed);
        assert_eq!(derive(Some(DeployStatus::Crashed), None, true, false, YOUNG), DerivedStatus::Crashed);
    }

    #[test]
    fn the_boundary_of_the_stuck_rule() {
        let just_under = STUCK - Duration::from_secs(1);
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, just_under),
            DerivedStatus::Starting
        );
        assert_eq!(
            derive(Some(DeployStatus::Success), Some(false), false, false, STUCK),
            DerivedStatus::Dead
        );
    }
}
