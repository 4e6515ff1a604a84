"""``mediation ingest``: event ingest only (mediation-event-ingest)."""

from __future__ import annotations

import argparse

from mediation.cli.commands.api import add_serve_arguments, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_serve_arguments(parser, 8081)


def run(args: argparse.Namespace) -> int:
    return serve(args, "ingest")
