"""Writing the pipeline's records to Postgres (behind the worker's Bytewax sink).

Delivery guarantee: at-least-once from Bytewax (a batch may be written again
after a restart), exactly-once *effects* in Postgres: every insert is
``ON CONFLICT DO NOTHING`` on the table's natural key (which includes
``day``), and the rules emit the same records for the same inputs, so a
replayed batch changes nothing. One transaction per batch.

Postgres being away is not the records' fault: the writer retries with
capped exponential backoff and jitter, holding the dataflow (backpressure)
until the database is back. It never dead-letters for that reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from mediation.rules.amendment import archive_changes
from mediation.rules.closure import EXCLUDED_UNKNOWN_OPPORTUNITY, close_opportunity
from mediation.rules.model import DeadLetter, Event, event_as_dict
from mediation.rules.state import OPPORTUNITY_APP_MISMATCH
from mediation.tables import (
    AMENDMENT_RECORDS,
    ARCHIVE_RECORDS,
    DEAD_LETTERS,
    JSONB,
    TEXT,
    TIMESTAMPTZ,
    record_table,
)
from storage.cold import ColdStore
from storage.cold_owners import cold_archive_owners
from storage.db import DatabaseUnavailableError, connect
from storage.hot_records import load_archives, load_inputs
from storage.partitions import ensure_partitions
from storage.rollups import rollup_statement
from storage.tiering import TieringError

from .positions import PositionMark, record_positions
from .records import SinkItem, dead_letter_from_rules, unwritable
from .rows import (
    COLUMNS,
    SINK_TABLES,
    EventRowKey,
    TableRows,
    dead_letter_row,
    event_conflict_row,
    json_text,
    json_value,
    rows_for,
)

__all__ = ["PostgresWriter", "WriteCounters", "insert_rows"]

log = logging.getLogger(__name__)


def _names(columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _insert_sql(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        sql.Identifier(table),
        _names(columns),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )


# Every table's, though only dead letters go in this way: tests/sinks/test_json_rows.py
# and bench/writer_bench.py write the other tables the former way too, to compare.
_INSERTS = {table: _insert_sql(table, columns) for table, columns in COLUMNS.items()}


def _json_value_sql(table: str, column: str, position: int) -> str:
    """Element ``position`` of a row array as the column's type.

    ``->>`` yields the element as text (JSON null: SQL NULL), which the
    cast parses with the type's input function, the one COPY's text format
    uses. Character columns take the text by assignment instead: an
    explicit cast to ``character(n)`` would truncate a too-long value
    silently, where an assignment refuses it as COPY does. ``jsonb``
    values and timestamps (epoch ms) are the exceptions below.
    """
    kind = record_table(table).column(column).type
    value = f"(row_->>{position})"
    if kind == TIMESTAMPTZ:
        # Epoch milliseconds, several times cheaper than parsing text. In two
        # parts: an interval times a number multiplies in float8, exact only
        # while the product in microseconds stays below 2**53 (both parts do
        # for every year Python can write); whatever the session's time zone.
        ms = f"{value}::bigint"
        return (
            f"(timestamptz 'epoch' + ({ms} / 1000) * interval '1 second'"
            f" + mod({ms}, 1000) * interval '1 millisecond')"
        )
    if kind == JSONB:  # a JSON value inside the document: taken as it is
        return f"(row_->{position})"
    if kind == TEXT or kind.startswith("character"):
        return value
    return f"{value}::{kind}"


def _json_insert_sql(table: str, columns: tuple[str, ...]) -> sql.Composed:
    """Insert the rows of one JSON document (an array of row arrays), skipping stored ones."""
    values = ", ".join(_json_value_sql(table, name, i) for i, name in enumerate(columns))
    return sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM jsonb_array_elements(%s::jsonb) AS row_ "
        "ON CONFLICT DO NOTHING"
    ).format(sql.Identifier(table), _names(columns), sql.SQL(values))


# The record tables' rows go in as one JSON document a table a batch, which
# Postgres expands into one INSERT ... SELECT: one C call (orjson) builds the
# statement's only parameter, with no per-value formatting in Python, no
# staging table and one round trip whatever the batch's size (see
# docs/benchmarks.md, "Writer"). Dead letters (a bytea payload, and rare)
# keep the executemany / COPY path below.
_JSON_INSERTS = {
    table: _json_insert_sql(table, columns)
    for table, columns in COLUMNS.items()
    if table != DEAD_LETTERS.name
}
# The archives' statement adds the report rollups of the records it inserted
# (storage/rollups.py): in the archive's transaction, exactly once.
_JSON_INSERTS[ARCHIVE_RECORDS.name] = rollup_statement(_JSON_INSERTS[ARCHIVE_RECORDS.name])
# Dead letters: below this many rows they go in as one pipelined
# executemany; from here on COPY into a transaction-scoped staging table and
# one INSERT ... SELECT ... ON CONFLICT DO NOTHING is several times faster.
# (Staging tables are created per transaction: safe behind a transaction-mode
# pooler.) Their rows hold bytes and text only: no timestamps, no jsonb.
COPY_THRESHOLD = 200


def _stage_sql(table: str, columns: tuple[str, ...]) -> tuple[sql.Composed, ...]:
    """Create the staging table, COPY into it, move its rows, drop it."""
    stage = sql.Identifier(f"stage_{table}")
    target = sql.Identifier(table)
    return (
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            stage, target
        ),
        sql.SQL("COPY {} ({}) FROM STDIN").format(stage, _names(columns)),
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
            target, _names(columns), _names(columns), stage
        ),
        sql.SQL("DROP TABLE {}").format(stage),
    )


_STAGE_SQL = {table: _stage_sql(table, columns) for table, columns in COLUMNS.items()}
# ``day`` and ``ts`` as the rows carry them (``sinks.rows``: ISO text, epoch ms), to compare.
_STORED_EVENTS = """
SELECT to_char(day, 'YYYY-MM-DD'), event_id, app_id, opportunity_key, type,
       (extract(epoch FROM ts) * 1000)::bigint,
       source_id, revenue_micros, currency, attrs, late
FROM event_records WHERE day = ANY(%s::date[]) AND event_id = ANY(%s) AND app_id = ANY(%s)
"""
_LATE = COLUMNS["event_records"].index("late")
_INSERT_AMENDMENT = _insert_sql(AMENDMENT_RECORDS.name, AMENDMENT_RECORDS.written_columns)


@dataclass(frozen=True)
class WriteCounters:
    """Where the sink reports its work (the worker's ``/metrics``); by default nowhere."""

    batch_written: Callable[[int], None] = lambda rows: None  # one committed transaction
    retried: Callable[[], None] = lambda: None  # one failed attempt that will be retried


class PostgresWriter:
    """Writes batches of sink items, one transaction each (see the module docstring).

    One connection per writer. The worker runs one per writer thread of
    ``sinks.pipelined.PipelinedSink``.
    """

    def __init__(
        self,
        database_url: str,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        counters: WriteCounters | None = None,
        events_topic: str | None = None,
        cold_store: ColdStore | None = None,
    ):
        self._database_url = database_url
        # Where events are read from: the dead letters this writer makes
        # itself (an orphan of another app) carry their source position.
        self._events_topic = events_topic
        # Where tiered archives are, to settle stragglers of tiered days.
        self._cold_store = cold_store
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._counters = counters or WriteCounters()
        self._conn: psycopg.Connection | None = None
        self._known_days: set[dt.date] = set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._database_url)
        return self._conn

    def _write(self, rows: TableRows) -> None:
        conn = self._connection()
        new_days = rows.days - self._known_days
        if new_days:
            ensure_partitions(conn, new_days)
            self._known_days |= new_days
        with conn.transaction(), conn.cursor() as cur:
            conflicts: list[tuple[object, ...]] = []
            late: list[tuple[object, ...]] = []
            # Parents before children is not needed (no foreign keys between
            # record tables), but a fixed order keeps lock order stable.
            for table in SINK_TABLES:
                table_rows = rows.by_table[table]
                if table == "event_records" and table_rows:
                    conflicts, late = _insert_events(
                        cur, table_rows, rows.orphans, self._events_topic, self._cold_store
                    )
                    continue
                if table == "dead_letters":
                    table_rows = table_rows + conflicts
                if table_rows:
                    _insert(cur, table, table_rows)
            if late:  # after the archives: a batch may hold both
                _record_amendments(cur, late)

    def write(self, items: list[SinkItem]) -> None:
        try:
            self._write_retrying(rows_for(items))
        except psycopg.Error as exc:
            # Bad in itself (e.g. a value Postgres refuses): find the item(s)
            # by writing one at a time and dead-letter only those.
            log.warning("batch of %d items refused (%s); isolating the bad ones", len(items), exc)
            for item in items:
                try:
                    self._write_retrying(rows_for([item]))
                except psycopg.Error as item_exc:
                    self._write_retrying(rows_for([unwritable(item, item_exc)]))

    def record_positions(self, marks: list[PositionMark]) -> None:
        """Record partitions' safe restart offsets (every write before them is committed)."""
        self._retrying(lambda: record_positions(self._connection(), marks), 0, None)

    def _write_retrying(self, rows: TableRows) -> None:
        if not len(rows):
            return
        self._retrying(lambda: self._write(rows), len(rows), rows)

    def _retrying(self, action: Callable[[], None], size: int, rows: TableRows | None) -> None:
        attempt = 0
        while True:
            try:
                action()
                if rows is not None:
                    self._counters.batch_written(size)
                return
            except (psycopg.Error, DatabaseUnavailableError) as exc:
                if rows is not None and self._forget_dropped_days(exc, rows):
                    continue  # the next attempt creates their partitions again
                if not _retryable(exc):
                    raise
                self._counters.retried()
                attempt += 1
                delay = min(self._max_backoff_s, 0.2 * 2 ** min(attempt, 10))
                delay *= random.uniform(0.5, 1.0)
                log.warning(
                    "Postgres write of %d rows failed (attempt %d), retrying in %.1fs: %s",
                    size,
                    attempt,
                    delay,
                    exc,
                )
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._sleep(delay)

    def _forget_dropped_days(self, exc: Exception, rows: TableRows) -> bool:
        """After a refusal for want of a partition: forget the batch's known days.

        The writer creates a day's partitions once and remembers the day, but
        ``mediation tier`` drops a day's partitions once it is old, while a
        very late event can still arrive for it (the gateway accepts keys older
        than the hot retention). Postgres then refuses the row ("no partition
        of relation ... found for row", a check violation). True when days were
        forgotten, so the next attempt makes sure of their partitions again; a
        check violation on days not remembered is about the rows themselves.
        """
        if not isinstance(exc, psycopg.errors.CheckViolation):
            return False
        remembered = rows.days & self._known_days
        self._known_days -= remembered
        if remembered:
            log.warning(
                "no partition for day(s) %s any more (tiered?); creating them again",
                ", ".join(sorted(day.isoformat() for day in remembered)),
            )
        return bool(remembered)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# SQLSTATE classes that say nothing about the records: connection trouble
# (08), operator intervention incl. statement timeouts (57), insufficient
# resources (53), transaction rollback such as deadlocks (40).
_RETRYABLE_CLASSES = ("08", "40", "53", "57")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:  # no server verdict: the connection broke
        return isinstance(exc, psycopg.OperationalError)
    return sqlstate[:2] in _RETRYABLE_CLASSES


def _insert(
    cur: psycopg.Cursor[tuple[object, ...]], table: str, rows: list[tuple[object, ...]]
) -> int:
    """Insert ``rows`` (duplicates of stored rows are skipped); how many were new
    (for the archives: how many rollup rows their statement added)."""
    statement = _JSON_INSERTS.get(table)
    if statement is not None:
        # One JSON array of row arrays (jsonb values nested as they are); what
        # orjson refuses (an integer beyond 64 bits) json_text writes, and
        # Postgres then judges the value as in any other format.
        cur.execute(statement, (json_text(rows),))
        return cur.rowcount
    return insert_rows(cur, table, rows)


def insert_rows(
    cur: psycopg.Cursor[tuple[object, ...]],
    table: str,
    rows: list[tuple[object, ...]],
    copy_threshold: int = COPY_THRESHOLD,
) -> int:
    """The row-by-row way (dead letters; every table's way before the JSON document):
    one pipelined executemany, or from ``copy_threshold`` rows COPY into a staging
    table and one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; how many were new.
    """
    if len(rows) < copy_threshold:
        cur.executemany(_INSERTS[table], rows)
        return cur.rowcount
    create, copy_in, insert, drop = _STAGE_SQL[table]
    cur.execute(create)
    with cur.copy(copy_in) as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(insert)
    inserted = cur.rowcount
    cur.execute(drop)  # the same table may be staged again in this transaction
    return inserted


def _insert_events(
    cur: psycopg.Cursor[tuple[object, ...]],
    rows: list[tuple[object, ...]],
    orphans: dict[EventRowKey, Event],
    events_topic: str | None,
    cold_store: ColdStore | None,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Insert events; return dead-letter rows (ids already stored with other
    content, orphans of another app's archived opportunity) and the new late
    events (for the amendment ledger).

    ``event_id`` is unique per app, so a stored row with the same key and the
    same content is this event again (a replayed batch, or a resend after the
    worker forgot the opportunity: absorbed), while other content means the
    id was reused: that copy must not vanish silently.
    """
    rows, letters = _settle_orphans(cur, rows, orphans, events_topic, cold_store)
    # The same key twice in one batch: compare with the first one here, since
    # the database sees only one of them.
    first_by_key: dict[tuple[object, ...], tuple[object, ...]] = {}
    for row in rows:
        key = (row[0], row[1], row[2])
        first = first_by_key.setdefault(key, row)
        if first is not row and not _same_event(_content(first), _content(row)):
            letters.append(event_conflict_row(row, _content(first)))
    unique = list(first_by_key.values())
    late = [row for row in unique if row[_LATE]]
    if _insert(cur, "event_records", unique) == len(unique):
        return letters, late  # the usual case: every event was new
    # Some were stored already (a batch written again after a restart, a
    # resend, or an event id reused): compare every one with what is stored
    # now. Rows this batch inserted match themselves; amendments of late
    # events stored before are absorbed by the ledger's key.
    found = cur.execute(
        _STORED_EVENTS, ([r[0] for r in unique], [r[1] for r in unique], [r[2] for r in unique])
    ).fetchall()
    stored = {(row[0], row[1], row[2]): row[3:-1] for row in found}
    # A late copy of an event stored on time (resent after the worker forgot
    # its opportunity) is not a new late event: the ledger is for those only.
    stored_late = {(row[0], row[1], row[2]) for row in found if row[-1]}
    conflicting = set()
    for row in unique:
        key = (row[0], row[1], row[2])
        kept = stored.get(key)
        if kept is None or _same_event(kept, _content(row)):
            continue
        conflicting.add(key)
        letters.append(event_conflict_row(row, kept))
    if conflicting:
        log.warning("%d event id(s) reused with other content; dead-lettered", len(conflicting))
    late = [
        row
        for row in late
        if (row[0], row[1], row[2]) in stored_late and (row[0], row[1], row[2]) not in conflicting
    ]
    return letters, late


def _record_amendments(
    cur: psycopg.Cursor[tuple[object, ...]], late: list[tuple[object, ...]]
) -> None:
    """One amendment row per new late event: what its archive would be with the late events.

    Late events are rare, so reading the opportunity's inputs back here (in
    the same transaction, which sees this batch's rows) costs little.
    """
    keys = {str(row[3]) for row in late}
    inputs = load_inputs(cur.connection, keys)
    archives = load_archives(cur.connection, keys)
    amendments = []
    for row in late:
        key = str(row[3])
        stored, archived = inputs.get(key), archives.get(key)
        if stored is None or archived is None:
            continue  # no archive to amend (its opportunity record never arrived)
        amended = close_opportunity(
            stored.opportunity, stored.events + stored.late_events, archived.rule_version
        ).archive
        changes = archive_changes(archived, amended)
        amendments.append((row[0], key, row[2], row[1], archived.rule_version, Jsonb(changes)))
    if amendments:
        cur.executemany(_INSERT_AMENDMENT, amendments)


def _settle_orphans(
    cur: psycopg.Cursor[tuple[object, ...]],
    rows: list[tuple[object, ...]],
    orphans: dict[EventRowKey, Event],
    events_topic: str | None,
    cold_store: ColdStore | None,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Orphans whose opportunity *was* archived: late events of its app, dead letters of others.

    The worker forgets a closed opportunity after its tombstone TTL; an event
    arriving later looks like an orphan to it, but the database knows better.
    Ownership holds then too: an event of another app than the archived
    opportunity's is refused as ``opportunity_app_mismatch``, as the worker
    refuses it while it remembers the opportunity (the same dead letter id).
    A straggler whose day's archive was already tiered is settled against
    the cold copy (``storage.cold_owners``).
    Returns the event rows to insert and the dead-letter rows.
    """
    keys = {row[3] for row in rows if row[13] == EXCLUDED_UNKNOWN_OPPORTUNITY}
    if not keys:
        return rows, []
    owner_of = {
        key: app_id
        for key, app_id in cur.execute(
            "SELECT opportunity_key, app_id FROM archive_records "
            "WHERE day = ANY(%s::date[]) AND opportunity_key = ANY(%s)",
            (list({row[0] for row in rows if row[3] in keys}), list(keys)),
        ).fetchall()
    }
    if cold_store is not None and len(owner_of) < len(keys):
        owner_of.update(_cold_owners(cur, cold_store, rows, keys - owner_of.keys()))
    if not owner_of:
        return rows, []
    kept: list[tuple[object, ...]] = []
    letters: list[tuple[object, ...]] = []
    for row in rows:
        owner = owner_of.get(row[3]) if row[13] == EXCLUDED_UNKNOWN_OPPORTUNITY else None
        if owner is None:
            kept.append(row)
        elif owner == row[2]:
            kept.append((*row[:12], True, None))
        else:
            letters.append(
                _app_mismatch_row(orphans[(row[0], row[1], row[2])], str(owner), events_topic)
            )
    if letters:
        log.warning(
            "%d event(s) of another app than their opportunity's; dead-lettered", len(letters)
        )
    return kept, letters


def _cold_owners(
    cur: psycopg.Cursor[tuple[object, ...]],
    store: ColdStore,
    rows: list[tuple[object, ...]],
    keys: set[object],
) -> dict[str, str]:
    keys_by_day: dict[dt.date, list[str]] = {}
    for row in rows:  # rows carry their day as ISO text (COPY input)
        if row[3] in keys:
            keys_by_day.setdefault(dt.date.fromisoformat(str(row[0])), []).append(str(row[3]))
    try:
        return cold_archive_owners(cur.connection, store, keys_by_day)
    except TieringError as exc:
        # Never counted either way: replay and the amendment ledger join
        # events to their opportunity on (key, app), so the event stays an
        # orphan of its own app rather than holding up the worker.
        log.warning("cold archive unreadable, stragglers stay orphans: %s", exc)
        return {}


def _app_mismatch_row(event: Event, owner: str, events_topic: str | None) -> tuple[object, ...]:
    letter = DeadLetter(
        reason=OPPORTUNITY_APP_MISMATCH,
        detail=f"event app {event.app_id!r} does not own opportunity of app {owner!r}",
        opportunity_key=event.opportunity_key,
        payload=event_as_dict(event),
        event=event,
    )
    return dead_letter_row(dead_letter_from_rules(letter, event.received_at_ms, events_topic))


def _content(row: tuple[object, ...]) -> tuple[object, ...]:
    """An event row's client content, in the column order of ``_STORED_EVENTS[3:]``."""
    return (row[3], row[4], row[5], row[8], row[9], row[10], json_value(row[11]))


def _same_event(stored: tuple[object, ...], ours: tuple[object, ...]) -> bool:
    currency = stored[5].strip() if isinstance(stored[5], str) else stored[5]
    return (*stored[:5], currency, stored[6]) == ours
