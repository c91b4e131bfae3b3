//! `tick`: the tick sweep, fired by its EventBridge schedule.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_sweep(shared::sweep_loop::Sweep::Tick).await
}
