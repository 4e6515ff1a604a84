"""Daily rollups written with the archives, and the report over hot, cold and split days."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from builders import T0, event, opportunity
from report_data import fill_days, write_items

from mediation.cli import main
from mediation.rules.closure import close_opportunity
from mediation.rules.ulid import encode_ulid
from storage.cold import FileColdStore
from storage.db import connect
from storage.rollups import GROUP, SUMS, compact_day, rebuild_day
from storage.tier_job import run_tiering, tier_day

pytestmark = pytest.mark.integration

RECORD_TABLES = ("opportunity_records", "delivery_records", "event_records", "archive_records",
                 "report_rollups")  # fmt: skip
# The report's sums, straight from the archive records (and the delivery's status).
_FROM_ARCHIVES = """
SELECT a.app_id, a.credited_source_id, rtrim(a.currency),
       count(*), count(*) FILTER (WHERE a.outcome IN ('loaded', 'impressed', 'clicked')),
       count(*) FILTER (WHERE d.status = 'no_fill'),
       sum(coalesce((a.counts->>'impression')::int, 0)),
       sum(coalesce((a.counts->>'click')::int, 0)), sum(a.revenue_micros)
FROM archive_records a JOIN delivery_records d USING (day, opportunity_key)
GROUP BY 1, 2, 3
"""


def _extra_day(database_url: str, day_index: int) -> list[object]:
    """A no-fill, a clicked USD impression from net_c, and a rewarded one without revenue."""
    start = T0 + day_index * 86_400_000
    items: list[object] = []
    for n, (status, events) in enumerate(
        [
            ("no_fill", []),
            ("fill", [("loaded", None), ("impression", "USD"), ("click", None)]),
            ("fill", [("loaded", None), ("impression", None), ("reward", None)]),
        ]
    ):
        ts = start + 3_600_000 + n * 1000
        key = encode_ulid(ts, os.urandom(10))
        shift = ts - T0
        built = [
            event(
                key,
                f"{key}-{i}",
                kind,
                shift + 10 + i,
                source_id="net_c",
                revenue_micros=2_000 if currency else None,
                currency=currency,
            )
            for i, (kind, currency) in enumerate(events)
        ]
        waterfall = () if status == "no_fill" else None
        extra = {"waterfall": waterfall} if waterfall is not None else {}
        items.append(
            close_opportunity(
                opportunity(key, ts_ms=ts, status=status, context={"country": "FR"}, **extra),
                built,
            )
        )
    write_items(database_url, items)
    return items


@pytest.fixture
def days(database_url: str) -> list[dt.date]:
    filled, _written = fill_days(database_url)
    for index in range(len(filled)):
        _extra_day(database_url, index)
    return filled


@pytest.fixture
def cli_env(database_url: str, file_store: FileColdStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", file_store.root.as_uri())


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rollup_sums(conn: psycopg.Connection) -> dict[tuple[object, ...], tuple[int, ...]]:
    rows = conn.execute(
        f"SELECT day, {', '.join(GROUP)}, {', '.join(f'sum({s})::int8' for s in SUMS)} "
        f"FROM report_rollups GROUP BY day, {', '.join(GROUP)}"
    ).fetchall()
    return {tuple(row[:7]): tuple(row[7:]) for row in rows}


def _archive_sums(
    database_url: str,
) -> tuple[dict[tuple[object, ...], tuple[int, ...]], dict[tuple[object, ...], int]]:
    """Counts per (app, source) and revenue per (app, source, currency), from the archives."""
    with connect(database_url) as conn:
        rows = conn.execute(_FROM_ARCHIVES).fetchall()
    counts: dict[tuple[object, ...], tuple[int, ...]] = {}
    revenue: dict[tuple[object, ...], int] = {}
    for app, source, currency, *values in rows:
        so_far = counts.get((app, source), (0,) * 5)
        counts[(app, source)] = tuple(a + int(b) for a, b in zip(so_far, values[:5], strict=True))
        if values[5]:
            revenue[(app, source, currency)] = int(values[5])
    return counts, revenue


def _by_app_source(
    report: dict[str, object],
) -> tuple[dict[tuple[object, ...], tuple[int, ...]], dict[tuple[object, ...], int]]:
    rows = report["rows"]
    assert isinstance(rows, list)
    fields = ("requests", "fills", "no_fills", "impressions", "clicks")
    counts = {(row["app_id"], row["source_id"]): tuple(row[f] for f in fields) for row in rows}
    revenue = {
        (row["app_id"], row["source_id"], row["currency"]): row["revenue_micros"]
        for row in rows
        if row["revenue_micros"]
    }
    return counts, revenue


def test_the_sink_writes_rollups_once_and_compaction_and_rebuild_keep_them(
    database_url: str, days: list[dt.date]
) -> None:
    _extra_day(database_url, 0)  # the same groups again, in a batch of their own
    with connect(database_url, autocommit=True) as conn:
        before = _rollup_sums(conn)
        rows_before = conn.execute("SELECT count(*) FROM report_rollups").fetchone()
        assert rows_before is not None and rows_before[0] > len(before) > 0
        for day in days:
            compact_day(conn, day)
        assert _rollup_sums(conn) == before
        compacted = conn.execute("SELECT count(*) FROM report_rollups").fetchone()
        assert compacted == (len(before),)
        assert compact_day(conn, days[0])[0] == compact_day(conn, days[0])[1]  # nothing to fold
        for day in days:
            rebuild_day(conn, day)
        assert _rollup_sums(conn) == before


def test_a_batch_written_twice_adds_its_rollups_once(database_url: str) -> None:
    items = _extra_day(database_url, 0)
    with connect(database_url, autocommit=True) as conn:
        once = _rollup_sums(conn)
    write_items(database_url, items)  # as after a restart: the archives are there already
    with connect(database_url, autocommit=True) as conn:
        assert _rollup_sums(conn) == once
        assert conn.execute("SELECT sum(requests)::int FROM report_rollups").fetchone() == (3,)


def test_the_report_equals_the_archive_records_hot_cold_and_split(
    database_url: str, days: list[dt.date], file_store: FileColdStore, cli_env: None,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    expected = _archive_sums(database_url)
    code, hot, err = _report(capsys, *span, "--by", "app,source", "--json")
    assert code == 0, err
    report = json.loads(hot)
    assert _by_app_source(report) == expected
    assert report["hot_days"] == 3 and report["cold_days"] == []

    # Day 1 cold, day 2 split (rollups cold, opportunities hot), day 0 hot.
    with connect(database_url, autocommit=True) as conn:
        for table in RECORD_TABLES:
            tier_day(conn, file_store, table, days[1])
        tier_day(conn, file_store, "report_rollups", days[2])
        tier_day(conn, file_store, "archive_records", days[2])
    code, cold, err = _report(capsys, *span, "--by", "app,source", "--json")
    assert code == 0, err
    moved = json.loads(cold)
    assert moved["rows"] == report["rows"] and moved["totals"] == report["totals"]
    assert moved["cold_days"] == [days[1].isoformat(), days[2].isoformat()]
    assert "read cold day" in err

    # Very late archives recreate a cold day's partition: counted once, with the cold copy.
    _extra_day(database_url, 1)
    code, late, err = _report(capsys, *span, "--by", "day", "--json")
    assert code == 0, err
    by_day = {row["day"]: row for row in json.loads(late)["rows"] if row["currency"] == "USD"}
    with connect(database_url) as conn:
        hot_late = conn.execute(
            "SELECT count(*) FROM archive_records WHERE day = %s", (days[1],)
        ).fetchone()
    assert hot_late == (3,)
    assert by_day[days[1].isoformat()]["requests"] == 7 + 3
    with connect(database_url, autocommit=True) as conn:
        # The tiering job merges the cold copy back and tiers again: still once.
        run_tiering(conn, file_store, days[1] + dt.timedelta(days=30), tables=["report_rollups"])
    code, again, err = _report(capsys, *span, "--by", "day", "--json")
    assert json.loads(again)["rows"] == json.loads(late)["rows"]


def test_report_formats_and_order(
    database_url: str, days: list[dt.date], cli_env: None,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    code, table, _ = _report(capsys, *span, "--by", "app,placement")
    assert code == 0
    lines = table.splitlines()
    assert lines[0].startswith(f"report {days[0]} .. {days[-1]} by app, placement")
    assert any(line.startswith("total") for line in lines)
    code, text, _ = _report(capsys, *span, "--by", "country,os", "--format", "csv")
    header, *rows = text.splitlines()
    assert header.startswith("country,os,currency,requests,fills,fill_rate,no_fills")
    countries = [row.split(",")[0] for row in rows]
    assert countries == sorted(countries, key=lambda c: (c == "", c))  # empty (none) last
    out = tmp_path / "r.parquet"
    assert _report(capsys, *span, "--format", "parquet", "--output", str(out))[0] == 0
    table_read = pq.read_table(out)
    assert table_read.column_names[:3] == ["day", "currency", "requests"]
    code, doc, _ = _report(capsys, *span, "--by", "", "--app", "app", "--json")
    total = json.loads(doc)
    assert [row["currency"] for row in total["rows"]] == ["EUR", "USD"]
    assert {row["requests"] for row in total["rows"]} == {2 * 3 + 3 * 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "day,planet"], "unknown dimension 'planet'"),
        (["--by", "app,app"], "names a dimension twice"),
        (["--format", "parquet"], "--format parquet needs --output FILE"),
        (["--format", "csv", "--json"], "--json and --format csv"),
    ],
)
def test_report_refuses_bad_flags_in_one_line(
    cli_env: None, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _report(capsys, "--from", "2031-01-01", "--to", "2031-01-02", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_days_without_rollups_are_named(
    database_url: str, days: list[dt.date], cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM report_rollups WHERE day = %s", (days[0],))
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    code, _out, err = _report(capsys, *span)
    assert code == 0
    assert f"mediation rollups rebuild --from {days[0]} --to {days[0]}" in err
    assert main(["rollups", "rebuild", "--from", days[0].isoformat(), "--to",
                 days[0].isoformat()]) == 0  # fmt: skip
    capsys.readouterr()
    code, _out, err = _report(capsys, *span)
    assert "rebuild" not in err


def test_cold_rollups_read_with_duckdb_pandas_and_polars_as_the_docs_say(
    database_url: str, days: list[dt.date], file_store: FileColdStore
) -> None:
    import duckdb
    import pandas as pd
    import polars as pl

    with connect(database_url, autocommit=True) as conn:
        expected = conn.execute(
            "SELECT app_id, sum(requests)::int8, sum(revenue_micros)::int8 FROM report_rollups "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        for day in days:
            for table in RECORD_TABLES:
                tier_day(conn, file_store, table, day)
    root = file_store.root
    # docs/reporting.md, "Reading cold Parquet with DuckDB, pandas or polars"
    found = duckdb.sql(
        f"SELECT app_id, sum(requests), sum(revenue_micros) FROM read_parquet("
        f"'{root}/report_rollups/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [tuple(int(v) if not isinstance(v, str) else v for v in row) for row in found] == [
        tuple(row) for row in expected
    ]
    archives = pd.read_parquet(root / "archive_records")
    assert len(archives) == sum(row[1] for row in expected)
    events = pl.scan_parquet(f"{root}/event_records/**/*.parquet", hive_partitioning=True)
    counted = (
        events.filter(
            pl.col("type") == "impression", pl.col("excluded_reason").is_null(), ~pl.col("late")
        )
        .group_by("app_id", "source_id", "currency")
        .agg(pl.len().alias("impressions"), pl.col("revenue_micros").sum())
        .collect()
    )
    assert counted["impressions"].sum() == int(archives["counts"].map(
        lambda text: json.loads(text).get("impression", 0)
    ).sum())  # fmt: skip


def test_the_chart_is_a_png(
    days: list[dt.date], cli_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "r.png"
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    code, _out, err = _report(capsys, *span, "--by", "source", "--chart", str(chart))
    assert code == 0, err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"chart written to {chart}" in err
