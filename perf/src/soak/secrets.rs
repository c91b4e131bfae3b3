//! The soak's logs hold no secret (issue 14.4, Must hold): both processes log at trace through
//! the production layers, and every secret the run knows is looked for in every line.

use std::path::Path;

use secrecy::ExposeSecret;

use super::checks::{Check, Snapshot};

/// A secret the run knows, and what to call it in the report (never the value).
pub struct Known {
    pub what: &'static str,
    pub value: String,
}

/// The keys of the configuration, every gateway token a claim answer handed out, and every
/// token of the instances left.
pub fn known(fixed: Vec<Known>, handed_out: &[String], snapshot: &Snapshot) -> Vec<Known> {
    let tokens = handed_out
        .iter()
        .cloned()
        .chain(snapshot.instances.iter().map(|i| i.gateway_token.expose_secret().to_string()));
    fixed.into_iter().chain(tokens.map(|value| Known { what: "a gateway token", value })).collect()
}

pub fn no_secret_in_logs(logs: &[&Path], secrets: &[Known]) -> Check {
    let mut lines = 0usize;
    let mut bytes = 0usize;
    let mut found: Vec<serde_json::Value> = Vec::new();
    let mut unreadable = Vec::new();
    for path in logs {
        let Ok(text) = std::fs::read_to_string(path) else {
            unreadable.push(path.display().to_string());
            continue;
        };
        bytes += text.len();
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            for secret in secrets.iter().filter(|s| !s.value.is_empty() && line.contains(&s.value)) {
                if found.len() < 20 {
                    found.push(serde_json::json!({
                        "file": path.display().to_string(),
                        "line": n + 1,
                        "secret": secret.what,
                    }));
                }
            }
        }
    }
    let trace_seen = lines > 0;
    Check {
        name: "no_secret_in_trace_logs",
        pass: found.is_empty() && unreadable.is_empty() && trace_seen,
        detail: format!(
            "{lines} log lines ({:.1} MB) at trace searched for {} known secrets: {} found{}",
            bytes as f64 / 1e6,
            secrets.len(),
            found.len(),
            if unreadable.is_empty() { String::new() } else { format!("; unreadable: {unreadable:?}") }
        ),
        evidence: found,
    }
}
