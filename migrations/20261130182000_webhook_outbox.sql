-- Issue 16.5: signed webhooks from a durable outbox. A row is written by a trigger in the
-- transaction that writes the event it announces (an instance_events line, or the breaker's
-- change on pool_state), so no statement that moves an instance had to change, and an event is
-- never announced without having happened nor lost once it has. The delivery sweep sends the
-- rows (engine/webhooks.rs); a row is delivered, or given up after the retry window, and only
-- then may the next row of the same subject (instance, or the pool) go: in order per subject.

-- Whether this pool has a webhook URL. The delivery sweep sets it from its configuration on
-- every pass, so with no URL configured nothing is ever written to the outbox.
ALTER TABLE pool_state ADD COLUMN webhooks_enabled boolean NOT NULL DEFAULT false;

CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    -- What the order is kept per: an instance id, or 'pool' for the breaker.
    subject         text NOT NULL,
    event_type      text NOT NULL,
    -- The body as sent (the JSON text is fixed here, so every retry signs the same bytes).
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker sending the row holds it; a worker that died lets go when this runs out.
    lease_owner     text,
    lease_expires_at timestamptz,
    last_error      text,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    CONSTRAINT webhook_outbox_status_known CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_outbox_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

-- The sweep's scan: pending rows, oldest first, and the head of each subject's queue.
CREATE INDEX webhook_outbox_pending ON webhook_outbox (subject, id) WHERE status = 'pending';

-- The kinds announced, by what the history line says. A rollout's reasons (issue 15) begin
-- with 'rollout'; anything else is history only.
CREATE FUNCTION webhook_event_type(p_to text, p_reason text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_reason LIKE 'rollout%' THEN 'instance.rollout'
        WHEN p_to = 'claimed' AND p_reason = 'joined' THEN 'instance.joined'
        WHEN p_to = 'claimed' THEN 'instance.claimed'
        WHEN p_to = 'idle' AND p_reason = 'recycled' THEN 'instance.recycled'
        WHEN p_to = 'crashed' THEN 'instance.crashed'
        WHEN p_to = 'destroyed' THEN 'instance.destroyed'
    END
$$;

CREATE FUNCTION webhook_outbox_from_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_type text := webhook_event_type(NEW.to_status, NEW.reason);
    v_pool text;
BEGIN
    IF v_type IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT pool_id INTO v_pool FROM pool_state WHERE id AND webhooks_enabled;
    IF v_pool IS NOT NULL THEN
        INSERT INTO webhook_outbox (subject, event_type, payload)
        VALUES (NEW.instance_id, v_type, jsonb_build_object(
            'type', v_type,
            'poolId', v_pool,
            'eventId', NEW.id,
            'at', to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'instanceId', NEW.instance_id,
            'fromStatus', NEW.from_status,
            'toStatus', NEW.to_status,
            'reason', NEW.reason,
            'detail', NEW.detail));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER instance_events_webhook AFTER INSERT ON instance_events
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox_from_event();

-- The breaker opens where a failure sets an open_until in the future on a closed breaker
-- (store/pool_state.rs breaker_failure), and closes where a success clears it (store/leases.rs).
CREATE FUNCTION webhook_outbox_from_breaker() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_type text;
BEGIN
    IF NOT NEW.webhooks_enabled THEN
        RETURN NULL;
    END IF;
    IF NEW.breaker_open_until > now()
       AND (OLD.breaker_open_until IS NULL OR OLD.breaker_open_until <= now()) THEN
        v_type := 'breaker.open';
    ELSIF OLD.breaker_open_until IS NOT NULL AND NEW.breaker_open_until IS NULL THEN
        v_type := 'breaker.closed';
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (subject, event_type, payload)
    VALUES ('pool', v_type, jsonb_build_object(
        'type', v_type,
        'poolId', NEW.pool_id,
        'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'openUntil', to_char(NEW.breaker_open_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'consecutiveFailures', NEW.consecutive_failures,
        'lastFailure', NEW.last_failure));
    RETURN NULL;
END
$$;

CREATE TRIGGER pool_state_webhook AFTER UPDATE OF breaker_open_until ON pool_state
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox_from_breaker();
