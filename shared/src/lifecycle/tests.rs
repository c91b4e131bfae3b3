//! The whole table, spelled out a second time: every (from, to, reason) triple is checked, so
//! a move added or dropped by accident fails here.

use super::*;

/// Every allowed move as `from>to:reason`, `new` for a new row and `gone` for a deleted one.
const ALLOWED: &[&str] = &[
    "new>provisioning:replenish",
    "provisioning>provisioning:step_done",
    "provisioning>provisioning:step_failed",
    "provisioning>idle:provisioned",
    "provisioning>destroying:provisioning_failed",
    "provisioning>destroying:stuck",
    "provisioning>destroying:deploy_dead",
    "provisioning>destroying:machine_gone",
    "provisioning>destroying:destroy",
    "provisioning>destroying:drain",
    "provisioning>gone:machine_gone",
    "idle>claiming:claim",
    "idle>recycling:bound_while_idle",
    "idle>recycling:recycle",
    "idle>destroying:bound_while_idle",
    "idle>destroying:recycle",
    "idle>destroying:destroy",
    "idle>destroying:drain",
    "idle>destroying:deploy_dead",
    "idle>destroying:machine_gone",
    "idle>destroying:heartbeat_failed",
    "idle>destroying:rollout",
    "idle>destroying:scale_down",
    "idle>gone:machine_gone",
    "claiming>claiming:step_failed",
    "claiming>claimed:created",
    "claiming>claimed:joined",
    "claiming>claimed:waiting_for_acceptance",
    "claiming>idle:wake_refused",
    "claiming>recycling:claim_failed",
    "claiming>recycling:stale_claim",
    "claiming>destroying:claim_failed",
    "claiming>destroying:stale_claim",
    "claiming>destroying:step_failed",
    "claiming>destroying:destroy",
    "claimed>recycling:recycle",
    "claimed>recycling:claim_expired",
    "claimed>recycling:join_not_accepted",
    "claimed>destroying:recycle",
    "claimed>destroying:destroy",
    "claimed>destroying:claim_expired",
    "claimed>destroying:join_not_accepted",
    "claimed>destroying:rollout",
    "claimed>crashed:machine_gone",
    "claimed>crashed:deploy_dead",
    "claimed>crashed:heartbeat_failed",
    "recycling>recycling:step_done",
    "recycling>recycling:step_failed",
    "recycling>idle:recycled",
    "recycling>destroying:recycle_failed",
    "recycling>destroying:machine_gone",
    "recycling>destroying:destroy",
    "recycling>gone:machine_gone",
    "crashed>recycling:recycle",
    "crashed>destroying:recycle",
    "crashed>destroying:destroy",
    "crashed>destroying:rollout",
    "destroying>destroying:step_failed",
    "destroying>destroying:machine_gone",
    "destroying>gone:destroyed",
    "destroying>gone:machine_gone",
];

fn places() -> Vec<Option<Status>> {
    std::iter::once(None).chain(Status::ALL.iter().copied().map(Some)).collect()
}

fn spell(place: Option<Status>, absent: &str) -> String {
    place.map_or(absent.to_string(), |s| s.to_string())
}

#[test]
fn every_move_is_allowed_or_refused_as_spelled_out() {
    let mut checked = 0;
    for from in places() {
        for to in places() {
            for &reason in Reason::ALL {
                let key = format!("{}>{}:{reason}", spell(from, "new"), spell(to, "gone"));
                let expected = ALLOWED.contains(&key.as_str());
                assert_eq!(allows(from, to, reason), expected, "{key}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8 * 8 * Reason::ALL.len());
    // Nothing is created already gone, nothing moves from nowhere to nowhere.
    assert!(ALLOWED.iter().all(|m| !m.starts_with("new>gone")));
}

#[test]
fn every_reason_carries_some_move_and_every_status_is_reachable_and_left() {
    for &reason in Reason::ALL {
        assert!(table::moves().iter().any(|(_, _, rs)| rs.contains(&reason)), "{reason} unused");
    }
    for &status in Status::ALL {
        assert!(table::moves().iter().any(|(f, t, _)| *t == Some(status) && *f != Some(status)), "{status}");
        assert!(table::moves().iter().any(|(f, t, _)| *f == Some(status) && *t != Some(status)), "{status}");
    }
}

#[test]
fn steps_run_only_in_working_statuses_and_each_has_one() {
    for &step in Step::ALL {
        let homes: Vec<Status> = Status::ALL.iter().copied().filter(|s| step_belongs(step, *s)).collect();
        assert!(!homes.is_empty(), "{step} runs nowhere");
        assert!(homes.iter().all(|s| !s.at_rest()), "{step} runs at rest: {homes:?}");
    }
    for &status in Status::ALL {
        let runs_some = Step::ALL.iter().any(|step| step_belongs(*step, status));
        assert_eq!(runs_some, !status.at_rest(), "{status}");
    }
    assert!(
        step_belongs(Step::AwaitReady, Status::Recycling)
            && step_belongs(Step::AwaitReady, Status::Provisioning)
    );
    assert!(
        !step_belongs(Step::Checkpoint, Status::Recycling),
        "a recycle never takes a new golden checkpoint"
    );
}

#[test]
fn a_transition_checks_its_step_as_well_as_its_move() {
    let ok = Transition {
        from: Some(Status::Provisioning),
        to: Some(Status::Idle),
        step: None,
        reason: Reason::Provisioned,
    };
    assert_eq!(ok.check(), Ok(ok));
    let resting_with_a_step = Transition { step: Some(Step::Checkpoint), ..ok };
    assert!(resting_with_a_step.check().is_err());
    let working_without_one = Transition { to: Some(Status::Destroying), reason: Reason::Stuck, ..ok };
    assert!(working_without_one.check().is_err());
    let wrong_step = Transition { step: Some(Step::Restore), ..working_without_one };
    assert!(wrong_step.check().is_err());
    assert_eq!(Transition { step: Some(Step::Destroy), ..working_without_one }.check().map(|_| ()), Ok(()));
    let deleted_with_a_step = Transition {
        from: Some(Status::Destroying),
        to: None,
        step: Some(Step::Destroy),
        reason: Reason::Destroyed,
    };
    assert!(deleted_with_a_step.check().is_err());
    let refused = Transition { reason: Reason::Drain, ..ok }.check().unwrap_err();
    assert_eq!(refused.to_string(), "transition not allowed: provisioning -> idle (no step) for drain");
}

#[test]
fn spellings_round_trip() {
    for &status in Status::ALL {
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
    }
    for &step in Step::ALL {
        assert_eq!(step.as_str().parse::<Step>(), Ok(step));
    }
    for &reason in Reason::ALL {
        assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
    }
    assert!("destroyed".parse::<Status>().is_err(), "gone is not a status");
}
