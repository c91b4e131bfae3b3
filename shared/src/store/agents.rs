//! Live agents (claimed and crashed instances) one page at a time, for `GET /api/pool/agents`.
//! Keyset pagination: a page starts after the last row of the previous one, so a page costs the
//! same however deep it is, and a row claimed meanwhile never shifts the rows after it.

use time::OffsetDateTime;

use super::{Status, Store, StoreError};

/// What the agents list shows of an instance: never its gateway token or keys.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub agent_name: Option<String>,
    pub instructions: Option<String>,
    pub invite_url: Option<String>,
    pub conversation_id: Option<String>,
    pub join_status: Option<String>,
    pub status: Status,
    pub claimed_at: Option<OffsetDateTime>,
    /// The list's order: when it was claimed (when it was created, for one that crashed
    /// before any claim). With the id it is where the next page starts.
    pub listed_at: OffsetDateTime,
}

/// The last row of a page: the next page holds the rows after it in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsAfter {
    pub listed_at: OffsetDateTime,
    pub id: String,
}

impl Store {
    /// Up to `limit` agents after `after` (from the start when `None`), newest claimed first,
    /// ties by id, descending (the `instances_agents` index).
    pub async fn agents_page(
        &self,
        after: Option<&AgentsAfter>,
        limit: i64,
    ) -> Result<Vec<Agent>, StoreError> {
        let agents = sqlx::query_as!(
            Agent,
            r#"SELECT id, agent_name, instructions, invite_url, conversation_id, join_status,
                      status AS "status: _", claimed_at,
                      COALESCE(claimed_at, created_at) AS "listed_at!"
               FROM instances
               WHERE status IN ('claimed', 'crashed')
                 AND ($1::timestamptz IS NULL OR (COALESCE(claimed_at, created_at), id) < ($1, $2::text))
               ORDER BY COALESCE(claimed_at, created_at) DESC, id DESC
               LIMIT $3"#,
            after.map(|a| a.listed_at),
            after.map(|a| a.id.as_str()),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(agents)
    }
}
