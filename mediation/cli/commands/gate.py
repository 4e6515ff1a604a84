"""``mediation gate``: the go/no-go list; exit 0 only when every item passes."""

from __future__ import annotations

import argparse
from pathlib import Path

from mediation.cli.common import add_json_flag, print_json, settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, help="peak reports (default <data dir>/results)")
    parser.add_argument(
        "--run-peak", action="store_true", help="run mediation simulate --profile peak first"
    )
    parser.add_argument("--peak-duration", type=float, help="seconds of peak traffic (default 120)")
    parser.add_argument(
        "--max-peak-age-days", type=float, default=7.0, help="newest peak report must be younger"
    )
    parser.add_argument(
        "--alertmanager",
        type=Path,
        help="the Alertmanager config in use (default deploy/alertmanager/alertmanager.yml)",
    )
    add_json_flag(parser)


def run(args: argparse.Namespace) -> int:
    from mediation.ops.alerting import DEPLOY_DIR
    from mediation.ops.gate import run_gate
    from mediation.text_table import render_table

    current = settings()
    results = args.results or current.data_dir / "results"
    if args.run_peak:
        from mediation.ops.peak import PROFILES, run_profile

        run_profile(current, PROFILES["peak"], args.peak_duration, None)
    checks = run_gate(
        current,
        results=results,
        alertmanager_file=args.alertmanager or DEPLOY_DIR / "alertmanager" / "alertmanager.yml",
        max_peak_age_days=args.max_peak_age_days,
    )
    passed = all(c.passed for c in checks)
    if args.json:
        print_json(
            {
                "go": passed,
                "passed": sum(c.passed for c in checks),
                "total": len(checks),
                "checks": [
                    {"item": c.item, "passed": c.passed, "detail": c.detail} for c in checks
                ],
            }
        )
        return 0 if passed else 1
    print(
        render_table(
            "go/no-go gate (seed section 8)",
            ["item", "result", "detail"],
            [[c.item, "pass" if c.passed else "FAIL", c.detail] for c in checks],
        )
    )
    print(f"\n{'GO' if passed else 'NO-GO'}: {sum(c.passed for c in checks)}/{len(checks)} passed")
    return 0 if passed else 1
