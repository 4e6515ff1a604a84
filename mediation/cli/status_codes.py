"""The exit statuses of ``mediation`` (docs/operations.md, "Exit status")."""

from __future__ import annotations

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "SETTLED_OTHERWISE",
    "STILL_MOVING",
    "SUCCESS",
    "USAGE",
]

SUCCESS = 0
# The command ran and something failed: a service, a step (ServiceError).
FAILED = 1
# The command was used wrongly: a flag, a setting, an input (InputError); nothing was done.
USAGE = 2
# ``config publish/rollback --wait``: the operation settled in another final state ...
SETTLED_OTHERWISE = 3
# ... or was still moving when --timeout ran out.
STILL_MOVING = 4
# Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130
