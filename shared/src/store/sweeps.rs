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

    /// Gives up every lease whose owner starts with `process` (a stopping process's own): the
    /// steps it held are due again at once and its sweeps free, so the next process does not
    /// wait out their expiry. The fences keep a step still finishing from writing after this.
    /// Returns how many instance leases were released.
    pub async fn release_leases_of(&self, process: &str) -> Result<u64, StoreError> {
        // Owners are `<process>:<n>` and a process name is `p<pid>-<letters and digits>`, so
        // the pattern has no wildcard but its own.
        let pattern = format!("{process}:%");
        let released = sqlx::query!(
            "UPDATE instances SET lease_owner = NULL, lease_expires_at = NULL,
                    next_run_at = CASE WHEN step IS NULL THEN next_run_at ELSE now() END
             WHERE lease_owner LIKE $1",
            pattern,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query!("UPDATE sweep_leases SET owner = NULL, expires_at = NULL WHERE owner LIKE $1", pattern)
            .execute(&self.pool)
            .await?;
        Ok(released)
    }
}
