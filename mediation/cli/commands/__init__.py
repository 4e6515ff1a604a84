"""The registry of ``mediation`` commands: name -> module and one-line summary.

A command's module is imported only when the command runs or its parser is
built (``mediation --help`` lists the summaries from here). Each module has
``add_arguments(parser)`` and either ``run(args) -> int`` or, for a command
with actions (``config``, ``dlq``, ``keys``), sub-parsers whose defaults name
their own ``handler``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["COMMANDS", "CommandInfo", "load_command"]


@dataclass(frozen=True, slots=True)
class CommandInfo:
    module: str
    summary: str


def _info(name: str, summary: str) -> CommandInfo:
    return CommandInfo(f"{__name__}.{name.replace('-', '_')}", summary)


COMMANDS: dict[str, CommandInfo] = {
    name: _info(name, summary)
    for name, summary in (
        ("dev", "Start, stop or show the local services (reuses running ones)"),
        ("migrate", "Apply pending sql/ migrations (safe to race) and create day partitions"),
        ("partitions", "Create day partitions ahead (run daily)"),
        ("seed", "Create the demo app, a write key and a published config"),
        ("keys", "List, create or revoke an app's write keys (two active keys allow rotation)"),
        (
            "status",
            "Show what the worker processes report (progress, state, lag per input partition) "
            "and each scaling trigger of the seed with its current value, state and action; "
            "exit 1 when a process is unreachable or a trigger fires",
        ),
        (
            "tier",
            "Move day partitions older than the hot retention to Parquet in COLD_STORAGE_URL "
            "(export, verify, record, drop), warm days to the cold storage class, and delete "
            "days past retention (audited); safe to re-run after a crash",
        ),
        (
            "replay",
            "Replay opportunities by key or time range from hot and cold storage (snapshot or "
            "recompute), recorded in replay_records; the result hash goes to stderr",
        ),
        (
            "replay-jobs",
            "Run queued replay jobs (the replay API's large ranges); results go to cold storage",
        ),
        (
            "export",
            "Export one row per counted impression (revenue, source, country, os, config) of a "
            "range of days, hot and cold alike, as CSV, JSONL or Parquet",
        ),
        (
            "report",
            "Requests, fills, fill rate, impressions, clicks, revenue per currency and eCPM of a "
            "range of days by day, app, placement, source, country or os, hot and cold alike",
        ),
        (
            "rollups",
            "Compact the daily report rollups (schedule it), or rebuild a day's from its "
            "archive records",
        ),
        (
            "dlq",
            "List or show dead letters, re-drive them to their source topic, or discard them",
        ),
        (
            "config",
            "Push, list, show and diff config versions; publish with a staged rollout; roll "
            "back; switch degradation profiles",
        ),
        (
            "publish-worker",
            "Drive publish operations: validate, roll out stage by stage behind the health "
            "gate, roll back (config-publish-worker)",
        ),
        ("api", "Serve the sync API (mediation-api); --role all adds event ingest"),
        ("ingest", "Serve event ingest only (mediation-event-ingest)"),
        ("worker", "Run the closing dataflow (python -m bytewax.run underneath)"),
        ("simulate", "Send simulated SDK traffic to a gateway"),
        (
            "gate",
            "The go/no-go list: DB + migrations, Redis + broker, closure under peak simulation, "
            "alerting and on-call routing, rollback playbook run; exit 0 only when all pass",
        ),
        (
            "demo",
            "The main job: whole pipeline on local defaults with a simulated SDK and a summary",
        ),
    )
}


def load_command(name: str) -> ModuleType:
    """The module of command ``name`` (imported now, once)."""
    return importlib.import_module(COMMANDS[name].module)
