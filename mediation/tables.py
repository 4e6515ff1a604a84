"""The record tables, declared once: columns in order, their types, keys, day partitions.

Everything in Python that names a record table's columns derives from here:
the writer's rows and COPY columns (``sinks/rows.py``, ``sinks/postgres.py``),
replay's reads from either tier (``storage/hot_records.py``,
``replay/cold.py``), partition maintenance (``storage/partitions.py``) and
the cold layout's sort order (``storage/tiering.py``). The migrations in
``sql/`` create the tables; ``tests/storage/test_tables.py`` holds this
declaration against a freshly migrated database, so the two cannot drift.

Types are spelled as Postgres reports them (``format_type``): ``char(3)``
is ``character(3)``, ``timestamptz`` is ``timestamp with time zone``.
Standard library only: the kernel imports nothing but the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AMENDMENT_RECORDS",
    "ARCHIVE_RECORDS",
    "AUDIT_RECORDS",
    "DAY_COLUMN",
    "DEAD_LETTERS",
    "DELIVERY_RECORDS",
    "EVENT_RECORDS",
    "JSONB",
    "OPPORTUNITY_RECORDS",
    "PARTITIONED_TABLES",
    "REPLAYED_TABLES",
    "REPORT_ROLLUPS",
    "ROLLUP_SUMS",
    "TABLES",
    "TIMESTAMPTZ",
    "Column",
    "RecordTable",
    "record_table",
]

TEXT = "text"
DATE = "date"
TIMESTAMPTZ = "timestamp with time zone"
JSONB = "jsonb"
BOOLEAN = "boolean"
SMALLINT = "smallint"
INTEGER = "integer"
BIGINT = "bigint"
BYTEA = "bytea"
CURRENCY = "character(3)"  # ISO 4217; read back it may carry padding

DAY_COLUMN = "day"  # every record table's partition column (one partition per UTC day)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool = False
    # False: the column's default fills it (when the row was stored, a
    # sequence, a re-drive status); the writer never names it.
    written: bool = True
    # False: replay does not read it back, the rules derive it again
    # (only meaningful for the tables replay reads).
    read_back: bool = True


@dataclass(frozen=True, slots=True)
class RecordTable:
    """A record table: ``PARTITION BY RANGE (day_column)``, one partition per UTC day."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key (the natural key, with the day)
    replayed: bool = False  # replay reads it, from Postgres and from Parquet
    # The cold layout sorts a day's rows by these, then by the rest of the
    # key (default: opportunity_key when the key has it, so row-group
    # statistics prune key lookups).
    cold_sort_first: tuple[str, ...] = ()
    day_column: str = DAY_COLUMN  # the cold layout's hive key, not a column of its files

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def written_columns(self) -> tuple[str, ...]:
        """What the writer puts in a row, in this order (its INSERT and COPY columns)."""
        return tuple(column.name for column in self.columns if column.written)

    @property
    def read_columns(self) -> tuple[str, ...]:
        """What replay reads back from either tier (the day is where it reads, not what)."""
        return tuple(
            column.name
            for column in self.columns
            if column.written and column.read_back and column.name != self.day_column
        )

    @property
    def row_key(self) -> tuple[str, ...]:
        """The key within a day: what identifies a row across the hot and the cold tier."""
        return tuple(name for name in self.key if name != self.day_column)

    @property
    def cold_sort(self) -> tuple[str, ...]:
        """The order of a day's rows in its Parquet files (ends with the key: a total order)."""
        first = self.cold_sort_first
        if not first and "opportunity_key" in self.key:
            first = ("opportunity_key",)
        return first + tuple(name for name in self.row_key if name not in first)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def names_of_type(self, kind: str) -> frozenset[str]:
        return frozenset(column.name for column in self.columns if column.type == kind)


def _stored_at(name: str = "stored_at") -> Column:
    return Column(name, TIMESTAMPTZ, written=False)


OPPORTUNITY_RECORDS = RecordTable(
    "opportunity_records",
    (
        Column("day", DATE),
        Column("opportunity_key", TEXT),
        Column("app_id", TEXT),
        Column("placement_id", TEXT),
        Column("device_hash", TEXT),
        Column("ts", TIMESTAMPTZ),
        Column("client_ts", TIMESTAMPTZ),
        Column("config_version", INTEGER),
        Column("rollout_bucket", SMALLINT),
        Column("context", JSONB),
        Column("closure_window_ms", INTEGER),
        Column("grace_ms", INTEGER),
        Column("skew_tolerance_ms", INTEGER),
        _stored_at(),
    ),
    key=("day", "opportunity_key"),
    replayed=True,
)

DELIVERY_RECORDS = RecordTable(
    "delivery_records",
    (
        Column("day", DATE),
        Column("opportunity_key", TEXT),
        Column("delivery_id", TEXT),
        Column("status", TEXT),
        Column("waterfall", JSONB),
        Column("expires_at", TIMESTAMPTZ),
        _stored_at(),
    ),
    key=("day", "opportunity_key"),
    replayed=True,
)

EVENT_RECORDS = RecordTable(
    "event_records",
    (
        Column("day", DATE),
        Column("event_id", TEXT),
        Column("app_id", TEXT),
        Column("opportunity_key", TEXT),
        Column("type", TEXT),
        Column("ts", TIMESTAMPTZ),
        Column("server_ts", TIMESTAMPTZ),
        Column("received_at", TIMESTAMPTZ),
        Column("source_id", TEXT, nullable=True),
        Column("revenue_micros", BIGINT, nullable=True),
        Column("currency", CURRENCY, nullable=True),
        Column("attrs", JSONB),
        Column("late", BOOLEAN),
        Column("excluded_reason", TEXT, nullable=True, read_back=False),
        _stored_at(),
    ),
    key=("day", "event_id", "app_id"),
    replayed=True,
    cold_sort_first=("opportunity_key", "server_ts", "event_id"),
)

ARCHIVE_RECORDS = RecordTable(
    "archive_records",
    (
        Column("day", DATE),
        Column("opportunity_key", TEXT),
        Column("app_id", TEXT),
        Column("placement_id", TEXT),
        Column("opened_at", TIMESTAMPTZ),
        Column("closed_at", TIMESTAMPTZ),
        Column("close_reason", TEXT),
        Column("outcome", TEXT),
        Column("rewarded", BOOLEAN),
        Column("credited_source_id", TEXT, nullable=True),
        Column("revenue_micros", BIGINT),
        Column("currency", CURRENCY, nullable=True),
        Column("counts", JSONB),
        Column("counted_events", INTEGER),
        Column("excluded_events", INTEGER),
        Column("config_version", INTEGER),
        Column("rule_version", TEXT),
        Column("inputs_hash", TEXT),
        _stored_at("archived_at"),
    ),
    key=("day", "opportunity_key"),
    replayed=True,
)

AMENDMENT_RECORDS = RecordTable(
    "amendment_records",
    (
        Column("day", DATE),
        Column("opportunity_key", TEXT),
        Column("app_id", TEXT),
        Column("event_id", TEXT),
        Column("rule_version", TEXT),
        Column("changes", JSONB),
        _stored_at("recorded_at"),
    ),
    key=("day", "opportunity_key", "app_id", "event_id"),
)

AUDIT_RECORDS = RecordTable(
    "audit_records",
    (
        Column("day", DATE),
        Column("id", BIGINT, written=False),
        _stored_at("at"),
        Column("actor", TEXT),
        Column("action", TEXT),
        Column("subject", TEXT),
        Column("before", JSONB, nullable=True),
        Column("after", JSONB, nullable=True),
    ),
    key=("day", "id"),
)

DEAD_LETTERS = RecordTable(
    "dead_letters",
    (
        Column("day", DATE),
        Column("id", TEXT),
        Column("reason", TEXT),
        Column("detail", TEXT),
        Column("app_id", TEXT, nullable=True),
        Column("opportunity_key", TEXT, nullable=True),
        Column("source_topic", TEXT, nullable=True),
        Column("source_partition", INTEGER, nullable=True),
        Column("source_offset", BIGINT, nullable=True),
        Column("payload", BYTEA),
        Column("redrive_status", TEXT, written=False),
        _stored_at("created_at"),
    ),
    key=("day", "id"),
)

# What a report rollup row sums (in the report's order: mediation/report.py).
ROLLUP_SUMS: tuple[str, ...] = (
    "requests",
    "fills",
    "no_fills",
    "load_failures",
    "impressions",
    "clicks",
    "rewarded",
    "revenue_micros",
)

REPORT_ROLLUPS = RecordTable(
    "report_rollups",
    (
        Column("day", DATE),
        Column("id", BIGINT, written=False),
        Column("app_id", TEXT),
        Column("placement_id", TEXT),
        Column("source_id", TEXT, nullable=True),
        Column("country", TEXT, nullable=True),
        Column("os", TEXT, nullable=True),
        Column("currency", CURRENCY, nullable=True),
        *(Column(name, BIGINT) for name in ROLLUP_SUMS),
    ),
    key=("day", "id"),
    cold_sort_first=("app_id", "placement_id", "id"),
)

# In this order: partition maintenance and tiering go table by table in it.
TABLES: dict[str, RecordTable] = {
    table.name: table
    for table in (
        OPPORTUNITY_RECORDS,
        DELIVERY_RECORDS,
        EVENT_RECORDS,
        ARCHIVE_RECORDS,
        AMENDMENT_RECORDS,
        AUDIT_RECORDS,
        DEAD_LETTERS,
        REPORT_ROLLUPS,
    )
}
PARTITIONED_TABLES: tuple[str, ...] = tuple(TABLES)  # every record table: one partition a day
# What replay reads (an opportunity, its delivery, its events, its archive),
# hot and cold.
REPLAYED_TABLES: tuple[str, ...] = tuple(name for name, table in TABLES.items() if table.replayed)


def record_table(name: str) -> RecordTable:
    """The declared record table ``name``; ``KeyError`` names the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no record table {name!r} (known: {', '.join(TABLES)})") from None
