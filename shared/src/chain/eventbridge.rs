//! The chain on AWS: each delivery is an EventBridge event on the pool's own bus, which a rule
//! hands to the step-worker function (ARCHITECTURE §4 rule 3).
//!
//! Contract (also in infra/README.md): source `convos.pool`, detail-type `pool.step`, detail
//! `{"instanceId": "...", "hop": N}`. The hop bound is the engine's; the worker's
//! `RecursiveLoop: Allow` only stops AWS from cutting the chain at 16 first.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::{Deserialize, Serialize};

use super::{Chain, Delivery};

pub const STEP_SOURCE: &str = "convos.pool";
pub const STEP_DETAIL_TYPE: &str = "pool.step";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepDetail {
    pub instance_id: String,
    pub hop: i32,
}

pub struct EventBridgeChain {
    client: Client,
    bus: String,
    /// EventBridge cannot delay an event. A short wait (a gateway poll) is slept here before
    /// sending; a longer one (a backoff) is left to the tick, which re-drives due steps.
    max_inline_delay: Duration,
}

impl EventBridgeChain {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        EventBridgeChain { client, bus: bus.into(), max_inline_delay: Duration::from_secs(10) }
    }

    fn entry(&self, delivery: &Delivery) -> PutEventsRequestEntry {
        let detail = StepDetail { instance_id: delivery.instance_id.clone(), hop: delivery.hop };
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(STEP_SOURCE)
            .detail_type(STEP_DETAIL_TYPE)
            .detail(serde_json::to_string(&detail).unwrap_or_default())
            .build()
    }
}

#[async_trait]
impl Chain for EventBridgeChain {
    async fn deliver(&self, delivery: Delivery) {
        if delivery.delay > self.max_inline_delay {
            tracing::debug!(instance = %delivery.instance_id, delay_ms = delivery.delay.as_millis() as u64, "left to the tick");
            return;
        }
        if !delivery.delay.is_zero() {
            tokio::time::sleep(delivery.delay).await;
        }
        let sent = self.client.put_events().entries(self.entry(&delivery)).send().await;
        // A lost event only delays the step until the next tick; it is logged, not retried.
        match sent {
            Ok(out) if out.failed_entry_count() > 0 => {
                let code = out.entries().first().and_then(|e| e.error_code()).unwrap_or("unknown");
                tracing::warn!(instance = %delivery.instance_id, code, "step event refused; the tick re-drives it");
            }
            Ok(_) => tracing::debug!(instance = %delivery.instance_id, hop = delivery.hop, "step event sent"),
            Err(err) => {
                let err = aws_sdk_eventbridge::error::DisplayErrorContext(err);
                tracing::warn!(instance = %delivery.instance_id, error = %err, "step event not sent; the tick re-drives it");
            }
        }
    }
}

/// The AWS SDK configuration from the environment (the Lambda role's credentials), with an
/// HTTPS client on ring-backed rustls like every other client here.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
}
