-- The audit trail (security/audit.py): one record per request, chained by SHA-256 per server start,
-- and the anchors of each chain's head. `id` orders records as `rowid` does in the embedded audit.db.
-- Floats are double precision, so the canonical JSON a hash covers reads back exactly.
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time double precision NOT NULL,
    key_id text,
    method text NOT NULL,
    route text NOT NULL,
    model text,
    version text,
    status integer NOT NULL,
    latency_ms double precision NOT NULL,
    client text,
    note text,
    chain text,
    seq bigint,
    link text,
    hash text
);
CREATE INDEX audit_time ON audit (time);

CREATE TABLE audit_anchor (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time double precision NOT NULL,
    chain text NOT NULL,
    seq bigint NOT NULL,
    head text NOT NULL,
    hash text NOT NULL
);
