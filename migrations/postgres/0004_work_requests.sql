-- Work requests (作業申請) and their approvals, and the approver role.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('engineer', 'auditor', 'admin', 'approver'));

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
