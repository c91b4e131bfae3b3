//! The names this pool gives what it creates (issue 14.1): `convos-agent-<env>-<pool id>-<id>`
//! for the machine (Sprite or Railway service), its OpenRouter key and its inbox's client id.
//! The environment prefix keeps environments apart; the pool id keeps apart two pools of one
//! environment on one account (a second stack left at `dev`, a laptop pointed at the real API),
//! so that neither ever deletes the other's agents. A name with the environment prefix but not
//! this pool's id is another pool's, or this pool's from before pool ids (those rows keep their
//! names): the sweeps and a drain leave it alone and report it.

use super::{Engine, EngineError};
use crate::config::PoolEnvironment;

/// The prefixes of this pool's names.
#[derive(Debug, Clone)]
pub(super) struct PoolNames {
    pool_id: String,
    environment: String,
    own: String,
}

impl PoolNames {
    pub(super) fn new(environment: PoolEnvironment, pool_id: &str) -> PoolNames {
        let environment = environment.sprite_prefix();
        PoolNames { pool_id: pool_id.to_string(), own: format!("{environment}{pool_id}-"), environment }
    }

    pub(super) fn pool_id(&self) -> &str {
        &self.pool_id
    }

    /// What every listing asks for: all of this environment, so that rows named before pool
    /// ids are still found, and names not ours can be reported.
    pub(super) fn environment_prefix(&self) -> &str {
        &self.environment
    }

    /// The name of a new instance's machine, key and inbox.
    pub(super) fn instance(&self, id: &str) -> String {
        format!("{}{id}", self.own)
    }

    /// Whether this pool made the thing of this name, and so may delete it when no row owns it.
    pub(super) fn is_ours(&self, name: &str) -> bool {
        name.starts_with(&self.own)
    }
}

/// Names of this environment that this pool did not make and so never deletes: how many, and
/// the first few (another pool's whole fleet would otherwise fill every report).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unrecognised {
    pub count: usize,
    pub names: Vec<String>,
}

impl Unrecognised {
    const SHOWN: usize = 20;

    pub(super) fn add(&mut self, name: &str) {
        self.count += 1;
        if self.names.len() < Self::SHOWN {
            self.names.push(name.to_string());
        }
    }
}

impl Engine {
    /// This pool's names, from the pool id read once per process.
    pub(super) async fn names(&self) -> Result<&PoolNames, EngineError> {
        let names = self
            .names
            .get_or_try_init(|| async {
                let pool_id = self.store.pool_id().await?;
                Ok::<_, EngineError>(PoolNames::new(self.settings.environment, &pool_id))
            })
            .await?;
        Ok(names)
    }

    /// The pool id, for the status route and the dashboard.
    pub async fn pool_id(&self) -> Result<&str, EngineError> {
        Ok(self.names().await?.pool_id())
    }

    /// What every name this pool gives starts with (the soak tells its pools apart by it).
    pub async fn own_prefix(&self) -> Result<&str, EngineError> {
        Ok(&self.names().await?.own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_this_pools_id_are_ours() {
        let names = PoolNames::new(PoolEnvironment::Dev, "ab12cd");
        let mine = names.instance("x1y2z3");
        assert_eq!(mine, "convos-agent-dev-ab12cd-x1y2z3");
        assert!(names.is_ours(&mine));
        assert!(names.is_ours(&format!("{mine}.inbox1")), "a recycled inbox's client id");
        assert!(!names.is_ours("convos-agent-dev-zz99zz-x1y2z3"), "another pool's");
        assert!(!names.is_ours("convos-agent-dev-ab12cdx1y2z3"), "named before pool ids");
        assert!(!names.is_ours("convos-agent-dev-ab12c-d"), "a shorter pool id is not ours");
        assert!(!names.is_ours("convos-agent-staging-ab12cd-x1y2z3"), "another environment's");
        let longest = PoolNames::new(PoolEnvironment::Production, "ab12cd").instance(&"a".repeat(12));
        assert!(longest.len() <= 43, "within a Sprite name and a DNS label: {longest}");
    }
}
