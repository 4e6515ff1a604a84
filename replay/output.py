"""Where replay results go: a terminal table, JSONL (the canonical lines), or Parquet.

Every output takes each result with its canonical line, in key order, and
``close`` returns where the output is (a path) or ``None`` for a stream.
A file is written under a ``.partial`` name and renamed when complete;
``abort`` removes it, so a failed replay never leaves a file that looks
whole.
``write_block`` takes consecutive results as their canonical lines (a
parallel replay's unit, ``replay/parallel.py``): JSONL writes the bytes as
they are; the other outputs decode each line and take it as ``write``
does, so the output is the same either way.
JSONL is the canonical form itself: ``sha256sum`` of the file is the
result hash. Parquet has one row per result, with the changed fields and
the headline values as columns and the whole result as canonical JSON, so
analysts can filter in Arrow, pandas or DuckDB without parsing first; its
columns are read from the result itself, so the canonical line (and the
hash) is the same whatever the Parquet carries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from mediation.rules.ulid import day_of_ms, is_ulid, ulid_time_ms_unchecked
from mediation.text_table import render_table

__all__ = [
    "FORMATS",
    "PARQUET_SCHEMA",
    "CollectedOutput",
    "JsonlOutput",
    "Output",
    "ParquetOutput",
    "TableOutput",
    "open_output",
]

FORMATS = ("table", "jsonl", "parquet")


class Output(Protocol):
    def write(self, result: dict[str, Any], line: bytes) -> None: ...

    def write_block(self, lines: bytes) -> None: ...

    def close(self) -> str | None: ...

    def abort(self) -> None: ...


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class _LineByLine:
    """``write_block`` for the outputs that need each result: decoded from its line."""

    def write(self, result: dict[str, Any], line: bytes) -> None:
        raise NotImplementedError

    def write_block(self, lines: bytes) -> None:
        # Canonical lines hold no raw line breaks (JSON escapes them).
        for line in lines.splitlines(keepends=True):
            self.write(orjson.loads(line), line)


class JsonlOutput:
    """To ``path`` (through a partial file), or to ``stream`` when there is no path."""

    def __init__(self, stream: IO[bytes] | None = None, path: Path | None = None):
        self._path = path
        opened = _partial(path).open("wb") if path else stream
        if opened is None:
            raise ValueError("JSONL output needs a stream or a path")
        self._stream: IO[bytes] = opened

    def write(self, result: dict[str, Any], line: bytes) -> None:
        self._stream.write(line)

    def write_block(self, lines: bytes) -> None:
        self._stream.write(lines)

    def close(self) -> str | None:
        self._stream.flush()
        if self._path is None:
            return None
        self._stream.close()
        _partial(self._path).replace(self._path)
        return str(self._path)

    def abort(self) -> None:
        if self._path is not None:
            self._stream.close()
            _partial(self._path).unlink(missing_ok=True)


PARQUET_SCHEMA = pa.schema(
    [
        ("opportunity_key", pa.string()),
        ("mode", pa.string()),
        ("missing", pa.string()),
        ("changed_fields", pa.list_(pa.string())),
        ("outcome", pa.string()),
        ("recomputed_outcome", pa.string()),
        ("revenue_micros", pa.int64()),
        ("recomputed_revenue_micros", pa.int64()),
        ("credited_source_id", pa.string()),
        ("recomputed_credited_source_id", pa.string()),
        ("inputs_hash_matches", pa.bool_()),
        ("result_json", pa.string()),
        # Added after result_json (columns are only ever appended): what an
        # analyst groups by without parsing result_json.
        ("app_id", pa.string()),
        ("placement_id", pa.string()),
        ("day", pa.date32()),
        ("currency", pa.string()),
    ]
)


class ParquetOutput(_LineByLine):
    _BATCH = 20_000

    def __init__(self, path: Path):
        self._path = path
        self._writer = pq.ParquetWriter(_partial(path), PARQUET_SCHEMA, compression="zstd")
        self._rows: list[dict[str, Any]] = []

    def write(self, result: dict[str, Any], line: bytes) -> None:
        archive = result.get("archive") or {}
        recomputed = result.get("recomputed") or {}
        key = result["opportunity_key"]
        self._rows.append(
            {
                "opportunity_key": key,
                "mode": result["mode"],
                "missing": result.get("missing"),
                "changed_fields": sorted(result.get("changes") or ()),
                "outcome": archive.get("outcome"),
                "recomputed_outcome": recomputed.get("outcome"),
                "revenue_micros": archive.get("revenue_micros"),
                "recomputed_revenue_micros": recomputed.get("revenue_micros"),
                "credited_source_id": archive.get("credited_source_id"),
                "recomputed_credited_source_id": recomputed.get("credited_source_id"),
                "inputs_hash_matches": result.get("inputs_hash_matches"),
                "result_json": line.rstrip(b"\n").decode(),
                "app_id": archive.get("app_id"),
                "placement_id": archive.get("placement_id"),
                # The key's time is the opportunity's (the day its records are kept under).
                "day": day_of_ms(ulid_time_ms_unchecked(key)) if is_ulid(key) else None,
                "currency": archive.get("currency") or recomputed.get("currency"),
            }
        )
        if len(self._rows) >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=PARQUET_SCHEMA))
            self._rows = []

    def close(self) -> str | None:
        self._flush()
        self._writer.close()
        _partial(self._path).replace(self._path)
        return str(self._path)

    def abort(self) -> None:
        self._writer.close()
        _partial(self._path).unlink(missing_ok=True)


class CollectedOutput(_LineByLine):
    """The results in memory (the replay API's inline answers: small selections only)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def write(self, result: dict[str, Any], line: bytes) -> None:
        self.results.append(result)

    def close(self) -> str | None:
        return None

    def abort(self) -> None:
        self.results = []


class TableOutput(_LineByLine):
    """The first ``limit`` results as a table for a person; the summary says the rest."""

    def __init__(self, title: str, print_line: Callable[[str], None], limit: int = 50):
        self._title, self._print, self._limit = title, print_line, limit
        self._rows: list[list[object]] = []
        self._count = 0

    def write(self, result: dict[str, Any], line: bytes) -> None:
        self._count += 1
        if len(self._rows) < self._limit:
            self._rows.append(_table_row(result))

    def close(self) -> str | None:
        title = self._title
        if self._count > len(self._rows):
            title += f" (first {len(self._rows)} of {self._count:,}; --format jsonl for all)"
        self._print(
            render_table(
                title,
                ["opportunity_key", "outcome", "revenue micros", "credited", "result"],
                self._rows,
            )
        )
        return None

    def abort(self) -> None:
        pass  # nothing printed yet


def _table_row(result: dict[str, Any]) -> list[object]:
    key = result["opportunity_key"]
    if "missing" in result:
        return [key, "-", "-", "-", f"no {result['missing']}"]
    archive = result["archive"]
    after = result.get("recomputed", archive)
    if result["mode"] == "snapshot":
        verdict = "inputs match" if result["inputs_hash_matches"] else "INPUTS CHANGED"
    else:
        verdict = ", ".join(sorted(result["changes"])) or "no change"
    return [
        key,
        f"{archive['outcome']} -> {after['outcome']}",
        f"{archive['revenue_micros']} -> {after['revenue_micros']}",
        f"{archive['credited_source_id']} -> {after['credited_source_id']}",
        verdict,
    ]


def open_output(
    fmt: str, path: Path | None, stdout: IO[bytes], title: str, print_line: Callable[[str], None]
) -> Output:
    """The output for ``fmt``; JSONL goes to ``path`` or ``stdout``, Parquet needs a path."""
    if fmt == "table":
        return TableOutput(title, print_line)
    if fmt == "jsonl":
        return JsonlOutput(path=path) if path else JsonlOutput(stdout)
    if fmt == "parquet":
        if path is None:
            raise ValueError("--format parquet needs --output PATH")
        return ParquetOutput(path)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
