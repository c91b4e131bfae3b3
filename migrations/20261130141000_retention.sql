-- Finished claims are pruned oldest first once past POOL_RETENTION_DAYS (issue 14: growth is
-- bounded); this index finds them without reading the table. History lines are pruned by id,
-- which grows with time, so the primary key serves them.
CREATE INDEX claims_finished ON claims (finished_at) WHERE finished_at IS NOT NULL;
