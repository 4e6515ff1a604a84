"""The Postgres writer alone: CPU and time per closed opportunity, by way of inserting.

Builds ``--batches`` batches of closed opportunities in the worker
benchmark's traffic shape (``bench/worker_bench.py``: 1.8 events each,
fills and no-fills), then, for each batch size of ``--batch`` and each way
of inserting, writes them all with ``sinks.postgres.PostgresWriter`` into a
fresh database, ``--repeats`` times (alternating the ways), and reports
medians per closed opportunity (about 4.8 rows: opportunity, delivery,
archive, events):

- ``former``: the writer before rows went in as JSON, kept here as the
  baseline: timestamps formatted as text in Python, a table's rows in one
  pipelined ``executemany`` below 200 rows, else COPY (text format) into a
  transaction's staging table and ``INSERT ... SELECT ... ON CONFLICT DO
  NOTHING``;
- ``binary``: today's rows (timestamps as epoch ms), COPY in binary format
  with the column types set (no per-value text formatting in Python) into
  a staging table, converted by the ``INSERT ... SELECT``;
- ``json``: the writer as it is (one JSON document a table, expanded by
  Postgres in one ``INSERT ... SELECT``).

Figures: ``wall_us`` (time in ``write``), ``python_cpu_us`` (this process,
every thread, incl. building rows) and ``postgres_cpu_us`` (the server
backend of the writer's connection; only when the server runs on this
machine), each per closed opportunity, and ``vs_former`` ratios.

    python bench/writer_bench.py --batch 50,500,2000 --batches 20 --repeats 5 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sinks.postgres as writer_module
from bench.common import cpu_seconds, fresh_database, machine, median
from bench.worker_bench import _traffic
from mediation.rules.closure import close_opportunity
from mediation.rules.model import ClosedOpportunity
from mediation.rules.ulid import ulid_day
from mediation.settings import Settings
from mediation.tables import JSONB, TABLES, TIMESTAMPTZ
from mediation.text_table import render_table
from sinks.postgres import PostgresWriter
from sinks.records import SinkItem
from sinks.rows import COLUMNS, TableRows, _day_text, json_text, rows_for, timestamp_text

Cursor = psycopg.Cursor[tuple[object, ...]]
Insert = Callable[[Cursor, str, list[tuple[object, ...]]], int]

_FORMER_THRESHOLD = 200  # the former writer's COPY_THRESHOLD


def _former_json(value: Mapping[str, object]) -> str:
    return json_text(value if type(value) is dict else dict(value)) if value else "{}"


def _former_rows_for(items: list[SinkItem]) -> TableRows:
    """The former builder (closed opportunities only): timestamps as the text Postgres
    reads, ``jsonb`` values as JSON text."""
    rows = TableRows()
    for item in items:
        assert isinstance(item, ClosedOpportunity)
        opp, a = item.opportunity, item.archive
        date = ulid_day(opp.opportunity_key)
        rows.days.add(date)
        day = _day_text(date)
        rows.by_table["opportunity_records"].append(
            (
                day,
                opp.opportunity_key,
                opp.app_id,
                opp.placement_id,
                opp.device_hash,
                timestamp_text(opp.ts_ms),
                timestamp_text(opp.client_ts_ms),
                opp.config_version,
                opp.rollout_bucket,
                _former_json(opp.context),
                opp.closure_window_ms,
                opp.grace_ms,
                opp.skew_tolerance_ms,
            )
        )
        rows.by_table["delivery_records"].append(
            (
                day,
                opp.opportunity_key,
                opp.delivery_id,
                opp.status,
                orjson.dumps(opp.waterfall).decode(),
                timestamp_text(opp.expires_at_ms),
            )
        )
        rows.by_table["event_records"].extend(
            (
                day,
                s.event.event_id,
                s.event.app_id,
                s.event.opportunity_key,
                s.event.type,
                timestamp_text(s.event.ts_ms),
                timestamp_text(s.event.server_ts_ms),
                timestamp_text(s.event.received_at_ms),
                s.event.source_id,
                s.event.revenue_micros,
                s.event.currency,
                _former_json(s.event.attrs),
                s.late,
                s.excluded_reason,
            )
            for s in item.events
        )
        rows.by_table["archive_records"].append(
            (
                day,
                a.opportunity_key,
                a.app_id,
                a.placement_id,
                timestamp_text(a.opened_at_ms),
                timestamp_text(a.closed_at_ms),
                a.close_reason,
                a.outcome,
                a.rewarded,
                a.credited_source_id,
                a.revenue_micros,
                a.currency,
                _former_json(a.counts),
                a.counted_events,
                a.excluded_events,
                a.config_version,
                a.rule_version,
                a.inputs_hash,
            )
        )
    return rows


def _same_rows(batch: list[SinkItem]) -> None:
    """The former rows are today's as text (a check of the copy above)."""
    former, today = _former_rows_for(batch).by_table, rows_for(batch).by_table
    for table, columns in COLUMNS.items():
        kinds = [TABLES[table].column(name).type for name in columns]
        as_text = [
            tuple(
                timestamp_text(v)  # type: ignore[arg-type]
                if kind == TIMESTAMPTZ
                else json_text(v)
                if kind == JSONB
                else v
                for kind, v in zip(kinds, row, strict=True)
            )
            for row in today[table]
        ]
        assert as_text == former[table], table


def _former_insert(cur: Cursor, table: str, rows: list[tuple[object, ...]]) -> int:
    return writer_module.insert_rows(cur, table, rows, _FORMER_THRESHOLD)


_BINARY_TYPES = {"integer": "int4", "smallint": "int2", "bigint": "int8", "boolean": "bool"}


def _binary_sql(table: str) -> tuple[list[str], tuple[sql.Composed, ...]]:
    """Staging columns typed for binary COPY: numbers as themselves, timestamps as
    epoch ms, the rest as text; the INSERT ... SELECT converts."""
    types: list[str] = []
    stage_columns: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name in COLUMNS[table]:
        kind = TABLES[table].column(name).type
        copy_type = "int8" if kind == TIMESTAMPTZ else _BINARY_TYPES.get(kind, "text")
        types.append(copy_type)
        stage_columns.append(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(copy_type)))
        column = sql.Identifier(name)
        if kind == TIMESTAMPTZ:
            values.append(
                sql.SQL(
                    "timestamptz 'epoch' + ({} / 1000) * interval '1 second'"
                    " + mod({}, 1000) * interval '1 millisecond'"
                ).format(column, column)
            )
        elif copy_type == "text" and kind != "text" and not kind.startswith("character"):
            values.append(sql.SQL("{}::{}").format(column, sql.SQL(kind)))
        else:
            values.append(column)
    stage = sql.Identifier(f"bstage_{table}")
    names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    return types, (
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            stage, sql.SQL(", ").join(stage_columns)
        ),
        sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, names),
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
            sql.Identifier(table), names, sql.SQL(", ").join(values), stage
        ),
        sql.SQL("DROP TABLE {}").format(stage),
    )


_BINARY = {table: _binary_sql(table) for table in COLUMNS if table != "dead_letters"}
_JSONB_POSITIONS = {
    table: frozenset(i for i, n in enumerate(columns) if n in TABLES[table].names_of_type(JSONB))
    for table, columns in COLUMNS.items()
}


def _binary_insert(cur: Cursor, table: str, rows: list[tuple[object, ...]]) -> int:
    types, (create, copy_in, insert, drop) = _BINARY[table]
    jsonb = _JSONB_POSITIONS[table]
    cur.execute(create)
    with cur.copy(copy_in) as copy:
        copy.set_types(types)
        for row in rows:
            # binary COPY of jsonb wants its text, one value at a time
            copy.write_row(
                tuple(json_text(v) if i in jsonb else v for i, v in enumerate(row))
                if jsonb
                else row
            )
    cur.execute(insert)
    inserted = cur.rowcount
    cur.execute(drop)
    return inserted


_JSON_INSERT: Insert = writer_module._insert
_ROWS_FOR = rows_for
VARIANTS: dict[str, tuple[Callable[..., TableRows], Insert]] = {
    "former": (_former_rows_for, _former_insert),
    "binary": (_ROWS_FOR, _binary_insert),
    "json": (_ROWS_FOR, _JSON_INSERT),
}


@contextlib.contextmanager
def _variant(name: str) -> Iterator[None]:
    build, insert = VARIANTS[name]
    # The writer's module-level names, swapped for this way and back.
    setattr(writer_module, "rows_for", build)  # noqa: B010
    setattr(writer_module, "_insert", insert)  # noqa: B010
    try:
        yield
    finally:
        setattr(writer_module, "rows_for", _ROWS_FOR)  # noqa: B010
        setattr(writer_module, "_insert", _JSON_INSERT)  # noqa: B010


def _batches(size: int, count: int, seed: int) -> list[list[SinkItem]]:
    traffic = _traffic(int(size * count * 1.6), seed)  # ~1.6 events an opportunity
    closed: list[SinkItem] = [close_opportunity(opp, events) for _, opp, events in traffic]
    return [closed[i * size : (i + 1) * size] for i in range(count)]


def _backend_cpu(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:  # the server runs elsewhere
        return None


def _run(base_url: str, name: str, batches: list[list[SinkItem]]) -> dict[str, float]:
    with fresh_database(base_url) as url, _variant(name):
        writer = PostgresWriter(url)
        writer.write(batches[0][:1])  # connect, create the day's partitions
        conn = writer._conn
        assert conn is not None
        pid = conn.info.backend_pid
        server0 = _backend_cpu(pid)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for batch in batches:
            writer.write(batch)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server1 = _backend_cpu(pid)
        writer.close()
        with psycopg.connect(url) as check:
            stored = check.execute("SELECT count(*) FROM archive_records").fetchone()
    items = sum(len(batch) for batch in batches)
    assert stored is not None and stored[0] == items, (name, stored, items)
    figures = {"wall_us": wall / items * 1e6, "python_cpu_us": cpu / items * 1e6}
    if server0 is not None and server1 is not None:
        figures["postgres_cpu_us"] = (server1 - server0) / items * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--batch", default="50,500,2000", help="closed opportunities a batch (comma-separated)"
    )
    parser.add_argument("--batches", type=int, default=20, help="batches a run")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each way (medians)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"ways to run ({', '.join(VARIANTS)})"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}")
    base_url = Settings.from_env().database_url
    results: dict[str, dict[str, dict[str, float]]] = {}
    for size in (int(part) for part in args.batch.split(",")):
        batches = _batches(size, args.batches, seed=size)
        _same_rows(batches[0])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name in variants:
                runs[name].append(_run(base_url, name, batches))
        results[str(size)] = {
            name: {key: median([run[key] for run in done]) for key in done[0]}
            for name, done in runs.items()
        }
        former = results[str(size)].get("former")
        for figures in results[str(size)].values():
            if former is not None:
                for key in list(figures):
                    if not key.endswith("_us"):
                        continue
                    figures[f"{key[:-3]}_vs_former"] = figures[key] / former[key]
        print(f"batch {size}: {results[str(size)]}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "writer",
                    "machine": machine(),
                    "batches": args.batches,
                    "repeats": args.repeats,
                    "results": results,
                }
            )
        )
    print(
        render_table(
            f"Postgres writer, per closed opportunity (~4.8 rows), medians of {args.repeats}",
            ["batch", "way", "wall us", "python CPU us", "postgres CPU us", "CPU vs former"],
            [
                [
                    size,
                    name,
                    round(f["wall_us"], 1),
                    round(f["python_cpu_us"], 1),
                    round(f.get("postgres_cpu_us", 0.0), 1),
                    f"{f.get('python_cpu_vs_former', 1.0):.2f}",
                ]
                for size, by_name in results.items()
                for name, f in by_name.items()
            ],
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
