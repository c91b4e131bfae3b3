-- Issue 15.3: each instance records the version it was built from: the OpenClaw ref it was
-- given, then what this deploy builds with (the setup script's digest or the Railway runtime
-- image, and the config format), e.g. `v2+setup:1a2b3c4d5e6f+config:1`. The pool replaces
-- instances whose version is not the desired one (engine/rollout.rs).
--
-- Rows from before this column get '' (unknown): which setup script built them cannot be
-- known, so they count as stale and the first tick after this deploy rolls them, one
-- replacement at a time, never below min idle. Guessing "current" could leave instances built
-- by an old script in the pool for good.
ALTER TABLE instances ADD COLUMN build_version text NOT NULL DEFAULT '';

CREATE INDEX instances_version ON instances (build_version, status);

-- The refill as before, and each created row gets its version in the same transaction: the
-- ref the row was given (the stored setting, read by this same statement) followed by
-- `p_build` (what the calling process builds with). Reading the ref here, not in the caller,
-- means a settings change between the two can never mislabel a row.
DROP FUNCTION pool_refill_current(bigint, bigint, bigint, bigint, text[], text[], text[], text, text, text);

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
    p_build text
) RETURNS TABLE (warm bigint, total bigint, breaker_open boolean, created text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_document jsonb;
    v_result record;
BEGIN
    SELECT s.document INTO v_document FROM pool_settings s WHERE s.id;
    SELECT * INTO v_result FROM pool_refill(
        COALESCE((v_document->>'maxTotal')::bigint, p_max_total),
        COALESCE((v_document->>'minIdle')::bigint, p_min_idle),
        p_batch, p_count, p_ids, p_names, p_tokens, p_provider,
        COALESCE(v_document->>'openclawRef', p_git_ref),
        p_reason) r;
    UPDATE instances i SET build_version = i.openclaw_git_ref || p_build
     WHERE i.id = ANY(v_result.created);
    RETURN QUERY SELECT v_result.warm, v_result.total, v_result.breaker_open, v_result.created;
END
$$;
