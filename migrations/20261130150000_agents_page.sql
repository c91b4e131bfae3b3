-- GET /api/pool/agents pages through live agents newest claimed first (issue 14: the answer
-- stays small however many agents there are). This index is that order, so a page is read
-- from where the previous one ended instead of sorting every claimed and crashed row.
-- An instance that crashed before any claim has no claimed_at; it is listed by created_at.
CREATE INDEX instances_agents ON instances ((COALESCE(claimed_at, created_at)) DESC, id DESC)
    WHERE status IN ('claimed', 'crashed');
