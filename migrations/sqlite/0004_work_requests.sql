-- Work requests (作業申請) and their approvals, and the approver role.

-- SQLite cannot change a CHECK constraint in place, so the users table is
-- rebuilt. Migrations run in a transaction with foreign keys on, where
-- dropping a parent table would cascade-delete its children's rows and
-- renaming it would re-point them; so the children (keys, sign-in windows,
-- tickets) are rebuilt too, pointing at the new table, before the old
-- tables are dropped. Renaming users_new to users re-points them by name.
CREATE TABLE users_new (
    name            TEXT PRIMARY KEY NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('engineer', 'auditor', 'admin', 'approver')),
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
INSERT INTO users_new (name, role, vendor, password_hash, totp_secret, totp_last_step, enabled,
                       failures, locked_until, last_signin_at, created_at)
SELECT name, role, vendor, password_hash, totp_secret, totp_last_step, enabled,
       failures, locked_until, last_signin_at, created_at
FROM users;

CREATE TABLE user_keys_new (
    user_name    TEXT NOT NULL REFERENCES users_new(name) ON DELETE CASCADE,
    fingerprint  TEXT NOT NULL,
    openssh      TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (user_name, fingerprint)
);
INSERT INTO user_keys_new (user_name, fingerprint, openssh, comment, added_at)
SELECT user_name, fingerprint, openssh, comment, added_at FROM user_keys;

CREATE TABLE signin_windows_new (
    user_name   TEXT NOT NULL REFERENCES users_new(name) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (user_name, source)
);
INSERT INTO signin_windows_new (user_name, source, opened_at, expires_at)
SELECT user_name, source, opened_at, expires_at FROM signin_windows;

CREATE TABLE tickets_new (
    hash          TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL REFERENCES users_new(name) ON DELETE CASCADE,
    target        TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    issued_by     TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    sealed_nonce  BLOB,
    sealed_text   BLOB
);
INSERT INTO tickets_new (hash, user_name, target, protocol, issued_by, issued_at, expires_at,
                         used_at, sealed_nonce, sealed_text)
SELECT hash, user_name, target, protocol, issued_by, issued_at, expires_at,
       used_at, sealed_nonce, sealed_text FROM tickets;

DROP TABLE user_keys;
DROP TABLE signin_windows;
DROP TABLE tickets;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
ALTER TABLE user_keys_new RENAME TO user_keys;
ALTER TABLE signin_windows_new RENAME TO signin_windows;
ALTER TABLE tickets_new RENAME TO tickets;
CREATE INDEX tickets_live ON tickets (user_name, target, protocol, issued_at);

-- One row per revision; a submitted revision is never edited, only its
-- state moves on (compare-and-set on `state`).
CREATE TABLE work_requests (
    number          TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    system          TEXT NOT NULL,
    vendor          TEXT NOT NULL,
    requester       TEXT NOT NULL,
    targets         TEXT NOT NULL,
    protocols       TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    work            TEXT NOT NULL,
    window_start    BIGINT NOT NULL,
    window_end      BIGINT NOT NULL,
    urgency         TEXT NOT NULL CHECK (urgency IN ('normal', 'emergency')),
    state           TEXT NOT NULL,
    approved_from   BIGINT,
    state_at        BIGINT NOT NULL,
    state_by        TEXT NOT NULL,
    state_reason    TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (number, revision)
);
CREATE INDEX work_requests_state ON work_requests (state, window_end);

CREATE TABLE work_request_engineers (
    number      TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    user_name   TEXT NOT NULL,
    PRIMARY KEY (number, revision, user_name),
    FOREIGN KEY (number, revision) REFERENCES work_requests (number, revision)
);
CREATE INDEX work_request_engineers_user ON work_request_engineers (user_name);

CREATE TABLE work_request_approvals (
    number      TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    approver    TEXT NOT NULL,
    decided_at  BIGINT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (number, revision, step),
    FOREIGN KEY (number, revision) REFERENCES work_requests (number, revision)
);

-- The request a session was allowed under (revocation ends its sessions).
ALTER TABLE sessions ADD COLUMN work_request TEXT;
CREATE INDEX sessions_work_request ON sessions (work_request, status);
