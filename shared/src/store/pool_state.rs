//! Pool-wide state: the provisioning circuit breaker, persisted so that every Lambda sees it.

use std::time::Duration;

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
    ) -> Result<Breaker, StoreError> {
        let row = sqlx::query_as!(
            Breaker,
            r#"UPDATE pool_state SET
                  consecutive_failures = consecutive_failures + 1,
                  breaker_open_until = CASE WHEN consecutive_failures + 1 >= $2
                                            THEN now() + make_interval(secs => $3)
                                            ELSE breaker_open_until END,
                  last_failure = $1, updated_at = now()
               WHERE id
               RETURNING consecutive_failures, breaker_open_until AS open_until, last_failure"#,
            reason,
            threshold,
            secs(pause),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// An instance reached idle: creation works, the breaker closes.
    pub(crate) async fn breaker_success(&self) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE pool_state SET consecutive_failures = 0, breaker_open_until = NULL, updated_at = now()
             WHERE id AND (consecutive_failures <> 0 OR breaker_open_until IS NOT NULL)"
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What one replenish pass found and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Refill {
    /// Idle, provisioning and recycling instances: those that are or will soon be claimable.
    pub warm: i64,
    pub total: i64,
    pub breaker_open: bool,
    pub created: Vec<String>,
}

impl Store {
    /// Adds as many instances as `wanted(warm, total)` says, within `max_total`, unless the
    /// breaker is open. The pool-state row is locked for the decision, so two replenishers
    /// never both fill the same gap.
    pub(crate) async fn refill(
        &self,
        max_total: i64,
        wanted: impl FnOnce(i64, i64) -> i64,
        mut make: impl FnMut() -> super::NewInstance,
    ) -> Result<Refill, StoreError> {
        let mut tx = self.pool.begin().await?;
        let open = sqlx::query_scalar!(
            r#"SELECT (breaker_open_until IS NOT NULL AND breaker_open_until > now()) AS "open!"
               FROM pool_state WHERE id FOR UPDATE"#
        )
        .fetch_one(&mut *tx)
        .await?;
        let counts = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE status IN ('idle', 'provisioning', 'recycling')) AS "warm!",
                      count(*) AS "total!"
               FROM instances"#
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut refill =
            Refill { warm: counts.warm, total: counts.total, breaker_open: open, created: Vec::new() };
        if !open {
            let count = wanted(counts.warm, counts.total).min(max_total - counts.total).max(0);
            for _ in 0..count {
                let new = make();
                Store::insert_instance(&mut tx, &new, "replenish").await?;
                refill.created.push(new.id);
            }
        }
        tx.commit().await?;
        Ok(refill)
    }
}
