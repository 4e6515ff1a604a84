"""mediation: an ad-mediation event pipeline.

The kernel every service shares (``mediation.rules``, the pure domain rules
that the dataflow and replay both call; errors, settings, tables, wire
formats) and, on upper floors, the CLI (``mediation.cli``), the operator
tools (``mediation.ops``) and the simulator and dev stack (``mediation.sim``).

Which build of the rules runs, interpreted (the default) or compiled
(mypyc), is decided here, before any of them is imported
(``mediation/native.py``, ``MEDIATION_RULES_BUILD``, docs/development.md).
"""

from . import native

__version__ = "0.1.0"

try:
    native.install()
except native.RulesBuildError as exc:  # asked for a build that cannot run: one line, no traceback
    raise SystemExit(f"mediation: {exc}") from None


def build_info() -> dict[str, object]:
    """Which build (compiled or interpreted) each compiled module runs as."""
    return native.build_info()
