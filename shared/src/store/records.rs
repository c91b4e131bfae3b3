//! What a step records on its row under the lease, short of moving it: the machine it made, the
//! golden checkpoint, and the resources step's writes (engine/resources.rs). A resource create
//! is announced on the row before the remote call, so a later attempt knows whether to look for
//! a resource an earlier one may have made.

use secrecy::{ExposeSecret, SecretString};

use super::{Fence, Store, StoreError};

/// One write under a held lease.
pub(crate) enum Record<'a> {
    /// The machine `create` made.
    Machine {
        url: &'a str,
        provider_ref: Option<&'a str>,
    },
    Checkpoint(&'a str),
    /// An OpenRouter key is about to be asked for.
    KeyRequested,
    /// The key that was asked for, which also settles the request.
    Key {
        hash: &'a str,
        key: &'a SecretString,
    },
    /// An inbox is about to be created with this client id.
    InboxRequested {
        client_id: &'a str,
    },
    Inbox {
        inbox_id: &'a str,
    },
    /// The retired key and inbox are deleted.
    RetiredCleared,
}

impl Store {
    /// Writes `record` if `fence` still holds the lease; `false`: it was lost.
    pub(crate) async fn record(&self, fence: &Fence, record: Record<'_>) -> Result<bool, StoreError> {
        let (id, owner) = (fence.id(), fence.owner());
        let done = match record {
            Record::Machine { url, provider_ref } => {
                sqlx::query!(
                    "UPDATE instances SET url = $3, provider_ref = $4,
                    sprite_created_at = COALESCE(sprite_created_at, now()), updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                    url,
                    provider_ref,
                )
                .execute(&self.pool)
                .await?
            }
            Record::Checkpoint(checkpoint) => {
                sqlx::query!(
                    "UPDATE instances SET golden_checkpoint_id = $3, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                    checkpoint,
                )
                .execute(&self.pool)
                .await?
            }
            Record::KeyRequested => {
                sqlx::query!(
                    "UPDATE instances SET openrouter_key_requested_at = now(), updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                )
                .execute(&self.pool)
                .await?
            }
            Record::Key { hash, key } => {
                sqlx::query!(
                    "UPDATE instances SET openrouter_key_hash = $3, openrouter_key = $4,
                    openrouter_key_requested_at = NULL, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                    hash,
                    key.expose_secret(),
                )
                .execute(&self.pool)
                .await?
            }
            Record::InboxRequested { client_id } => {
                sqlx::query!(
                    "UPDATE instances SET agentmail_client_id = $3, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                    client_id,
                )
                .execute(&self.pool)
                .await?
            }
            Record::Inbox { inbox_id } => {
                sqlx::query!(
                    "UPDATE instances SET agentmail_inbox_id = $3, updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                    id,
                    owner,
                    inbox_id,
                )
                .execute(&self.pool)
                .await?
            }
            Record::RetiredCleared => {
                sqlx::query!(
                "UPDATE instances SET retired_openrouter_key_hash = NULL, retired_agentmail_inbox_id = NULL,
                    updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
                id,
                owner,
            )
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }
}
