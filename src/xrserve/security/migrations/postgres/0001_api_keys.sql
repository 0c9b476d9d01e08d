-- API keys (security/keys.py): the same columns as the embedded keys.db; times are Unix seconds.
-- scopes is a JSON list; only digests of secrets are stored.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    secret_sha256 text NOT NULL,
    name text NOT NULL,
    scopes text NOT NULL,
    created double precision NOT NULL,
    expires double precision,
    revoked double precision,
    rotated double precision,
    previous_sha256 text,
    previous_until double precision,
    rpm bigint NOT NULL DEFAULT 0,
    tpm bigint NOT NULL DEFAULT 0,
    tpd bigint NOT NULL DEFAULT 0,
    fps bigint NOT NULL DEFAULT 0,
    max_sessions bigint NOT NULL DEFAULT 0
);
