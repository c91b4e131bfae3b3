-- Per-instance resources (convos-contracts §4): an OpenRouter key with its own spending limit
-- and an AgentMail inbox. Kept on the row so a destroy, from any process, can delete them;
-- reconcile finds by name those whose row is gone.
ALTER TABLE instances
    -- OpenRouter's identifier of the key, the handle for deleting it.
    ADD COLUMN openrouter_key_hash text,
    -- The key itself: configure writes it to the instance and a recycle's rewrite needs it
    -- again; OpenRouter shows it only once, at creation.
    ADD COLUMN openrouter_key      text,
    ADD COLUMN agentmail_inbox_id  text,
    ADD CONSTRAINT instances_openrouter_complete
        CHECK ((openrouter_key_hash IS NULL) = (openrouter_key IS NULL));
