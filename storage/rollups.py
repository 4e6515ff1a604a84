"""Daily report rollups: how archive records become ``report_rollups`` rows, and upkeep.

``report_rollups`` (``sql/0007_report_rollups.sql``) holds partial sums of
archive records per day, app, placement, credited source, country, os and
currency (``GROUP``); a group's figures are always the sum of its rows.
This module owns every statement that writes it:

- ``rollup_statement``: the sink's archive insert, extended so that the same
  statement adds one rollup row per group of the archive records it
  *actually inserted* (``RETURNING`` of ``ON CONFLICT DO NOTHING``). A batch
  written again after a restart inserts no archive record and so adds
  nothing: exactly once, in the archive's own transaction. Rows are only
  ever inserted, never updated, so workers never wait on each other's rows
  (an ``ON CONFLICT DO UPDATE`` counter would serialise them on every
  popular group).
- ``compact_day``: folds a day's rows into one per group, in one statement
  (``DELETE ... RETURNING`` feeding the ``INSERT``): rows a worker adds
  meanwhile are not in its snapshot and stay as they are; two compactions
  at once each sum only what they deleted. Only speed depends on it.
- ``rebuild_day``: recomputes a hot day from its archive records (days
  archived before rollups existed, or a repair), in one repeatable-read
  transaction, so rows the sink adds meanwhile are counted once.

What a rollup counts of an archive record (docs/reporting.md, "Metrics"):
a request per record; a fill when its outcome is ``loaded`` or better (a
source delivered an ad); a no-fill when the gateway answered with no
source to try (``delivery_records.status``); its counted ``load_failed``,
``impression`` and ``click`` events; rewarded when it was; its revenue.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from mediation.report import SUMS
from mediation.rules.model import OUTCOMES
from mediation.tables import ARCHIVE_RECORDS, REPORT_ROLLUPS

__all__ = [
    "GROUP",
    "SUMS",
    "compact_day",
    "rebuild_day",
    "rollup_statement",
]

# A rollup row's group (with ``day``) and its sums (the report's, in its order), as the
# table declares them.
GROUP: tuple[str, ...] = ("app_id", "placement_id", "source_id", "country", "os", "currency")
assert REPORT_ROLLUPS.written_columns == ("day", *GROUP, *SUMS)

# A source delivered an ad: the outcomes from ``loaded`` up.
_FILLED = OUTCOMES[OUTCOMES.index("loaded") :]
# What the rollup reads of an archive record.
_ARCHIVE_COLUMNS = (
    "day",
    "opportunity_key",
    "app_id",
    "placement_id",
    "credited_source_id",
    "outcome",
    "rewarded",
    "revenue_micros",
    "currency",
    "counts",
)
assert set(_ARCHIVE_COLUMNS) <= set(ARCHIVE_RECORDS.column_names)


def _context_text(name: str) -> str:
    # Only a string is a country or an os (as the impression export reads it).
    return (
        f"CASE WHEN jsonb_typeof(o.context -> '{name}') = 'string' THEN o.context ->> '{name}' END"
    )


def _counted(event_type: str) -> str:
    return f"coalesce(sum((a.counts ->> '{event_type}')::bigint), 0)"


_FILLED_LIST = ", ".join(f"'{outcome}'" for outcome in _FILLED)
_ROLLUP_SELECT = f"""
INSERT INTO report_rollups ({", ".join(("day", *GROUP, *SUMS))})
SELECT a.day, a.app_id, a.placement_id, a.credited_source_id,
       {_context_text("country")}, {_context_text("os")}, a.currency,
       count(*),
       count(*) FILTER (WHERE a.outcome IN ({_FILLED_LIST})),
       count(*) FILTER (WHERE d.status = 'no_fill'),
       {_counted("load_failed")},
       {_counted("impression")},
       {_counted("click")},
       count(*) FILTER (WHERE a.rewarded),
       coalesce(sum(a.revenue_micros), 0)
FROM {{archives}} AS a
LEFT JOIN opportunity_records AS o ON o.day = a.day AND o.opportunity_key = a.opportunity_key
LEFT JOIN delivery_records AS d ON d.day = a.day AND d.opportunity_key = a.opportunity_key
{{where}}
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""


def rollup_statement(insert_archives: sql.Composable) -> sql.Composed:
    """``insert_archives`` (an ``INSERT INTO archive_records ... ON CONFLICT DO NOTHING``)
    followed, in the same statement, by the rollup rows of what it inserted."""
    select = _ROLLUP_SELECT.format(archives="inserted", where="")
    return sql.SQL("WITH inserted AS ({} RETURNING {}) {}").format(
        insert_archives,
        sql.SQL(", ").join(map(sql.Identifier, _ARCHIVE_COLUMNS)),
        sql.SQL(select),
    )


def compact_day(conn: psycopg.Connection, day: dt.date) -> tuple[int, int]:
    """Fold ``day``'s rollup rows into one per group; (rows before, rows after).

    Nothing is written when every group already has one row, so a compacted
    day's row count never changes (the tiering job's check that nothing was
    written since its export stays meaningful).
    """
    group = ", ".join(GROUP)
    row = conn.execute(
        f"SELECT count(*), count(DISTINCT ROW({group})) FROM report_rollups WHERE day = %s",
        (day,),
    ).fetchone()
    assert row is not None
    before, groups = int(row[0]), int(row[1])
    if before == groups:
        return before, before
    sums = ", ".join(f"sum({name})" for name in SUMS)
    with conn.transaction():
        conn.execute(
            f"WITH gone AS (DELETE FROM report_rollups WHERE day = %s RETURNING *) "
            f"INSERT INTO report_rollups (day, {group}, {', '.join(SUMS)}) "
            f"SELECT day, {group}, {sums} FROM gone GROUP BY day, {group}",
            (day,),
        )
    after = conn.execute("SELECT count(*) FROM report_rollups WHERE day = %s", (day,)).fetchone()
    assert after is not None
    return before, int(after[0])


def rebuild_day(conn: psycopg.Connection, day: dt.date) -> int:
    """Recompute ``day``'s rollups from its archive records (hot only); the rows written."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("DELETE FROM report_rollups WHERE day = %s", (day,))
        cursor = conn.execute(
            _ROLLUP_SELECT.format(archives="archive_records", where="WHERE a.day = %s"),
            (day,),
        )
        return cursor.rowcount
