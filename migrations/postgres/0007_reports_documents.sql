-- Work reports (作業報告) completed by the engineer and signed off (検収) by
-- an approver, and the documents on file (the maintenance contract copy of
-- a vendor, each engineer's signed pledge 誓約書).

-- One report per work request; it names the revision the work ran under.
-- Signed off means final: the row is never changed again (enforced in
-- procedure::report and by the compare-and-set on signed_off_at).
CREATE TABLE work_reports (
    number            TEXT PRIMARY KEY NOT NULL,
    revision          BIGINT NOT NULL,
    result            TEXT NOT NULL CHECK (result IN ('completed', 'incomplete', 'aborted')),
    summary           TEXT NOT NULL,
    follow_ups        TEXT NOT NULL DEFAULT '',
    written_by        TEXT NOT NULL,
    written_at        BIGINT NOT NULL,
    signed_off_by     TEXT,
    signed_off_at     BIGINT,
    sign_off_comment  TEXT NOT NULL DEFAULT ''
);

-- Documents are kept whole in the database (size-limited by sekisho),
-- with their SHA-256; validity dates are local calendar dates YYYY-MM-DD.
CREATE TABLE documents (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('contract', 'pledge')),
    vendor       TEXT,
    user_name    TEXT,
    valid_from   TEXT NOT NULL,
    valid_until  TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    media_type   TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    content      BYTEA NOT NULL,
    added_by     TEXT NOT NULL,
    added_at     BIGINT NOT NULL,
    CHECK ((kind = 'contract' AND vendor IS NOT NULL AND user_name IS NULL)
        OR (kind = 'pledge' AND user_name IS NOT NULL))
);
CREATE INDEX documents_vendor ON documents (vendor, kind);
CREATE INDEX documents_user ON documents (user_name, kind);
