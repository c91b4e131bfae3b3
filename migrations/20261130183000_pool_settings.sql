-- Issue 15.1: the settings an operator steers at run time (min idle, max total, the OpenClaw
-- ref new instances are built from) live here; the environment only seeds the row on first
-- read (store/settings.rs). One row, a JSON document validated by the pool
-- (shared/src/settings.rs), so the next settings (claim lifetime, hot idle, ...) need no
-- migration. `revision` makes a change a compare-and-set: two operators editing at once never
-- silently undo each other.
CREATE TABLE pool_settings (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    document   jsonb NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    revision   bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- What happened to the pool as a whole, and who did it: settings changes now; breaker, drains
-- and the like as they come (issue 16.2). `detail` is the kind's own JSON (for settings: each
-- changed field with its old and new value).
CREATE TABLE pool_events (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    kind   text NOT NULL,
    actor  text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX pool_events_kind ON pool_events (kind, id);

-- A refill uses the stored settings when there are any, and the caller's (the environment's)
-- until the row is seeded: a change takes effect at the next refill of any process, with no
-- extra round trip (every claim ends with one). pool_refill itself is unchanged.
CREATE FUNCTION pool_refill_current(
    p_max_total bigint,
    p_min_idle bigint,
    p_batch bigint,
    p_count bigint,
    p_ids text[],
    p_names text[],
    p_tokens text[],
    p_provider text,
    p_git_ref text,
    p_reason text
) RETURNS TABLE (warm bigint, total bigint, breaker_open boolean, created text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_document jsonb;
BEGIN
    SELECT s.document INTO v_document FROM pool_settings s WHERE s.id;
    RETURN QUERY SELECT * FROM pool_refill(
        COALESCE((v_document->>'maxTotal')::bigint, p_max_total),
        COALESCE((v_document->>'minIdle')::bigint, p_min_idle),
        p_batch, p_count, p_ids, p_names, p_tokens, p_provider,
        COALESCE(v_document->>'openclawRef', p_git_ref),
        p_reason);
END
$$;
