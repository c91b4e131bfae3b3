//! Webhook delivery (issue 16.5): a bounded pass over the outbox, run by the tick. Rows are
//! taken under a lease (store/webhooks.rs), sent at once where they belong to different
//! subjects, and each one is recorded delivered, or failed with its next attempt on the pool's
//! backoff until the retry window after the event runs out, when it is given up.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::{Engine, EngineError};
use crate::webhook::WebhookSender;

/// How the pool sends webhooks: the client and the schedule.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub sender: WebhookSender,
    /// How long after its event a row is still tried (24 h).
    pub window: Duration,
    /// Rows sent at once; also the most taken by one statement.
    pub batch: i64,
    /// The most rows one pass sends, so a backlog never holds the tick.
    pub max_per_pass: usize,
    /// No new batch is taken after this much of a pass.
    pub pass_budget: Duration,
    /// How long a taken row stays with its worker: longer than one request may take.
    pub lease: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Webhooks {
    /// Production values around `sender` (whose client times a request out after 10 s).
    pub fn new(sender: WebhookSender) -> Self {
        Webhooks {
            sender,
            window: Duration::from_secs(24 * 3600),
            batch: 20,
            max_per_pass: 200,
            pass_budget: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WebhookReport {
    /// A webhook URL is configured.
    pub enabled: bool,
    pub delivered: usize,
    /// Failed and due again later.
    pub retrying: usize,
    /// Failed for the last time: the retry window is over.
    pub given_up: usize,
}

impl Engine {
    /// Gives the pool a webhook URL: from now on the events it announces go to the outbox.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// One delivery pass. It first records whether webhooks are configured, so the outbox is
    /// filled only while a process is there to deliver it (with no URL, nothing is written).
    pub async fn deliver_webhooks(&self) -> Result<WebhookReport, EngineError> {
        let Some(hooks) = &self.webhooks else {
            self.store.set_webhooks_enabled(false).await?;
            return Ok(WebhookReport::default());
        };
        self.store.set_webhooks_enabled(true).await?;
        let mut report = WebhookReport { enabled: true, ..Default::default() };
        let owner = format!("webhooks-{}", uuid::Uuid::new_v4());
        let started = Instant::now();
        let mut sent = 0;
        while sent < hooks.max_per_pass && started.elapsed() < hooks.pass_budget {
            let room = (hooks.max_per_pass - sent).min(hooks.batch as usize) as i64;
            let rows = self.store.take_webhooks(&owner, hooks.lease, room).await?;
            if rows.is_empty() {
                break;
            }
            sent += rows.len();
            let answers =
                join_all(rows.iter().map(|row| hooks.sender.send(row.id, &row.event_type, &row.payload)))
                    .await;
            for (row, answer) in rows.iter().zip(answers) {
                match answer {
                    Ok(()) => {
                        if self.store.webhook_delivered(row.id, &owner).await? {
                            report.delivered += 1;
                        }
                    }
                    Err(err) => {
                        let error = err.to_string();
                        let delay = crate::backoff::equal_jitter(
                            hooks.backoff_base,
                            hooks.backoff_cap,
                            (row.attempts - 1).max(0) as u32,
                        );
                        let status =
                            self.store.webhook_failed(row.id, &owner, &error, delay, hooks.window).await?;
                        match status.as_deref() {
                            Some("failed") => {
                                report.given_up += 1;
                                tracing::warn!(
                                    delivery = row.id, event = %row.event_type, attempts = row.attempts,
                                    error = %error, "webhook given up: retry window over"
                                );
                            }
                            Some(_) => {
                                report.retrying += 1;
                                tracing::info!(
                                    delivery = row.id, event = %row.event_type, attempts = row.attempts,
                                    retry_in_s = delay.as_secs(), error = %error, "webhook failed; will retry"
                                );
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}
