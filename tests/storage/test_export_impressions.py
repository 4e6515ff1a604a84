"""The impression export: one row per counted impression, over hot, cold and split days."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from report_data import fill_days, write_items

from mediation.cli import main
from storage.cold import FileColdStore
from storage.db import connect
from storage.tier_job import tier_day

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
REPLAYED = ("opportunity_records", "delivery_records", "event_records", "archive_records")


@pytest.fixture
def filled(database_url: str) -> tuple[list[dt.date], list[list[object]]]:
    return fill_days(database_url)


@pytest.fixture
def days(filled: tuple[list[dt.date], list[list[object]]]) -> list[dt.date]:
    return filled[0]


@pytest.fixture
def cli_env(database_url: str, file_store: FileColdStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("COLD_STORAGE_URL", file_store.root.as_uri())


def _tier(database_url: str, store: FileColdStore, days: list[dt.date]) -> None:
    """The first day stays hot, the second goes cold, the third is split mid-tiering."""
    with connect(database_url, autocommit=True) as conn:
        for table in REPLAYED:
            tier_day(conn, store, table, days[1])
        for table in ("opportunity_records", "archive_records"):
            tier_day(conn, store, table, days[2])
        cold = conn.execute(
            "SELECT count(*) FROM tiering_catalog WHERE dropped_at IS NOT NULL"
        ).fetchone()
        assert cold == (6,)


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", "impressions", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _expected(database_url: str, app: str | None = None) -> list[dict[str, object]]:
    """The counted impressions, read straight from Postgres (every day hot)."""
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT e.day, e.server_ts, e.opportunity_key, e.event_id, e.app_id, "
            "o.placement_id, e.source_id, o.context->>'country', o.context->>'os', "
            "e.revenue_micros, trim(e.currency), o.config_version, o.rollout_bucket "
            "FROM event_records e JOIN opportunity_records o USING (day, opportunity_key) "
            "WHERE e.type = 'impression' AND e.excluded_reason IS NULL AND NOT e.late "
            "AND (%s::text IS NULL OR e.app_id = %s) "
            "ORDER BY e.day, e.server_ts, e.opportunity_key, e.event_id",
            (app, app),
        ).fetchall()
    names = ["day", "server_ts", "opportunity_key", "event_id", "app_id", "placement_id",
             "source_id", "country", "os", "revenue_micros", "currency", "config_version",
             "rollout_bucket"]  # fmt: skip
    expected = []
    for row in rows:
        values = dict(zip(names, row, strict=True))
        values["day"] = values["day"].isoformat()
        moment = values["server_ts"].astimezone(dt.UTC)
        values["server_ts"] = moment.isoformat(timespec="milliseconds")[:-6] + "Z"
        expected.append(values)
    return expected


def test_one_row_per_counted_impression_over_hot_cold_and_split_days(
    database_url: str, days: list[dt.date], file_store: FileColdStore, cli_env: None,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    expected = _expected(database_url)
    # 3 opportunities a day with two counted impressions each.
    assert len(expected) == 3 * 3 * 2
    with connect(database_url) as conn:
        archived = conn.execute(
            "SELECT opportunity_key, revenue_micros, (counts->>'impression')::int "
            "FROM archive_records"
        ).fetchall()
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    code, hot_jsonl, err = _export(capsys, *span, "--format", "jsonl")
    assert code == 0
    assert "3/3 days" in err
    assert [json.loads(line) for line in hot_jsonl.splitlines()] == expected
    code, hot_csv, _ = _export(capsys, *span)

    _tier(database_url, file_store, days)
    code, jsonl, err = _export(capsys, *span, "--format", "jsonl")
    assert code == 0, err
    assert jsonl == hot_jsonl  # byte for byte, wherever the days live
    code, text, _ = _export(capsys, *span, "--format", "csv")
    assert text == hot_csv
    parquet = str(tmp_path / "x.parquet")
    assert _export(capsys, *span, "--format", "parquet", "--output", parquet)[0] == 0
    rows = [json.loads(line) for line in jsonl.splitlines()]

    # The archive counts exactly these impressions, and their revenue.
    for key, revenue, impressions in archived:
        mine = [row for row in rows if row["opportunity_key"] == key]
        assert len(mine) == (impressions or 0)
        assert sum(row["revenue_micros"] for row in mine) == revenue

    # csv and parquet say what jsonl says.
    from_csv = list(csv.DictReader(io.StringIO(text)))
    assert [list(row) for row in from_csv[:1]] == [list(rows[0])]
    assert from_csv == [
        {name: "" if value is None else str(value) for name, value in row.items()} for row in rows
    ]
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.column_names == list(rows[0])
    from_parquet = table.to_pylist()
    for row in from_parquet:
        row["day"] = row["day"].isoformat()
        row["server_ts"] = row["server_ts"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert from_parquet == rows


def test_app_filter_and_single_days(
    database_url: str, days: list[dt.date], file_store: FileColdStore, cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    expected = _expected(database_url, "other")
    _tier(database_url, file_store, days)
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat()]
    code, out, _ = _export(capsys, *span, "--app", "other", "--format", "jsonl")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == expected
    assert {json.loads(line)["app_id"] for line in out.splitlines()} == {"other"}
    for day in days:
        code, out, err = _export(capsys, "--from", day.isoformat(), "--to", day.isoformat(),
                                 "--format", "jsonl")  # fmt: skip
        assert code == 0
        assert "/" not in err  # no progress lines for one day
        assert {json.loads(line)["day"] for line in out.splitlines()} == {day.isoformat()}


def test_rows_written_again_after_tiering_count_once(
    database_url: str, filled: tuple[list[dt.date], list[list[object]]],
    file_store: FileColdStore, cli_env: None, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    days, written = filled
    span = ["--from", days[0].isoformat(), "--to", days[-1].isoformat(), "--format", "jsonl"]
    code, before, _ = _export(capsys, *span)
    _tier(database_url, file_store, days)
    # Very late writes recreate a cold day's partitions: the same rows, hot again.
    write_items(database_url, written[1] + written[2])
    with connect(database_url) as conn:
        hot_again = conn.execute(
            "SELECT count(*) FROM event_records WHERE day = %s", (days[1],)
        ).fetchone()
    assert hot_again is not None and hot_again[0] > 0
    code, after, _ = _export(capsys, *span)
    assert code == 0
    assert after == before


def test_a_range_over_centuries_reads_only_the_stored_days(
    days: list[dt.date], file_store: FileColdStore, database_url: str, cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, exact, _ = _export(capsys, "--from", days[0].isoformat(), "--to", days[-1].isoformat())
    _tier(database_url, file_store, days)
    code, wide, err = _export(capsys, "--from", "0001-01-01", "--to", "9999-12-31")
    assert code == 0
    assert wide == exact
    assert "3 day(s)" in err.splitlines()[-1]


@pytest.mark.parametrize(
    ("first", "last"),
    [("2031-13-01", "2031-01-02"), ("yesterday", "2031-01-02"), ("2031-01-03", "2031-01-02")],
)
def test_bad_days_exit_2_in_one_line(
    first: str, last: str, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _export(capsys, "--from", first, "--to", last)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("mediation export: ")


def test_parquet_needs_an_output_file(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _export(capsys, "--from", "2031-01-01", "--to", "2031-01-01",
                           "--format", "parquet")  # fmt: skip
    assert code == 2
    assert "--output" in err


def test_an_unwritable_output_exits_2_in_one_line(
    cli_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for kind in ("csv", "parquet"):
        output = str(tmp_path / "no-such-dir" / f"x.{kind}")
        code, _, err = _export(capsys, "--from", "2031-01-01", "--to", "2031-01-01",
                               "--format", kind, "--output", output)  # fmt: skip
        assert code == 2
        assert err.startswith("mediation export: cannot write ")
        assert len(err.strip().splitlines()) == 1


def test_an_unreachable_cold_store_exits_1_in_one_line(
    database_url: str, days: list[dt.date], file_store: FileColdStore, cli_env: None,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    _tier(database_url, file_store, days)
    monkeypatch.setenv("COLD_STORAGE_URL", (tmp_path / "elsewhere").as_uri())
    code, _, err = _export(capsys, "--from", days[1].isoformat(), "--to", days[1].isoformat())
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("mediation export: cold storage: ")
