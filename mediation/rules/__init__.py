"""Pure domain rules: standard library only, no clock, no IO.

The worker's dataflow and replay both call these functions; that is what
makes replay deterministic. ``tests/rules/test_purity.py`` keeps the import
graph clean.
"""

from .closure import RULE_VERSION, close_at_ms, close_opportunity, inputs_hash
from .model import (
    ArchiveRecord,
    ClosedOpportunity,
    DeadLetter,
    Event,
    LateEvent,
    Opportunity,
    OrphanEvents,
    Output,
    Policy,
    StoredEvent,
    WaterfallEntry,
)
from .state import (
    Archived,
    Open,
    OpportunityState,
    drain,
    due_at_ms,
    from_snapshot,
    on_event,
    on_opportunity,
    on_tick,
)

__all__ = [
    "RULE_VERSION",
    "ArchiveRecord",
    "Archived",
    "ClosedOpportunity",
    "DeadLetter",
    "Event",
    "LateEvent",
    "Open",
    "Opportunity",
    "OpportunityState",
    "OrphanEvents",
    "Output",
    "Policy",
    "StoredEvent",
    "WaterfallEntry",
    "close_at_ms",
    "close_opportunity",
    "drain",
    "due_at_ms",
    "from_snapshot",
    "inputs_hash",
    "on_event",
    "on_opportunity",
    "on_tick",
]
