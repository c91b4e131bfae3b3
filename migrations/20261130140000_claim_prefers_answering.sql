-- A claim takes the oldest idle instance whose last heartbeat was answered (issue 14.6), and
-- only when none is left an idle one whose gateway went silent. This index serves the first
-- choice the way instances_idle serves the second: the claim stays one index probe.
CREATE INDEX instances_idle_answering ON instances (ready_at, id)
    WHERE status = 'idle' AND heartbeat_failures = 0;
