-- Issue 17.2: idle instances that sleep. `hot` is the pool's intent for an idle instance: kept
-- awake by the heartbeat (true) or left to pause and go cold (false), with a rare health check.
-- Every row starts hot, as every idle instance was before this column: a pool whose settings
-- say nothing about `hotIdle` keeps behaving as it did. The heartbeat's rebalance sets it.
ALTER TABLE instances ADD COLUMN hot boolean NOT NULL DEFAULT true;

-- A claim takes a hot idle instance first (hot, last ping answered, oldest ready).
CREATE INDEX instances_idle_take ON instances (hot DESC, ready_at, id) WHERE status = 'idle';
