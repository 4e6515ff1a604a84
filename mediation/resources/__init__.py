"""The files the package carries besides code, read through ``importlib.resources``.

- ``SQL``: the schema migrations (``sql/NNNN_name.sql``, ``storage.migrate``);
- ``DEPLOY``: the Prometheus rules, the Alertmanager config and the Grafana
  dashboard (``deploy/``, checked by ``mediation.ops.alerting`` for the gate);
- ``OPERATIONS_DOC``: ``docs/operations.md``, whose section anchors the alert
  rules name as their runbooks.

In the repository these stay in their top-level folders. This package holds
relative symbolic links to them (``sql -> ../../sql``, ``deploy ->
../../deploy``, ``docs -> ../../docs``): a checkout and an editable install
read the repository's files through the links, and building the wheel copies
the files behind them into ``mediation/resources/`` (the package-data of
pyproject.toml). Code reads these names, never a path relative to its own
source file, which points into nothing once the package is installed.

Standard library only: the storage layer imports it.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["DEPLOY", "OPERATIONS_DOC", "SQL"]

_ROOT = files(__name__)

SQL: Traversable = _ROOT / "sql"
DEPLOY: Traversable = _ROOT / "deploy"
OPERATIONS_DOC: Traversable = _ROOT / "docs" / "operations.md"
