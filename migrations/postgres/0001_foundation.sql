-- sekisho foundation schema (PostgreSQL). Times are unix microseconds (UTC),
-- ids are text, flags are 0/1 integers: the same shapes as the PostgreSQL
-- schema, so one set of queries serves both backends.

CREATE TABLE vendors (
    name        TEXT PRIMARY KEY NOT NULL,
    parent      TEXT REFERENCES vendors(name),
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    name            TEXT PRIMARY KEY NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('engineer', 'auditor', 'admin')),
    vendor          TEXT REFERENCES vendors(name),
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT NOT NULL,
    totp_last_step  BIGINT,
    enabled         BIGINT NOT NULL DEFAULT 1,
    failures        BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT,
    last_signin_at  BIGINT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE user_keys (
    user_name    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    fingerprint  TEXT NOT NULL,
    openssh      TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (user_name, fingerprint)
);

CREATE TABLE signin_windows (
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (user_name, source)
);

CREATE TABLE tickets (
    hash        TEXT PRIMARY KEY NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    target      TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    issued_by   TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE audit (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    user_name   TEXT,
    target      TEXT,
    session     TEXT,
    source      TEXT,
    protocol    TEXT,
    detail      TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit(at);
CREATE INDEX audit_user ON audit(user_name, at);

-- Append-only: nothing may change or remove an event once written.
CREATE FUNCTION sekisho_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: events cannot be changed or deleted';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION sekisho_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION sekisho_audit_append_only();

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    user_name           TEXT NOT NULL,
    vendor              TEXT,
    target              TEXT NOT NULL,
    protocol            TEXT NOT NULL,
    client_addr         TEXT NOT NULL,
    parent              TEXT,
    node                TEXT NOT NULL,
    started_at          BIGINT NOT NULL,
    ends_at             BIGINT,
    ended_at            BIGINT,
    status              TEXT NOT NULL,
    end_reason          TEXT,
    recording_path      TEXT,
    recording_size      BIGINT,
    recording_digest    TEXT,
    recording_status    TEXT,
    kill_requested_at   BIGINT,
    kill_reason         TEXT,
    killed_by           TEXT
);
CREATE INDEX sessions_status ON sessions(status, node);
CREATE INDEX sessions_started ON sessions(started_at);
