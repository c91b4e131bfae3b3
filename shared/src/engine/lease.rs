//! The lease handle (ARCHITECTURE §4), in the spirit of sqlxmq's `CurrentJob`: whoever works on
//! an instance holds a [`Lease`], which owns the row's id, the owner, the fence and the
//! keep-alive. Its exits are few: [`Lease::record`] a result, [`Lease::wait_until`] (the same
//! step again later), [`Lease::advance`] (a move). `advance` is the only code that changes a
//! status: it checks the move against the lifecycle table, writes the row and its history line
//! in one statement, logs it, and hands the next step to the chain. Sweeps hold a
//! [`SweepLease`] the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::EngineError;
use crate::chain::{Chain, Delivery};
use crate::lifecycle::{Actor, EventKind, Transition};
use crate::store::{
    Change, Fence, Instance, NewClaim, Record, Status, Step, Store, SweepFence, WantedVersion,
};

/// Makes leases: names owners, knows the chain and the lease timings. One per engine.
pub(crate) struct Leases {
    store: Store,
    chain: Arc<dyn Chain>,
    ttl: Duration,
    hop_limit: i32,
    /// Names this process in lease owners; each lease adds a counter so two runs in one process
    /// never share a fence.
    process: String,
    runs: AtomicU64,
}

/// The right to work on one instance, and the only way to move it.
pub(crate) struct Lease<'a> {
    leases: &'a Leases,
    fence: Fence,
    /// The hop the next delivery carries: one more than the run that holds this lease, or 0
    /// where a chain begins (claims, sweeps, operators).
    next_hop: i32,
    /// When this process took the lease: the status line says how long the step ran.
    taken: std::time::Instant,
}

impl Leases {
    pub(crate) fn new(store: Store, chain: Arc<dyn Chain>, ttl: Duration, hop_limit: i32) -> Self {
        let process = format!("p{}-{}", std::process::id(), super::random_id(6));
        Leases { store, chain, ttl, hop_limit, process, runs: AtomicU64::new(0) }
    }

    /// Releases every lease this process holds (a stop): another process takes the work over
    /// at once instead of after the lease's expiry.
    pub(crate) async fn release_all(&self) -> Result<u64, crate::store::StoreError> {
        self.store.release_leases_of(&self.process).await
    }

    fn new_owner(&self) -> String {
        format!("{}:{}", self.process, self.runs.fetch_add(1, Ordering::Relaxed))
    }

    /// The lease on the due step of `id`, run at `hop`; `None` when another worker holds it,
    /// the step is not due, or the instance is at rest.
    pub(crate) async fn take(
        &self,
        id: &str,
        hop: i32,
    ) -> Result<Option<(Lease<'_>, Instance)>, EngineError> {
        let taken = self.store.take_lease(id, self.new_owner(), self.ttl, hop, Actor::Step).await?;
        Ok(taken.map(|(fence, instance)| (self.lease(fence, hop + 1), instance)))
    }

    /// An idle instance, taken for `claim` with `step`: a current one before a stale one
    /// among equally awake ones (store/claim_take.rs). The claim is recorded by the same
    /// statement, failed when no instance was free.
    pub(crate) async fn take_for_claim(
        &self,
        claim: &NewClaim<'_>,
        step: Step,
        wanted: &WantedVersion<'_>,
        actor: &Actor,
    ) -> Result<Option<(Lease<'_>, Instance)>, EngineError> {
        let claim_move = Transition {
            from: Some(Status::Idle),
            to: Some(Status::Claiming),
            step: Some(step),
            reason: crate::lifecycle::Reason::Claim,
        };
        claim_move.check()?;
        let taken =
            self.store.take_for_claim(self.new_owner(), self.ttl, step, claim, wanted, actor.clone()).await?;
        if let Some((fence, _)) = &taken {
            let claim = claim.id;
            tracing::info!(instance = fence.id(), from = "idle", to = "claiming", %step, reason = "claim", %claim, %actor, "status");
        }
        Ok(taken.map(|(fence, instance)| (self.lease(fence, 0), instance)))
    }

    /// A row at rest (or whose lease ran out) that `actor` (a sweep, an operator) moves: its
    /// writes hold only while nobody takes a lease and the row stays in `status`.
    pub(crate) fn at_rest(&self, id: &str, status: Status, actor: &Actor) -> Lease<'_> {
        self.lease(Fence::at_rest(id.to_string(), status, actor.clone()), 0)
    }

    fn lease(&self, fence: Fence, next_hop: i32) -> Lease<'_> {
        Lease { leases: self, fence, next_hop, taken: std::time::Instant::now() }
    }

    /// Hands steps that are already due to the chain: new rows of a refill, steps the tick
    /// re-drives. A chain started here begins at hop 0.
    pub(crate) async fn hand_on(&self, ids: &[String]) {
        for id in ids {
            self.deliver(id, 0, Duration::ZERO).await;
        }
    }

    async fn deliver(&self, id: &str, hop: i32, delay: Duration) {
        if hop >= self.hop_limit {
            tracing::info!(instance = id, hop, "hop limit reached; the tick continues");
            return;
        }
        self.chain.deliver(Delivery { instance_id: id.to_string(), hop, delay }).await;
    }

    /// The sweep lease of `kind`; `None` when another process holds it.
    pub(crate) async fn sweep(&self, kind: &'static str) -> Result<Option<SweepLease<'_>>, EngineError> {
        let fence = self.store.take_sweep(kind, self.new_owner(), SWEEP_LEASE).await?;
        Ok(fence.map(|fence| SweepLease { store: &self.store, fence }))
    }
}

impl Lease<'_> {
    pub(crate) fn id(&self) -> &str {
        self.fence.id()
    }

    pub(crate) fn status(&self) -> Status {
        self.fence.status()
    }

    /// Writes a step's result on the row; `false`: the lease was lost and nothing was written.
    pub(crate) async fn record(&self, record: Record<'_>) -> Result<bool, EngineError> {
        Ok(self.leases.store.record(&self.fence, record).await?)
    }

    /// Renews the lease while a step runs, so the lease can be short (a dead worker's steps
    /// are picked up soon) and a long step is still never run twice at once. Once renewal
    /// fails the lease is someone else's: the step finishes, its fenced writes are dropped.
    pub(crate) async fn keep_alive(&self) -> std::convert::Infallible {
        let ttl = self.leases.ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self.leases.store.extend_lease(&self.fence, ttl).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => tracing::warn!(instance = self.id(), error = %err, "lease renewal failed"),
            }
        }
        std::future::pending().await
    }

    /// A history line that moves nothing (a resource rotation), naming this lease's actor.
    pub(crate) async fn note(
        &self,
        kind: EventKind,
        why: &str,
        detail: Option<&str>,
    ) -> Result<(), EngineError> {
        let at = (self.id(), self.status());
        Ok(self.leases.store.note(at, self.fence.actor(), (kind, why), detail).await?)
    }

    /// Not finished: the lease released, the same step run again after `delay`.
    pub(crate) async fn wait_until(self, delay: Duration) -> Result<bool, EngineError> {
        let released = self.leases.store.release_until(&self.fence, delay).await?;
        if released {
            self.leases.deliver(self.id(), self.next_hop, delay).await;
        }
        Ok(released)
    }

    /// Makes `change` if the lifecycle allows it and the fence still holds, logs it, and hands
    /// the step it leads to (if any) to the chain. `false`: someone else moved the row first.
    pub(crate) async fn advance(self, change: Change<'_>) -> Result<bool, EngineError> {
        let transition = change.transition(self.status()).check()?;
        if !self.leases.store.apply(&self.fence, &change).await? {
            return Ok(false);
        }
        let Transition { from, to, step, reason } = transition;
        let (from, to) = (from.map_or("new", Status::as_str), to.map_or("destroyed", Status::as_str));
        let step_name = step.map_or("", Step::as_str);
        let ms = self.taken.elapsed().as_millis() as u64;
        let actor = self.fence.actor();
        match &change {
            Change::Retry { error, .. } => {
                tracing::info!(instance = self.id(), status = from, step = step_name, %reason, %actor, ms, error, "step retry")
            }
            _ => {
                tracing::info!(instance = self.id(), from, to, step = step_name, %reason, %actor, ms, "status")
            }
        }
        if step.is_some() {
            let delay = match change {
                Change::Move { delay, .. } | Change::Retry { delay, .. } => delay,
                _ => Duration::ZERO,
            };
            self.leases.deliver(self.id(), self.next_hop, delay).await;
        }
        Ok(true)
    }
}

/// How long a sweep lease lasts unless renewed (every third of it while the pass runs).
const SWEEP_LEASE: Duration = Duration::from_secs(30);

/// One sweep of a kind at a time, across every process: held while the pass runs.
pub(crate) struct SweepLease<'a> {
    store: &'a Store,
    fence: SweepFence,
}

impl SweepLease<'_> {
    /// Runs `pass` with the lease renewed beside it, then releases the lease with the pass's
    /// report. The lease is short, so a process killed mid-pass blocks that sweep for one lease
    /// period, not for the longest pass there could be.
    pub(crate) async fn run<T: serde::Serialize>(
        self,
        pass: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let kind = self.fence.kind();
        let renew = async {
            loop {
                tokio::time::sleep(SWEEP_LEASE / 3).await;
                match self.store.renew_sweep(&self.fence, SWEEP_LEASE).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(sweep = kind, "sweep lease lost; the pass finishes unguarded")
                    }
                    Err(err) => tracing::warn!(sweep = kind, error = %err, "sweep lease renewal failed"),
                }
            }
        };
        let result = tokio::select! {
            result = pass => result,
            never = renew => match never {},
        };
        let report = match &result {
            Ok(report) => serde_json::to_value(report).unwrap_or_default(),
            Err(err) => serde_json::json!({ "error": err.to_string() }),
        };
        self.store.finish_sweep(self.fence, report).await?;
        result
    }
}
