"""``mediation dlq list|show|redrive|discard``: the dead letters (``storage.deadletters``)."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

from mediation.cli.common import add_json_flag, print_json, printable, settings
from mediation.cli.errors import NotFoundError, RedriveUnconfirmedError

if TYPE_CHECKING:
    from storage.deadletters import DeadLetterRow


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="only this reason code (e.g. invalid_json)")
    parser.add_argument("--app-id", help="only this app's letters")
    parser.add_argument("--since-hours", type=float, help="only the last N hours")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="dead letters, newest first", description="List dead letters, newest first."
    )
    _add_filters(listing)
    listing.add_argument(
        "--status", choices=["pending", "redriven", "discarded"], help="only this status"
    )
    listing.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show",
        help="one dead letter in full, its payload included",
        description="One dead letter in full: every column, and the payload as text (control "
        "characters escaped) or, when it is not UTF-8, base64.",
    )
    show.add_argument("id", help="the dead letter's id, as `dlq list --json` shows it")
    add_json_flag(show)
    show.set_defaults(handler=run_show)

    redrive = actions.add_parser(
        "redrive",
        help="send pending letters back to their source topic",
        description="Send pending dead letters back to the topic they came from and mark them "
        "redriven; letters without a source position are skipped. A dry run unless --yes.",
    )
    _add_filters(redrive)
    redrive.add_argument(
        "--yes", action="store_true", help="really send (without it: a dry-run count)"
    )
    redrive.set_defaults(handler=run_redrive)

    discard = actions.add_parser(
        "discard",
        help="mark pending letters discarded (never re-driven)",
        description="Mark pending dead letters discarded: re-drive passes them by. Letters "
        "already re-driven or discarded are left alone. A dry run unless --yes.",
    )
    _add_filters(discard)
    discard.add_argument(
        "--id", action="append", dest="ids", metavar="ID", help="only this letter (repeatable)"
    )
    discard.add_argument(
        "--yes", action="store_true", help="really mark them (without it: a dry-run count)"
    )
    discard.set_defaults(handler=run_discard)


def _since(args: argparse.Namespace) -> dt.datetime | None:
    if not args.since_hours:
        return None
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.since_hours)


def _summary(letter: DeadLetterRow) -> dict[str, Any]:
    return {
        "id": letter.id,
        "day": letter.day,
        "created_at": letter.created_at,
        "reason": letter.reason,
        "detail": letter.detail,
        "app_id": letter.app_id,
        "opportunity_key": letter.opportunity_key,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "redrive_status": letter.redrive_status,
        "payload_bytes": len(letter.payload),
    }


def _payload(raw: bytes) -> tuple[str, str]:
    """``(encoding, text)``: UTF-8 text as it is, anything else as base64."""
    try:
        return "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode("ascii")


def run_list(args: argparse.Namespace) -> int:
    from mediation.text_table import render_table
    from storage.deadletters import list_dead_letters

    letters = list_dead_letters(
        settings().database_url,
        reason=args.reason,
        app_id=args.app_id,
        since=_since(args),
        status=args.status,
        limit=args.limit,
    )
    if args.json:
        print_json({"dead_letters": [_summary(d) for d in letters]})
        return 0
    rows = [
        [
            d.created_at.isoformat(timespec="seconds"),
            d.reason,
            d.app_id,
            d.opportunity_key,
            f"{d.source_topic}:{d.source_partition}:{d.source_offset}" if d.source_topic else "",
            d.redrive_status,
            printable(d.detail[:60]),
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


def run_show(args: argparse.Namespace) -> int:
    from storage.deadletters import get_dead_letter

    letter = get_dead_letter(settings().database_url, args.id)
    if letter is None:
        raise NotFoundError(f"no dead letter {args.id!r}")
    encoding, text = _payload(bytes(letter.payload))
    document = {**_summary(letter), "payload_encoding": encoding, "payload": text}
    if args.json:
        print_json(document)
        return 0
    for name in (*_summary(letter), "payload_encoding"):
        value = document[name]
        shown = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
        print(f"{name + ':':<18} {printable('-' if shown is None else str(shown))}")
    # The bytes as they arrived, with control characters escaped: safe on a terminal.
    print(f"{'payload:':<18} {printable(text)}")
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from mediation.topics import producer_config
    from storage.deadletters import redrive

    current = settings()
    producer = Producer(
        producer_config(
            current.kafka_bootstrap_servers, {"enable.idempotence": True, "acks": "all"}
        )
    )

    def send(topic: str, key: bytes | None, value: bytes) -> None:
        errors: list[object] = []
        producer.produce(topic, value, key, on_delivery=lambda err, _m: errors.append(err))
        producer.flush(30)
        if not errors or errors[0] is not None:
            raise RedriveUnconfirmedError(
                f"broker did not confirm the re-drive to {topic}: {errors}"
            )

    count, skipped = redrive(
        current.database_url,
        send,
        reason=args.reason,
        app_id=args.app_id,
        since=_since(args),
        dry_run=not args.yes,
    )
    verb = "re-drove" if args.yes else "would re-drive (dry run; add --yes)"
    print(
        f"{verb} {count} dead letter(s); skipped {skipped} refused by the rules "
        "(re-sending them would be refused again)"
    )
    return 0


def run_discard(args: argparse.Namespace) -> int:
    from storage.deadletters import discard

    count = discard(
        settings().database_url,
        reason=args.reason,
        app_id=args.app_id,
        since=_since(args),
        ids=args.ids or (),
        dry_run=not args.yes,
    )
    verb = "discarded" if args.yes else "would discard (dry run; add --yes)"
    print(f"{verb} {count} pending dead letter(s)")
    return 0
