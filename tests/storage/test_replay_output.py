"""Replay outputs over fixed results: the JSONL bytes (the hash) and the Parquet columns."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from builders import T0, event, opportunity

from mediation.rules.closure import close_opportunity
from mediation.rules.replay import missing_result, recompute_result, snapshot_result
from mediation.rules.ulid import encode_ulid
from replay.digest import canonical_line
from replay.output import PARQUET_SCHEMA, JsonlOutput, ParquetOutput

DAY_MS = 86_400_000
PAID = encode_ulid(T0, bytes(10))
UNPAID = encode_ulid(T0 + DAY_MS, bytes(10))
MISSING = encode_ulid(T0 + 2 * DAY_MS, bytes(10))

# The SHA-256 of the JSONL of ``_results()``, as the outputs wrote it before
# the Parquet output gained the app, placement, day and currency columns:
# the result hash is the contract for disputes, and never changes with them.
KNOWN_HASH = "a37bcdf8929b7923c139f11ba63ae966921648645cf028223c4c7916f52d5070"

# The Parquet columns as they were before those four were appended.
COLUMNS_BEFORE = [
    "opportunity_key",
    "mode",
    "missing",
    "changed_fields",
    "outcome",
    "recomputed_outcome",
    "revenue_micros",
    "recomputed_revenue_micros",
    "credited_source_id",
    "recomputed_credited_source_id",
    "inputs_hash_matches",
    "result_json",
]


def _results() -> list[dict[str, Any]]:
    """Snapshot and recompute of a paid and an unpaid opportunity, and a missing key."""
    paid = opportunity(PAID, app_id="app1", placement_id="rewarded")
    paid_events = [
        event(PAID, "e1", "loaded", 10, app_id="app1"),
        event(PAID, "e2", "impression", 20, app_id="app1"),
    ]
    unpaid = opportunity(UNPAID, app_id="app2", placement_id="banner", ts_ms=T0 + DAY_MS)
    unpaid_events = [event(UNPAID, "e3", "loaded", DAY_MS + 10, app_id="app2")]
    # A late impression: recompute counts it, the archive did not.
    late = [event(UNPAID, "e4", "impression", DAY_MS + 30, app_id="app2")]
    paid_archive = close_opportunity(paid, paid_events).archive
    unpaid_archive = close_opportunity(unpaid, unpaid_events).archive
    return [
        snapshot_result(paid, paid_events, paid_archive),
        recompute_result(paid, paid_events, [], paid_archive),
        snapshot_result(unpaid, unpaid_events, unpaid_archive),
        recompute_result(unpaid, unpaid_events, late, unpaid_archive),
        missing_result(MISSING, "snapshot", "archive record"),
    ]


def _write(output: JsonlOutput | ParquetOutput, results: list[dict[str, Any]]) -> str:
    for result in results:
        output.write(result, canonical_line(result))
    location = output.close()
    assert location is not None
    return location


def test_the_jsonl_hash_of_fixed_results_is_the_one_known(tmp_path: Path) -> None:
    jsonl = Path(_write(JsonlOutput(path=tmp_path / "r.jsonl"), _results())).read_bytes()
    assert hashlib.sha256(jsonl).hexdigest() == KNOWN_HASH


def test_the_parquet_output_appends_app_placement_day_and_currency(tmp_path: Path) -> None:
    table = pq.read_table(_write(ParquetOutput(tmp_path / "r.parquet"), _results()))
    assert table.schema.names == [*COLUMNS_BEFORE, "app_id", "placement_id", "day", "currency"]
    assert table.schema.equals(PARQUET_SCHEMA)
    assert table.schema.field("day").type == pa.date32()
    rows = table.select(["opportunity_key", "mode", "app_id", "placement_id", "day", "currency"])
    day = dt.datetime.fromtimestamp(T0 / 1000, dt.UTC).date()
    next_day = day + dt.timedelta(days=1)
    assert rows.to_pylist() == [
        dict(zip(rows.schema.names, values, strict=True))
        for values in [
            (PAID, "snapshot", "app1", "rewarded", day, "USD"),
            (PAID, "recompute", "app1", "rewarded", day, "USD"),
            (UNPAID, "snapshot", "app2", "banner", next_day, None),
            # The archive counted no revenue, the recomputed record does.
            (UNPAID, "recompute", "app2", "banner", next_day, "USD"),
            # No record: nothing but the day its key names.
            (MISSING, "snapshot", None, None, next_day + dt.timedelta(days=1), None),
        ]
    ]
    # The canonical lines in the file still give the hash.
    lines = "".join(line + "\n" for line in table.column("result_json").to_pylist())
    assert hashlib.sha256(lines.encode()).hexdigest() == KNOWN_HASH


def test_a_block_of_lines_gives_the_parquet_of_one_result_at_a_time(tmp_path: Path) -> None:
    results = _results()
    by_result = Path(_write(ParquetOutput(tmp_path / "one.parquet"), results)).read_bytes()
    block = ParquetOutput(tmp_path / "block.parquet")
    block.write_block(b"".join(canonical_line(result) for result in results))
    location = block.close()
    assert location is not None
    assert Path(location).read_bytes() == by_result
