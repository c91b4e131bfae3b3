//! Demand-adaptive sizing (issue 15.2), the tick's part: measure (claims per second, refused
//! ones included, and the provisioning lead time from the history), decide with the pure
//! estimator (sizing/estimate.rs), store the decision (which the refill statement reads in
//! adaptive mode instead of min idle) and, in adaptive mode, shed the idle surplus.
//!
//! Scaling down destroys surplus idle instances rather than letting them drain: a pool sized
//! for a lunchtime burst would otherwise sit on those instances until enough claims came to use
//! them, which on a quiet evening is all night, and idle instance-hours are what adaptive mode
//! is for. It waits for the cooldown (the target holds for that long after demand last asked
//! for it, then falls a step per cooldown), takes only `idle` instances, oldest first, each
//! through the same fenced move as a drain, so a claim that takes one first wins, and a
//! claimed instance is never touched.
//!
//! The figures are measured in fixed mode too: the status then shows what adaptive mode would
//! ask for, which is what an operator wants to know before switching.

use super::destroying::to_destroying;
use super::{Engine, EngineError};
use crate::lifecycle::{Actor, Reason};
use crate::settings::PoolSettings;
use crate::sizing::{Held, Mode, estimate};
use crate::store::{SizingRow, Status};

const SCALE_DOWN_DETAIL: &str = "idle beyond the adaptive target after its cooldown";

/// What one tick's sizing pass decided and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizingReport {
    /// The adaptive target decided this pass.
    pub target: u32,
    /// Warm instances the refill keeps: the target in adaptive mode, min idle in fixed mode.
    pub in_force: u32,
    /// Surplus idle instances sent to destroying (adaptive mode, after the cooldown).
    pub shed: Vec<String>,
}

/// Sizing for the status route and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizingStatus {
    pub mode: Mode,
    pub floor: u32,
    pub ceiling: u32,
    /// What the refill keeps warm now: the target (adaptive) or min idle (fixed).
    pub in_force: u32,
    /// The tick's latest measurement; `None` before its first pass.
    pub adaptive: Option<AdaptiveFigures>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdaptiveFigures {
    /// Claims per hour, refused ones included: the higher of the fast and the slow EWMA.
    pub claim_rate_per_hour: f64,
    /// Seconds from created to idle, the median of the latest provisionings (or the assumed
    /// one while none was measured: `leadMeasured` false).
    pub lead_time_seconds: f64,
    pub lead_measured: bool,
    /// Warm instances the claims of one lead time (rate x lead time, Poisson) outnumber only
    /// with the stockout chance (0.1%), before the bounds.
    pub wanted: f64,
    /// The target decided: `wanted` clamped, held for the cooldown, then falling in steps.
    pub target: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub held_since: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub computed_at: time::OffsetDateTime,
}

impl From<&SizingRow> for AdaptiveFigures {
    fn from(row: &SizingRow) -> Self {
        AdaptiveFigures {
            claim_rate_per_hour: row.claims_per_second * 3600.0,
            lead_time_seconds: row.lead_seconds,
            lead_measured: row.lead_measured,
            wanted: row.wanted,
            target: row.target,
            held_since: row.held_since,
            computed_at: row.computed_at,
        }
    }
}

impl Engine {
    /// The tick's pass: measure, decide, store; in adaptive mode, shed the idle surplus.
    pub(super) async fn size_pool(&self, settings: &PoolSettings) -> Result<SizingReport, EngineError> {
        let tuning = &self.settings.sizing;
        let bounds = settings.sizing.bounds(settings.max_total);
        let arrivals = self.store.claim_arrivals(tuning.horizon(), tuning.bucket()).await?;
        let leads = self.store.lead_times(tuning.lead_samples).await?;
        let estimate = estimate::estimate(&arrivals, &leads, tuning, bounds);
        let previous =
            self.store.sizing().await?.map(|row| Held { target: row.target, held_for: row.held_for });
        let decision = estimate::decide(previous, estimate.proposed, bounds, tuning);
        self.store.store_sizing(decision, &estimate).await?;
        let mut report =
            SizingReport { target: decision.target, in_force: settings.min_idle, shed: Vec::new() };
        if settings.sizing.mode == Mode::Adaptive {
            report.in_force = decision.target;
            report.shed = self.shed_surplus(decision.target).await?;
        }
        if previous.is_none_or(|p| p.target != decision.target) || !report.shed.is_empty() {
            tracing::info!(
                mode = ?settings.sizing.mode,
                target = decision.target,
                claims_per_hour = estimate.rate * 3600.0,
                fast_claims_per_hour = estimate.fast_rate * 3600.0,
                slow_claims_per_hour = estimate.slow_rate * 3600.0,
                lead_secs = estimate.lead_secs,
                expected_per_lead = estimate.expected,
                shed = report.shed.len(),
                "adaptive sizing"
            );
        }
        Ok(report)
    }

    /// Destroys idle instances beyond `target` warm ones (idle, provisioning, recycling),
    /// oldest first; instances on their way to idle are counted but left to finish.
    async fn shed_surplus(&self, target: u32) -> Result<Vec<String>, EngineError> {
        let counts = self.store.counts().await?;
        let count = |status: Status| counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        let warm = count(Status::Idle) + count(Status::Provisioning) + count(Status::Recycling);
        let surplus = (warm - i64::from(target)).min(count(Status::Idle));
        let mut shed = Vec::new();
        if surplus <= 0 {
            return Ok(shed);
        }
        for id in self.store.idle_ids(Some(surplus)).await? {
            let lease = self.leases.at_rest(&id, Status::Idle, &Actor::TICK);
            if lease.advance(to_destroying(Reason::ScaleDown, Some(SCALE_DOWN_DETAIL))).await? {
                shed.push(id);
            }
        }
        Ok(shed)
    }

    /// Mode, bounds, what is in force and the latest measurement.
    pub async fn sizing_status(&self, settings: &PoolSettings) -> Result<SizingStatus, EngineError> {
        let bounds = settings.sizing.bounds(settings.max_total);
        let row = self.store.sizing().await?;
        let in_force = match settings.sizing.mode {
            Mode::Fixed => settings.min_idle,
            // As the refill statement reads it: the floor until the tick decided.
            Mode::Adaptive => bounds.clamp(row.as_ref().map_or(bounds.floor, |r| r.target)),
        };
        Ok(SizingStatus {
            mode: settings.sizing.mode,
            floor: bounds.floor,
            ceiling: bounds.ceiling,
            in_force,
            adaptive: row.as_ref().map(AdaptiveFigures::from),
        })
    }
}
