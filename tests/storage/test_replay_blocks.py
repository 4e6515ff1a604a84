"""Results in blocks (a parallel replay's units): the hash, summary and outputs of one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from replay.digest import ResultDigest, Tally, canonical_line
from replay.output import CollectedOutput, JsonlOutput, Output, ParquetOutput, TableOutput


def _results() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for n in range(12):
        key = f"K{n:03d}"
        if n % 5 == 4:
            results.append({"opportunity_key": key, "mode": "recompute", "missing": "archive"})
            continue
        archive = {"outcome": "loaded", "revenue_micros": 0, "credited_source_id": "net_a"}
        recomputed = dict(archive)
        changes: dict[str, Any] = {}
        if n % 3 == 0:
            recomputed |= {"outcome": "impressed", "revenue_micros": 100 + n}
            changes = {"outcome": {"archive": "loaded", "recomputed": "impressed"},
                       "revenue_micros": {"archive": 0, "recomputed": 100 + n}}  # fmt: skip
        results.append({"opportunity_key": key, "mode": "recompute", "archive": archive,
                        "recomputed": recomputed, "changes": changes,
                        "text": "tab\there, line\nbreak, \u2028 and é"})  # fmt: skip
    return results


def _blocks(results: list[dict[str, Any]], cuts: list[int]) -> list[tuple[bytes, Tally]]:
    blocks = []
    for start, end in zip([0, *cuts], [*cuts, len(results)], strict=True):
        tally = Tally()
        for result in results[start:end]:
            tally.add(result)
        blocks.append((b"".join(canonical_line(r) for r in results[start:end]), tally))
    return blocks


@pytest.mark.parametrize("cuts", [[], [1], [5, 6], [3, 7, 11], [0, 4, 4, 12]])
def test_blocks_give_the_hash_and_summary_of_one_by_one(cuts: list[int]) -> None:
    results = _results()
    one = ResultDigest()
    for result in results:
        one.add(result)
    blocked = ResultDigest()
    for lines, tally in _blocks(results, cuts):
        blocked.add_block(lines, tally)
    assert (blocked.hexdigest(), blocked.summary()) == (one.hexdigest(), one.summary())
    assert (blocked.records, blocked.changed, blocked.missing) == (12, 3, 2)


def test_blocks_out_of_key_order_are_refused() -> None:
    first, second = _blocks(_results(), [6])
    digest = ResultDigest()
    digest.add_block(*second)
    with pytest.raises(ValueError, match="out of key order"):
        digest.add_block(*first)


def _outputs(path: Path) -> list[Output]:
    path.mkdir()
    return [JsonlOutput(path=path / "r.jsonl"), ParquetOutput(path / "r.parquet"),
            CollectedOutput(), TableOutput("t", lambda _line: None, limit=5)]  # fmt: skip


def test_every_output_writes_a_block_as_it_writes_its_lines(tmp_path: Path) -> None:
    results = _results()
    one, blocked = _outputs(tmp_path / "one"), _outputs(tmp_path / "blocked")
    for output in one:
        for result in results:
            output.write(result, canonical_line(result))
    for output in blocked:
        for lines, _ in _blocks(results, [5, 9]):
            output.write_block(lines)
    for a, b in zip(one, blocked, strict=True):
        assert (a.close() is None) == (b.close() is None)
    for name in ("r.jsonl", "r.parquet"):
        assert (tmp_path / "blocked" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert blocked[2].results == one[2].results == results  # type: ignore[attr-defined]
