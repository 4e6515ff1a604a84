"""Tiering: export + verify one day of events (``storage/tiering.py``), with its figures.

Fills one ``event_records`` day partition in a fresh database with
``--rows`` rows shaped like the seed's events (Postgres generates them, so
the bench's own memory is not in the figure), then exports it to Parquet
in a ``file://`` store (or ``--s3``: the local S3 server) and verifies it,
in this process. Reports seconds, rows/s, MB/s of Parquet, the
compression against the partition's size in Postgres, this process's peak
RSS, and the time to read one random key's rows back from the cold day
(what replay does for a key; p50 and p95 over ``--lookups`` keys). The
issue's targets: 7.8M rows (the seed's day) in <= 120 s with a peak RSS
<= 1 GiB; a key from cold storage in p95 <= 300 ms on file://, <= 1 s on S3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_store, fresh_database, machine, peak_rss_mib
from mediation.rules.replay import Selection
from mediation.settings import Settings
from mediation.sim.summary import percentile
from mediation.text_table import render_table
from replay.cold import cold_rows
from storage.partitions import ensure_partitions, partition_name
from storage.tiering import export_day, verify_day

DAY = dt.date(2026, 1, 15)

# One row per generated number g: 1.8 events per opportunity, the seed's mix of types.
_FILL = """
INSERT INTO {partition} (day, event_id, app_id, opportunity_key, type, ts, server_ts,
    received_at, source_id, revenue_micros, currency, attrs, late, excluded_reason)
SELECT %(day)s::date,
       'evt-' || g,
       'app' || (g %% 20),
       upper(substr(md5((g / 2)::text), 1, 26)),
       (ARRAY['loaded','impression','load_failed','click','closed'])[1 + g %% 5],
       %(day)s::date + (g %% 86400000) * interval '1 millisecond',
       %(day)s::date + (g %% 86400000 + 150) * interval '1 millisecond',
       %(day)s::date + (g %% 86400000 + 400) * interval '1 millisecond',
       'net_' || (g %% 6),
       CASE WHEN g %% 5 = 1 THEN 500 + g %% 4500 END,
       CASE WHEN g %% 5 = 1 THEN 'USD' END,
       CASE WHEN g %% 10 = 3 THEN '{"placement": "rewarded", "attempt": 2}'::jsonb
            ELSE '{}'::jsonb END,
       false,
       NULL
FROM generate_series(1, %(rows)s) AS g
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=7_800_000)
    parser.add_argument("--s3", action="store_true", help="export to the local S3 server")
    parser.add_argument(
        "--lookups", type=int, default=50, help="random keys to read back from the cold day"
    )
    args = parser.parse_args()
    base = Settings.from_env()
    with fresh_database(base.database_url) as url, tempfile.TemporaryDirectory() as scratch:
        store = bench_store(args.s3, "tier-bench", scratch, base.aws_endpoint_url)
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_partitions(conn, [DAY], ["event_records"])
            started = time.monotonic()
            partition = partition_name("event_records", DAY)
            conn.execute(_FILL.replace("{partition}", partition), {"day": DAY, "rows": args.rows})
            conn.execute(f"VACUUM ANALYZE {partition}")
            fill_s = time.monotonic() - started
            row = conn.execute("SELECT pg_total_relation_size(%s)", (partition,)).fetchone()
            postgres_bytes = int(row[0]) if row else 0
            rss_before = peak_rss_mib(os.getpid())
            started = time.monotonic()
            manifest = export_day(conn, store, "event_records", DAY)
            export_s = time.monotonic() - started
            started = time.monotonic()
            verify_day(conn, store, "event_records", DAY)
            verify_s = time.monotonic() - started
            sample = [
                key
                for (key,) in conn.execute(
                    f"SELECT opportunity_key FROM {partition} ORDER BY random() LIMIT %s",
                    (args.lookups,),
                ).fetchall()
            ]
            lookups_ms = []
            for key in sample:  # what replay reads for one key of a cold day
                started = time.monotonic()
                found = cold_rows(store, "event_records", DAY, Selection(keys=(key,)))
                lookups_ms.append((time.monotonic() - started) * 1000)
                assert found, key
    parquet_bytes = sum(f.bytes for f in manifest.files)
    total_s = export_s + verify_s
    figures = {
        "rows": manifest.rows,
        "fill_s": fill_s,
        "export_s": export_s,
        "verify_s": verify_s,
        "export_verify_s": total_s,
        "rows_per_s": manifest.rows / total_s,
        "parquet_mb_per_s": parquet_bytes / 1e6 / total_s,
        "parquet_bytes": parquet_bytes,
        "postgres_bytes": postgres_bytes,
        "compression": postgres_bytes / parquet_bytes if parquet_bytes else 0.0,
        "files": len(manifest.files),
        "peak_rss_mib": peak_rss_mib(os.getpid()),
        "rss_before_mib": rss_before,
        "store": "s3" if args.s3 else "file",
        "lookup_p50_ms": percentile(lookups_ms, 50),
        "lookup_p95_ms": percentile(lookups_ms, 95),
        "lookups": len(lookups_ms),
    }
    print(json.dumps({"bench": "tier", "machine": machine(), **figures}))
    print(
        render_table(
            f"tiering one day of event_records ({manifest.rows:,} rows, {figures['store']})",
            [
                "export s",
                "verify s",
                "rows/s",
                "Parquet MB/s",
                "PG/Parquet",
                "peak RSS MiB",
                "key lookup p50/p95 ms",
            ],
            [
                [
                    round(export_s, 1),
                    round(verify_s, 1),
                    f"{figures['rows_per_s']:,.0f}",
                    round(figures["parquet_mb_per_s"], 1),
                    f"{figures['compression']:.1f}x",
                    round(figures["peak_rss_mib"]),
                    f"{figures['lookup_p50_ms']:.0f} / {figures['lookup_p95_ms']:.0f}",
                ]
            ],
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
