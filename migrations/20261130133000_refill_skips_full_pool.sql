-- A top-up that finds the pool full enough returns at once: no lock, no write, no count of the
-- whole table (issue 13: the claim-sustained benchmark). Every claim ends with a top-up. Before
-- this, each one locked the pool_state row FOR UPDATE (a row lock is a write: the commit then
-- waits for a WAL flush, an fdatasync, with the lock still held) and counted every instance
-- under that lock, so all claims queued on one row: about 7 ms each with 27,000 instances, a
-- ceiling near 140 claims/s for the whole pool.
--
-- Now a top-up (p_count NULL) first counts warm instances without the lock, stopping at
-- p_min_idle. If that many exist, nothing would be started anyway (the decision below starts
-- LEAST(p_min_idle - warm, p_batch) at most), so it answers with that bounded count, no total
-- (NULL: not counted), and the breaker as it reads. Otherwise, and for a fixed p_count, it
-- does exactly what 20261130000003 did. Skipping the lock cannot lose a refill: each claim
-- tops up after its own take committed, so the last top-up to run sees every take before it.
CREATE OR REPLACE FUNCTION pool_refill(
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
    v_open boolean;
    v_warm bigint;
    v_total bigint;
    v_want bigint;
    v_created text[] := '{}';
BEGIN
    IF p_count IS NULL THEN
        SELECT count(*) INTO v_warm FROM (
            SELECT 1 FROM instances i
            WHERE i.status IN ('idle', 'provisioning', 'recycling')
            LIMIT GREATEST(p_min_idle, 0)
        ) AS enough;
        IF v_warm >= p_min_idle THEN
            SELECT (s.breaker_open_until IS NOT NULL AND s.breaker_open_until > now())
              INTO v_open FROM pool_state s WHERE s.id;
            RETURN QUERY SELECT v_warm, NULL::bigint, v_open, v_created;
            RETURN;
        END IF;
    END IF;
    SELECT (s.breaker_open_until IS NOT NULL AND s.breaker_open_until > now())
      INTO v_open FROM pool_state s WHERE s.id FOR UPDATE;
    SELECT count(*) FILTER (WHERE i.status IN ('idle', 'provisioning', 'recycling')), count(*)
      INTO v_warm, v_total FROM instances i;
    IF NOT v_open THEN
        v_want := COALESCE(p_count, LEAST(p_min_idle - v_warm, p_batch));
        v_want := GREATEST(LEAST(v_want, p_max_total - v_total, cardinality(p_ids)), 0);
        WITH chosen AS (
            SELECT c.id, c.name, c.token, c.n
            FROM unnest(p_ids, p_names, p_tokens) WITH ORDINALITY AS c (id, name, token, n)
            WHERE c.n <= v_want
        ), inserted AS (
            INSERT INTO instances
                (id, provider, sprite_name, status, step, next_run_at, step_started_at,
                 gateway_token, openclaw_git_ref)
            SELECT chosen.id, p_provider, chosen.name, 'provisioning', 'create', now(), now(),
                   chosen.token, p_git_ref
            FROM chosen
            RETURNING instances.id
        ), logged AS (
            INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail)
            SELECT inserted.id, NULL, 'provisioning', 'create', p_reason, NULL FROM inserted
        )
        SELECT COALESCE(array_agg(chosen.id ORDER BY chosen.n), '{}') INTO v_created
        FROM chosen JOIN inserted ON inserted.id = chosen.id;
    END IF;
    RETURN QUERY SELECT v_warm, v_total, v_open, v_created;
END
$$;
