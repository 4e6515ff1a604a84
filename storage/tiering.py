"""Exporting one day partition to Parquet in cold storage, and verifying it.

Layout (``docs/contracts.md`` section 7; layout version 2)::

    <COLD_STORAGE_URL>/<table>/day=YYYY-MM-DD/part-NNNNN.parquet
    <COLD_STORAGE_URL>/_manifests/<table>/day=YYYY-MM-DD/_manifest.json

- A table's directory holds Parquet files and nothing else, so pandas,
  pyarrow, polars and DuckDB read it by directory with no options: polars
  refuses a directory with any other file in it (even ``_`` or ``.``
  names), hence the manifests' own tree. The ``day`` is the hive key of
  the directory and not a column of the files (a column of the same name
  and another type breaks pyarrow's schema merge). A day without rows
  still has one (empty) file, so every table's directory exists.
- Rows are streamed from Postgres through a server-side cursor in the
  table's sort order (``mediation/tables.py``, ``cold_sort``:
  ``opportunity_key`` first where the table has one, so row-group
  statistics prune key lookups; events then by ``server_ts`` and
  ``event_id``; the rest of the primary key last) into Arrow record
  batches and zstd Parquet files of at most ``rows_per_file`` rows: never
  the whole day in memory.
- ``jsonb`` columns are Arrow's JSON type (Parquet's JSON logical type: text
  that DuckDB reads as JSON), timestamps UTC microseconds.
- The checksum is SHA-256 over the rows, column by column, in sort order
  (``TableDigest``; JSON hashes as its text). It is computed from the rows Postgres streamed and
  again from the Parquet read back; ``verify_day`` also counts the
  partition's rows in Postgres again. The manifest is written last: a day
  without one was never completely exported.

Layout 1 (older releases) had the ``day`` column in the files, JSON as
plain text and the manifest beside the files. ``read_manifest`` finds
either, ``read_batches`` reads files of either as layout 2, and
``rewrite_legacy_day`` rewrites a layout-1 day in place, verified against
its own checksum first.

What happens around this (the catalog, dropping the partition, re-running
after a crash) is the tiering job's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from mediation.errors import ServiceError
from mediation.tables import DAY_COLUMN, TABLES

from .cold import ColdStore, ColdStoreError, FileColdStore
from .partitions import partition_name

__all__ = [
    "LEGACY_SCHEMA_VERSION",
    "MANIFEST_NAME",
    "PARTITION_COLUMN",
    "READ_ERRORS",
    "SCHEMA_VERSION",
    "ExportedFile",
    "Manifest",
    "TableDigest",
    "TieringError",
    "day_prefix",
    "export_day",
    "file_schema",
    "legacy_manifest_key",
    "manifest_key",
    "partition_rows",
    "primary_key",
    "read_batches",
    "read_manifest",
    "rewrite_legacy_day",
    "verify_day",
]

SCHEMA_VERSION = 2
LEGACY_SCHEMA_VERSION = 1
MANIFEST_NAME = "_manifest.json"
MANIFESTS_ROOT = "_manifests"
PARTITION_COLUMN = DAY_COLUMN  # the directory's hive key, not a column of the files
_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "character": pa.string(),
    "character varying": pa.string(),
    "jsonb": pa.json_(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}
# Arrow types whose integer representation is read through another type.
_INTEGER_OF: dict[pa.DataType, pa.DataType] = {
    pa.date32(): pa.int32(),
    pa.timestamp("us", tz="UTC"): pa.int64(),
}


class TieringError(ServiceError):
    """An export or its verification failed; nothing may be dropped."""

    code = "tiering_failed"


@dataclass(frozen=True)
class ExportedFile:
    key: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Manifest:
    table: str
    day: str
    schema_version: int
    rows: int
    checksum: str
    columns: list[str]
    sort: list[str]
    files: list[ExportedFile]
    exported_at: str

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        fields = orjson.loads(data)
        fields["files"] = [ExportedFile(**entry) for entry in fields["files"]]
        return cls(**fields)


def _fixed_width_bytes(array: pa.Array, width: int) -> memoryview:
    """The values of a null-free fixed-width array, as stored (little-endian here)."""
    buffer = array.buffers()[1]
    start = array.offset * width
    return memoryview(buffer)[start : start + len(array) * width]


def _int64_at(buffer: pa.Buffer, position: int) -> int:
    return int.from_bytes(memoryview(buffer)[position * 8 : position * 8 + 8], "little")


def day_prefix(table: str, day: dt.date) -> str:
    """Where the day's Parquet files are."""
    return f"{table}/day={day:%Y-%m-%d}/"


def manifest_key(table: str, day: dt.date) -> str:
    """Where the day's manifest is: outside the table's directory (see the module docstring)."""
    return f"{MANIFESTS_ROOT}/{day_prefix(table, day)}{MANIFEST_NAME}"


def legacy_manifest_key(table: str, day: dt.date) -> str:
    """Where layout 1 had the manifest: among the day's files."""
    return day_prefix(table, day) + MANIFEST_NAME


class TableDigest:
    """SHA-256 over a day's rows, column by column, the same however they are batched.

    Each column feeds three streams: which values are null, the values
    (fixed-width types as little-endian 64-bit integers; strings and bytes
    as their lengths) and, for strings and bytes, their bytes. A value per
    stream entry, so the digest does not depend on where batches split.
    Vectorised with Arrow: no Python per row.
    """

    def __init__(self, schema: pa.Schema):
        self._schema = schema
        self._streams = [tuple(hashlib.sha256() for _ in range(3)) for _ in schema]
        self.rows = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        for index, field in enumerate(self._schema):
            column = batch.column(index)
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            for chunk in chunks:
                self._update_column(index, field.type, chunk)
        self.rows += batch.num_rows

    def _update_column(self, index: int, kind: pa.DataType, array: pa.Array) -> None:
        nulls, values, data = self._streams[index]
        if isinstance(kind, pa.BaseExtensionType):  # JSON: its text
            kind = kind.storage_type
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        nulls.update(_fixed_width_bytes(pc.is_null(array).cast(pa.int8()), 1))
        if pa.types.is_string(kind) or pa.types.is_binary(kind):
            filled = pc.fill_null(array.cast(pa.large_binary()), b"")
            values.update(_fixed_width_bytes(pc.binary_length(filled).cast(pa.int64()), 8))
            offsets, body = filled.buffers()[1], filled.buffers()[2]
            if body is not None and len(filled):
                first = _int64_at(offsets, filled.offset)
                last = _int64_at(offsets, filled.offset + len(filled))
                data.update(memoryview(body)[first:last])
            return
        if pa.types.is_boolean(kind):
            numbers = pc.fill_null(array, False).cast(pa.int64())
        else:  # integers, dates, timestamps: their integer representation
            numbers = pc.fill_null(array.cast(_INTEGER_OF.get(kind, kind)).cast(pa.int64()), 0)
        values.update(_fixed_width_bytes(numbers, 8))

    def hexdigest(self) -> str:
        total = hashlib.sha256(str(self.rows).encode())
        for streams in self._streams:
            for stream in streams:
                total.update(stream.digest())
        return total.hexdigest()


def _columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        raise TieringError(f"no table {table!r}")
    unknown = [f"{name} ({kind})" for name, kind in rows if kind not in _ARROW_TYPES]
    if unknown:
        raise TieringError(f"{table}: no Parquet type for {', '.join(unknown)}")
    return [(str(name), str(kind)) for name, kind in rows]


def _arrow_schema(columns: list[tuple[str, str]]) -> pa.Schema:
    return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in columns])


def _file_columns(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind in _columns(conn, table) if name != PARTITION_COLUMN]


def file_schema(conn: psycopg.Connection, table: str) -> pa.Schema:
    """The Arrow schema of ``table``'s Parquet files (layout 2)."""
    return _arrow_schema(_file_columns(conn, table))


def partition_rows(conn: psycopg.Connection, table: str, day: dt.date) -> int:
    """How many rows ``table``'s partition of ``day`` holds in Postgres now."""
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition_name(table, day)))
    ).fetchone()
    return int(row[0]) if row else 0


def primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    """``table``'s primary key columns, in order."""
    return [
        str(name)
        for (name,) in conn.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (table,),
        ).fetchall()
    ]


def _sort_columns(table: str) -> list[str]:
    declared = TABLES.get(table)
    if declared is None:
        raise TieringError(f"{table!r} is not a record table")
    return list(declared.cold_sort)


def _stream(
    conn: psycopg.Connection,
    table: str,
    day: dt.date,
    columns: list[tuple[str, str]],
    sort: list[str],
    batch_rows: int,
) -> Iterator[list[tuple[object, ...]]]:
    selected = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(name))
        if kind == "jsonb"
        else sql.Identifier(name)
        for name, kind in columns
    )
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        selected,
        sql.Identifier(partition_name(table, day)),
        sql.SQL(", ").join(map(sql.Identifier, sort)),
    )
    # A named (server-side) cursor: rows arrive batch by batch.
    with conn.transaction(), conn.cursor(name=f"tier_{table}_{day:%Y%m%d}") as cursor:
        cursor.itersize = batch_rows
        cursor.execute(query)
        while batch := cursor.fetchmany(batch_rows):
            yield batch


def _write_manifest(store: ColdStore, manifest: Manifest, previous: Manifest | None) -> None:
    """The day's manifest, then what the previous one listed that it does not.

    A layout-1 manifest among the day's files goes, and so does any file of
    an earlier export that this one did not write again (the directory must
    hold this export only).
    """
    table, day = manifest.table, dt.date.fromisoformat(manifest.day)
    store.put_bytes(manifest_key(table, day), manifest.to_json())
    store.delete(legacy_manifest_key(table, day))
    kept = {exported.key for exported in manifest.files}
    for exported in previous.files if previous is not None else []:
        if exported.key not in kept:
            store.delete(exported.key)


def export_day(
    conn: psycopg.Connection,
    store: ColdStore,
    table: str,
    day: dt.date,
    *,
    rows_per_file: int = 2_000_000,
    batch_rows: int = 50_000,
) -> Manifest:
    """Write ``table``'s partition of ``day`` to ``store`` and its manifest last."""
    previous = read_manifest(store, table, day)
    columns = _file_columns(conn, table)
    names = [name for name, _kind in columns]
    sort = _sort_columns(table)
    schema = _arrow_schema(columns)
    digest = TableDigest(schema)
    files: list[ExportedFile] = []
    total = 0
    with tempfile.TemporaryDirectory(prefix="mediation-tier-") as scratch:
        writer: pq.ParquetWriter | None = None
        path = Path(scratch) / "part.parquet"
        in_file = 0

        def finish() -> None:
            nonlocal writer, in_file
            if writer is None:
                return
            writer.close()
            key = f"{day_prefix(table, day)}part-{len(files):05d}.parquet"
            store.upload(path, key)
            files.append(ExportedFile(key, in_file, path.stat().st_size))
            writer, in_file = None, 0

        for batch in _stream(conn, table, day, columns, sort, batch_rows):
            arrays = [
                pa.array([row[i] for row in batch], type=schema.field(i).type)
                for i in range(len(names))
            ]
            rows = pa.Table.from_arrays(arrays, schema=schema)
            digest.update(rows)
            if writer is None:
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_table(rows)
            in_file += len(batch)
            total += len(batch)
            if in_file >= rows_per_file:
                finish()
        if not files and writer is None:  # no rows: one empty file keeps the directory
            writer = pq.ParquetWriter(path, schema, compression="zstd")
        finish()
    manifest = Manifest(
        table=table,
        day=day.isoformat(),
        schema_version=SCHEMA_VERSION,
        rows=total,
        checksum=digest.hexdigest(),
        columns=names,
        sort=sort,
        files=files,
        exported_at=dt.datetime.now(dt.UTC).isoformat(),
    )
    _write_manifest(store, manifest, previous)
    return manifest


def read_manifest(store: ColdStore, table: str, day: dt.date) -> Manifest | None:
    """The day's manifest (layout 2, else layout 1), or ``None`` when it has none."""
    for key in (manifest_key(table, day), legacy_manifest_key(table, day)):
        if store.exists(key):
            return Manifest.from_json(store.get_bytes(key))
    return None


def _in_layout(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch of a file in either layout as layout 2 has it: no day column, JSON typed."""
    arrays = []
    for field in schema:
        column = batch.column(field.name)
        if column.type != field.type:
            if isinstance(field.type, pa.BaseExtensionType):
                column = pa.ExtensionArray.from_storage(field.type, column)
            else:
                column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# What reading a damaged, partial or missing cold object raises.
READ_ERRORS = (pa.ArrowException, ColdStoreError, OSError, KeyError, ValueError)


def _file_batches(store: ColdStore, key: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(store.arrow_source(key))
    for batch in parquet.iter_batches(batch_size=100_000, columns=schema.names):
        yield _in_layout(batch, schema)


def read_batches(
    store: ColdStore, manifest: Manifest, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The rows of the day's files in their order, as ``schema`` (layout 2) has them.

    Files of either layout, even mixed (a rewrite that stopped half-way).
    A file that cannot be read is a ``TieringError`` (that day fails, not the run).
    """
    for exported in manifest.files:
        try:
            yield from _file_batches(store, exported.key, schema)
        except READ_ERRORS as exc:
            raise TieringError(
                f"{manifest.table} {manifest.day}: cold copy cannot be read: {exported.key}: {exc}"
            ) from exc


def _digest_files(
    store: ColdStore, keys: Iterable[str], schema: pa.Schema, context: str
) -> TableDigest:
    digest = TableDigest(schema)
    try:
        for key in keys:
            for batch in _file_batches(store, key, schema):
                digest.update(batch)
    except READ_ERRORS as exc:
        raise TieringError(f"{context}: cold copy cannot be read back: {exc}") from exc
    return digest


def _check(digest: TableDigest, manifest: Manifest, context: str) -> None:
    if digest.rows != manifest.rows or digest.hexdigest() != manifest.checksum:
        raise TieringError(
            f"{context}: cold storage holds {digest.rows} rows with checksum "
            f"{digest.hexdigest()[:12]}, the manifest says {manifest.rows} / "
            f"{manifest.checksum[:12]}"
        )


def verify_day(conn: psycopg.Connection, store: ColdStore, table: str, day: dt.date) -> Manifest:
    """Read the day back from cold storage and check it against its manifest and Postgres.

    Raises ``TieringError`` on any difference: row count in Postgres now,
    rows and checksum of what the Parquet files hold, or a manifest of the
    first layout (its day is exported again).
    """
    context = f"{table} {day}"
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{context}: no manifest in {store.url} (export incomplete)")
    if manifest.schema_version != SCHEMA_VERSION:
        raise TieringError(f"{context}: exported in cold layout {manifest.schema_version}")
    in_postgres = partition_rows(conn, table, day)
    if in_postgres != manifest.rows:
        raise TieringError(
            f"{context}: Postgres holds {in_postgres} rows, the export {manifest.rows}"
        )
    schema = file_schema(conn, table)
    _check(
        _digest_files(store, (f.key for f in manifest.files), schema, context), manifest, context
    )
    return manifest


def _legacy_digests(
    store: ColdStore, legacy: Manifest, schema: pa.Schema, context: str
) -> TableDigest:
    """The day's files read as layout 2, checked against the layout-1 manifest; their digest.

    The layout-1 checksum covers the day column: it is added back to check it.
    """
    day = dt.date.fromisoformat(legacy.day)
    at = legacy.columns.index(PARTITION_COLUMN)
    legacy_schema = schema.insert(at, pa.field(PARTITION_COLUMN, pa.date32()))
    current, old = TableDigest(schema), TableDigest(legacy_schema)
    try:
        for exported in legacy.files:
            for batch in _file_batches(store, exported.key, schema):
                current.update(batch)
                days = pa.array([day] * batch.num_rows, type=pa.date32())
                old.update(batch.add_column(at, legacy_schema.field(at), days))
    except READ_ERRORS as exc:
        raise TieringError(f"{context}: cold copy cannot be read: {exc}") from exc
    _check(old, legacy, context)
    return current


def _in_legacy_layout(store: ColdStore, key: str) -> bool:
    return PARTITION_COLUMN in pq.ParquetFile(store.arrow_source(key)).schema_arrow.names


def rewrite_legacy_day(
    conn: psycopg.Connection, store: ColdStore, table: str, day: dt.date
) -> Manifest:
    """Rewrite a day exported in layout 1 as layout 2, in place; its new manifest.

    Verified like an export, and safe to repeat after a crash at any point:

    1. every file is read (in whichever layout it is now) and the rows,
       with the day added back, must match the layout-1 manifest's rows
       and checksum; nothing is written otherwise;
    2. each file still in layout 1 is written again locally in layout 2,
       read back and compared with the original file (rows and checksum),
       and only then uploaded over it;
    3. the day is read back from the store: every file in layout 2, the
       rows and checksum as in step 1; then the layout-2 manifest is
       written.

    The layout-1 manifest stays: it is what marks the day as still to be
    rewritten. The caller records the new checksum in the catalog and only
    then deletes it (``legacy_manifest_key``), so a stop in between is
    finished by the next run (every file is already in layout 2 then).
    """
    context = f"{table} {day} (rewrite to cold layout {SCHEMA_VERSION})"
    key = legacy_manifest_key(table, day)
    if not store.exists(key):
        raise TieringError(f"{context}: no layout-1 manifest in {store.url}")
    legacy = Manifest.from_json(store.get_bytes(key))
    schema = file_schema(conn, table)
    expected = _legacy_digests(store, legacy, schema, context)
    files = []
    with tempfile.TemporaryDirectory(prefix="mediation-rewrite-") as scratch:
        local = FileColdStore(Path(scratch))
        path = local.root / "part.parquet"
        for exported in legacy.files:
            if not _in_legacy_layout(store, exported.key):  # rewritten before a crash
                files.append(exported)
                continue
            original = _digest_files(store, [exported.key], schema, context)
            with pq.ParquetWriter(path, schema, compression="zstd") as writer:
                for batch in _file_batches(store, exported.key, schema):
                    writer.write_batch(batch)
            written = _digest_files(local, [path.name], schema, context)
            if (written.rows, written.hexdigest()) != (original.rows, original.hexdigest()):
                raise TieringError(f"{context}: {exported.key} does not read back as written")
            store.upload(path, exported.key)
            files.append(ExportedFile(exported.key, written.rows, path.stat().st_size))
    still = [f.key for f in legacy.files if _in_legacy_layout(store, f.key)]
    if still:
        raise TieringError(f"{context}: still in cold layout 1: {', '.join(still)}")
    after = _legacy_digests(store, legacy, schema, context)
    if (after.rows, after.hexdigest()) != (expected.rows, expected.hexdigest()):
        raise TieringError(f"{context}: the rewritten files do not read back as the original")
    manifest = dataclasses.replace(
        legacy,
        schema_version=SCHEMA_VERSION,
        checksum=after.hexdigest(),
        columns=schema.names,
        files=files,
    )
    store.put_bytes(manifest_key(table, day), manifest.to_json())
    return manifest
