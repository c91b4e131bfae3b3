//! What the heartbeat reads and writes. A pass pings every live gateway first, then records
//! all the answers in one statement and all the silences in another, so 10,000 instances cost
//! two writes, not 10,000.

use super::{Secret, Status, Store, StoreError};

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
}

/// The (id, status seen) pairs of a batch, as the two arrays the statements unnest. The status
/// is the fence: a row that moved on since the pass read it is left alone.
fn columns<'a>(targets: impl Iterator<Item = &'a HeartbeatTarget>) -> (Vec<String>, Vec<String>) {
    targets.map(|t| (t.id.clone(), t.status.as_str().to_owned())).unzip()
}

impl Store {
    pub async fn heartbeat_targets(&self) -> Result<Vec<HeartbeatTarget>, StoreError> {
        let targets = sqlx::query_as!(
            HeartbeatTarget,
            r#"SELECT id, sprite_name, status AS "status: _", url, gateway_token AS "gateway_token: _",
                      heartbeat_failures AS failures, heartbeat_recoveries AS recoveries
               FROM instances WHERE status IN ('idle', 'claimed') ORDER BY id"#
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
