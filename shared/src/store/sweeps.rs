//! One sweep of a kind at a time, across every process and Lambda.

use std::time::Duration;

use super::{Store, StoreError, secs};

impl Store {
    /// `true` when this owner now holds the sweep lease for `kind`.
    pub async fn take_sweep(&self, kind: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE sweep_leases SET owner = $2, expires_at = now() + make_interval(secs => $3)
             WHERE kind = $1 AND (expires_at IS NULL OR expires_at < now() OR owner = $2)",
            kind,
            owner,
            secs(ttl),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the lease and keeps what the sweep did, for the status page.
    pub async fn finish_sweep(
        &self,
        kind: &str,
        owner: &str,
        report: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE sweep_leases SET owner = NULL, expires_at = NULL, last_run_at = now(), last_report = $3
             WHERE kind = $1 AND owner = $2",
            kind,
            owner,
            report,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
