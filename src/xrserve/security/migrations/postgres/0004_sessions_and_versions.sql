-- Shared by every replica (issue 13): the open XR sessions of keys with --max-sessions, the versions
-- operators promoted (`xrserve models promote`), the running canaries (`xrserve models canary`) and the
-- failed key attempts that lock a key id or an address (security/lockout.py).
-- A session is a lease: its front renews the leases of its open sessions every 10 s (`expires` in the
-- database's clock, Unix seconds), so a front that dies stops counting against the key within 30 s.
CREATE TABLE session_leases (
    lease text PRIMARY KEY,
    key_id text NOT NULL,
    expires double precision NOT NULL
);
CREATE INDEX session_leases_key ON session_leases (key_id, expires);
-- One row per model: the promoted versions, oldest first (the last one is the default); `rollback` pops.
CREATE TABLE promoted_versions (
    model text PRIMARY KEY,
    history text[] NOT NULL
);
-- One row per model with a canary running: its version, the stable version and the canary's share.
CREATE TABLE canaries (
    model text PRIMARY KEY,
    version text NOT NULL,
    stable text NOT NULL,
    percent double precision NOT NULL
);
-- A key id ('key') or client address ('address'): its recent failures and its lock, in the database's
-- clock (Unix seconds); `locks` makes each further lock twice as long as the one before.
CREATE TABLE lockouts (
    kind text NOT NULL,
    name text NOT NULL,
    failures double precision[] NOT NULL,
    locked_until double precision NOT NULL,
    locks integer NOT NULL,
    last double precision NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX lockouts_locked ON lockouts (locked_until);
