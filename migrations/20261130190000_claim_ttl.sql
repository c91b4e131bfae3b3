-- Issue 15.4: claim lifetime. A claim may expire (its own ttlSeconds, or the pool's
-- claimTtlSeconds setting); the tick then recycles its instance and the claim ends `expired`.
-- The instance carries the expiry while it serves the claim (the tick and the instance view read
-- it there); the claim keeps it for good, so the claim's answer still shows it after the
-- instance moved on. Both are written by the same statements (taking an instance, extending a
-- claim), never one without the other.
ALTER TABLE claims ADD COLUMN expires_at timestamptz;
ALTER TABLE instances ADD COLUMN claim_expires_at timestamptz;

ALTER TABLE claims DROP CONSTRAINT claims_status_known;
ALTER TABLE claims ADD CONSTRAINT claims_status_known CHECK (
    status IN ('pending', 'created', 'joined', 'waiting_for_acceptance', 'failed', 'expired'));

-- The tick's two lifetime rules read only claimed instances past a time.
CREATE INDEX instances_claim_expiry ON instances (claim_expires_at)
    WHERE status = 'claimed' AND claim_expires_at IS NOT NULL;
CREATE INDEX instances_awaiting_acceptance ON instances (claimed_at)
    WHERE status = 'claimed' AND join_status = 'waiting_for_acceptance';
