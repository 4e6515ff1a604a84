"""``mediation keys list|create|revoke``: an app's write keys."""

from __future__ import annotations

import argparse

from mediation.cli.common import add_json_flag, print_json, settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="the app's keys: prefix, created, revoked", description="List write keys."
    )
    listing.add_argument("--app-id", required=True)
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)

    create = actions.add_parser(
        "create",
        help="a new key, printed once (stored hashed)",
        description="Create a write key; it is printed once and stored hashed.",
    )
    create.add_argument("--app-id", required=True)
    create.set_defaults(handler=run_create)

    revoke = actions.add_parser(
        "revoke", help="revoke one key by its prefix", description="Revoke one write key."
    )
    revoke.add_argument("--app-id", required=True)
    revoke.add_argument("--prefix", required=True, help="the key's prefix as `keys list` shows it")
    revoke.set_defaults(handler=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.keys import list_keys

    keys = list_keys(settings().database_url, args.app_id)
    if args.json:
        print_json(
            {
                "app_id": args.app_id,
                "keys": [
                    {"prefix": k.prefix, "created_at": k.created_at, "revoked_at": k.revoked_at}
                    for k in keys
                ],
            }
        )
        return 0
    rows = [
        [
            k.prefix,
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "active",
        ]
        for k in keys
    ]
    print(render_table(f"write keys of {args.app_id}", ["prefix", "created", "revoked"], rows))
    return 0


def run_create(args: argparse.Namespace) -> int:
    from storage.keys import create_key

    raw = create_key(settings().database_url, args.app_id, "cli")
    print(f"write key for {args.app_id} (shown once, stored hashed): {raw}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from storage.keys import revoke_key

    revoke_key(settings().database_url, args.app_id, args.prefix, "cli")
    print(f"revoked the key of {args.app_id} starting with {args.prefix}")
    return 0
