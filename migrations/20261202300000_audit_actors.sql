-- Issue 16.2: the audit trail says who and what. Every history line names its actor (`api:`
-- and a key fingerprint, `poolctl`, `sweep:tick|heartbeat|reconcile`, `step`) and its kind
-- (`status`: a move; `step_failed`: a failed attempt; `wake`: a sleeping instance woken;
-- `resources_rotated`: a recycle's new OpenRouter key and inbox). Lines written before this
-- migration say `unrecorded`, and so would a writer that forgot its actor: the tests look for
-- that word after a whole lifecycle.
ALTER TABLE instance_events
    ADD COLUMN actor text NOT NULL DEFAULT 'unrecorded',
    ADD COLUMN kind text NOT NULL DEFAULT 'status';

-- A failed attempt is the only line that stays in its status (store/leases.rs `retry`).
UPDATE instance_events SET kind = 'step_failed' WHERE from_status = to_status;

CREATE INDEX instance_events_kind ON instance_events (kind, id);

-- One feed of both tables (GET /api/pool/events): pool-wide events (settings, breaker, drains,
-- orphan deletions) number from the same sequence as the history lines, so the feed's order
-- and its cursor are one id. The few pool events so far are renumbered after every line.
ALTER TABLE pool_events ALTER COLUMN id SET DEFAULT nextval('instance_events_id_seq');
UPDATE pool_events SET id = nextval('instance_events_id_seq');
DROP SEQUENCE pool_events_id_seq;

-- The refill writes its new rows' first lines inside pool_refill; the caller's actor is set on
-- them in the same transaction. Otherwise as 20261202100000.
DROP FUNCTION pool_refill_current(bigint, bigint, bigint, bigint, text[], text[], text[], text, text, text, text, text);
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
    p_reason text,
    p_build text,
    p_image text,
    p_actor text
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
    IF cardinality(v_result.created) > 0 THEN
        UPDATE instances i
           SET runtime_image = pool_runtime_image(v_document, p_image),
               build_version = pool_version(v_document, p_git_ref, p_build, p_image)
         WHERE i.id = ANY(v_result.created);
        UPDATE instance_events e SET actor = p_actor
         WHERE e.instance_id = ANY(v_result.created) AND e.from_status IS NULL;
    END IF;
    RETURN QUERY SELECT v_result.warm, v_result.total, v_result.breaker_open, v_result.created;
END
$$;
