"""Exporting one day partition to Parquet in cold storage, and verifying it.

Layout (``spec/contracts.md`` section 7)::

    <COLD_STORAGE_URL>/<table>/day=YYYY-MM-DD/part-NNNNN.parquet
    <COLD_STORAGE_URL>/<table>/day=YYYY-MM-DD/_manifest.json

- Rows are streamed from Postgres through a server-side cursor in the
  table's sort order (``opportunity_key`` first where the table has one,
  so row-group statistics prune key lookups; events then by ``server_ts``
  and ``event_id``) into Arrow record batches and zstd Parquet files of at
  most ``rows_per_file`` rows: never the whole day in memory.
- ``jsonb`` columns are stored as their JSON text, timestamps as UTC
  microseconds, days as Arrow dates.
- The checksum is SHA-256 over the rows, column by column, in sort order
  (``TableDigest``). It is computed from the rows Postgres streamed and
  again from the Parquet read back; ``verify_day`` also counts the
  partition's rows in Postgres again. The manifest is written last: a day
  without one was never completely exported.

What happens around this (the catalog, dropping the partition, re-running
after a crash) is the tiering job's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from .cold import ColdStore, ColdStoreError
from .partitions import partition_name

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "ExportedFile",
    "Manifest",
    "TableDigest",
    "TieringError",
    "day_prefix",
    "export_day",
    "partition_rows",
    "read_manifest",
    "verify_day",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "_manifest.json"
# Besides the primary key (always last, so the order is total).
_SORT_FIRST: dict[str, tuple[str, ...]] = {
    "event_records": ("opportunity_key", "server_ts", "event_id"),
}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "character": pa.string(),
    "character varying": pa.string(),
    "jsonb": pa.string(),
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


class TieringError(RuntimeError):
    """An export or its verification failed; nothing may be dropped."""


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
    return f"{table}/day={day:%Y-%m-%d}/"


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


def partition_rows(conn: psycopg.Connection, table: str, day: dt.date) -> int:
    """How many rows ``table``'s partition of ``day`` holds in Postgres now."""
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(partition_name(table, day)))
    ).fetchone()
    return int(row[0]) if row else 0


def _sort_columns(conn: psycopg.Connection, table: str) -> list[str]:
    primary = [
        str(name)
        for (name,) in conn.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (table,),
        ).fetchall()
    ]
    first = list(_SORT_FIRST.get(table, ()))
    if not first and "opportunity_key" in primary:
        first = ["opportunity_key"]
    return first + [name for name in primary if name not in first and name != "day"]


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
    columns = _columns(conn, table)
    names = [name for name, _kind in columns]
    sort = _sort_columns(conn, table)
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
    store.put_bytes(day_prefix(table, day) + MANIFEST_NAME, manifest.to_json())
    return manifest


def read_manifest(store: ColdStore, table: str, day: dt.date) -> Manifest | None:
    key = day_prefix(table, day) + MANIFEST_NAME
    if not store.exists(key):
        return None
    return Manifest.from_json(store.get_bytes(key))


def _parquet_batches(store: ColdStore, manifest: Manifest) -> Iterator[pa.RecordBatch]:
    for exported in manifest.files:
        parquet = pq.ParquetFile(store.arrow_source(exported.key))
        yield from parquet.iter_batches(batch_size=100_000, columns=manifest.columns)


def verify_day(conn: psycopg.Connection, store: ColdStore, table: str, day: dt.date) -> Manifest:
    """Read the day back from cold storage and check it against its manifest and Postgres.

    Raises ``TieringError`` on any difference: row count in Postgres now,
    rows and checksum of what the Parquet files hold.
    """
    manifest = read_manifest(store, table, day)
    if manifest is None:
        raise TieringError(f"{table} {day}: no manifest in {store.url} (export incomplete)")
    in_postgres = partition_rows(conn, table, day)
    if in_postgres != manifest.rows:
        raise TieringError(
            f"{table} {day}: Postgres holds {in_postgres} rows, the export {manifest.rows}"
        )
    digest = TableDigest(_arrow_schema(_columns(conn, table)))
    try:
        for batch in _parquet_batches(store, manifest):
            digest.update(batch)
    except (pa.ArrowException, ColdStoreError, OSError, KeyError, ValueError) as exc:
        raise TieringError(f"{table} {day}: cold copy cannot be read back: {exc}") from exc
    rows = digest.rows
    if rows != manifest.rows or digest.hexdigest() != manifest.checksum:
        raise TieringError(
            f"{table} {day}: cold storage holds {rows} rows with checksum "
            f"{digest.hexdigest()[:12]}, the manifest says {manifest.rows} / "
            f"{manifest.checksum[:12]}"
        )
    return manifest
