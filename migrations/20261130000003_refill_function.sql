-- A refill in one round trip (issue 13: a claim in three round trips, the replacement's insert
-- being the third). The function does what the transaction in store/pool_state.rs did: lock the
-- pool_state row (so two refills never both fill the same gap), read the breaker and the counts
-- after the lock (each statement of a plpgsql function takes a fresh snapshot), and insert up to
-- the wanted number of the candidate instances the caller generated, each with its event.
--
-- p_count: a fixed number to start (an operator's replenish {count}); NULL: top up to
-- p_min_idle warm instances, at most p_batch at once. Never beyond p_max_total in all, never
-- more than the candidates given, nothing while the breaker is open.
CREATE FUNCTION pool_refill(
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
