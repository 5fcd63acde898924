-- Emergency stops (緊急停止): while a stop is in force (lifted_at IS NULL),
-- every serving node ends the live sessions in its scope and refuses new
-- ones. Kept in the database so every node sharing it enforces the same
-- stops. A stop is lifted, never deleted: it stays as a record of when
-- access was cut and restored, and by whom.
CREATE TABLE emergency_stops (
    id           BIGSERIAL PRIMARY KEY,
    scope        TEXT NOT NULL CHECK (scope IN ('all', 'system', 'vendor')),
    subject      TEXT NOT NULL DEFAULT '',
    reason       TEXT NOT NULL,
    stopped_by   TEXT NOT NULL,
    stopped_at   BIGINT NOT NULL,
    lifted_by    TEXT,
    lifted_at    BIGINT,
    lift_reason  TEXT
);
CREATE INDEX emergency_stops_in_force ON emergency_stops (lifted_at);
