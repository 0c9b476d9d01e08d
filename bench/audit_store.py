"""What an audit record, a key lookup and a rate-limit take cost: the embedded default vs a shared PostgreSQL.

Starts a throwaway PostgreSQL (tests/postgres.py: its own cluster in a temporary directory, as
the tests do) and measures, in this process, what the server pays per request:

- `record` (synchronous): SQLite's INSERT into the WAL, and PostgreSQL's INSERT + commit
  (`synchronous_commit = off`, as the server's audit connection runs) over loopback TCP;
- `record_async` one at a time (a lone client): PostgreSQL's record handed to the writer thread
  and awaited, which is what the audit middleware does, so the event loop is free meanwhile;
- `record_async` with 64 records waiting at once: the writer puts what queued up in one statement;
- a key lookup that misses the cache (once a second per key in use): one indexed SELECT;
- a request of a key with `--rpm`: in memory, or one INSERT ... ON CONFLICT DO UPDATE on its bucket's row.

    .venv/bin/python bench/audit_store.py [--records 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import start_cluster  # noqa: E402
from xrserve.security.audit import AuditLog, AuditRecord  # noqa: E402
from xrserve.security.keys import ApiKey, Limits  # noqa: E402
from xrserve.security.limits import RateLimits  # noqa: E402
from xrserve.security.storage import open_database  # noqa: E402


def record(i: int) -> AuditRecord:
    return AuditRecord(time.time(), "0123abcd", "POST", "/v2/models/{model_name}/infer", "echo", "1", 200,
                       0.123 + i % 7, "127.0.0.1", None)  # fmt: skip


#: a key whose requests-per-minute bucket never runs dry in a bench
LIMITED = ApiKey("bench001", "bench", ("*",), 0.0, None, None, limits=Limits(rpm=10**12))


def per_call_us(call, n: int) -> tuple[float, float]:
    """Median and p99 of n calls, in microseconds."""
    times = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    return statistics.median(times), times[int(n * 0.99)]


async def async_one_at_a_time(audit: AuditLog, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await audit.record_async(record(i))
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    return statistics.median(times), times[int(n * 0.99)]


async def async_concurrent(audit: AuditLog, n: int, width: int = 64) -> float:
    """Records per second with `width` requests always waiting for their record."""
    started = time.perf_counter()
    done = 0
    while done < n:
        await asyncio.gather(*(audit.record_async(record(i)) for i in range(width)))
        done += width
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000)
    n = parser.parse_args().records
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = open_database(None, Path(tmp))
        audit = sqlite.audit_log()
        rows.append(("SQLite", "record", *per_call_us(lambda i: audit.record(record(i)), n)))
        rows.append(("SQLite", "record_async, one at a time", *asyncio.run(async_one_at_a_time(audit, n))))
        keys = sqlite.key_store()
        _, key = keys.create("bench", ["*"])
        rows.append(("SQLite", "key lookup (cache miss)", *per_call_us(lambda i: keys.table.credentials(key.id), n)))
        local = RateLimits()
        rows.append(
            ("in memory", "request of a key with --rpm", *per_call_us(lambda i: local.admit_request(LIMITED), n))
        )
        audit.close()
        cluster = start_cluster()
        try:
            postgres = open_database(cluster.url(), Path(tmp))
            audit = postgres.audit_log()
            rows.append(("PostgreSQL", "record", *per_call_us(lambda i: audit.record(record(i)), n)))
            rows.append(("PostgreSQL", "record_async, one at a time", *asyncio.run(async_one_at_a_time(audit, n))))
            rate = asyncio.run(async_concurrent(audit, n * 4))
            keys = postgres.key_store()
            _, key = keys.create("bench", ["*"])
            rows.append(
                ("PostgreSQL", "key lookup (cache miss)", *per_call_us(lambda i: keys.table.credentials(key.id), n))
            )
            shared = RateLimits(shared=postgres.rate_buckets())
            rows.append(
                ("PostgreSQL", "request of a key with --rpm", *per_call_us(lambda i: shared.admit_request(LIMITED), n))
            )
            audit.close()
            postgres.close()
        finally:
            cluster.remove()
    print(f"{'store':11} {'what':30} {'median µs':>10} {'p99 µs':>10}")
    for store, what, median, p99 in rows:
        print(f"{store:11} {what:30} {median:10.1f} {p99:10.0f}")
    print(f"PostgreSQL  record_async, 64 waiting at once: {rate:,.0f} records/s ({1e6 / rate:.0f} µs per record)")


if __name__ == "__main__":
    main()
