"""``mediation seed``: the demo app, a write key and a published config."""

from __future__ import annotations

import argparse

from mediation.cli.common import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-id", default="demo")
    parser.add_argument("--app-key", help="use this write key instead of a new random one")
    parser.add_argument("--closure-window-ms", type=int, default=30 * 60 * 1000)
    parser.add_argument("--grace-ms", type=int, default=30_000)


def run(args: argparse.Namespace) -> int:
    from mediation.sim.seed import demo_config, new_app_key, seed_app

    key = args.app_key or new_app_key()
    result = seed_app(
        settings().database_url,
        args.app_id,
        demo_config(args.closure_window_ms, args.grace_ms),
        key,
    )
    print(f"app: {result.app_id}")
    print(
        f"config version: {result.config_version} "
        f"({'published now' if result.published_now else 'unchanged'})"
    )
    if result.app_key:
        print(f"write key (shown once, stored hashed): {result.app_key}")
    return 0
