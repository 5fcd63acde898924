-- Web console sign-ins. Server-side, so they survive a restart of `serve`
-- and can be revoked (sign-out, user disabled, admin). The cookie carries a
-- random token; only its SHA-256 is stored, so a copy of the database does
-- not let anyone act as a signed-in person. `csrf` is the token every
-- state-changing request of that sign-in must carry.
CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf          TEXT NOT NULL,
    source        TEXT NOT NULL,
    lang          TEXT,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_name);
