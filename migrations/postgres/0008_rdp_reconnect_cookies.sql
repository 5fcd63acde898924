-- sekisho's RDP auto-reconnect cookies (rdp::reconnect), kept in the
-- database so that a client whose connection dropped resumes on whichever
-- node it reaches next, and a restart does not forget them. Only the
-- SHA-256 of the verifier the client will present is kept, never the
-- cookie's random bytes. A cookie is used at most once (an atomic update
-- of used_at); `usable_until` is set when the client's connection was lost
-- and stays NULL while the session runs. Spent and expired rows are purged.
CREATE TABLE rdp_reconnect_cookies (
    logon_id         BIGINT PRIMARY KEY NOT NULL,
    verifier_sha256  TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    target           TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    source           TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    usable_until     BIGINT,
    used_at          BIGINT
);
CREATE INDEX rdp_reconnect_cookies_session ON rdp_reconnect_cookies (session_id);
