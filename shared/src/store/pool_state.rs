//! Pool-wide state: the pool id and the provisioning circuit breaker, persisted so that every
//! Lambda sees them.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::{Store, StoreError, secs};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    pub consecutive_failures: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub open_until: Option<OffsetDateTime>,
    pub last_failure: Option<String>,
}

impl Breaker {
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.open_until.is_some_and(|until| until > now)
    }
}

impl Store {
    /// The pool id, generated once by the migration that added it and never changed: every
    /// name this pool gives a machine, key or inbox carries it (issue 14.1).
    pub async fn pool_id(&self) -> Result<String, StoreError> {
        let id = sqlx::query_scalar!("SELECT pool_id FROM pool_state WHERE id").fetch_one(&self.pool).await?;
        Ok(id)
    }

    pub async fn breaker(&self) -> Result<Breaker, StoreError> {
        let row = sqlx::query_as!(
            Breaker,
            r#"SELECT consecutive_failures, breaker_open_until AS open_until, last_failure
               FROM pool_state WHERE id"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Counts a provisioning failure; the `threshold`-th in a row opens the breaker for `pause`.
    pub(crate) async fn breaker_failure(
        &self,
        reason: &str,
        threshold: i32,
        pause: Duration,
        actor: &crate::lifecycle::Actor,
    ) -> Result<Breaker, StoreError> {
        // `was` reads the row under the update's lock, so of two failures at once only the one
        // that opened the breaker writes the `breaker` event (issue 16.2).
        let row = sqlx::query_as!(
            Breaker,
            r#"WITH updated AS (
                   UPDATE pool_state p SET
                      consecutive_failures = p.consecutive_failures + 1,
                      breaker_open_until = CASE WHEN p.consecutive_failures + 1 >= $2
                                                THEN now() + make_interval(secs => $3)
                                                ELSE p.breaker_open_until END,
                      last_failure = $1, updated_at = now()
                   FROM (SELECT breaker_open_until AS was FROM pool_state WHERE id FOR UPDATE) b
                   WHERE p.id
                   RETURNING p.consecutive_failures, p.breaker_open_until, p.last_failure, b.was
               ), opened AS (
                   INSERT INTO pool_events (kind, actor, detail)
                   SELECT 'breaker', $4, jsonb_build_object('state', 'open',
                          'openUntil', breaker_open_until, 'consecutiveFailures', consecutive_failures,
                          'lastFailure', last_failure)
                   FROM updated
                   WHERE breaker_open_until > now() AND (was IS NULL OR was <= now())
               )
               SELECT consecutive_failures AS "consecutive_failures!",
                      breaker_open_until AS open_until, last_failure
               FROM updated"#,
            reason,
            threshold,
            secs(pause),
            actor.to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }
}

/// What one replenish pass found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refill {
    /// Idle, provisioning and recycling instances: those that are or will soon be claimable.
    /// A top-up that finds `min_idle` of them stops counting there (the pool is full enough,
    /// and every claim tops up: it must not count the whole table).
    pub warm: i64,
    /// Every instance; `None` when a top-up found the pool full enough and counted no further.
    pub total: Option<i64>,
    pub breaker_open: bool,
    pub created: Vec<String>,
}

/// A new instance a refill may start: the caller makes the id, Sprite name and token.
pub struct NewInstance {
    pub id: String,
    pub sprite_name: String,
    pub gateway_token: SecretString,
}

/// What a refill is asked to do (see the `pool_refill` function in migrations/). The stored
/// settings, once seeded, override `max_total`, `min_idle`, `openclaw_git_ref` and `image`
/// (`pool_refill_current`).
pub(crate) struct RefillAsk<'a> {
    pub max_total: i64,
    /// Top up to this many warm instances, at most `batch` at once...
    pub min_idle: i64,
    pub batch: i64,
    /// ...or start exactly this many (an operator's `{"count": N}`).
    pub count: Option<i64>,
    pub provider: &'a str,
    pub openclaw_git_ref: &'a str,
    pub reason: &'a str,
    /// What follows the ref (and the image) in each new row's version (engine/rollout.rs).
    pub build: &'a str,
    /// The environment's runtime image, until the stored `runtimeImage` setting overrides it;
    /// `None` where the provider runs no image.
    pub image: Option<&'a str>,
    /// Who asked: named on each new row's first history line.
    pub actor: &'a crate::lifecycle::Actor,
}

impl RefillAsk<'_> {
    /// The most instances this refill can start, so the caller makes no more candidates. The
    /// stored settings (which the statement reads) may differ from this process's seed, so a
    /// top-up offers a whole batch and the statement takes what min idle and max total allow.
    pub fn most(&self) -> usize {
        self.count.unwrap_or(self.batch).max(0) as usize
    }
}

impl Store {
    /// Adds as many of `candidates` as the ask wants, within `max_total`, unless the breaker is
    /// open, in one round trip. The function locks the pool-state row for the decision, so two
    /// refills never both fill the same gap; a top-up that finds `min_idle` warm instances
    /// without the lock answers at once, writing nothing.
    pub(crate) async fn refill(
        &self,
        ask: &RefillAsk<'_>,
        candidates: &[NewInstance],
    ) -> Result<Refill, StoreError> {
        let ids: Vec<&str> = candidates.iter().map(|c| c.id.as_str()).collect();
        let names: Vec<&str> = candidates.iter().map(|c| c.sprite_name.as_str()).collect();
        let tokens: Vec<&str> = candidates.iter().map(|c| c.gateway_token.expose_secret()).collect();
        let row = sqlx::query!(
            r#"SELECT warm AS "warm!", total AS "total?", breaker_open AS "breaker_open!",
                      created AS "created!"
               FROM pool_refill_current($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"#,
            ask.max_total,
            ask.min_idle,
            ask.batch,
            ask.count,
            &ids as &[&str],
            &names as &[&str],
            &tokens as &[&str],
            ask.provider,
            ask.openclaw_git_ref,
            ask.reason,
            ask.build,
            ask.image,
            ask.actor.to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Refill { warm: row.warm, total: row.total, breaker_open: row.breaker_open, created: row.created })
    }
}
