-- Issue 15.1 / 15.3: the Railway runtime image is a setting (`runtimeImage` in the settings
-- document), seeded from RAILWAY_RUNTIME_IMAGE like `openclawRef` from OPENCLAW_GIT_REF, and
-- each Railway instance records the image it was built from: its deploy uses that image, and
-- its version names it, so changing the setting rolls the pool like a new ref does.

-- The image the instance runs; NULL where the provider runs no image (Sprites).
ALTER TABLE instances ADD COLUMN runtime_image text;

-- Railway rows from before: their version already names their image
-- (`<ref>+image:<image>+config:<N>`, engine/rollout.rs).
UPDATE instances
   SET runtime_image = substring(build_version from '\+image:(.*)\+config:[0-9]+$')
 WHERE provider = 'railway';

-- The image an instance built now gets, from the settings document: the stored
-- `runtimeImage`, else `p_image` (the environment's, before the setting is seeded); none when
-- `p_image` is NULL (the provider runs no image).
CREATE FUNCTION pool_runtime_image(p_document jsonb, p_image text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_image IS NOT NULL THEN COALESCE(p_document->>'runtimeImage', p_image) END
$$;

-- The version an instance built now records (engine/rollout.rs `version_for` says the same):
-- the ref, `+image:<image>` when there is one, then `p_build` (the rest of what the calling
-- process builds with). The refill labels new rows with it; a claim prefers idle rows that
-- carry it (store/claim_take.rs).
CREATE FUNCTION pool_version(p_document jsonb, p_git_ref text, p_build text, p_image text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(p_document->>'openclawRef', p_git_ref)
           || COALESCE('+image:' || pool_runtime_image(p_document, p_image), '')
           || p_build
$$;

-- As 20261201110000, and each created row also gets its image and its version from the document
-- this same statement read (so a change between the caller's read and this one can never
-- mislabel a row).
DROP FUNCTION pool_refill_current(bigint, bigint, bigint, bigint, text[], text[], text[], text, text, text, text);

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
    p_image text
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
    UPDATE instances i
       SET runtime_image = pool_runtime_image(v_document, p_image),
           build_version = pool_version(v_document, p_git_ref, p_build, p_image)
     WHERE i.id = ANY(v_result.created);
    RETURN QUERY SELECT v_result.warm, v_result.total, v_result.breaker_open, v_result.created;
END
$$;
