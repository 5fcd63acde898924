-- The console with many sessions (issue 12): every filter of the sessions
-- list is an index walked newest first, so a page stops after its 50 rows
-- and a count reads only the matching entries; a session's page finds its
-- audit events and its hops without scanning the tables.
DROP INDEX sessions_started;
CREATE INDEX sessions_newest ON sessions (started_at, id);
CREATE INDEX sessions_user ON sessions (user_name, started_at);
CREATE INDEX sessions_vendor ON sessions (vendor, started_at);
CREATE INDEX sessions_target ON sessions (target, started_at);
CREATE INDEX sessions_state ON sessions (status, started_at);
CREATE INDEX sessions_protocol ON sessions (protocol, started_at);
-- Almost every session has no parent: indexing only the hops keeps the
-- planner from taking "parent = ?" for a scan of every row.
CREATE INDEX sessions_parent ON sessions (parent) WHERE parent IS NOT NULL;
CREATE INDEX audit_session ON audit (session);

-- Why a session ended, as a kind the console words in each language
-- (`end_reason` keeps the gateway's English sentence; rows from before
-- this column show that sentence).
ALTER TABLE sessions ADD COLUMN end_kind TEXT;

-- API tokens an administrator issues to one person for scripts
-- (`Authorization: Bearer …`). Only the token's SHA-256 is kept. No
-- foreign key to `users`: a token is checked against its person (enabled,
-- role) on every use, and a rebuild of `users` must not touch these rows.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    user_name     TEXT NOT NULL,
    label         TEXT NOT NULL DEFAULT '',
    issued_by     TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_name, issued_at);
