"""``mediation config ...`` and ``mediation publish-worker``: configs and their rollout.

::

    mediation config push FILE --app-id A          # validate, store as the next version
    mediation config diff --app-id A 3 4           # what changed between two versions
    mediation config publish --app-id A --version 4 --plan 1:60s,10:60s,50:2m,100 --wait
    mediation config ops --app-id A                # operations, newest first
    mediation config op --operation-id 17          # one operation and its transitions
    mediation config rollback --operation-id 17 --reason "..." --wait
    mediation config degrade --app-id A --profile lite --reason "peak"   # --profile off
    mediation publish-worker                       # drives operations (run one or more)
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediation.errors import InputError
from mediation.rules.publish import (
    ACTIVE_STATES,
    DEFAULT_PLAN,
    HealthThresholds,
    PlanError,
    config_diff,
    plan_from_text,
)
from mediation.rules.waterfall import ConfigError
from mediation.settings import Settings
from mediation.text_table import render_table

if TYPE_CHECKING:
    import psycopg

__all__ = ["InputFileError", "add_config_commands", "read_config_file"]

AddCommand = Callable[..., argparse.ArgumentParser]


class InputFileError(InputError):
    """A file named on the command line cannot be read or is not what it should be."""

    code = "input_file_invalid"


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a config body), or ``InputFileError`` saying why not."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not JSON: not UTF-8 text ({exc.reason})") from exc
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InputFileError(f"{path}: must hold one JSON object, got a {type(body).__name__}")
    return body


def _connect(settings: Settings) -> psycopg.Connection:
    from storage.db import connect

    return connect(settings.database_url, autocommit=True)


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _short(value: object, width: int = 48) -> str:
    text = "-" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_operation_table(operations: list[Any], title: str) -> None:
    rows = [
        [
            op.id,
            op.app_id,
            op.version,
            op.previous_version if op.previous_version is not None else "-",
            op.state,
            f"{op.stage + 1}/{len(op.plan)}",
            f"{op.rollout_percent}%",
            op.updated_at.isoformat(timespec="seconds"),
            _short(op.reason, 60),
        ]
        for op in operations
    ]
    print(
        render_table(
            title,
            ["op", "app", "version", "previous", "state", "stage", "served", "since", "reason"],
            rows,
        )
    )


def _print_transitions(conn: psycopg.Connection, operation_id: int, after: int = 0) -> int:
    from storage.configs import list_transitions

    transitions = list_transitions(conn, operation_id)
    for t in transitions[after:]:
        print(
            f"{t.at.astimezone(dt.UTC).strftime('%H:%M:%S')}  "
            f"{t.from_state or '-':>12} -> {t.to_state:<12} "
            f"{t.rollout_percent if t.rollout_percent is not None else 0:>3}%  "
            f"[{t.actor or '-'}] {t.reason}",
            flush=True,
        )
    return len(transitions)


def _follow(
    conn: psycopg.Connection,
    operation_id: int,
    timeout_s: float,
    wanted: str = "published",
    shown: int = 0,
) -> int:
    """Print transitions (after the first ``shown``) until the operation settles.

    Exit status: 0 when it settled in ``wanted``, 3 in another final state,
    4 when it was still moving after ``timeout_s``.
    """
    from storage.configs import get_operation

    deadline = time.monotonic() + timeout_s
    while True:
        shown = _print_transitions(conn, operation_id, shown)
        operation = get_operation(conn, operation_id)
        if operation is None:
            return 1
        if operation.state not in ACTIVE_STATES:
            print(f"operation {operation_id}: {operation.state}")
            return 0 if operation.state == wanted else 3
        if time.monotonic() > deadline:
            print(f"operation {operation_id} still {operation.state} after {timeout_s:.0f}s")
            return 4
        time.sleep(0.5)


_REQUIRED = {
    "push": ("app_id", "file"),
    "list": ("app_id",),
    "show": ("app_id", "version"),
    "diff": ("app_id", "versions"),
    "publish": ("app_id", "version"),
    "ops": ("app_id",),
    "op": ("operation_id",),
    "rollback": ("operation_id",),
    "degrade": ("app_id", "profile", "reason"),
}


def cmd_config(args: argparse.Namespace) -> int:
    missing = [name for name in _REQUIRED[args.action] if getattr(args, name) is None]
    if missing:
        flags = ", ".join(
            name if name == "file" else "--" + name.replace("_", "-") for name in missing
        )
        print(f"config {args.action}: {flags} required", file=sys.stderr)
        return 2
    from storage.configs import (
        PublishError,
        get_operation,
        get_snapshot,
        list_operations,
        list_snapshots,
        list_transitions,
        push_config,
        request_rollback,
        start_publish,
        switch_degradation,
    )

    # Bad input is refused before anything is reached.
    body = read_config_file(Path(args.file)) if args.action == "push" else None
    # Postgres being unreachable, or without a schema, is said by mediation.cli.app.
    settings = Settings.from_env()
    with _connect(settings) as conn:
        try:
            if body is not None:  # push
                snapshot, created = push_config(conn, args.app_id, body, _actor(args))
                verb = "stored as" if created else "unchanged: already"
                print(
                    f"{args.app_id}: {verb} version {snapshot.version} ({snapshot.checksum[:12]})"
                )
                return 0
            if args.action == "list":
                snapshots = list_snapshots(conn, args.app_id)
                print(
                    render_table(
                        f"config versions of {args.app_id}",
                        ["version", "checksum", "created", "by"],
                        [
                            [
                                s.version,
                                s.checksum[:12],
                                s.created_at.isoformat(timespec="seconds"),
                                s.created_by,
                            ]
                            for s in snapshots
                        ],
                    )
                )
                return 0
            if args.action == "show":
                shown = get_snapshot(conn, args.app_id, args.version)
                if shown is None:
                    print(f"{args.app_id} has no version {args.version}", file=sys.stderr)
                    return 1
                print(json.dumps(shown.body, indent=2, sort_keys=True))
                return 0
            if args.action == "diff":
                a, b = (get_snapshot(conn, args.app_id, v) for v in args.versions)
                if a is None or b is None:
                    print(f"{args.app_id}: unknown version in {args.versions}", file=sys.stderr)
                    return 1
                changes = config_diff(a.body, b.body)
                print(
                    render_table(
                        f"{args.app_id}: version {a.version} -> {b.version} "
                        f"({len(changes)} change(s))",
                        ["path", f"v{a.version}", f"v{b.version}"],
                        [[path, _short(old), _short(new)] for path, old, new in changes],
                    )
                )
                return 0
            if args.action == "publish":
                plan = plan_from_text(args.plan) if args.plan else DEFAULT_PLAN
                thresholds = HealthThresholds(
                    max_error_rate_increase=args.max_error_rate_increase,
                    max_no_fill_rate_increase=args.max_no_fill_rate_increase,
                    max_load_failure_rate_increase=args.max_load_failure_rate_increase,
                    min_requests=args.min_requests,
                )
                operation = start_publish(
                    conn, args.app_id, args.version, plan, _actor(args), thresholds
                )
                stages = ", ".join(f"{s.percent}%/{s.dwell_ms // 1000}s" for s in plan)
                print(
                    f"operation {operation.id}: publish {args.app_id} v{args.version} "
                    f"(previous v{operation.previous_version}); plan {stages}"
                )
                return _follow(conn, operation.id, args.timeout) if args.wait else 0
            if args.action == "ops":
                _print_operation_table(
                    list_operations(conn, args.app_id), f"publish operations of {args.app_id}"
                )
                return 0
            if args.action == "op":
                found = get_operation(conn, args.operation_id)
                if found is None:
                    print(f"no publish operation {args.operation_id}", file=sys.stderr)
                    return 1
                _print_operation_table([found], f"operation {found.id}")
                _print_transitions(conn, found.id)
                return 0
            if args.action == "rollback":
                before = len(list_transitions(conn, args.operation_id))
                operation = request_rollback(
                    conn, args.operation_id, _actor(args), args.reason or "operator request"
                )
                print(
                    f"operation {operation.id}: rolling back; every device gets "
                    f"v{operation.previous_version} from the next gateway refresh"
                )
                if not args.wait:
                    return 0
                return _follow(conn, operation.id, args.timeout, "rolled_back", before)
            if args.action == "degrade":
                profile = None if args.profile == "off" else args.profile
                switch = switch_degradation(conn, args.app_id, profile, _actor(args), args.reason)
                state = f"profile {switch.profile!r} on" if switch.profile else "degradation off"
                print(f"{args.app_id}: {state}; gateways apply it within their refresh (2 s)")
                return 0
        except ConfigError as exc:
            print(f"config for {args.app_id} is invalid ({len(exc.errors)} problem(s)):")
            for error in exc.errors:
                print(f"  - {error}")
            return 1
        except (PublishError, PlanError) as exc:
            code = getattr(exc, "code", "invalid_plan")
            print(f"refused ({code}): {exc}", file=sys.stderr)
            return 1
    raise AssertionError(f"unhandled config action {args.action}")


def cmd_publish_worker(args: argparse.Namespace) -> int:
    from mediation.ops.publish_worker import RedisCohorts, crash_drill, serve

    settings = Settings.from_env()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    cohorts = RedisCohorts(settings.redis_url, settings.topic_prefix)
    try:
        drill = crash_drill(os.environ.get("MEDIATION_PUBLISH_CRASH_AFTER"))
        serve(settings.database_url, cohorts, args.interval, stop, on_step=drill)
    finally:
        cohorts.close()
    return 0


def add_config_commands(sub: Any, add: AddCommand) -> None:
    config = add(
        sub,
        "config",
        cmd_config,
        "Push, list, show and diff config versions; publish with a staged rollout; roll back; "
        "switch degradation profiles",
    )
    config.add_argument(
        "action",
        choices=["push", "list", "show", "diff", "publish", "ops", "op", "rollback", "degrade"],
    )
    config.add_argument("file", nargs="?", help="with push: the config body (a JSON file)")
    config.add_argument("--app-id")
    config.add_argument("--version", type=int, help="with show and publish")
    config.add_argument(
        "--versions", type=int, nargs=2, metavar="V", help="with diff: two versions"
    )
    config.add_argument("--operation-id", type=int, help="with op and rollback")
    config.add_argument("--reason", help="with rollback and degrade: why (kept in the audit trail)")
    config.add_argument(
        "--profile", help="with degrade: a degradation profile of the app's config, or off"
    )
    config.add_argument(
        "--plan",
        help="with publish: percent[:dwell] stages, e.g. 1:60s,10:60s,50:2m,100 "
        "(default 1%%/60s, 10%%/60s, 50%%/120s, 100%%)",
    )
    defaults = HealthThresholds()
    config.add_argument(
        "--max-error-rate-increase", type=float, default=defaults.max_error_rate_increase
    )
    config.add_argument(
        "--max-no-fill-rate-increase", type=float, default=defaults.max_no_fill_rate_increase
    )
    config.add_argument(
        "--max-load-failure-rate-increase",
        type=float,
        default=defaults.max_load_failure_rate_increase,
    )
    config.add_argument(
        "--min-requests",
        type=int,
        default=defaults.min_requests,
        help="new-cohort requests a stage needs before the gate judges it",
    )
    config.add_argument(
        "--wait",
        action="store_true",
        help="with publish and rollback: follow until it settles (exit 0: published, or "
        "rolled back for rollback; 3: ended otherwise; 4: still moving at --timeout)",
    )
    config.add_argument("--timeout", type=float, default=900.0, help="seconds --wait follows")
    config.add_argument("--actor", help="who is acting (audit trail; default cli:<user>)")

    worker = add(
        sub,
        "publish-worker",
        cmd_publish_worker,
        "Drive publish operations: validate, roll out stage by stage behind the health gate, "
        "roll back (config-publish-worker)",
    )
    worker.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
