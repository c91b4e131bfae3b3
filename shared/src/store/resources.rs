//! Writes of the resources step (engine/resources.rs): each request is recorded, fenced on the
//! lease, before the remote create it announces, so a later attempt knows whether to look for
//! a resource an earlier one may have made.

use secrecy::{ExposeSecret, SecretString};

use super::{Store, StoreError};

impl Store {
    /// An OpenRouter key is about to be asked for. `false`: the lease was lost.
    pub(crate) async fn request_openrouter_key(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET openrouter_key_requested_at = now(), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The key that was asked for, which also settles the request.
    pub(crate) async fn set_openrouter_key(
        &self,
        id: &str,
        owner: &str,
        hash: &str,
        key: &SecretString,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET openrouter_key_hash = $3, openrouter_key = $4,
                openrouter_key_requested_at = NULL, updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            hash,
            key.expose_secret(),
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An inbox is about to be created with this client id. `false`: the lease was lost.
    pub(crate) async fn request_agentmail_inbox(
        &self,
        id: &str,
        owner: &str,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET agentmail_client_id = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            client_id,
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The retired key and inbox are deleted. `false`: the lease was lost.
    pub(crate) async fn clear_retired_resources(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET retired_openrouter_key_hash = NULL, retired_agentmail_inbox_id = NULL,
                updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn set_agentmail_inbox(
        &self,
        id: &str,
        owner: &str,
        inbox_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET agentmail_inbox_id = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            inbox_id,
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
