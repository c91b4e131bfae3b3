-- Issue 19.7: a resource is asked for only after the row says so. A step that finds a request
-- recorded but no handle knows an earlier attempt may have created the resource and lost the
-- answer, and only then looks it up (by name, which on an account of thousands of keys pages
-- through all of them); every other create is a single call.
ALTER TABLE instances
    -- Set before `POST /keys`, cleared when the key's hash is recorded.
    ADD COLUMN openrouter_key_requested_at timestamptz,
    -- The client id (and username) the instance's inbox is created with, recorded before the
    -- create: AgentMail answers a repeated create with the inbox that client id already has.
    ADD COLUMN agentmail_client_id         text;
