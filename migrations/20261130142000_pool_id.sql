-- Issue 14.1: a pool id, part of the name of everything the pool creates
-- (convos-agent-<env>-<pool id>-<id>), so two pools of one environment on one account tell their
-- machines, keys and inboxes apart: reconcile, the resource sweep and a drain delete only names
-- with their own pool id. Generated here, once per database, and never changed: a new id would
-- make every machine of this pool look like someone else's. Six lowercase letters and digits
-- (2 billion values) keep the longest name (production) at 43 characters, within the 63 of a
-- Sprite name and of the DNS label its URL is built from.
ALTER TABLE pool_state ADD COLUMN pool_id text;

UPDATE pool_state SET pool_id = (
    SELECT string_agg(substr('abcdefghijklmnopqrstuvwxyz0123456789', 1 + floor(random() * 36)::int, 1), '')
    FROM generate_series(1, 6)
);

ALTER TABLE pool_state
    ALTER COLUMN pool_id SET NOT NULL,
    ADD CONSTRAINT pool_state_pool_id_shape CHECK (pool_id ~ '^[a-z0-9]{6}$');
