//! One sweep of a kind at a time, across every process and Lambda.

use std::time::Duration;

use super::{Store, StoreError, secs};

/// The store's half of a sweep lease: which sweep, held by whom.
#[derive(Debug)]
pub struct SweepFence {
    kind: &'static str,
    owner: String,
}

impl SweepFence {
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl Store {
    /// The sweep lease of `kind` for `owner`, unless another holds a live one.
    pub async fn take_sweep(
        &self,
        kind: &'static str,
        owner: String,
        ttl: Duration,
    ) -> Result<Option<SweepFence>, StoreError> {
        let fence = SweepFence { kind, owner };
        Ok(self.renew_sweep(&fence, ttl).await?.then_some(fence))
    }

    /// `false`: another process took the lease over.
    pub(crate) async fn renew_sweep(&self, fence: &SweepFence, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE sweep_leases SET owner = $2, expires_at = now() + make_interval(secs => $3)
             WHERE kind = $1 AND (expires_at IS NULL OR expires_at < now() OR owner = $2)",
            fence.kind,
            fence.owner,
            secs(ttl),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the lease and keeps what the sweep did, for the status page.
    pub(crate) async fn finish_sweep(
        &self,
        fence: SweepFence,
        report: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE sweep_leases SET owner = NULL, expires_at = NULL, last_run_at = now(), last_report = $3
             WHERE kind = $1 AND owner = $2",
            fence.kind,
            fence.owner,
            report,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
