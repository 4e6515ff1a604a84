"""``mediation worker``: the closing dataflow, one process per member (``bytewax.run``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mediation.cli.common import settings

if TYPE_CHECKING:
    from mediation.membership import Membership


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--member",
        metavar="I/N",
        help="run member I of N worker processes: owns partitions p with p %% N == I "
        "(default 0/1: all)",
    )
    parser.add_argument(
        "--partitions",
        metavar="LIST",
        help="own exactly these input partitions (comma-separated), instead of --member",
    )
    parser.add_argument(
        "-r",
        "--recovery-directory",
        help="recovery stores' directory (this process's store: DIR/<member-I-of-N>)",
    )
    parser.add_argument(
        "-s",
        "--snapshot-interval",
        type=int,
        default=10,
        help="seconds between recovery snapshots (with -r; default 10)",
    )
    parser.add_argument(
        "-b",
        "--backup-interval",
        type=int,
        default=0,
        help="seconds to keep superseded snapshots (with -r; default 0)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="serve /metrics on this port + the member index I (0: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address /metrics listens on (default loopback; 0.0.0.0 for a Prometheus elsewhere)",
    )
    parser.add_argument(
        "--recovery-partitions",
        type=int,
        default=16,
        help="partitions of this process's recovery store, created on first start",
    )


def _membership(args: argparse.Namespace) -> Membership:
    """The partitions this worker process owns, from ``--member`` or ``--partitions``."""
    from mediation.membership import Membership, MembershipError

    if args.partitions is not None:
        if args.member is not None:
            raise MembershipError("give --member or --partitions, not both")
        return Membership.parse_partitions(args.partitions)
    return Membership.parse_member(args.member or "0/1")


def run(args: argparse.Namespace) -> int:
    from dataflows.recovery import ensure_recovery_partitions

    membership = _membership(args)
    settings()  # a bad setting stops the worker here, in one line, not in Bytewax
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
    # The dataflow process reads its membership and metrics address from these.
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
