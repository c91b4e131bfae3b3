//! Version rollout (issue 15.3). Each instance records the version it was built from: the
//! OpenClaw ref, the runtime image on Railway (the `runtimeImage` setting), then what this
//! deploy builds with (the provider's build identity: the setup script's digest on Sprites)
//! and the config format. When the desired version (the stored ref and image + this build)
//! changes, the tick replaces stale idle instances in a rolling way: replacements are started
//! first (within max total, through the refill statement), and a stale idle instance is
//! destroyed only against a current idle one and only while idle stays at or above min idle.
//! A claim takes a current idle instance before a stale one (store/claim_take.rs), and a stale
//! instance given back is rebuilt rather than restored (recycling.rs).
//!
//! Nothing here is remembered between ticks: each pass reads the rows, so a crash mid-rollout
//! (or a second process taking over the tick) simply carries on from what the rows show.

use super::destroying::to_destroying;
use super::{Engine, EngineError};
use crate::lifecycle::{Actor, Reason};
use crate::settings::PoolSettings;
use crate::store::{Status, VersionCounts, WantedVersion};

/// The format of the configuration this build writes into an instance. Raise it when a change
/// to what `configure` writes must reach every instance.
pub const CONFIG_FORMAT: u32 = 1;

const ROLLOUT_DETAIL: &str = "built from an older version: replaced by a current one";
pub(super) const REBUILD_DETAIL: &str = "built from an older version: rebuilt, not restored";

/// What one tick's rollout pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReport {
    pub desired: String,
    /// Replacements asked for this pass (the refill statement may start fewer at max total).
    pub started: Vec<String>,
    /// Stale idle instances sent to destroying this pass.
    pub destroyed: Vec<String>,
}

/// Rollout progress for the status route and the dashboard ("7 of 10 current").
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub desired: String,
    /// Instances (not being destroyed) built from `desired`.
    pub current: i64,
    pub total: i64,
    pub stale: i64,
    /// Stale instances sitting idle: what the tick still has to replace. Stale claimed ones
    /// are rebuilt as their tenants release them.
    pub stale_idle: i64,
}

impl Engine {
    /// What follows the ref in the version of an instance this process builds.
    pub(super) fn build_suffix(&self) -> String {
        match self.provider.build_identity() {
            identity if identity.is_empty() => format!("+config:{CONFIG_FORMAT}"),
            identity => format!("+{identity}+config:{CONFIG_FORMAT}"),
        }
    }

    /// The version an instance built now would record: the stored ref and this build.
    pub async fn desired_version(&self) -> Result<String, EngineError> {
        Ok(self.version_for(&self.pool_settings().await?.settings))
    }

    /// The refill statement labels new rows the same way (`pool_version` in migrations/).
    fn version_for(&self, settings: &PoolSettings) -> String {
        let image = self.image_for(settings).map(|image| format!("+image:{image}")).unwrap_or_default();
        format!("{}{image}{}", settings.openclaw_ref, self.build_suffix())
    }

    /// The runtime image an instance built now gets: the stored setting, else (before it is
    /// seeded) the environment's; `None` where the provider runs no image.
    fn image_for(&self, settings: &PoolSettings) -> Option<String> {
        let environment = self.provider.runtime_image()?;
        Some(settings.runtime_image.clone().unwrap_or(environment))
    }

    /// What a claim's take statement needs, with the stored settings it reads itself, to
    /// prefer instances of the desired version (store/claim_take.rs): owned, borrow with
    /// [`Build::wanted`].
    pub(super) fn build(&self) -> Build {
        Build { suffix: self.build_suffix(), image: self.provider.runtime_image() }
    }

    /// Whether instance `id` was built from a version other than the desired one.
    pub(super) async fn is_stale(&self, id: &str) -> Result<bool, EngineError> {
        let desired = self.desired_version().await?;
        Ok(self.store.build_version(id).await?.is_some_and(|version| version != desired))
    }

    pub async fn rollout_status(&self) -> Result<RolloutStatus, EngineError> {
        let desired = self.desired_version().await?;
        let counts = self.store.version_counts(&desired).await?;
        Ok(RolloutStatus {
            stale: counts.stale(),
            stale_idle: counts.stale_idle(),
            current: counts.current,
            total: counts.total,
            desired,
        })
    }

    /// One rollout pass, from the tick: destroys the stale idle instances that current idle
    /// ones already replace, then starts replacements for the rest.
    pub(super) async fn roll_out(&self, settings: &PoolSettings) -> Result<RolloutReport, EngineError> {
        let min_idle = i64::from(settings.min_idle);
        let desired = self.version_for(settings);
        let counts = self.store.version_counts(&desired).await?;
        let mut report = RolloutReport { desired, ..Default::default() };
        if counts.stale_idle() == 0 {
            return Ok(report);
        }
        for id in self.store.stale_idle_ids(&report.desired, replaceable(&counts, min_idle)).await? {
            let lease = self.leases.at_rest(&id, Status::Idle, &Actor::TICK);
            if lease.advance(to_destroying(Reason::Rollout, Some(ROLLOUT_DETAIL))).await? {
                report.destroyed.push(id);
            }
        }
        let stale_left = counts.stale_idle() - report.destroyed.len() as i64;
        let wanted = stale_left - counts.current_provisioning;
        if wanted > 0 {
            let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
            report.started = self.refill(Some(wanted), &Actor::TICK).await?.created;
        }
        if !report.destroyed.is_empty() || !report.started.is_empty() {
            tracing::info!(
                desired = %report.desired,
                destroyed = report.destroyed.len(),
                started = report.started.len(),
                stale = counts.stale(),
                "rollout"
            );
        }
        Ok(report)
    }
}

/// This process's part of the desired version.
pub(super) struct Build {
    suffix: String,
    image: Option<String>,
}

impl Build {
    pub(super) fn wanted(&self) -> WantedVersion<'_> {
        WantedVersion { build: &self.suffix, image: self.image.as_deref() }
    }
}

/// How many stale idle instances may go now: each against a current idle one, and never
/// taking idle below min idle.
fn replaceable(counts: &VersionCounts, min_idle: i64) -> i64 {
    counts.stale_idle().min(counts.current_idle).min(counts.idle - min_idle).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(idle: i64, current_idle: i64) -> VersionCounts {
        VersionCounts { total: idle, current: current_idle, idle, current_idle, current_provisioning: 0 }
    }

    #[test]
    fn a_stale_idle_instance_goes_only_against_a_current_one_and_above_min_idle() {
        assert_eq!(replaceable(&counts(3, 0), 0), 0, "no current idle instance yet");
        assert_eq!(replaceable(&counts(4, 1), 3), 1);
        assert_eq!(replaceable(&counts(6, 3), 3), 3);
        assert_eq!(replaceable(&counts(5, 3), 3), 2, "idle must stay at min idle");
        assert_eq!(replaceable(&counts(3, 3), 3), 0, "nothing stale");
        assert_eq!(replaceable(&counts(2, 1), 3), 0, "already below min idle");
    }
}
