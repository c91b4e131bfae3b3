//! Delivery of "run the step of instance I" (ARCHITECTURE §4 rule 3). On Lambda an EventBridge
//! event the step worker receives; locally a tokio task. A lost delivery only delays work: the
//! tick re-drives every due step whose lease is free.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

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
    /// The chain, and the receiving end to hand to `engine::run_in_process` once the engine
    /// exists.
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

/// Drops every delivery: all work waits for the tick. For tests that stand in for a process
/// that died, and for runs where nothing but the sweeps should drive steps.
pub struct TickOnlyChain;

#[async_trait]
impl Chain for TickOnlyChain {
    async fn deliver(&self, _delivery: Delivery) {}
}

mod eventbridge;
pub use eventbridge::{EventBridgeChain, STEP_DETAIL_TYPE, STEP_SOURCE, StepDetail, sdk_config};
