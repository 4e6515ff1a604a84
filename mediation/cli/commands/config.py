"""``mediation config ...``: config versions, staged publishing, rollback, degradation.

::

    mediation config push FILE --app-id A          # validate, store as the next version
    mediation config list --app-id A               # versions
    mediation config show --app-id A --version 3   # one version's body
    mediation config diff --app-id A --versions 3 4
    mediation config publish --app-id A --version 4 --plan 1:60s,10:60s,50:2m,100 --wait
    mediation config ops --app-id A                # operations, newest first
    mediation config op --operation-id 17          # one operation and its transitions
    mediation config rollback --operation-id 17 --reason "..." --wait
    mediation config degrade --app-id A --profile lite --reason "peak"   # --profile off
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediation.cli import status_codes
from mediation.cli.common import add_json_flag, print_json, settings, short, user
from mediation.cli.errors import InputFileError, NotFoundError

if TYPE_CHECKING:
    import psycopg

    from storage.configs import PublishOperation, Transition

__all__ = ["add_arguments", "read_config_file"]


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


# -- the parser ---------------------------------------------------------------------


def _action(
    actions: Any, name: str, summary: str, handler: Any, *, app_id: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=summary, description=summary)
    parser.set_defaults(handler=handler)
    if app_id:
        parser.add_argument("--app-id", required=True)
    return parser


def _add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who is acting (audit trail; default cli:<user>)")


def _add_wait(parser: argparse.ArgumentParser, settled: str) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help=f"follow until it settles (exit 0: {settled}; 3: ended otherwise; 4: still "
        "moving at --timeout)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds --wait follows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mediation.rules.publish import HealthThresholds

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    push = _action(actions, "push", "Validate a config body and store it as the next version",
                   run_push, app_id=True)  # fmt: skip
    push.add_argument("file", type=Path, metavar="FILE", help="the config body (a JSON file)")
    _add_actor(push)

    listing = _action(actions, "list", "The app's config versions", run_list, app_id=True)
    add_json_flag(listing)

    show = _action(actions, "show", "One config version's body (JSON)", run_show, app_id=True)
    show.add_argument("--version", type=int, required=True)

    diff = _action(actions, "diff", "What changed between two versions, by path", run_diff,
                   app_id=True)  # fmt: skip
    diff.add_argument("--versions", type=int, nargs=2, metavar="V", required=True)

    publish = _action(
        actions,
        "publish",
        "Start publishing a version with a staged rollout behind the health gate",
        run_publish,
        app_id=True,
    )
    publish.add_argument("--version", type=int, required=True)
    publish.add_argument(
        "--plan",
        help="percent[:dwell] stages, e.g. 1:60s,10:60s,50:2m,100 "
        "(default 1%%/60s, 10%%/60s, 50%%/120s, 100%%)",
    )
    defaults = HealthThresholds()
    publish.add_argument(
        "--max-error-rate-increase", type=float, default=defaults.max_error_rate_increase
    )
    publish.add_argument(
        "--max-no-fill-rate-increase", type=float, default=defaults.max_no_fill_rate_increase
    )
    publish.add_argument(
        "--max-load-failure-rate-increase",
        type=float,
        default=defaults.max_load_failure_rate_increase,
    )
    publish.add_argument(
        "--min-requests",
        type=int,
        default=defaults.min_requests,
        help="new-cohort requests a stage needs before the gate judges it",
    )
    _add_wait(publish, "published")
    _add_actor(publish)

    ops = _action(actions, "ops", "The app's publish operations, newest first", run_ops,
                  app_id=True)  # fmt: skip
    add_json_flag(ops)

    op = _action(actions, "op", "One publish operation and every transition", run_op)
    op.add_argument("--operation-id", type=int, required=True)
    add_json_flag(op)

    rollback = _action(
        actions,
        "rollback",
        "Roll an operation back: every device gets the previous version",
        run_rollback,
    )
    rollback.add_argument("--operation-id", type=int, required=True)
    rollback.add_argument("--reason", help="why (kept in the audit trail)")
    _add_wait(rollback, "rolled back")
    _add_actor(rollback)

    degrade = _action(
        actions,
        "degrade",
        "Switch a degradation profile of the app's config on, or off",
        run_degrade,
        app_id=True,
    )
    degrade.add_argument(
        "--profile", required=True, help="a degradation profile of the app's config, or off"
    )
    degrade.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    _add_actor(degrade)


# -- shared -------------------------------------------------------------------------


def _connect() -> psycopg.Connection:
    from storage.db import connect

    return connect(settings().database_url, autocommit=True)


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor) if args.actor else f"cli:{user()}"


def _operation_document(op: PublishOperation) -> dict[str, Any]:
    return {
        "id": op.id,
        "app_id": op.app_id,
        "version": op.version,
        "previous_version": op.previous_version,
        "state": op.state,
        "stage": op.stage + 1,
        "stages": len(op.plan),
        "rollout_percent": op.rollout_percent,
        "plan": [{"percent": s.percent, "dwell_ms": s.dwell_ms} for s in op.plan],
        "thresholds": op.thresholds,
        "reason": op.reason,
        "created_by": op.created_by,
        "created_at": op.created_at,
        "updated_at": op.updated_at,
    }


def _transition_document(t: Transition) -> dict[str, Any]:
    return {
        "from_state": t.from_state,
        "to_state": t.to_state,
        "stage": None if t.stage is None else t.stage + 1,
        "rollout_percent": t.rollout_percent,
        "reason": t.reason,
        "actor": t.actor,
        "at": t.at,
    }


def _print_operation_table(operations: Sequence[PublishOperation], title: str) -> None:
    from mediation.text_table import render_table

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
            short(op.reason, 60),
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

    Exit status: 0 when it settled in ``wanted``, ``SETTLED_OTHERWISE`` in
    another final state, ``STILL_MOVING`` when it still moved after ``timeout_s``.
    """
    from mediation.rules.publish import ACTIVE_STATES
    from storage.configs import get_operation

    deadline = time.monotonic() + timeout_s
    while True:
        shown = _print_transitions(conn, operation_id, shown)
        operation = get_operation(conn, operation_id)
        if operation is None:
            raise NotFoundError(f"no publish operation {operation_id}")
        if operation.state not in ACTIVE_STATES:
            print(f"operation {operation_id}: {operation.state}")
            if operation.state == wanted:
                return status_codes.SUCCESS
            return status_codes.SETTLED_OTHERWISE
        if time.monotonic() > deadline:
            print(f"operation {operation_id} still {operation.state} after {timeout_s:.0f}s")
            return status_codes.STILL_MOVING
        time.sleep(0.5)


# -- the actions (a refused request, PublishError or ConfigError, is an InputError) ---


def run_push(args: argparse.Namespace) -> int:
    from storage.configs import push_config

    body = read_config_file(args.file)  # bad input is refused before anything is reached
    with _connect() as conn:
        snapshot, created = push_config(conn, args.app_id, body, _actor(args))
    verb = "stored as" if created else "unchanged: already"
    print(f"{args.app_id}: {verb} version {snapshot.version} ({snapshot.checksum[:12]})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.configs import list_snapshots

    with _connect() as conn:
        snapshots = list_snapshots(conn, args.app_id)
    if args.json:
        print_json(
            {
                "app_id": args.app_id,
                "versions": [
                    {
                        "version": s.version,
                        "checksum": s.checksum,
                        "created_at": s.created_at,
                        "created_by": s.created_by,
                    }
                    for s in snapshots
                ],
            }
        )
        return 0
    rows = [
        [s.version, s.checksum[:12], s.created_at.isoformat(timespec="seconds"), s.created_by]
        for s in snapshots
    ]
    print(
        render_table(
            f"config versions of {args.app_id}", ["version", "checksum", "created", "by"], rows
        )
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from storage.configs import get_snapshot

    with _connect() as conn:
        shown = get_snapshot(conn, args.app_id, args.version)
    if shown is None:
        raise NotFoundError(f"{args.app_id} has no version {args.version}")
    print(json.dumps(shown.body, indent=2, sort_keys=True))
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from mediation.rules.publish import config_diff
    from mediation.text_table import render_table
    from storage.configs import get_snapshot

    with _connect() as conn:
        a, b = (get_snapshot(conn, args.app_id, v) for v in args.versions)
    if a is None or b is None:
        raise NotFoundError(f"{args.app_id}: unknown version in {args.versions}")
    changes = config_diff(a.body, b.body)
    print(
        render_table(
            f"{args.app_id}: version {a.version} -> {b.version} ({len(changes)} change(s))",
            ["path", f"v{a.version}", f"v{b.version}"],
            [[path, short(old), short(new)] for path, old, new in changes],
        )
    )
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from mediation.rules.publish import DEFAULT_PLAN, HealthThresholds, plan_from_text
    from storage.configs import start_publish

    plan = plan_from_text(args.plan) if args.plan else DEFAULT_PLAN
    thresholds = HealthThresholds(
        max_error_rate_increase=args.max_error_rate_increase,
        max_no_fill_rate_increase=args.max_no_fill_rate_increase,
        max_load_failure_rate_increase=args.max_load_failure_rate_increase,
        min_requests=args.min_requests,
    )
    with _connect() as conn:
        operation = start_publish(conn, args.app_id, args.version, plan, _actor(args), thresholds)
        stages = ", ".join(f"{s.percent}%/{s.dwell_ms // 1000}s" for s in plan)
        print(
            f"operation {operation.id}: publish {args.app_id} v{args.version} "
            f"(previous v{operation.previous_version}); plan {stages}"
        )
        return _follow(conn, operation.id, args.timeout) if args.wait else 0


def run_ops(args: argparse.Namespace) -> int:
    from storage.configs import list_operations

    with _connect() as conn:
        operations = list_operations(conn, args.app_id)
    if args.json:
        print_json(
            {"app_id": args.app_id, "operations": [_operation_document(o) for o in operations]}
        )
        return 0
    _print_operation_table(operations, f"publish operations of {args.app_id}")
    return 0


def run_op(args: argparse.Namespace) -> int:
    from storage.configs import get_operation, list_transitions

    with _connect() as conn:
        found = get_operation(conn, args.operation_id)
        if found is None:
            raise NotFoundError(f"no publish operation {args.operation_id}")
        if args.json:
            transitions = list_transitions(conn, found.id)
            print_json(
                {
                    **_operation_document(found),
                    "transitions": [_transition_document(t) for t in transitions],
                }
            )
            return 0
        _print_operation_table([found], f"operation {found.id}")
        _print_transitions(conn, found.id)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from storage.configs import list_transitions, request_rollback

    with _connect() as conn:
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


def run_degrade(args: argparse.Namespace) -> int:
    from storage.configs import switch_degradation

    profile = None if args.profile == "off" else args.profile
    with _connect() as conn:
        switch = switch_degradation(conn, args.app_id, profile, _actor(args), args.reason)
    state = f"profile {switch.profile!r} on" if switch.profile else "degradation off"
    print(f"{args.app_id}: {state}; gateways apply it within their refresh (2 s)")
    return 0
