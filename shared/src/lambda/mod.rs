//! Lambda glue: what each function's `main()` calls. Every function builds its process
//! (`wiring::for_lambda`) once per execution environment and then serves events with it; the
//! handlers below are plain async functions so tests drive them with the same events AWS sends.

mod migrate;

use std::time::{Duration, SystemTime};

use lambda_http::Body;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{Api, Route};
use crate::chain::StepDetail;
use crate::engine::Engine;
use crate::sweep_loop::{self, LoopReport, Plan, Sweep};
use crate::wiring::{self, Migrations};
pub use migrate::{MigrateError, migrate_event};

pub type Error = lambda_runtime::Error;

/// The `main()` of an API route function.
pub async fn serve_route(route: Route) -> Result<(), Error> {
    crate::logging::init_json();
    let process = wiring::for_lambda().await?;
    // Boxed: the runtime's future nests deep enough to overflow the compiler's layout limit.
    Box::pin(lambda_http::run(process.api.router(Some(route)))).await
}

/// The `main()` of a sweep function (tick, heartbeat, reconcile).
pub async fn serve_sweep(sweep: Sweep) -> Result<(), Error> {
    crate::logging::init_json();
    let process = wiring::for_lambda().await?;
    let plan = sweep.plan(&process.config);
    let engine = &process.engine;
    Box::pin(lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = effective_deadline(event.context.deadline(), SWEEP_TIMEOUT);
        let report = sweep_event(engine, sweep, plan, deadline).await;
        Ok::<_, std::convert::Infallible>(serde_json::to_value(report).unwrap_or_default())
    })))
    .await
}

/// The `main()` of the step worker.
pub async fn serve_step_worker() -> Result<(), Error> {
    crate::logging::init_json();
    let process = wiring::for_lambda().await?;
    let engine = &process.engine;
    Box::pin(lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        step_event(engine, &event.payload, effective_deadline(event.context.deadline(), STEP_TIMEOUT)).await
    })))
    .await
}

/// The `main()` of the migration function.
pub async fn serve_migrate() -> Result<(), Error> {
    crate::logging::init_json();
    let Migrations { store, http } = Migrations::for_lambda().await?;
    let (store, http) = (&store, &http);
    Box::pin(lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        migrate_event(store, http, &event.payload).await
    })))
    .await
}

/// An API Gateway HTTP API request, answered by the function of `route` as on AWS (tests).
pub async fn http(api: &Api, route: Route, request: lambda_http::Request) -> lambda_http::Response<Body> {
    let Ok(response) = api.router(Some(route)).oneshot(request).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(err) => Body::Binary(err.into_bytes()),
    };
    lambda_http::Response::from_parts(parts, body)
}

/// How long is left before `deadline`, as a tokio instant.
fn instant_of(deadline: SystemTime) -> tokio::time::Instant {
    let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + left
}

/// The deadline to plan with. Lambda always sends a future one; a deadline already past when
/// the event arrives (cargo lambda watch sends a fixed one in 1970) means "unknown": plan with
/// the function's configured timeout instead of finding no time at all.
pub fn effective_deadline(deadline: SystemTime, timeout: Duration) -> SystemTime {
    let now = SystemTime::now();
    if deadline > now { deadline } else { now + timeout }
}

/// The timeouts in infra/template.yaml, for runtimes that give no usable deadline.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(75);
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// One scheduled invocation of a sweep.
pub async fn sweep_event(engine: &Engine, sweep: Sweep, plan: Plan, deadline: SystemTime) -> LoopReport {
    sweep_loop::run_invocation(sweep, plan, engine, instant_of(deadline)).await
}

/// Why a step event was not run; Lambda retries it, then sends it to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum StepEventError {
    #[error("not a step event: {0}")]
    Malformed(String),
    #[error("step failed to run: {0}")]
    Engine(#[from] crate::engine::EngineError),
}

impl From<StepEventError> for Diagnostic {
    fn from(err: StepEventError) -> Diagnostic {
        let error_type = match err {
            StepEventError::Malformed(_) => "MalformedStepEvent",
            StepEventError::Engine(_) => "StepRunFailed",
        };
        Diagnostic { error_type: error_type.into(), error_message: err.to_string() }
    }
}

/// Time kept back from the invocation deadline: a step cut here has its lease run out and is
/// re-driven by the tick, which beats being killed mid-write.
const STEP_MARGIN: Duration = Duration::from_secs(10);

/// Runs the step an EventBridge event names. Takes the envelope or a bare detail (a direct
/// `cargo lambda invoke`).
pub async fn step_event(
    engine: &Engine,
    event: &Value,
    deadline: SystemTime,
) -> Result<Value, StepEventError> {
    let detail = event.get("detail").unwrap_or(event);
    let detail: StepDetail =
        serde_json::from_value(detail.clone()).map_err(|e| StepEventError::Malformed(e.to_string()))?;
    let stop = instant_of(deadline).checked_sub(STEP_MARGIN).unwrap_or_else(tokio::time::Instant::now);
    // Type-erased for the same reason as a sweep pass (sweep_loop::Sweep::run_once).
    let run: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> =
        Box::pin(engine.run_step(&detail.instance_id, detail.hop));
    match tokio::time::timeout_at(stop, run).await {
        Ok(result) => {
            result?;
            Ok(serde_json::json!({ "instanceId": detail.instance_id, "hop": detail.hop, "ran": true }))
        }
        Err(_) => {
            tracing::warn!(instance = %detail.instance_id, "step cut at the invocation deadline; the tick re-drives it");
            Ok(serde_json::json!({ "instanceId": detail.instance_id, "hop": detail.hop, "ran": false }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_already_past_is_read_as_unknown() {
        let timeout = Duration::from_secs(75);
        let future = SystemTime::now() + Duration::from_secs(30);
        assert_eq!(effective_deadline(future, timeout), future);
        let watch = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        let planned = effective_deadline(watch, timeout);
        let left = planned.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(70) && left <= timeout, "{left:?}");
    }
}
