-- Issue 15.2: demand-adaptive sizing. The tick measures demand (claims per second, refused ones
-- included) and the provisioning lead time, decides a target (shared/src/sizing/estimate.rs)
-- and stores it here with the figures behind it; in adaptive mode the refill statement tops
-- the pool up to this target instead of minIdle, so every claim's own top-up follows it too.
CREATE TABLE pool_sizing (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- The target in force (before the document's floor and ceiling, which the refill applies
    -- again so a changed bound takes effect before the next tick).
    target       integer NOT NULL CHECK (target >= 0),
    -- Since when demand has not asked for more than `target`: it may fall a cooldown later.
    held_since   timestamptz NOT NULL,
    claims_per_second float8 NOT NULL,
    lead_seconds float8 NOT NULL,
    lead_measured boolean NOT NULL,
    -- Before rounding and bounds: rate x lead x safety.
    wanted       float8 NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now()
);

-- The rate counts the claims of the last five time constants by age (every claim, refused ones
-- too: they are rows with status 'failed').
CREATE INDEX claims_created ON claims (created_at);

-- The lead time pairs each of the latest births (an instance's first line, from no status)
-- with its first idle line; the births are a small part of the history.
CREATE INDEX instance_events_births ON instance_events (id) WHERE from_status IS NULL;

-- As 20261130191000, but min idle is the adaptive target when the document says
-- `"mode": "adaptive"`: the stored target (the floor until the tick stored one), clamped to
-- the document's floor (null: 0) and ceiling (null: max total).
CREATE OR REPLACE FUNCTION pool_refill_current(
    p_max_total bigint,
    p_min_idle bigint,
    p_batch bigint,
    p_count bigint,
    p_ids text[],
    p_names text[],
    p_tokens text[],
    p_provider text,
    p_git_ref text,
    p_reason text,
    p_build text
) RETURNS TABLE (warm bigint, total bigint, breaker_open boolean, created text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_document jsonb;
    v_max_total bigint;
    v_min_idle bigint;
    v_floor bigint;
    v_result record;
BEGIN
    SELECT s.document INTO v_document FROM pool_settings s WHERE s.id;
    v_max_total := COALESCE((v_document->>'maxTotal')::bigint, p_max_total);
    v_min_idle := COALESCE((v_document->>'minIdle')::bigint, p_min_idle);
    IF v_document->>'mode' = 'adaptive' THEN
        v_floor := COALESCE((v_document->>'floor')::bigint, 0);
        SELECT GREATEST(v_floor, LEAST(COALESCE((v_document->>'ceiling')::bigint, v_max_total),
                                       COALESCE(MAX(z.target), v_floor)))
          INTO v_min_idle FROM pool_sizing z WHERE z.id;
    END IF;
    SELECT * INTO v_result FROM pool_refill(
        v_max_total, v_min_idle,
        p_batch, p_count, p_ids, p_names, p_tokens, p_provider,
        COALESCE(v_document->>'openclawRef', p_git_ref),
        p_reason) r;
    UPDATE instances i SET build_version = i.openclaw_git_ref || p_build
     WHERE i.id = ANY(v_result.created);
    RETURN QUERY SELECT v_result.warm, v_result.total, v_result.breaker_open, v_result.created;
END
$$;
