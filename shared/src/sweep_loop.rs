//! The sweeps as they run in a process: EventBridge fires each at most once a minute, so one
//! invocation runs several passes (ARCHITECTURE §6) and stops before its deadline; the local
//! main job runs them for ever at their intervals.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::lifecycle::Actor;
use crate::metrics;
use crate::store::Status;

pub use crate::lifecycle::Sweep;

/// How one invocation spreads its passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub passes: u32,
    pub interval: Duration,
    /// The longest a pass is expected to take: one is not started unless it fits before the
    /// deadline, so a pass is never cut halfway by the end of the invocation.
    pub pass_budget: Duration,
}

/// The schedule that fires each sweep (infra/template.yaml).
const SCHEDULE_PERIOD: Duration = Duration::from_secs(60);

impl Sweep {
    /// How often the sweep should run.
    pub fn interval(self, config: &Config) -> Duration {
        match self {
            Sweep::Tick => config.tick_interval,
            Sweep::Heartbeat => config.heartbeat_interval,
            Sweep::Reconcile => config.reconcile_interval,
        }
    }

    /// Passes per scheduled invocation: as many intervals as fit in a schedule period.
    pub fn plan(self, config: &Config) -> Plan {
        let interval = self.interval(config);
        let passes = if interval >= SCHEDULE_PERIOD {
            1
        } else {
            (SCHEDULE_PERIOD.as_millis() / interval.as_millis().max(1)).clamp(1, 12) as u32
        };
        let pass_budget = match self {
            Sweep::Tick => Duration::from_secs(20),
            Sweep::Heartbeat => Duration::from_secs(15),
            Sweep::Reconcile => Duration::from_secs(60),
        };
        Plan { passes, interval, pass_budget }
    }

    /// One pass; its report as JSON for the log. Boxed and type-erased: inlined into a
    /// function's runtime loop, a tick's future nests past the compiler's layout depth limit in
    /// release builds.
    pub fn run_once(
        self,
        engine: &Engine,
    ) -> Pin<Box<dyn Future<Output = Result<Value, EngineError>> + Send + '_>> {
        Box::pin(async move {
            let report = match self {
                Sweep::Tick => {
                    let mut report = serde_json::to_value(engine.tick().await?).unwrap_or_default();
                    report_counts(engine).await;
                    // Webhooks go out from the tick: after its own work, and whether or not
                    // another process held the tick lease (each outbox row has a lease of its own).
                    let webhooks = engine.deliver_webhooks().await?;
                    if let Value::Object(map) = &mut report {
                        map.insert("webhooks".into(), serde_json::to_value(webhooks).unwrap_or_default());
                    }
                    report
                }
                Sweep::Heartbeat => serde_json::to_value(engine.heartbeat().await?).unwrap_or_default(),
                Sweep::Reconcile => {
                    serde_json::to_value(engine.reconcile(&Actor::RECONCILE).await?).unwrap_or_default()
                }
            };
            Ok(report)
        })
    }
}

async fn report_counts(engine: &Engine) {
    match engine.store().counts().await {
        Ok(counts) => {
            let of = |status| counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            metrics::pool_counts(of(Status::Idle), of(Status::Provisioning), of(Status::Claimed));
        }
        Err(err) => tracing::warn!(error = %err, "counts for metrics"),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoopReport {
    pub passes_run: u32,
    pub failures: u32,
    /// Passes left out because they would not have finished before the deadline.
    pub passes_skipped: u32,
}

/// Kept free at the end of an invocation to log and return.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Runs `plan.passes` passes `plan.interval` apart, starting each only if its budget fits
/// before `stop`, and cutting a pass that overruns at `stop`.
pub async fn run_passes<F, Fut>(plan: Plan, stop: Instant, mut pass: F) -> LoopReport
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut report = LoopReport::default();
    for n in 0..plan.passes {
        let begin = (start + plan.interval * n).max(Instant::now());
        if begin + plan.pass_budget > stop {
            report.passes_skipped = plan.passes - n;
            break;
        }
        tokio::time::sleep_until(begin).await;
        report.passes_run += 1;
        match tokio::time::timeout_at(stop, pass(n)).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                report.failures += 1;
                tracing::warn!(pass = n, error = %message, "sweep pass failed");
            }
            Err(_) => {
                report.failures += 1;
                tracing::warn!(pass = n, "sweep pass cut at the invocation deadline");
                break;
            }
        }
    }
    report
}

/// Runs one sweep for one scheduled invocation.
pub async fn run_invocation(sweep: Sweep, plan: Plan, engine: &Engine, deadline: Instant) -> LoopReport {
    let stop = deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline);
    let report = run_passes(plan, stop, |n| async move {
        let result = sweep.run_once(engine).await;
        match result {
            Ok(report) => {
                tracing::info!(sweep = sweep.as_str(), pass = n, report = %report, "sweep pass");
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
    tracing::info!(sweep = sweep.as_str(), ?report, "sweep invocation done");
    report
}

/// Runs a sweep at its interval until the process stops (the local main job).
pub async fn run_forever(sweep: Sweep, interval: Duration, engine: std::sync::Arc<Engine>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match sweep.run_once(&engine).await {
            Ok(report) => tracing::info!(sweep = sweep.as_str(), did = %summary(&report), "sweep pass"),
            Err(err) => tracing::warn!(sweep = sweep.as_str(), error = %err, "sweep pass failed"),
        }
    }
}

/// A pass report with what it did only: zeros, empty lists, `false` and nulls left out, so the
/// one line per pass reads as a sentence of what happened (`{}`: nothing to do).
pub fn summary(report: &Value) -> Value {
    match report {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), summary(value)))
                .filter(|(_, value)| !quiet(value))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn quiet(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Milliseconds stand in for the seconds of a real invocation.
    fn plan(passes: u32, interval_ms: u64, budget_ms: u64) -> Plan {
        Plan {
            passes,
            interval: Duration::from_millis(interval_ms),
            pass_budget: Duration::from_millis(budget_ms),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn runs_every_pass_at_its_interval_when_time_allows() {
        let start = Instant::now();
        let at = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = at.clone();
        let report = run_passes(plan(3, 200, 150), start + ms(750), |_| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(Instant::now() - start);
                Ok(())
            }
        })
        .await;
        assert_eq!(report, LoopReport { passes_run: 3, failures: 0, passes_skipped: 0 });
        let starts = at.lock().unwrap().clone();
        for (n, began) in starts.iter().enumerate() {
            let planned = ms(200 * n as u64);
            assert!(*began >= planned && *began < planned + ms(100), "pass {n} at {began:?}");
        }
    }

    #[tokio::test]
    async fn skips_passes_that_would_not_fit_before_the_deadline() {
        let start = Instant::now();
        // A tick in a short invocation: the second pass at 300 with a 200 budget would end at 500.
        let report = run_passes(plan(2, 300, 200), start + ms(400), |_| async { Ok(()) }).await;
        assert_eq!(report, LoopReport { passes_run: 1, failures: 0, passes_skipped: 1 });
        assert!(Instant::now() - start < ms(250), "did not wait for a pass it would skip");
    }

    #[tokio::test]
    async fn cuts_an_overrunning_pass_at_the_deadline_and_counts_failures() {
        let start = Instant::now();
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let report = run_passes(plan(3, 100, 50), start + ms(300), |n| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                match n {
                    0 => Err("database down".to_string()),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(report, LoopReport { passes_run: 2, failures: 2, passes_skipped: 0 });
        let took = Instant::now() - start;
        assert!(took >= ms(300) && took < ms(450), "stopped at the deadline: {took:?}");
    }

    #[test]
    fn plans_follow_the_configured_intervals() {
        let config = Config::from_lookup(|name| match name {
            "POOL_API_KEY" | "SPRITE_TOKEN" => Some("x".into()),
            "DATABASE_URL" => Some("postgres://127.0.0.1/unused".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(Sweep::Tick.plan(&config).passes, 2);
        assert_eq!(Sweep::Heartbeat.plan(&config).passes, 3);
        assert_eq!(Sweep::Reconcile.plan(&config).passes, 1);
    }

    #[test]
    fn a_pass_summary_keeps_what_happened() {
        let report = serde_json::json!({
            "redriven": 0, "created": ["a1"], "skipped": false, "stuck": [],
            "replenish": { "warm": 3, "total": null, "breaker_open": false, "created": [] },
            "pruned": { "claims": 0, "events": 0 },
        });
        assert_eq!(summary(&report), serde_json::json!({ "created": ["a1"], "replenish": { "warm": 3 } }));
        assert_eq!(summary(&serde_json::json!({ "pinged": 0 })), serde_json::json!({}));
    }
}
