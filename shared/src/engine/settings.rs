//! The settings at run time (issue 15.1): read them (seeding from this process's environment
//! the first time) and change them. The refill statement reads the stored row itself, so a
//! change reaches the next refill of every process, Lambda or local, within one tick.

use super::{Engine, EngineError};
use crate::lifecycle::Actor;
use crate::settings::{PoolSettings, SettingsInvalid};
use crate::store::{SEEDED_BY, StoredSettings};

/// The settings the environment seeds (`POOL_MIN_IDLE`, `POOL_MAX_TOTAL`, `OPENCLAW_GIT_REF`,
/// `RAILWAY_RUNTIME_IMAGE`).
const SEEDED_FIELDS: &[&str] = &["minIdle", "maxTotal", "openclawRef", "runtimeImage"];

/// Attempts at a change that keeps losing the compare-and-set to other writers.
const CHANGE_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Invalid(#[from] SettingsInvalid),
    #[error("the settings kept changing underneath; try again")]
    Contended,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// What the environment says, used until the row exists.
    pub fn seed_settings(&self) -> PoolSettings {
        PoolSettings {
            min_idle: self.settings.min_idle,
            max_total: self.settings.max_total,
            openclaw_ref: self.settings.openclaw_git_ref.clone(),
            runtime_image: self.provider.runtime_image(),
            claim_ttl_seconds: None,
            join_accept_timeout_seconds: crate::settings::DEFAULT_JOIN_ACCEPT_TIMEOUT_SECS,
            sizing: Default::default(),
            hot_idle: None,
            max_running: None,
            sleeping_check_seconds: crate::settings::DEFAULT_SLEEPING_CHECK_SECS,
        }
    }

    pub async fn pool_settings(&self) -> Result<StoredSettings, EngineError> {
        let seed = self.seed_settings();
        let stored = self.store.settings(&seed).await?;
        match (&stored.settings.runtime_image, seed.runtime_image) {
            (None, Some(image)) => self.seed_runtime_image(stored, image).await,
            _ => Ok(stored),
        }
    }

    /// A document stored before `runtimeImage` existed gets the environment's image once, as a
    /// change by the environment (an event with old and new value, like any change): from then
    /// on the environment's image only seeded it, as the ref is. Until that write lands the
    /// refill statement falls back to the environment's image too (pool_runtime_image).
    async fn seed_runtime_image(
        &self,
        stored: StoredSettings,
        image: String,
    ) -> Result<StoredSettings, EngineError> {
        let next = PoolSettings { runtime_image: Some(image), ..stored.settings.clone() };
        let changes = next.changes_from(&stored.settings);
        match self.store.change_settings(stored.revision, &next, &changes, SEEDED_BY).await? {
            Some(seeded) => {
                tracing::info!(revision = seeded.revision, "runtimeImage seeded from the environment");
                Ok(seeded)
            }
            // Someone else wrote the row meanwhile (perhaps this same seed): theirs stands, and
            // a read that still finds no image seeds it then.
            None => Ok(self.store.settings(&self.seed_settings()).await?),
        }
    }

    /// Says, one line per field, where this process's environment differs from the stored
    /// settings: after the first start the environment only seeds, so `POOL_MIN_IDLE=5` on a
    /// restart changes nothing, and the operator should hear why.
    pub async fn report_ignored_environment(&self) -> Result<(), EngineError> {
        let stored = self.pool_settings().await?;
        let changes = self.seed_settings().changes_from(&stored.settings);
        // Only these come from the environment; the others have no variable to differ from.
        let seeded = changes.iter().filter(|(field, _)| SEEDED_FIELDS.contains(&field.as_str()));
        for (field, change) in seeded {
            tracing::warn!(
                setting = %field,
                stored = %change.old,
                environment = %change.new,
                "the environment's value is not used: the stored setting is (change it with `poolctl settings` or PUT /api/pool/settings)"
            );
        }
        Ok(())
    }

    /// Applies `patch` (a JSON object of settings fields) for `actor`. A patch that changes
    /// nothing writes nothing.
    pub async fn change_pool_settings(
        &self,
        patch: &serde_json::Value,
        actor: &Actor,
    ) -> Result<StoredSettings, SettingsError> {
        if patch.get("runtimeImage").is_some() && self.provider.runtime_image().is_none() {
            let message = format!("this pool's provider ({}) runs no runtime image", self.provider.kind());
            let problems = vec![crate::settings::FieldProblem { field: "runtimeImage".into(), message }];
            return Err(SettingsInvalid { problems }.into());
        }
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.pool_settings().await?;
            let next = current.settings.patched(patch)?;
            let changes = next.changes_from(&current.settings);
            if changes.is_empty() {
                return Ok(current);
            }
            let stored = self
                .store
                .change_settings(current.revision, &next, &changes, &actor.to_string())
                .await
                .map_err(EngineError::from)?;
            if let Some(stored) = stored {
                let changes = serde_json::to_string(&changes).unwrap_or_default();
                tracing::info!(%actor, revision = stored.revision, %changes, "settings changed");
                return Ok(stored);
            }
        }
        Err(SettingsError::Contended)
    }
}
