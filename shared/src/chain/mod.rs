//! Delivery of "run the step of instance I" (ARCHITECTURE §4 rule 3). On Lambda an EventBridge
//! event the step worker receives; locally a tokio task. A lost delivery only delays work: the
//! tick re-drives every due step whose lease is free.

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub instance_id: String,
    /// How many deliveries in a row led here; bounded so a chain never recurses for ever.
    pub hop: i32,
    /// Run no earlier than this from now. A chain that cannot delay may drop the delivery:
    /// the step's `next_run_at` makes the tick pick it up.
    pub delay: Duration,
}

#[async_trait]
pub trait Chain: Send + Sync {
    async fn deliver(&self, delivery: Delivery);
}

/// Runs each delivery as a task in this process.
pub struct InProcessChain {
    tx: mpsc::UnboundedSender<Delivery>,
}

impl InProcessChain {
    /// The chain, and the receiving end to hand to [`run_in_process`] once the engine exists.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (InProcessChain { tx }, rx)
    }
}

#[async_trait]
impl Chain for InProcessChain {
    async fn deliver(&self, delivery: Delivery) {
        // The receiver is gone only while the process shuts down; the tick covers it.
        let _ = self.tx.send(delivery);
    }
}

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

/// Drops every delivery: all work waits for the tick. For tests that stand in for a process
/// that died, and for runs where nothing but the sweeps should drive steps.
pub struct TickOnlyChain;

#[async_trait]
impl Chain for TickOnlyChain {
    async fn deliver(&self, _delivery: Delivery) {}
}

mod eventbridge;
pub use eventbridge::{EventBridgeChain, STEP_DETAIL_TYPE, STEP_SOURCE, StepDetail, sdk_config};
