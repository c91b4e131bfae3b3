-- Issue 14.3: a recycle gives the next tenant a new OpenRouter key and a new inbox. The recycle
-- moves the previous tenant's handles here in the statement that forgets the claim; the
-- rotate_resources step deletes what is here, clears it and makes new ones, and a destroy deletes
-- what is here too, so an interrupted rotation leaks nothing.
ALTER TABLE instances
    ADD COLUMN retired_openrouter_key_hash text,
    ADD COLUMN retired_agentmail_inbox_id  text;
