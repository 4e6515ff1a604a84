"""``mediation replay``: opportunities by key or time range, snapshot or recompute."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from mediation.cli.common import add_json_flag, print_json, settings, user
from mediation.cli.errors import UsageError
from mediation.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", action="append", help="opportunity_key (repeatable)")
    parser.add_argument(
        "--from", dest="start", help="range start, inclusive: ISO 8601 (UTC unless given) or ms"
    )
    parser.add_argument("--to", dest="end", help="range end, exclusive")
    parser.add_argument("--app-id", help="with a range: only this app")
    parser.add_argument("--placement-id", help="with a range: only this placement")
    parser.add_argument("--mode", choices=["snapshot", "recompute"], default="snapshot")
    parser.add_argument(
        "--rule-version", help="recompute with this rule version (default: the archive's)"
    )
    parser.add_argument(
        "--config-version",
        type=int,
        help="recompute with this config snapshot's windows (default: the one that was active)",
    )
    parser.add_argument("--format", choices=["table", "jsonl", "parquet"], default="table")
    parser.add_argument(
        "--output", type=Path, help="write JSONL or Parquet here (JSONL default: stdout)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="replay the range's days and chunks across N processes (default 1; at most the "
        "CPUs this process may use); the output and hash are those of one process",
    )
    add_json_flag(parser, "print the summary as one JSON document (a table goes to stderr)")


def replay_processes(jobs: int) -> int:
    """``--jobs`` checked (>= 1) and capped at the CPUs this process may use, with a note."""
    import os

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus and jobs > cpus:
        # The work is CPU-bound: more processes than CPUs only add memory.
        print(f"replay: --jobs {jobs} capped at the {cpus} CPU(s) available", file=sys.stderr)
        return cpus
    return jobs


def run(args: argparse.Namespace) -> int:
    from mediation.rules.replay import ReplayRequest, ReplayRequestError, Selection, instant_ms
    from replay.output import open_output
    from replay.run import ReplaySources, run_replay
    from storage.cold import cold_store_for
    from storage.db import connect

    jobs = replay_processes(args.jobs)
    current = settings()
    if args.json and args.format == "jsonl" and args.output is None:
        raise UsageError("--json prints the summary on stdout: give --output for the JSONL")
    try:
        if args.key and (args.start or args.end):
            raise ReplayRequestError("give --key, or --from and --to, not both")
        if args.key:
            selection = Selection.of_keys(args.key)
        elif args.start and args.end:
            selection = Selection.of_range(
                instant_ms(args.start, "--from"),
                instant_ms(args.end, "--to"),
                args.app_id,
                args.placement_id,
            )
        else:
            raise ReplayRequestError("give --key (repeatable), or --from and --to")
        request = ReplayRequest(selection, args.mode, args.rule_version, args.config_version)
        store = cold_store_for(current)
        # With --json, stdout holds the summary alone.
        print_line = partial(print, file=sys.stderr) if args.json else print
        output = open_output(
            args.format, args.output, sys.stdout.buffer, f"replay {args.mode}", print_line
        )
        with connect(current.database_url, autocommit=True) as conn:
            replay_id, digest, location = run_replay(
                conn,
                store,
                request,
                output,
                requested_by=user(),
                jobs=jobs,
                sources=ReplaySources.of(current),
            )
    except ValueError as exc:  # a bad time, format or request
        if isinstance(exc, InputError):
            raise
        raise UsageError(str(exc)) from exc
    # A cold-storage failure is recorded as failed in replay_records; main() says it.
    status = 1 if digest.missing and selection.keys else 0
    if args.json:
        print_json(
            {
                "replay_id": replay_id,
                "mode": args.mode,
                "summary": digest.summary(),
                "result_hash": digest.hexdigest(),
                "written_to": str(location) if location else None,
            }
        )
        return status
    print(f"replay #{replay_id}: {json.dumps(digest.summary())}", file=sys.stderr)
    if location:
        print(f"written to {location}", file=sys.stderr)
    print(f"result hash: {digest.hexdigest()}", file=sys.stderr)
    return status
