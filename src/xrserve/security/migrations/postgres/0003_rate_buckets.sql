-- Per-key rate-limit buckets (security/limits.py) shared by every replica: one row per key and kind
-- ("requests", "tokens_minute", "tokens_day", "frames"). `tokens` was computed at `stamp`, the database's
-- own clock in Unix seconds, so replicas whose clocks differ still refill one bucket alike; `taken` says
-- whether the last statement on the row took what it asked for. Each request updates its row: a low
-- fillfactor leaves room on the page for HOT updates (no index changes, the old versions pruned in place).
CREATE TABLE rate_buckets (
    key_id text NOT NULL,
    kind text NOT NULL,
    capacity double precision NOT NULL,
    per_s double precision NOT NULL,
    tokens double precision NOT NULL,
    stamp double precision NOT NULL,
    taken boolean NOT NULL,
    PRIMARY KEY (key_id, kind)
) WITH (fillfactor = 50);
