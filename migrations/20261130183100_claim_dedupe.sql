-- Issue 15.5: idempotent claims. A claim may carry the client's Idempotency-Key and a digest of
-- its request. At most one live (not failed) claim holds a key, so a repeat, even one racing the
-- first, can never take a second instance: the statement that takes the instance and records
-- the claim fails as a whole on this index. A failed claim leaves the index and frees its key.
ALTER TABLE claims
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_digest text;

CREATE UNIQUE INDEX claims_idempotency_key ON claims (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'failed';

-- The successor pool's dedupe: one live agent per conversation invite. A second claim with the
-- join URL of a claiming or claimed instance fails to take one here, and is answered with the
-- claim that holds it.
CREATE UNIQUE INDEX instances_live_join_url ON instances (join_url)
    WHERE join_url IS NOT NULL AND status IN ('claiming', 'claimed');
