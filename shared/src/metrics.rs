//! CloudWatch metrics as Embedded Metric Format lines: on Lambda a JSON line on stdout with an
//! `_aws` block becomes a metric, with no API call and no extra permission. Elsewhere the same
//! figures go to the debug log.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "ConvosPool";

/// The environment dimension; set once when the process starts on Lambda.
static EMF_ENVIRONMENT: OnceLock<String> = OnceLock::new();

pub fn enable_emf(environment: &str) {
    let _ = EMF_ENVIRONMENT.set(environment.to_string());
}

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document with the given metrics, all under the `Environment` dimension.
pub fn emf_line(environment: &str, metrics: &[(&str, f64, Unit)], at_ms: u128) -> String {
    let definitions: Vec<Value> =
        metrics.iter().map(|(name, _, unit)| json!({ "Name": name, "Unit": unit.as_str() })).collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": at_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Environment"]],
                "Metrics": definitions,
            }],
        }),
    );
    doc.insert("Environment".into(), environment.into());
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

fn emit(metrics: &[(&str, f64, Unit)]) {
    match EMF_ENVIRONMENT.get() {
        Some(environment) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            println!("{}", emf_line(environment, metrics, now));
        }
        None => tracing::debug!(?metrics, "metrics"),
    }
}

/// Pool size by status, once per tick pass.
pub fn pool_counts(idle: i64, provisioning: i64, claimed: i64) {
    emit(&[
        ("IdleInstances", idle as f64, Unit::Count),
        ("ProvisioningInstances", provisioning as f64, Unit::Count),
        ("ClaimedInstances", claimed as f64, Unit::Count),
    ]);
}

pub fn claim_latency(elapsed: Duration, succeeded: bool) {
    emit(&[
        ("ClaimLatency", elapsed.as_secs_f64() * 1000.0, Unit::Milliseconds),
        ("ClaimFailures", if succeeded { 0.0 } else { 1.0 }, Unit::Count),
    ]);
}

pub fn step_failure() {
    emit(&[("StepFailures", 1.0, Unit::Count)]);
}

/// The creation circuit breaker is open after a provisioning failure (an alarm watches it).
pub fn breaker_open() {
    emit(&[("BreakerOpen", 1.0, Unit::Count)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let line = emf_line("staging", &[("IdleInstances", 3.0, Unit::Count)], 1_700_000_000_000);
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["Environment"], "staging");
        assert_eq!(doc["IdleInstances"], 3.0);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"][0][0], "Environment");
        assert_eq!(directive["Metrics"][0]["Name"], "IdleInstances");
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
    }
}
