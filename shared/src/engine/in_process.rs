//! The receiving end of the in-process chain: runs each delivered step as a task of this
//! process (the local main job, poolctl, tests). The chain only carries deliveries; running
//! them is the engine's, so the chain never depends on the engine.

use std::sync::Weak;

use tokio::sync::mpsc;

use super::Engine;
use crate::chain::Delivery;

/// Runs deliveries until the engine is dropped. Holds the engine weakly: the engine owns the
/// chain, so a strong reference here would keep both alive for ever.
pub fn run_in_process(
    engine: Weak<Engine>,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(delivery) = rx.recv().await {
            let engine = engine.clone();
            tokio::spawn(async move {
                if !delivery.delay.is_zero() {
                    tokio::time::sleep(delivery.delay).await;
                }
                let Some(engine) = engine.upgrade() else { return };
                if let Err(err) = engine.run_step(&delivery.instance_id, delivery.hop).await {
                    tracing::warn!(instance = %delivery.instance_id, error = %err, "step run failed; the tick retries it");
                }
            });
        }
    })
}
