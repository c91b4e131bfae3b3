//! Steering during the chaos (issue 15): an operator changes the settings through the API
//! halfway through, raising min idle and asking for another OpenClaw ref, and the pool must
//! end with every instance built from it.

use serde_json::json;

use super::checks::{Check, Snapshot};

/// The ref the operator rolls the pool to halfway through the chaos.
pub const ROLLOUT_REF: &str = "main";

/// Every instance left is built from the ref asked for halfway through.
pub fn rollout_check(snapshot: &Snapshot) -> Check {
    let stale: Vec<serde_json::Value> = snapshot
        .instances
        .iter()
        .filter(|i| i.openclaw_git_ref != ROLLOUT_REF)
        .map(|i| json!({ "instance": i.id, "status": i.status.as_str(), "ref": i.openclaw_git_ref }))
        .collect();
    Check {
        name: "rollout_completed",
        pass: stale.is_empty() && !snapshot.instances.is_empty(),
        detail: format!(
            "{} instance(s), {} not built from {ROLLOUT_REF} (asked for during the chaos)",
            snapshot.instances.len(),
            stale.len()
        ),
        evidence: stale,
    }
}
