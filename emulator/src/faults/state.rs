//! Injected faults as data: what the control API stores and which fault a request matches.
//! Below the world model (`crate::state::World` holds the list); answering is `faults`.

use serde::{Deserialize, Serialize};

use crate::latency;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    RateLimit {
        retry_after_secs: u64,
    },
    Hang {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    ExecCloseWithoutExit,
    ExecEmptyExitPayload,
    ExecTextFrames,
    /// A 200 NDJSON stream that reports failure in-band, as the real server does.
    StreamError {
        message: String,
    },
}

/// The routes whose answer is an NDJSON progress stream.
const STREAM_ROUTES: [&str; 6] = [
    "checkpoints.create",
    "checkpoints.restore",
    "services.put",
    "services.start",
    "services.stop",
    "services.restart",
];

impl FaultKind {
    /// Exec-framing quirks only make sense on the exec WebSocket, in-band stream errors only
    /// on streaming routes; every other kind applies anywhere.
    pub fn applies_to(&self, route: &str) -> bool {
        match self {
            FaultKind::ExecCloseWithoutExit | FaultKind::ExecEmptyExitPayload | FaultKind::ExecTextFrames => {
                route == "exec"
            }
            FaultKind::StreamError { .. } => STREAM_ROUTES.contains(&route),
            _ => true,
        }
    }
}

/// Body of `POST /_emulator/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFault {
    pub route: String,
    #[serde(default)]
    pub sprite: Option<String>,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub count: Option<u64>,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: String,
    pub route: String,
    pub sprite: Option<String>,
    pub probability: f64,
    /// Remaining matches; None = unlimited. An exhausted fault stays listed with 0.
    pub count: Option<u64>,
    pub hits: u64,
    pub kind: FaultKind,
}

impl NewFault {
    pub fn validate(&self) -> Result<(), String> {
        if self.route != "*" && !latency::is_route(&self.route) {
            return Err(format!("unknown route {:?}", self.route));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err("probability must be between 0 and 1".into());
        }
        if self.route != "*" && !self.kind.applies_to(&self.route) {
            return Err(format!(
                "this kind does not apply to {:?} (exec_* faults: \"exec\"; stream_error: {})",
                self.route,
                STREAM_ROUTES.join(", ")
            ));
        }
        if let FaultKind::Status { status, .. } = self.kind
            && !(100..=599).contains(&status)
        {
            return Err("status must be an HTTP status code".into());
        }
        Ok(())
    }
}

impl Fault {
    pub fn new(id: String, f: NewFault) -> Fault {
        Fault {
            id,
            route: f.route,
            sprite: f.sprite,
            probability: f.probability.unwrap_or(1.0),
            count: f.count,
            hits: 0,
            kind: f.kind,
        }
    }
}

/// The first fault in `faults` that matches this request, consuming one of its uses.
pub fn take(faults: &mut [Fault], route: &str, sprite: Option<&str>) -> Option<FaultKind> {
    for fault in faults {
        if fault.route != "*" && fault.route != route {
            continue;
        }
        if let Some(want) = &fault.sprite
            && Some(want.as_str()) != sprite
        {
            continue;
        }
        if !fault.kind.applies_to(route) {
            continue;
        }
        if fault.count == Some(0) {
            continue;
        }
        if fault.probability < 1.0 && rand::random::<f64>() >= fault.probability {
            continue;
        }
        if let Some(n) = &mut fault.count {
            *n -= 1;
        }
        fault.hits += 1;
        return Some(fault.kind.clone());
    }
    None
}
