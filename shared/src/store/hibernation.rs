//! What hibernation (issue 17) reads and writes: which idle instances the heartbeat keeps
//! awake (`hot`), how many machines the pool has running, and a claim handing back an instance
//! it could not wake. The policy lives in engine/hibernation.rs.

use std::time::Duration;

use super::{Fence, Secret, Status, Store, StoreError, secs};
use crate::lifecycle::{Actor, Reason};

/// Machines the pool counts as running, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    /// Working or serving: provisioning, recycling, claiming, claimed. Never put to sleep.
    pub busy: i64,
    /// Idle and kept awake by the heartbeat.
    pub hot_idle: i64,
    /// Idle, left to sleep, but touched within one idle pause: not paused yet.
    pub dozing_idle: i64,
    /// Idle and presumed asleep.
    pub sleeping_idle: i64,
}

/// An idle instance that just became hot, and how to reach it.
pub struct Promoted {
    pub id: String,
    hot: bool,
    pub url: Option<String>,
    pub gateway_token: Secret,
}

impl Store {
    /// The running machines as the pool counts them: an idle instance left to sleep counts
    /// until one `idle_pause` after the pool last touched it (became idle, was pinged).
    pub async fn running(&self, idle_pause: Duration) -> Result<Running, StoreError> {
        let row = sqlx::query!(
            r#"SELECT
                   count(*) FILTER (WHERE status IN ('provisioning', 'recycling', 'claiming', 'claimed'))
                       AS "busy!",
                   count(*) FILTER (WHERE status = 'idle' AND hot) AS "hot_idle!",
                   count(*) FILTER (WHERE status = 'idle' AND NOT hot
                       AND GREATEST(ready_at, last_heartbeat_at) >= now() - make_interval(secs => $1))
                       AS "dozing_idle!",
                   count(*) FILTER (WHERE status = 'idle' AND NOT hot
                       AND COALESCE(GREATEST(ready_at, last_heartbeat_at) < now() - make_interval(secs => $1), true))
                       AS "sleeping_idle!"
               FROM instances"#,
            secs(idle_pause),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Running {
            busy: row.busy,
            hot_idle: row.hot_idle,
            dozing_idle: row.dozing_idle,
            sleeping_idle: row.sleeping_idle,
        })
    }

    /// Makes `hotIdle` idle instances hot (the settings row says how many; unset: all of
    /// them), fewer when `maxRunning` leaves less room beside the busy ones. The hot ones are those a claim takes first, and the hot stay hot, so nothing
    /// churns. Returns the instances that just became hot: they may be asleep, the caller wakes
    /// them. One statement, settings read in it.
    pub async fn keep_hot(&self, actor: &Actor) -> Result<Vec<Promoted>, StoreError> {
        let promoted = sqlx::query_as!(
            Promoted,
            r#"WITH settings AS (
                   SELECT (document->>'hotIdle')::bigint AS hot_idle,
                          (document->>'maxRunning')::bigint AS max_running
                   FROM pool_settings WHERE id
               ), wanted AS (
                   -- LEAST skips a NULL (a setting left unset); both unset: every idle one.
                   SELECT CASE WHEN least IS NULL THEN NULL ELSE GREATEST(0, least) END AS hot
                   FROM (SELECT LEAST(
                       (SELECT hot_idle FROM settings),
                       (SELECT max_running FROM settings) - (SELECT count(*) FROM instances
                           WHERE status IN ('provisioning', 'recycling', 'claiming', 'claimed')))) AS l (least)
               ), ranked AS (
                   SELECT id, row_number() OVER (
                       ORDER BY hot DESC, heartbeat_failures = 0 DESC, ready_at, id) AS rank
                   FROM instances WHERE status = 'idle'
               ), flipped AS (
                   UPDATE instances i SET hot = ranked.rank <= COALESCE((SELECT hot FROM wanted), ranked.rank)
                   FROM ranked
                   WHERE i.id = ranked.id AND i.status = 'idle'
                     AND i.hot <> (ranked.rank <= COALESCE((SELECT hot FROM wanted), ranked.rank))
                   RETURNING i.id, i.hot, i.url, i.gateway_token
               ), logged AS (
                   -- Each newly hot one is woken (engine/hibernation.rs): a `wake` line.
                   INSERT INTO instance_events (instance_id, from_status, to_status, reason, actor, kind)
                   SELECT id, 'idle', 'idle', 'keep_hot', $1, 'wake' FROM flipped WHERE hot
               )
               SELECT id AS "id!", hot AS "hot!", url, gateway_token AS "gateway_token!: _" FROM flipped"#,
            actor.to_string(),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(promoted.into_iter().filter(|p| p.hot).collect())
    }

    /// How many more machines may run under `maxRunning` (the settings row), counting idle
    /// ones left to sleep until an idle pause after they were last touched; `None`: no limit.
    pub async fn running_room(&self, idle_pause: Duration) -> Result<Option<i64>, StoreError> {
        let room = sqlx::query_scalar!(
            r#"SELECT (SELECT (document->>'maxRunning')::bigint FROM pool_settings WHERE id)
                      - (SELECT count(*) FROM instances
                         WHERE status IN ('provisioning', 'recycling', 'claiming', 'claimed')
                            OR (status = 'idle' AND (hot OR GREATEST(ready_at, last_heartbeat_at)
                                >= now() - make_interval(secs => $1))))"#,
            secs(idle_pause),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(room)
    }

    /// A claim that could not wake its instance (the running limit) hands it back to idle
    /// untouched: nothing reached the gateway, so nothing can be bound. The claim's fields
    /// are cleared, its place in the queue (`ready_at`) kept, and the history line written.
    pub(crate) async fn release_unwoken(
        &self,
        fence: &Fence,
        reason: Reason,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query_scalar!(
            r#"WITH released AS (
                   UPDATE instances SET
                       status = 'idle', step = NULL, attempts = 0, last_error = NULL,
                       lease_owner = NULL, lease_expires_at = NULL, next_run_at = NULL,
                       step_started_at = NULL, claim_id = NULL, agent_name = NULL,
                       instructions = NULL, join_url = NULL, claim_expires_at = NULL, hot = false,
                       status_changed_at = now(), updated_at = now()
                   WHERE id = $1 AND lease_owner = $2 AND status = $3
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, $3, 'idle', NULL, $4, $5, $6 FROM released
               )
               SELECT EXISTS (SELECT 1 FROM released) AS "released!""#,
            fence.id,
            fence.owner,
            Status::Claiming.as_str(),
            reason.as_str(),
            detail,
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(released)
    }
}
