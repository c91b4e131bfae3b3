//! What the heartbeat reads and writes. A pass pings every live gateway first, then records
//! all the answers in one statement and all the silences in another, so 10,000 instances cost
//! two writes, not 10,000.

use super::{Secret, Status, Store, StoreError, secs};

/// What the heartbeat needs of a live instance.
#[derive(Clone)]
pub struct HeartbeatTarget {
    pub id: String,
    pub sprite_name: String,
    pub status: Status,
    pub url: Option<String>,
    pub gateway_token: Secret,
    pub failures: i32,
    pub recoveries: i32,
    /// An idle instance the pool has not touched for an idle pause: presumed asleep, so its
    /// ping allows for a wake (engine/hibernation.rs).
    pub asleep: bool,
}

/// Which idle instances a heartbeat pass looks at (issue 17.2): the hot ones every pass, the
/// others only when their rare check is due, or while a failure is being followed up.
#[derive(Debug, Clone, Copy)]
pub struct SleepPlan {
    /// How long a Sprite runs after its last request.
    pub idle_pause: std::time::Duration,
    /// How often a sleeping idle instance is checked.
    pub check_every: std::time::Duration,
}

/// The (id, status seen) pairs of a batch, as the two arrays the statements unnest. The status
/// is the fence: a row that moved on since the pass read it is left alone.
fn columns<'a>(targets: impl Iterator<Item = &'a HeartbeatTarget>) -> (Vec<String>, Vec<String>) {
    targets.map(|t| (t.id.clone(), t.status.as_str().to_owned())).unzip()
}

impl Store {
    /// Every claimed and hot idle instance, and the sleeping idle ones whose check is due
    /// (oldest check first), or that failed one and are being followed up.
    pub async fn heartbeat_targets(&self, plan: SleepPlan) -> Result<Vec<HeartbeatTarget>, StoreError> {
        let targets = sqlx::query_as!(
            HeartbeatTarget,
            r#"SELECT id, sprite_name, status AS "status: _", url, gateway_token AS "gateway_token: _",
                      heartbeat_failures AS failures, heartbeat_recoveries AS recoveries,
                      (status = 'idle' AND COALESCE(
                          GREATEST(ready_at, last_heartbeat_at) < now() - make_interval(secs => $1), true))
                          AS "asleep!"
               FROM instances
               WHERE status = 'claimed'
                  OR (status = 'idle' AND (hot OR heartbeat_failures > 0 OR heartbeat_recoveries > 0
                      OR COALESCE(GREATEST(ready_at, last_heartbeat_at) < now() - make_interval(secs => $2), true)))
               ORDER BY GREATEST(ready_at, last_heartbeat_at) NULLS FIRST, id"#,
            secs(plan.idle_pause),
            secs(plan.check_every),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(targets)
    }

    /// Pings answered: their failure counters start over. One statement for the whole batch.
    pub(crate) async fn heartbeats_answered<'a>(
        &self,
        targets: impl Iterator<Item = &'a HeartbeatTarget>,
    ) -> Result<(), StoreError> {
        let (ids, statuses) = columns(targets);
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "UPDATE instances i SET heartbeat_failures = 0, heartbeat_recoveries = 0, last_heartbeat_at = now()
             FROM UNNEST($1::text[], $2::text[]) AS seen(id, status)
             WHERE i.id = seen.id AND i.status = seen.status",
            &ids,
            &statuses,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pings that failed: each row's new failure count, for the rows still in the status the
    /// pass saw. One statement for the whole batch.
    pub(crate) async fn heartbeats_missed<'a>(
        &self,
        targets: impl Iterator<Item = &'a HeartbeatTarget>,
    ) -> Result<Vec<(String, i32)>, StoreError> {
        let (ids, statuses) = columns(targets);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query!(
            "UPDATE instances i
             SET heartbeat_failures = i.heartbeat_failures + 1, last_heartbeat_at = now()
             FROM UNNEST($1::text[], $2::text[]) AS seen(id, status)
             WHERE i.id = seen.id AND i.status = seen.status
             RETURNING i.id, i.heartbeat_failures",
            &ids,
            &statuses,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.heartbeat_failures)).collect())
    }

    /// A wake-up was attempted; returns the number of attempts so far.
    pub(crate) async fn heartbeat_recovery(
        &self,
        id: &str,
        status: Status,
    ) -> Result<Option<i32>, StoreError> {
        let count = sqlx::query_scalar!(
            "UPDATE instances SET heartbeat_failures = 0, heartbeat_recoveries = heartbeat_recoveries + 1
             WHERE id = $1 AND status = $2 RETURNING heartbeat_recoveries",
            id,
            status.as_str(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(count)
    }
}
