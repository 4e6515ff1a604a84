"""``mediation``: the one entry point for operators, analysts and developers.

Every command reads its settings from the environment once (see
``mediation.settings``); a bad setting prints one line naming the variable
and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mediation import __version__
from mediation.cli.config import add_config_commands

if TYPE_CHECKING:
    from mediation.membership import Membership
    from mediation.settings import Settings
    from mediation.sim.simulate import SimulationReport

__all__ = ["main"]


def _settings() -> Settings:
    from mediation.settings import Settings

    return Settings.from_env()


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # One line per HTTP call drowns the output of the simulator and the demo.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# -- commands -------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from mediation.sim import devstack
    from mediation.text_table import render_table

    settings = _settings()
    if args.action == "up":
        services = tuple(args.services or devstack.DEFAULT_SERVICES)
        statuses = devstack.up(settings, services)
    elif args.action == "down":
        statuses = devstack.down(settings)
    else:
        statuses = devstack.status(settings)
    print(
        render_table(
            f"dev stack ({args.action})",
            ["service", "address", "state", "detail"],
            [[s.name, s.address, s.state, s.detail] for s in statuses],
        )
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.migrate import migrate, pending
    from storage.partitions import days_around, ensure_partitions

    settings = _settings()
    if args.dry_run:
        todo = pending(settings.database_url)
        print("pending migrations: " + (", ".join(m.version for m in todo) or "none"))
        return 0
    applied = migrate(settings.database_url)
    print("applied: " + (", ".join(applied) or "none (up to date)"))
    with connect(settings.database_url) as conn:
        created = ensure_partitions(conn, days_around(dt.datetime.now(dt.UTC).date(), 1, 7))
    print(f"day partitions created: {created}")
    return 0


def cmd_partitions(args: argparse.Namespace) -> int:
    from storage.db import connect
    from storage.partitions import days_around, ensure_partitions

    settings = _settings()
    today = dt.datetime.now(dt.UTC).date()
    with connect(settings.database_url) as conn:
        created = ensure_partitions(conn, days_around(today, args.days_back, args.days_ahead))
    print(
        f"day partitions created: {created} "
        f"({today - dt.timedelta(days=args.days_back)} .. "
        f"{today + dt.timedelta(days=args.days_ahead)})"
    )
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from mediation.sim.seed import demo_config, new_app_key, seed_app

    settings = _settings()
    key = args.app_key or new_app_key()
    result = seed_app(
        settings.database_url, args.app_id, demo_config(args.closure_window_ms, args.grace_ms), key
    )
    print(f"app: {result.app_id}")
    print(
        f"config version: {result.config_version} "
        f"({'published now' if result.published_now else 'unchanged'})"
    )
    if result.app_key:
        print(f"write key (shown once, stored hashed): {result.app_key}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.keys import KeyOperationError, create_key, list_keys, revoke_key

    settings = _settings()
    try:
        if args.action == "create":
            raw = create_key(settings.database_url, args.app_id, "cli")
            print(f"write key for {args.app_id} (shown once, stored hashed): {raw}")
        elif args.action == "revoke":
            if not args.prefix:
                print("mediation keys revoke: --prefix is required", file=sys.stderr)
                return 2
            revoke_key(settings.database_url, args.app_id, args.prefix, "cli")
            print(f"revoked the key of {args.app_id} starting with {args.prefix}")
        else:
            rows = [
                [
                    k.prefix,
                    k.created_at.isoformat(timespec="seconds"),
                    k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "active",
                ]
                for k in list_keys(settings.database_url, args.app_id)
            ]
            print(
                render_table(f"write keys of {args.app_id}", ["prefix", "created", "revoked"], rows)
            )
    except KeyOperationError as exc:
        print(f"mediation keys: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from mediation.ops.status import read_triggers, read_worker, render_status, render_triggers

    urls = args.worker_metrics or ["http://127.0.0.1:9464/metrics"]
    reports = [read_worker(url) for url in urls]
    print(render_status(reports))
    healthy = all(report.error is None for report in reports)
    if args.window_s > 0:
        settings = _settings()
        gateways = args.gateway_metrics or [
            "http://127.0.0.1:8080/metrics",
            "http://127.0.0.1:8081/metrics",
        ]
        reading = read_triggers(
            gateways, reports, settings.database_url, settings.redis_url, args.window_s
        )
        print()
        print(render_triggers(reading.states))
        for url in reading.unreachable_gateways:
            print(f"gateway metrics unreachable: {url}")
        healthy = (
            healthy
            and not reading.unreachable_gateways
            and all(s.state != "FIRING" for s in reading.states)
        )
    return 0 if healthy else 1


def cmd_tier(args: argparse.Namespace) -> int:
    from mediation.rules.tiering import (
        DEFAULT_HOT_DAYS,
        check_retention,
        older_than_days,
        parse_hot_days,
    )
    from mediation.text_table import render_table
    from storage.cold import READABLE_STORAGE_CLASSES, open_cold_store
    from storage.db import connect
    from storage.lifecycle import age_tiered_days
    from storage.partitions import PARTITIONED_TABLES
    from storage.tier_job import run_tiering

    settings = _settings()
    today = args.today or dt.datetime.now(dt.UTC).date()
    tables = args.table or list(PARTITIONED_TABLES)
    unknown = sorted(set(tables) - set(PARTITIONED_TABLES))
    if unknown:
        print(f"mediation tier: unknown table(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.older_than is not None and (args.hot_days is not None or args.hot_days_for):
        print(
            "mediation tier: give --older-than or --hot-days/--hot-days-for, not both",
            file=sys.stderr,
        )
        return 2
    try:
        if args.older_than is not None:  # one cut-off for every table
            default_hot_days, hot_days = older_than_days(args.older_than, today), {}
        else:
            default_hot_days = DEFAULT_HOT_DAYS if args.hot_days is None else args.hot_days
            hot_days = dict(parse_hot_days(args.hot_days_for or [], PARTITIONED_TABLES))
        for days in {default_hot_days, *hot_days.values()}:
            check_retention(days, args.warm_days, args.retain_days)
    except ValueError as exc:
        print(f"mediation tier: {exc}", file=sys.stderr)
        return 2
    if args.cold_storage_class not in READABLE_STORAGE_CLASSES:
        print(
            f"mediation tier: --cold-storage-class (default: MEDIATION_COLD_STORAGE_CLASS) must "
            f"be one of {', '.join(sorted(READABLE_STORAGE_CLASSES))} (replay reads cold days "
            f"directly), got {args.cold_storage_class!r}",
            file=sys.stderr,
        )
        return 2
    store = open_cold_store(settings.cold_storage_url, settings.aws_endpoint_url)
    with connect(settings.database_url) as conn:
        results = run_tiering(
            conn,
            store,
            today,
            tables=tables,
            hot_days=hot_days,
            default_hot_days=default_hot_days,
            dry_run=args.dry_run,
        )
        results += age_tiered_days(
            conn,
            store,
            today,
            tables=tables,
            warm_days=args.warm_days,
            retain_days=args.retain_days,
            storage_class=args.cold_storage_class,
            dry_run=args.dry_run,
        )
    title = (
        f"tiering to {store.url} (hot {default_hot_days}, warm {args.warm_days}, retain "
        f"{args.retain_days} days before {today}" + (", dry run)" if args.dry_run else ")")
    )
    if not results:
        print(f"{title}: nothing to tier")
        return 0
    print(
        render_table(
            title,
            ["table", "day", "rows", "action"],
            [[r.table, r.day.isoformat(), r.rows, r.action] for r in results],
        )
    )
    return 1 if any(r.action.startswith("failed") for r in results) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    import getpass
    import json

    from mediation.rules.replay import ReplayRequest, ReplayRequestError, Selection, instant_ms
    from replay.output import open_output
    from replay.run import run_replay
    from storage.cold import open_cold_store
    from storage.db import connect

    settings = _settings()
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
        store = open_cold_store(settings.cold_storage_url, settings.aws_endpoint_url)
        output = open_output(
            args.format, args.output, sys.stdout.buffer, f"replay {args.mode}", print
        )
        with connect(settings.database_url, autocommit=True) as conn:
            replay_id, digest, location = run_replay(
                conn, store, request, output, requested_by=getpass.getuser()
            )
    except (ReplayRequestError, ValueError) as exc:
        print(f"mediation replay: {exc}", file=sys.stderr)
        return 2
    # A cold-storage failure is recorded as failed in replay_records; main() says it.
    print(f"replay #{replay_id}: {json.dumps(digest.summary())}", file=sys.stderr)
    if location:
        print(f"written to {location}", file=sys.stderr)
    print(f"result hash: {digest.hexdigest()}", file=sys.stderr)
    return 1 if digest.missing and selection.keys else 0


def cmd_replay_jobs(args: argparse.Namespace) -> int:
    import signal

    from replay.jobs import serve_jobs
    from storage.cold import open_cold_store

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    settings = _settings()
    store = open_cold_store(settings.cold_storage_url, settings.aws_endpoint_url)
    try:
        ran = serve_jobs(settings.database_url, store, once=args.once, poll_s=args.poll_s)
    except KeyboardInterrupt:
        return 0
    print(f"replay-jobs: {ran} job(s) run", file=sys.stderr)
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.deadletters import list_dead_letters, redrive

    settings = _settings()
    since = (
        dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.since_hours) if args.since_hours else None
    )
    if args.action == "list":
        letters = list_dead_letters(
            settings.database_url,
            reason=args.reason,
            app_id=args.app_id,
            since=since,
            status=args.status,
            limit=args.limit,
        )
        rows = [
            [
                d.created_at.isoformat(timespec="seconds"),
                d.reason,
                d.app_id,
                d.opportunity_key,
                f"{d.source_topic}:{d.source_partition}:{d.source_offset}"
                if d.source_topic
                else "",
                d.redrive_status,
                d.detail[:60],
            ]
            for d in letters
        ]
        print(
            render_table(
                f"dead letters (newest {args.limit})",
                ["created", "reason", "app", "opportunity", "source", "status", "detail"],
                rows,
            )
        )
        return 0
    from confluent_kafka import Producer

    from mediation.topics import producer_config

    producer = Producer(
        producer_config(
            settings.kafka_bootstrap_servers, {"enable.idempotence": True, "acks": "all"}
        )
    )

    def send(topic: str, key: bytes | None, value: bytes) -> None:
        errors: list[object] = []
        producer.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err))
        producer.flush(30)
        if not errors or errors[0] is not None:
            raise RuntimeError(f"broker did not confirm the re-drive to {topic}: {errors}")

    count, skipped = redrive(
        settings.database_url,
        send,
        reason=args.reason,
        app_id=args.app_id,
        since=since,
        dry_run=not args.yes,
    )
    verb = "re-drove" if args.yes else "would re-drive (dry run; add --yes)"
    print(
        f"{verb} {count} dead letter(s); skipped {skipped} refused by the rules "
        "(re-sending them would be refused again)"
    )
    return 0


def _serve(args: argparse.Namespace, roles: str) -> int:
    import uvicorn

    _settings()  # fail fast, with one clear line, before uvicorn starts workers
    os.environ["MEDIATION_GATEWAY_ROLES"] = roles
    uvicorn.run(
        "gateway.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.processes,
        loop="uvloop",
        # httptools, with the request line and headers bounded (431/414).
        http="gateway.server_protocol:LimitedHttpToolsProtocol",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    return _serve(args, args.role)


def cmd_ingest(args: argparse.Namespace) -> int:
    return _serve(args, "ingest")


def _membership(args: argparse.Namespace) -> Membership:
    """The partitions this worker process owns, from ``--member`` or ``--partitions``."""
    from mediation.membership import Membership, MembershipError

    if args.partitions is not None:
        if args.member is not None:
            raise MembershipError("give --member or --partitions, not both")
        return Membership.parse_partitions(args.partitions)
    return Membership.parse_member(args.member or "0/1")


def cmd_worker(args: argparse.Namespace) -> int:

    from dataflows.recovery import ensure_recovery_partitions

    membership = _membership(args)
    _settings()
    # One Bytewax worker, no cluster: this process owns whole partitions and
    # exchanges nothing with the others (docs/architecture.md).
    argv = [sys.executable, "-m", "bytewax.run", "dataflows.worker:production_flow()", "-w", "1"]
    if args.recovery_directory:
        # One store per layout: a changed layout starts from fresh stores
        # and each partition from its safe offset (docs/operations.md).
        directory = Path(args.recovery_directory) / membership.label
        created = ensure_recovery_partitions(directory, args.recovery_partitions)
        if created:
            print(f"created {len(created)} recovery partition(s) in {directory}", file=sys.stderr)
        # Bytewax requires both intervals with -r.
        argv += [
            "-r",
            str(directory),
            "-s",
            str(args.snapshot_interval),
            "-b",
            str(args.backup_interval),
        ]
    os.environ.pop("MEDIATION_WORKER_MEMBER", None)
    os.environ.pop("MEDIATION_WORKER_PARTITIONS", None)
    if membership.partitions is not None:
        os.environ["MEDIATION_WORKER_PARTITIONS"] = ",".join(
            map(str, sorted(membership.partitions))
        )
    else:
        os.environ["MEDIATION_WORKER_MEMBER"] = f"{membership.index}/{membership.count}"
    if args.metrics_port:
        port = args.metrics_port + (membership.index if membership.partitions is None else 0)
        os.environ["MEDIATION_WORKER_METRICS_PORT"] = str(port)
        os.environ["MEDIATION_WORKER_METRICS_HOST"] = args.metrics_host
    os.execv(sys.executable, argv)  # replaces this process: signals go straight to Bytewax


def _simulation_progress(report: SimulationReport, elapsed_s: float) -> None:
    if report.requests_sent % 25 == 0:
        sys.stderr.write(
            f"\r{elapsed_s:6.1f}s  requests {report.requests_sent:7,} ok {report.requests_ok:7,}  "
            f"events ACKed {report.events_accepted:8,}  "
            f"batches ok {report.batches_ok:6,}/{report.batches_sent:,}"
        )
        sys.stderr.flush()


def cmd_simulate(args: argparse.Namespace) -> int:
    from collections import Counter

    from mediation.sim.simulate import SimulationConfig, run_simulation
    from mediation.sim.summary import percentile

    if args.profile:
        from mediation.ops.peak import PROFILES, run_profile

        profile = PROFILES[args.profile]
        if args.rate is not None:
            profile = profile.at_rate(args.rate)
        folder, passed = run_profile(_settings(), profile, args.duration, args.results)
        print(f"\n{(folder / 'report.md').read_text()}")
        print(f"report: {folder / 'report.md'} ({'PASSED' if passed else 'FAILED'})")
        return 0 if passed else 1
    if not args.app_key:
        print("mediation simulate: --app-key is required without --profile", file=sys.stderr)
        return 2
    report = asyncio.run(
        run_simulation(
            SimulationConfig(
                base_url=args.url,
                app_key=args.app_key,
                rate_rps=args.rate if args.rate is not None else 50.0,
                duration_s=args.duration or 20.0,
                seed=args.seed,
            ),
            progress=_simulation_progress,
        )
    )
    sys.stderr.write("\n")
    latencies = report.request_latency_ms
    outcomes = Counter(e.outcome for e in report.expectations.values())
    print(
        f"requests {report.requests_sent:,} (ok {report.requests_ok:,}, errors "
        f"{dict(report.request_errors) or 'none'}); events sent {report.events_sent:,}, "
        f"accepted {report.events_accepted:,}, rejected {dict(report.events_rejected) or 'none'}"
    )
    if latencies:
        print(
            f"sync latency p50 {percentile(latencies, 50):.1f} ms, p95 "
            f"{percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; "
            f"event batches p95 {percentile(report.batch_latency_ms, 95):.1f} ms"
        )
    print(f"event ACK success {100 * report.ack_ratio:.3f}% of {report.batches_sent:,} batches")
    print(
        f"the archive should hold {len(report.expectations):,} records: "
        + ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(outcomes.items()))
    )
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from mediation.ops.alerting import DEPLOY_DIR
    from mediation.ops.gate import run_gate
    from mediation.text_table import render_table

    settings = _settings()
    results = args.results or settings.data_dir / "results"
    if args.run_peak:
        from mediation.ops.peak import PROFILES, run_profile

        run_profile(settings, PROFILES["peak"], args.peak_duration, None)
    checks = run_gate(
        settings,
        results=results,
        alertmanager_file=args.alertmanager or DEPLOY_DIR / "alertmanager" / "alertmanager.yml",
        max_peak_age_days=args.max_peak_age_days,
    )
    print(
        render_table(
            "go/no-go gate (seed section 8)",
            ["item", "result", "detail"],
            [[c.item, "pass" if c.passed else "FAIL", c.detail] for c in checks],
        )
    )
    passed = all(c.passed for c in checks)
    print(f"\n{'GO' if passed else 'NO-GO'}: {sum(c.passed for c in checks)}/{len(checks)} passed")
    return 0 if passed else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from mediation.sim.demo import DemoOptions, run_demo

    return run_demo(
        _settings(),
        DemoOptions(
            duration_s=args.duration,
            rate_rps=args.rate,
            closure_window_ms=args.closure_window_ms,
            keep_services=args.keep_services,
        ),
    )


# -- parser ---------------------------------------------------------------------


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help_text: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediation",
        description="Ad-mediation event pipeline: gateway, dataflow worker, storage and tools. "
        "Settings come from the environment (DATABASE_URL, REDIS_URL, "
        "KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC_PREFIX, COLD_STORAGE_URL, ...).",
    )
    parser.add_argument("--version", action="version", version=f"mediation {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = _add(sub, "dev", cmd_dev, "Start, stop or show the local services (reuses running ones)")
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.add_argument(
        "--services",
        nargs="+",
        choices=["postgres", "redis", "kafka", "s3", "pooler"],
        help="what to start (default: postgres redis kafka s3; pooler = pgbouncer in "
        "transaction mode, for the tests)",
    )

    migrate = _add(
        sub,
        "migrate",
        cmd_migrate,
        "Apply pending sql/ migrations (safe to race) and create day partitions",
    )
    migrate.add_argument("--dry-run", action="store_true", help="list pending migrations only")

    parts = _add(sub, "partitions", cmd_partitions, "Create day partitions ahead (run daily)")
    parts.add_argument("--days-ahead", type=int, default=7)
    parts.add_argument("--days-back", type=int, default=1)

    seed = _add(sub, "seed", cmd_seed, "Create the demo app, a write key and a published config")
    seed.add_argument("--app-id", default="demo")
    seed.add_argument("--app-key", help="use this write key instead of a new random one")
    seed.add_argument("--closure-window-ms", type=int, default=30 * 60 * 1000)
    seed.add_argument("--grace-ms", type=int, default=30_000)

    keys = _add(
        sub,
        "keys",
        cmd_keys,
        "List, create or revoke an app's write keys (two active keys allow rotation)",
    )
    keys.add_argument("action", choices=["list", "create", "revoke"])
    keys.add_argument("--app-id", required=True)
    keys.add_argument("--prefix", help="with revoke: the key's prefix as `keys list` shows it")

    status = _add(
        sub,
        "status",
        cmd_status,
        "Show what the worker processes report (progress, state, lag per input partition) "
        "and each scaling trigger of the seed with its current value, state and action; "
        "exit 1 when a process is unreachable or a trigger fires",
    )
    status.add_argument(
        "--gateway-metrics",
        action="append",
        metavar="URL",
        help="a gateway process's /metrics URL; repeat for each process "
        "(default http://127.0.0.1:8080/metrics and :8081/metrics)",
    )
    status.add_argument(
        "--window-s",
        type=float,
        default=5.0,
        help="seconds over which latency, ACK success and database load are measured "
        "(0: workers only, no triggers)",
    )
    status.add_argument(
        "--worker-metrics",
        action="append",
        metavar="URL",
        help="a worker process's /metrics URL; repeat for each process "
        "(default http://127.0.0.1:9464/metrics)",
    )

    tier = _add(
        sub,
        "tier",
        cmd_tier,
        "Move day partitions older than the hot retention to Parquet in COLD_STORAGE_URL "
        "(export, verify, record, drop), warm days to the cold storage class, and delete days "
        "past retention (audited); safe to re-run after a crash",
    )
    tier.add_argument(
        "--hot-days",
        type=int,
        help="days kept in Postgres besides today (default 30; 0: every day before today "
        "is tiered)",
    )
    tier.add_argument(
        "--older-than",
        metavar="DAYS|DATE",
        help="tier the days before today - DAYS (like --hot-days DAYS), or strictly before "
        "DATE (YYYY-MM-DD, not after today), for every table",
    )
    tier.add_argument(
        "--warm-days",
        type=int,
        default=180,
        help="days before tiered objects move to the cold storage class (default 180)",
    )
    tier.add_argument(
        "--retain-days",
        type=int,
        default=365,
        help="days before tiered objects are deleted, with an audit record (default 365)",
    )
    tier.add_argument(
        "--cold-storage-class",
        default=os.environ.get("MEDIATION_COLD_STORAGE_CLASS", "STANDARD_IA"),
        help="S3 storage class of the cold tier (default STANDARD_IA, or "
        "MEDIATION_COLD_STORAGE_CLASS)",
    )
    tier.add_argument(
        "--hot-days-for",
        action="append",
        metavar="TABLE=DAYS",
        help="another hot retention for one table (repeatable)",
    )
    tier.add_argument("--table", action="append", help="only this table (repeatable)")
    tier.add_argument(
        "--today", type=dt.date.fromisoformat, help="the day to count from (default: today, UTC)"
    )
    tier.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")

    replay = _add(
        sub,
        "replay",
        cmd_replay,
        "Replay opportunities by key or time range from hot and cold storage (snapshot or "
        "recompute), recorded in replay_records; the result hash goes to stderr",
    )
    replay.add_argument("--key", action="append", help="opportunity_key (repeatable)")
    replay.add_argument(
        "--from", dest="start", help="range start, inclusive: ISO 8601 (UTC unless given) or ms"
    )
    replay.add_argument("--to", dest="end", help="range end, exclusive")
    replay.add_argument("--app-id", help="with a range: only this app")
    replay.add_argument("--placement-id", help="with a range: only this placement")
    replay.add_argument("--mode", choices=["snapshot", "recompute"], default="snapshot")
    replay.add_argument(
        "--rule-version", help="recompute with this rule version (default: the archive's)"
    )
    replay.add_argument(
        "--config-version",
        type=int,
        help="recompute with this config snapshot's windows (default: the one that was active)",
    )
    replay.add_argument("--format", choices=["table", "jsonl", "parquet"], default="table")
    replay.add_argument(
        "--output", type=Path, help="write JSONL or Parquet here (JSONL default: stdout)"
    )

    jobs = _add(
        sub,
        "replay-jobs",
        cmd_replay_jobs,
        "Run queued replay jobs (the replay API's large ranges); results go to cold storage",
    )
    jobs.add_argument("--once", action="store_true", help="stop when the queue is empty")
    jobs.add_argument("--poll-s", type=float, default=2.0, help="queue poll interval")

    dlq = _add(sub, "dlq", cmd_dlq, "List dead letters, or re-drive them to their source topic")
    dlq.add_argument("action", choices=["list", "redrive"])
    dlq.add_argument("--reason", help="only this reason code (e.g. invalid_json)")
    dlq.add_argument("--app-id")
    dlq.add_argument("--since-hours", type=float, help="only the last N hours")
    dlq.add_argument(
        "--status",
        choices=["pending", "redriven", "discarded"],
        help="with list: only this re-drive status",
    )
    dlq.add_argument("--limit", type=int, default=50, help="with list: rows to show")
    dlq.add_argument(
        "--yes", action="store_true", help="with redrive: really send (without it: a dry-run count)"
    )

    for name, handler, text in (
        ("api", cmd_api, "Serve the sync API (mediation-api); --role all adds event ingest"),
        ("ingest", cmd_ingest, "Serve event ingest only (mediation-event-ingest)"),
    ):
        serve = _add(sub, name, handler, text)
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8080 if name == "api" else 8081)
        serve.add_argument(
            "--processes", type=int, default=1, help="uvicorn worker processes (about one per core)"
        )
        if name == "api":
            serve.add_argument(
                "--role",
                choices=["api", "all"],
                default="all",
                help="api: requests + config only; all: also /v1/events",
            )

    worker = _add(
        sub, "worker", cmd_worker, "Run the closing dataflow (python -m bytewax.run underneath)"
    )
    worker.add_argument(
        "--member",
        metavar="I/N",
        help="run member I of N worker processes: owns partitions p with p %% N == I "
        "(default 0/1: all)",
    )
    worker.add_argument(
        "--partitions",
        metavar="LIST",
        help="own exactly these input partitions (comma-separated), instead of --member",
    )
    worker.add_argument(
        "-r",
        "--recovery-directory",
        help="recovery stores' directory (this process's store: DIR/<member-I-of-N>)",
    )
    worker.add_argument(
        "-s",
        "--snapshot-interval",
        type=int,
        default=10,
        help="seconds between recovery snapshots (with -r; default 10)",
    )
    worker.add_argument(
        "-b",
        "--backup-interval",
        type=int,
        default=0,
        help="seconds to keep superseded snapshots (with -r; default 0)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="serve /metrics on this port + the member index I (0: off)",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address /metrics listens on (default loopback; 0.0.0.0 for a Prometheus elsewhere)",
    )
    worker.add_argument(
        "--recovery-partitions",
        type=int,
        default=16,
        help="partitions of this process's recovery store, created on first start",
    )

    simulate = _add(sub, "simulate", cmd_simulate, "Send simulated SDK traffic to a gateway")
    simulate.add_argument("--url", default="http://127.0.0.1:8080")
    simulate.add_argument("--app-key", help="an app write key (needed without --profile)")
    simulate.add_argument(
        "--rate",
        type=float,
        help="sync requests per second (default 50; with --profile: its base rate, the burst "
        "scaled alike)",
    )
    simulate.add_argument(
        "--duration",
        type=float,
        help="seconds of traffic (default 20; peak and 10x: 120; soak: 600)",
    )
    simulate.add_argument(
        "--profile",
        choices=["peak", "10x", "soak"],
        help="run the whole local stack under the seed's peak (or ten times it, or its peak "
        "held with a memory check), verify closure end to end, and write a report with charts",
    )
    simulate.add_argument(
        "--results",
        type=Path,
        help="report folder (default <data dir>/results/<time>-<profile>)",
    )
    simulate.add_argument("--seed", type=int, default=7)

    add_config_commands(sub, _add)

    gate = _add(
        sub,
        "gate",
        cmd_gate,
        "The go/no-go list: DB + migrations, Redis + broker, closure under peak simulation, "
        "alerting and on-call routing, rollback playbook run; exit 0 only when all pass",
    )
    gate.add_argument("--results", type=Path, help="peak reports (default <data dir>/results)")
    gate.add_argument(
        "--run-peak", action="store_true", help="run mediation simulate --profile peak first"
    )
    gate.add_argument("--peak-duration", type=float, help="seconds of peak traffic (default 120)")
    gate.add_argument(
        "--max-peak-age-days", type=float, default=7.0, help="newest peak report must be younger"
    )
    gate.add_argument(
        "--alertmanager",
        type=Path,
        help="the Alertmanager config in use (default deploy/alertmanager/alertmanager.yml)",
    )

    demo = _add(
        sub,
        "demo",
        cmd_demo,
        "The main job: whole pipeline on local defaults with a simulated SDK and a summary",
    )
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of traffic")
    demo.add_argument("--rate", type=float, default=50.0, help="sync requests per second")
    demo.add_argument("--closure-window-ms", type=int, default=10_000)
    demo.add_argument(
        "--keep-services", action="store_true", help="leave services the demo started running"
    )
    return parser


# Exit status of a command that was used wrongly (a flag, a setting, an input
# file), and of one that ran and failed (a service down, a day not tiered).
EXIT_USAGE = 2
EXIT_FAILED = 1


def _known_failure(exc: Exception) -> tuple[int, str] | None:
    """The exit status and message of a failure every command may meet; None: a bug.

    The one place where such failures become a line (``main``), so commands
    let them propagate instead of each catching them.
    """
    import httpx
    import psycopg

    from mediation.cli.config import InputFileError
    from mediation.membership import MembershipError
    from mediation.settings import SettingsError
    from storage.cold import ColdStoreError
    from storage.db import DatabaseUnavailableError
    from storage.migrate import MigrationError
    from storage.tiering import TieringError

    if isinstance(exc, SettingsError):
        return EXIT_USAGE, f"configuration error: {exc}"
    if isinstance(exc, MembershipError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, InputFileError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, (DatabaseUnavailableError, MigrationError)):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return EXIT_FAILED, f"the database has no schema yet ({exc}); run `mediation migrate`"
    if isinstance(exc, psycopg.Error):  # e.g. the connection was lost mid-command
        return EXIT_FAILED, f"Postgres: {exc}"
    if isinstance(exc, (ColdStoreError, TieringError)):
        return EXIT_FAILED, f"cold storage: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return EXIT_FAILED, f"HTTP request failed: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        known = _known_failure(exc)
        # A failure no command expects is a bug: still one line (its type and
        # message), with the traceback in the log under -v for the report.
        status, message = known or (EXIT_FAILED, f"unexpected error {type(exc).__name__}: {exc}")
        logging.getLogger(__name__).debug("mediation %s failed", args.command, exc_info=True)
        if known is None and not args.verbose:
            message += " (run with -v for the traceback)"
        # Library messages may span lines (psycopg adds a hint on its own line).
        print(f"mediation {args.command}: {' '.join(message.split())}", file=sys.stderr)
        return status
