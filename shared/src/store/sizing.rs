//! What adaptive sizing reads and keeps (issue 15.2; migrations/20261201110000): the claims of
//! the recent past grouped by age, the latest provisioning lead times from the history, and the
//! decided target in its one row, which the refill statement reads in adaptive mode.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Store, StoreError, secs};
use crate::sizing::{Arrivals, Decision, Estimate};

/// The stored decision and the figures behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizingRow {
    pub target: u32,
    /// How long ago demand last asked for at least `target`.
    #[serde(skip)]
    pub held_for: Duration,
    #[serde(with = "time::serde::rfc3339")]
    pub held_since: OffsetDateTime,
    pub claims_per_second: f64,
    pub lead_seconds: f64,
    pub lead_measured: bool,
    pub wanted: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub computed_at: OffsetDateTime,
}

impl Store {
    /// Every claim of the last `horizon`, refused ones included, counted per `bucket` of age;
    /// each group's age is its middle. A busy hour is a few dozen rows, not thousands.
    pub async fn claim_arrivals(
        &self,
        horizon: Duration,
        bucket: Duration,
    ) -> Result<Vec<Arrivals>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT (floor(extract(epoch FROM now() - created_at)::float8 / $2) + 0.5) * $2 AS "age!",
                      count(*) AS "count!"
               FROM claims WHERE created_at > now() - make_interval(secs => $1)
               GROUP BY 1"#,
            secs(horizon),
            secs(bucket),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| Arrivals { age_secs: r.age, count: r.count }).collect())
    }

    /// Seconds from created to first idle of the latest `limit` instances that got there.
    pub async fn lead_times(&self, limit: i64) -> Result<Vec<f64>, StoreError> {
        let leads = sqlx::query_scalar!(
            r#"SELECT extract(epoch FROM ready.at - born.at)::float8 AS "secs!"
               FROM instance_events born
               CROSS JOIN LATERAL (
                   SELECT e.at FROM instance_events e
                   WHERE e.instance_id = born.instance_id AND e.id > born.id AND e.to_status = 'idle'
                   ORDER BY e.id LIMIT 1
               ) ready
               WHERE born.from_status IS NULL
               ORDER BY born.id DESC
               LIMIT $1"#,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(leads)
    }

    /// The stored decision; `None` before the first tick measured.
    pub async fn sizing(&self) -> Result<Option<SizingRow>, StoreError> {
        let row = sqlx::query!(
            r#"SELECT target, held_since, extract(epoch FROM now() - held_since)::float8 AS "held_for!",
                      claims_per_second, lead_seconds, lead_measured, wanted, computed_at
               FROM pool_sizing WHERE id"#
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| SizingRow {
            target: u32::try_from(r.target).unwrap_or(0),
            held_for: Duration::try_from_secs_f64(r.held_for.max(0.0)).unwrap_or_default(),
            held_since: r.held_since,
            claims_per_second: r.claims_per_second,
            lead_seconds: r.lead_seconds,
            lead_measured: r.lead_measured,
            wanted: r.wanted,
            computed_at: r.computed_at,
        }))
    }

    /// Stores the tick's decision; the hold restarts when the decision says so.
    pub(crate) async fn store_sizing(
        &self,
        decision: Decision,
        estimate: &Estimate,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            r#"INSERT INTO pool_sizing
                   (id, target, held_since, claims_per_second, lead_seconds, lead_measured, wanted, computed_at)
               VALUES (true, $1, now(), $3, $4, $5, $6, now())
               ON CONFLICT (id) DO UPDATE SET
                   target = EXCLUDED.target,
                   held_since = CASE WHEN $2 THEN now() ELSE pool_sizing.held_since END,
                   claims_per_second = EXCLUDED.claims_per_second,
                   lead_seconds = EXCLUDED.lead_seconds,
                   lead_measured = EXCLUDED.lead_measured,
                   wanted = EXCLUDED.wanted,
                   computed_at = now()"#,
            i32::try_from(decision.target).unwrap_or(i32::MAX),
            decision.hold_from_now,
            estimate.rate,
            estimate.lead_secs,
            estimate.lead_measured,
            estimate.wanted,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
