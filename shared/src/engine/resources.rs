//! Per-instance resources (convos-contracts §4): an OpenRouter key and an AgentMail inbox, each
//! named after the instance's machine (`convos-agent-<env>-<pool id>-<id>`, naming.rs), so
//! whatever a lost answer or a dead process left behind can be found again by name.

use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;

use super::lease::Lease;
use super::naming::PoolNames;
use super::outcome::Outcome;
use super::{Engine, EngineError, Unrecognised};
use crate::provider::ProviderError;
use crate::resources::{AgentMailClient, OpenRouterClient, ResourceError};
use crate::store::{Instance, Record};

/// Which resources this pool gives its instances; each is off unless configured.
#[derive(Clone, Default)]
pub struct Resources {
    pub openrouter: Option<OpenRouterClient>,
    pub agentmail: Option<AgentMailClient>,
}

impl Resources {
    pub fn any(&self) -> bool {
        self.openrouter.is_some() || self.agentmail.is_some()
    }
}

/// What reconcile deleted because no row owns it any more, and what it left alone because
/// another pool (or this one before pool ids) named it.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSweep {
    pub keys_deleted: Vec<String>,
    pub inboxes_deleted: Vec<String>,
    pub keys_unrecognised: Unrecognised,
    pub inboxes_unrecognised: Unrecognised,
}

fn failed(what: &str, err: ResourceError) -> ProviderError {
    let message = format!("{what}: {}", err.message);
    if err.transient { ProviderError::transient(message) } else { ProviderError::permanent(message) }
}

impl Engine {
    /// The resources step: creates what the instance lacks and records it on the row. Safe to
    /// repeat: a recorded resource is kept. Each create is announced on the row first, so a
    /// rerun that finds a request but no handle knows the earlier answer may have been lost:
    /// only then is a key looked up by name (and any found deleted, their secrets unknown).
    /// A first create is one call, however many keys the account holds (issue 19.7).
    pub(super) async fn ensure_resources(
        &self,
        instance: &Instance,
        lease: &Lease<'_>,
    ) -> Result<(), EngineStepError> {
        let name = instance.sprite_name.as_str();
        if let Some(openrouter) = &self.resources.openrouter
            && instance.openrouter_key_hash.is_none()
        {
            if instance.openrouter_key_requested_at.is_some() {
                for stale in
                    openrouter.find_keys(name).await.map_err(|e| failed("openrouter key lookup", e))?
                {
                    openrouter
                        .delete_key(&stale.hash)
                        .await
                        .map_err(|e| failed("openrouter key delete", e))?;
                }
            } else if !lease.record(Record::KeyRequested).await? {
                return Err(EngineStepError::LeaseLost);
            }
            let created = openrouter.create_key(name).await.map_err(|e| failed("openrouter key", e))?;
            if !lease.record(Record::Key { hash: &created.hash, key: &created.key }).await? {
                // Someone else holds the instance now; the request on the row makes them look.
                return Err(EngineStepError::LeaseLost);
            }
        }
        if let Some(agentmail) = &self.resources.agentmail
            && instance.agentmail_inbox_id.is_none()
        {
            // The client id makes a repeated create return the inbox made the first time.
            let client_id = match &instance.agentmail_client_id {
                Some(recorded) => recorded.clone(),
                None => {
                    let client_id = inbox_client_id(name, instance.status);
                    if !lease.record(Record::InboxRequested { client_id: &client_id }).await? {
                        return Err(EngineStepError::LeaseLost);
                    }
                    client_id
                }
            };
            let inbox = agentmail
                .create_inbox(&client_id, &client_id)
                .await
                .map_err(|e| failed("agentmail inbox", e))?;
            if !lease.record(Record::Inbox { inbox_id: &inbox.inbox_id }).await? {
                return Err(EngineStepError::LeaseLost);
            }
        }
        Ok(())
    }

    /// The rotate_resources step of a recycle (issue 14.3): deletes the previous tenant's key and
    /// inbox (retired when the recycle began), then makes new ones like the resources step, so
    /// the configuration write that follows hands them to the restored instance. Safe to repeat
    /// and resumed by the tick like any step: deleting what is gone is success, and the new
    /// resources are requested on the row before they are made.
    pub(super) async fn rotate_resources(
        &self,
        instance: &Instance,
        lease: &Lease<'_>,
    ) -> Result<(), EngineStepError> {
        let retired =
            instance.retired_openrouter_key_hash.is_some() || instance.retired_agentmail_inbox_id.is_some();
        if let (Some(openrouter), Some(hash)) =
            (&self.resources.openrouter, &instance.retired_openrouter_key_hash)
        {
            openrouter.delete_key(hash).await.map_err(|e| failed("openrouter retired key delete", e))?;
        }
        if let (Some(agentmail), Some(inbox)) =
            (&self.resources.agentmail, &instance.retired_agentmail_inbox_id)
        {
            agentmail.delete_inbox(inbox).await.map_err(|e| failed("agentmail retired inbox delete", e))?;
        }
        if retired && !lease.record(Record::RetiredCleared).await? {
            return Err(EngineStepError::LeaseLost);
        }
        self.ensure_resources(instance, lease).await
    }

    /// The setting whose client is missing for a resource the instance holds, if any.
    pub(super) fn unreleasable(&self, instance: &Instance) -> Option<&'static str> {
        let holds_key = instance.openrouter_key_hash.is_some()
            || instance.openrouter_key_requested_at.is_some()
            || instance.retired_openrouter_key_hash.is_some();
        let holds_inbox = instance.agentmail_inbox_id.is_some()
            || instance.agentmail_client_id.is_some()
            || instance.retired_agentmail_inbox_id.is_some();
        if holds_key && self.resources.openrouter.is_none() {
            Some("OPENROUTER_MANAGEMENT_KEY")
        } else if holds_inbox && self.resources.agentmail.is_none() {
            Some("AGENTMAIL_API_KEY")
        } else {
            None
        }
    }

    /// Deletes the instance's resources by their recorded handles. Where a create was asked
    /// for but its handle never recorded, the resource is looked up (by name, by client id);
    /// where none was ever asked for there is nothing to find. Already gone is success.
    pub(super) async fn release_resources(&self, instance: &Instance) -> Result<(), ProviderError> {
        // Without the client the resource cannot be deleted; the destroy step waits for the
        // setting (it never gives up) rather than forget a key that keeps its spend.
        if let Some(setting) = self.unreleasable(instance) {
            return Err(ProviderError::permanent(format!(
                "{setting} is not set: the instance's resources cannot be deleted"
            )));
        }
        let name = instance.sprite_name.as_str();
        if let Some(openrouter) = &self.resources.openrouter {
            let mut hashes = match &instance.openrouter_key_hash {
                Some(hash) => vec![hash.clone()],
                None if instance.openrouter_key_requested_at.is_some() => openrouter
                    .find_keys(name)
                    .await
                    .map_err(|e| failed("openrouter key lookup", e))?
                    .into_iter()
                    .map(|k| k.hash)
                    .collect(),
                None => Vec::new(),
            };
            // A recycle that ended here before its rotation deleted the previous tenant's key.
            hashes.extend(instance.retired_openrouter_key_hash.clone());
            for hash in hashes {
                openrouter.delete_key(&hash).await.map_err(|e| failed("openrouter key delete", e))?;
            }
        }
        if let Some(agentmail) = &self.resources.agentmail {
            let mut inboxes = match (&instance.agentmail_inbox_id, &instance.agentmail_client_id) {
                (Some(inbox), _) => vec![inbox.clone()],
                (None, Some(client_id)) => agentmail
                    .list_inboxes(client_id)
                    .await
                    .map_err(|e| failed("agentmail inbox lookup", e))?
                    .into_iter()
                    .filter(|i| i.client_id.as_deref() == Some(client_id.as_str()))
                    .map(|i| i.inbox_id)
                    .collect(),
                (None, None) => Vec::new(),
            };
            inboxes.extend(instance.retired_agentmail_inbox_id.clone());
            for inbox in inboxes {
                agentmail.delete_inbox(&inbox).await.map_err(|e| failed("agentmail inbox delete", e))?;
            }
        }
        Ok(())
    }

    /// Deletes the resources this pool named that no row owns, once older than the grace
    /// period (a row is inserted before its resources are created, so a younger one may be
    /// an instance whose row this listing raced). Failures are logged and left for next time.
    /// Those of this environment another pool named are only counted.
    pub(super) async fn sweep_resources(
        &self,
        names: &PoolNames,
        owners: &HashSet<&str>,
        grace: Duration,
    ) -> ResourceSweep {
        let prefix = names.environment_prefix();
        let now = OffsetDateTime::now_utc();
        let grace = time::Duration::try_from(grace).unwrap_or_default();
        let old_enough = |created: Option<OffsetDateTime>| created.is_none_or(|t| now - t > grace);
        let mut sweep = ResourceSweep::default();
        if let Some(openrouter) = &self.resources.openrouter {
            match openrouter.list_keys(prefix).await {
                Ok(keys) => {
                    for key in keys {
                        if owners.contains(key.name.as_str()) {
                            continue;
                        }
                        if !names.is_ours(&key.name) {
                            sweep.keys_unrecognised.add(&key.name);
                            continue;
                        }
                        if !old_enough(key.created_at) {
                            continue;
                        }
                        match openrouter.delete_key(&key.hash).await {
                            Ok(()) => sweep.keys_deleted.push(key.name),
                            Err(err) => {
                                tracing::warn!(key = %key.name, error = %err.message, "orphan key delete failed")
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err.message, "could not list OpenRouter keys"),
            }
        }
        if let Some(agentmail) = &self.resources.agentmail {
            match agentmail.list_inboxes(prefix).await {
                Ok(inboxes) => {
                    for inbox in inboxes {
                        // Every inbox of ours carries its instance's name as client id, followed
                        // by `.<suffix>` for one a recycle made.
                        let Some(client_id) = inbox.client_id.as_deref() else { continue };
                        let owner = client_id.split('.').next().unwrap_or(client_id);
                        if owners.contains(owner) {
                            continue;
                        }
                        if !names.is_ours(owner) {
                            sweep.inboxes_unrecognised.add(&inbox.inbox_id);
                            continue;
                        }
                        if !old_enough(inbox.created_at) {
                            continue;
                        }
                        match agentmail.delete_inbox(&inbox.inbox_id).await {
                            Ok(()) => sweep.inboxes_deleted.push(inbox.inbox_id),
                            Err(err) => {
                                tracing::warn!(inbox = %inbox.inbox_id, error = %err.message, "orphan inbox delete failed")
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err.message, "could not list AgentMail inboxes"),
            }
        }
        sweep
    }
}

/// The client id (and username) of a new inbox: the instance's name at provisioning; with a
/// random suffix after a recycle, so the next tenant gets a new address (mail to the previous
/// one must not reach them) and the create is not answered with the retired inbox.
fn inbox_client_id(name: &str, status: crate::store::Status) -> String {
    match status {
        crate::store::Status::Recycling => format!("{name}.{}", super::random_id(8)),
        _ => name.to_string(),
    }
}

/// Why the resources step stopped short.
pub(super) enum EngineStepError {
    Provider(ProviderError),
    LeaseLost,
    Engine(EngineError),
}

impl From<ProviderError> for EngineStepError {
    fn from(err: ProviderError) -> Self {
        EngineStepError::Provider(err)
    }
}

impl From<EngineError> for EngineStepError {
    fn from(err: EngineError) -> Self {
        EngineStepError::Engine(err)
    }
}

impl EngineStepError {
    /// What the step came to; an engine error stops the run.
    pub(super) fn into_outcome(self) -> Result<Outcome, EngineError> {
        match self {
            EngineStepError::Provider(err) => Ok(Outcome::Failed(err)),
            EngineStepError::LeaseLost => Ok(Outcome::LeaseLost),
            EngineStepError::Engine(err) => Err(err),
        }
    }
}
