//! `step-worker`: runs the step each `pool.step` event names.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_step_worker().await
}
