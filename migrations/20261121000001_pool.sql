-- The pool's whole state. Every instance is a row from the moment replenish decides to create
-- it until its Sprite is confirmed gone; long work runs as durable steps recorded on the row
-- (ARCHITECTURE §4), so any process can resume it after another one dies.

CREATE TABLE instances (
    id                   text PRIMARY KEY,
    provider             text NOT NULL,
    -- The provider's own id for the machine (a Sprite's id), once it exists.
    provider_ref         text,
    -- Fixed at insert (convos-agent-<env>-<id>), so reconcile never mistakes a Sprite that is
    -- being created for an orphan.
    sprite_name          text NOT NULL UNIQUE,
    url                  text,
    status               text NOT NULL,
    -- The step to run next; NULL exactly when the instance is at rest.
    step                 text,
    attempts             integer NOT NULL DEFAULT 0,
    lease_owner          text,
    lease_expires_at     timestamptz,
    next_run_at          timestamptz,
    hop                  integer NOT NULL DEFAULT 0,
    step_started_at      timestamptz,
    last_error           text,
    golden_checkpoint_id text,
    -- Sent as Bearer on every /convos call and written into the instance's OpenClaw config;
    -- a new one on every recycle. Never leaves the pool in a response or a log line.
    gateway_token        text NOT NULL,
    agent_name           text,
    instructions         text,
    join_url             text,
    invite_url           text,
    conversation_id      text,
    -- joined | waiting_for_acceptance | created, for a claimed instance
    join_status          text,
    claim_id             uuid,
    openclaw_git_ref     text NOT NULL,
    heartbeat_failures   integer NOT NULL DEFAULT 0,
    heartbeat_recoveries integer NOT NULL DEFAULT 0,
    last_heartbeat_at    timestamptz,
    sprite_created_at    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    ready_at             timestamptz,
    claimed_at           timestamptz,
    status_changed_at    timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT instances_status_known CHECK (
        status IN ('provisioning', 'idle', 'claiming', 'claimed', 'recycling', 'destroying', 'crashed')),
    CONSTRAINT instances_step_iff_working CHECK (
        (step IS NULL) = (status IN ('idle', 'claimed', 'crashed'))),
    CONSTRAINT instances_lease_complete CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

-- Claim takes the oldest idle instance.
CREATE INDEX instances_idle ON instances (ready_at, id) WHERE status = 'idle';
-- The tick finds due or abandoned steps.
CREATE INDEX instances_due ON instances (next_run_at) WHERE step IS NOT NULL;
CREATE INDEX instances_status ON instances (status);

-- One row per claim request: what was asked, where it is being served, and how it ended.
-- A join can outlive the HTTP request (202 + status URL), and a failed attempt moves to
-- another instance, so the claim needs an identity of its own.
CREATE TABLE claims (
    id              uuid PRIMARY KEY,
    instance_id     text,
    agent_name      text NOT NULL,
    instructions    text NOT NULL,
    join_url        text,
    -- pending | created | joined | waiting_for_acceptance | failed
    status          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    conversation_id text,
    invite_url      text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT claims_status_known CHECK (
        status IN ('pending', 'created', 'joined', 'waiting_for_acceptance', 'failed'))
);

CREATE INDEX claims_pending ON claims (created_at) WHERE status = 'pending';

-- The history: every status change and every failed step. No foreign key, so it outlives the
-- instances it describes.
CREATE TABLE instance_events (
    id          bigserial PRIMARY KEY,
    instance_id text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text,
    to_status   text NOT NULL,
    step        text,
    reason      text NOT NULL,
    detail      text
);

CREATE INDEX instance_events_instance ON instance_events (instance_id, id);

-- One sweep of a kind at a time. Session advisory locks do not survive Neon's transaction-mode
-- pooler, so the lock is a row with an expiry.
CREATE TABLE sweep_leases (
    kind        text PRIMARY KEY,
    owner       text,
    expires_at  timestamptz,
    last_run_at timestamptz,
    last_report jsonb
);

INSERT INTO sweep_leases (kind) VALUES ('tick'), ('heartbeat'), ('reconcile');

-- Pool-wide state: the provisioning circuit breaker. One row; replenish locks it so two
-- replenishers never both fill the same gap.
CREATE TABLE pool_state (
    id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    consecutive_failures integer NOT NULL DEFAULT 0,
    breaker_open_until   timestamptz,
    last_failure         text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

INSERT INTO pool_state DEFAULT VALUES;
