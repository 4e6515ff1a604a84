"""Plain, frozen, picklable records the rules work on.

Wire and storage formats are decoded into these at the edges (gateway,
dataflow decoding, replay readers); the rules never see bytes or rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from .records import mypyc_attr, record, record_state, set_record_state

__all__ = [
    "CLOSE_REASONS",
    "EVENT_TYPES",
    "OUTCOMES",
    "ArchiveRecord",
    "ClosedOpportunity",
    "DeadLetter",
    "Event",
    "LateEvent",
    "Opportunity",
    "OrphanEvents",
    "Output",
    "Policy",
    "StoredEvent",
    "WaterfallEntry",
    "event_as_dict",
]

EVENT_TYPES: tuple[str, ...] = (
    "loaded",
    "load_failed",
    "impression",
    "click",
    "reward",
    "closed",
    "error",
)
# Ordered from lowest to highest: the archive keeps the highest one reached.
OUTCOMES: tuple[str, ...] = ("no_fill", "load_failed", "loaded", "impressed", "clicked")
CLOSE_REASONS: tuple[str, ...] = ("closed_event", "all_sources_failed", "window_expired")

DeliveryStatus = Literal["fill", "no_fill"]

# The records below are native records (mediation/rules/records.py): in the
# compiled build mypyc makes them native classes, which the compiled rules
# build and read without Python's attribute machinery. Each ``__init__`` is
# the one ``dataclass`` would generate (the fields in order, their
# defaults); ``__getstate__``/``__setstate__`` are a frozen slotted
# dataclass's (pickles of either build, and of older code, load in both).


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class WaterfallEntry:
    source_id: str
    floor_micros: int
    timeout_ms: int

    def __init__(self, source_id: str, floor_micros: int, timeout_ms: int) -> None:
        object.__setattr__(self, "source_id", source_id)
        object.__setattr__(self, "floor_micros", floor_micros)
        object.__setattr__(self, "timeout_ms", timeout_ms)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class Opportunity:
    """One sync request and the delivery the gateway answered with."""

    opportunity_key: str
    app_id: str
    placement_id: str
    device_hash: str
    ts_ms: int  # gateway receive time; equals the key's ULID time
    client_ts_ms: int
    config_version: int
    rollout_bucket: int
    context: Mapping[str, str]
    delivery_id: str
    status: DeliveryStatus
    waterfall: tuple[WaterfallEntry, ...]
    expires_at_ms: int
    closure_window_ms: int
    grace_ms: int
    skew_tolerance_ms: int
    # Where the worker read it (partition and offset of the opportunities
    # topic): the partition's safe restart offset is the oldest of what its
    # open state holds (``dataflows/positions.py``). Not its content: never
    # compared, hashed, stored or replayed.
    source_partition: int | None = field(default=None, compare=False, repr=False)
    source_offset: int | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        opportunity_key: str,
        app_id: str,
        placement_id: str,
        device_hash: str,
        ts_ms: int,
        client_ts_ms: int,
        config_version: int,
        rollout_bucket: int,
        context: Mapping[str, str],
        delivery_id: str,
        status: DeliveryStatus,
        waterfall: tuple[WaterfallEntry, ...],
        expires_at_ms: int,
        closure_window_ms: int,
        grace_ms: int,
        skew_tolerance_ms: int,
        source_partition: int | None = None,
        source_offset: int | None = None,
    ) -> None:
        object.__setattr__(self, "opportunity_key", opportunity_key)
        object.__setattr__(self, "app_id", app_id)
        object.__setattr__(self, "placement_id", placement_id)
        object.__setattr__(self, "device_hash", device_hash)
        object.__setattr__(self, "ts_ms", ts_ms)
        object.__setattr__(self, "client_ts_ms", client_ts_ms)
        object.__setattr__(self, "config_version", config_version)
        object.__setattr__(self, "rollout_bucket", rollout_bucket)
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "delivery_id", delivery_id)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "waterfall", waterfall)
        object.__setattr__(self, "expires_at_ms", expires_at_ms)
        object.__setattr__(self, "closure_window_ms", closure_window_ms)
        object.__setattr__(self, "grace_ms", grace_ms)
        object.__setattr__(self, "skew_tolerance_ms", skew_tolerance_ms)
        object.__setattr__(self, "source_partition", source_partition)
        object.__setattr__(self, "source_offset", source_offset)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


# Event's attrs default: a new empty dict per event, as ``default_factory=dict``
# gives (this object only marks "not given"; it is never stored).
_NEW_ATTRS: Final[dict[str, object]] = {}


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class Event:
    """One normalised SDK event (app resolved, clock skew corrected)."""

    event_id: str
    app_id: str
    opportunity_key: str
    type: str
    ts_ms: int  # client clock
    server_ts_ms: int  # received_at - (sent_at - ts)
    received_at_ms: int
    source_id: str | None = None
    revenue_micros: int | None = None
    currency: str | None = None
    attrs: Mapping[str, object] = field(default_factory=dict)
    # Where the worker read the event (partition and offset of the events
    # topic) and the message's bytes when re-encoding the event would not
    # give them back (``None``: ``encode_event`` does). Only a dead letter
    # about the event uses them; they are not its content: never compared,
    # hashed, stored as a record or replayed. Snapshots taken before these
    # existed lack them (read them with ``getattr(..., None)``).
    source_partition: int | None = field(default=None, compare=False, repr=False)
    source_offset: int | None = field(default=None, compare=False, repr=False)
    source_bytes: bytes | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        event_id: str,
        app_id: str,
        opportunity_key: str,
        type: str,
        ts_ms: int,
        server_ts_ms: int,
        received_at_ms: int,
        source_id: str | None = None,
        revenue_micros: int | None = None,
        currency: str | None = None,
        attrs: Mapping[str, object] = _NEW_ATTRS,
        source_partition: int | None = None,
        source_offset: int | None = None,
        source_bytes: bytes | None = None,
    ) -> None:
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "app_id", app_id)
        object.__setattr__(self, "opportunity_key", opportunity_key)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "ts_ms", ts_ms)
        object.__setattr__(self, "server_ts_ms", server_ts_ms)
        object.__setattr__(self, "received_at_ms", received_at_ms)
        object.__setattr__(self, "source_id", source_id)
        object.__setattr__(self, "revenue_micros", revenue_micros)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "attrs", {} if attrs is _NEW_ATTRS else attrs)
        object.__setattr__(self, "source_partition", source_partition)
        object.__setattr__(self, "source_offset", source_offset)
        object.__setattr__(self, "source_bytes", source_bytes)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)

    def client_fields(self) -> tuple[object, ...]:
        """What the SDK sent, without server-side times.

        Two copies of one ``event_id`` are the same event when these match;
        a resend carries a new ``sent_at`` and so a new ``server_ts``, which
        must not make it a conflict.
        """
        return (
            self.opportunity_key,
            self.type,
            self.ts_ms,
            self.source_id,
            self.revenue_micros,
            self.currency,
            tuple(sorted((k, repr(v)) for k, v in self.attrs.items())) if self.attrs else (),
        )

    def content_digest(self) -> bytes:
        """8 bytes that stand for ``client_fields`` in a closed opportunity's memory.

        A tombstone keeps one per event for its whole TTL, so it must be
        small (the fields themselves, attrs included, are hundreds of bytes)
        and stable across processes (snapshots move between restarts, so not
        ``hash()``). Two different contents share a digest with probability
        2^-64 per event id: such a copy would be absorbed as a resend.
        """
        return hashlib.blake2b(repr(self.client_fields()).encode(), digest_size=8).digest()


def event_as_dict(event: Event) -> dict[str, object]:
    """Every field of an event, as plain JSON-ready values (wire and dead letters)."""
    return {
        "event_id": event.event_id,
        "app_id": event.app_id,
        "opportunity_key": event.opportunity_key,
        "type": event.type,
        "ts_ms": event.ts_ms,
        "server_ts_ms": event.server_ts_ms,
        "received_at_ms": event.received_at_ms,
        "source_id": event.source_id,
        "revenue_micros": event.revenue_micros,
        "currency": event.currency,
        "attrs": dict(event.attrs),
    }


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class Policy:
    """Worker-wide settings the rules need besides each opportunity's own.

    ``default_*`` apply to events whose opportunity never arrives;
    ``allowed_lateness_ms`` is how long after an opportunity's close time the
    worker waits for stragglers before it writes the archive record;
    ``tombstone_ttl_ms`` is how long a closed opportunity is remembered so
    that later events are recognised as late.
    ``max_events_per_opportunity`` bounds the state of one key,
    ``max_orphan_keys_per_app`` the keys held without their opportunity.
    """

    default_closure_window_ms: int = 30 * 60 * 1000
    default_grace_ms: int = 30 * 1000
    default_skew_tolerance_ms: int = 5 * 60 * 1000
    allowed_lateness_ms: int = 5 * 1000
    tombstone_ttl_ms: int = 60 * 60 * 1000
    # Distinct events one opportunity may hold; more are dead-lettered as
    # too_many_events. 500 keeps the revenue sum inside a bigint too.
    max_events_per_opportunity: int = 500
    # Keys one app may hold events for while their opportunity has not
    # arrived, per worker process; events for more new keys are
    # dead-lettered as too_many_orphans. A key is held until its default
    # window would have closed, so without a bound one write key could
    # fill the worker with keys nobody was given. Genuine holds are the
    # events that overtake their opportunity on the way in.
    max_orphan_keys_per_app: int = 50_000

    def __init__(
        self,
        default_closure_window_ms: int = 30 * 60 * 1000,
        default_grace_ms: int = 30 * 1000,
        default_skew_tolerance_ms: int = 5 * 60 * 1000,
        allowed_lateness_ms: int = 5 * 1000,
        tombstone_ttl_ms: int = 60 * 60 * 1000,
        max_events_per_opportunity: int = 500,
        max_orphan_keys_per_app: int = 50_000,
    ) -> None:
        object.__setattr__(self, "default_closure_window_ms", default_closure_window_ms)
        object.__setattr__(self, "default_grace_ms", default_grace_ms)
        object.__setattr__(self, "default_skew_tolerance_ms", default_skew_tolerance_ms)
        object.__setattr__(self, "allowed_lateness_ms", allowed_lateness_ms)
        object.__setattr__(self, "tombstone_ttl_ms", tombstone_ttl_ms)
        object.__setattr__(self, "max_events_per_opportunity", max_events_per_opportunity)
        object.__setattr__(self, "max_orphan_keys_per_app", max_orphan_keys_per_app)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as it is written to ``event_records``."""

    event: Event
    late: bool = False
    excluded_reason: str | None = None

    def __init__(
        self, event: Event, late: bool = False, excluded_reason: str | None = None
    ) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "late", late)
        object.__setattr__(self, "excluded_reason", excluded_reason)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """The one closing record of an opportunity."""

    opportunity_key: str
    app_id: str
    placement_id: str
    opened_at_ms: int
    closed_at_ms: int
    close_reason: str
    outcome: str
    rewarded: bool
    credited_source_id: str | None
    revenue_micros: int
    currency: str | None
    counts: Mapping[str, int]
    counted_events: int
    excluded_events: int
    config_version: int
    rule_version: str
    inputs_hash: str

    def __init__(
        self,
        opportunity_key: str,
        app_id: str,
        placement_id: str,
        opened_at_ms: int,
        closed_at_ms: int,
        close_reason: str,
        outcome: str,
        rewarded: bool,
        credited_source_id: str | None,
        revenue_micros: int,
        currency: str | None,
        counts: Mapping[str, int],
        counted_events: int,
        excluded_events: int,
        config_version: int,
        rule_version: str,
        inputs_hash: str,
    ) -> None:
        object.__setattr__(self, "opportunity_key", opportunity_key)
        object.__setattr__(self, "app_id", app_id)
        object.__setattr__(self, "placement_id", placement_id)
        object.__setattr__(self, "opened_at_ms", opened_at_ms)
        object.__setattr__(self, "closed_at_ms", closed_at_ms)
        object.__setattr__(self, "close_reason", close_reason)
        object.__setattr__(self, "outcome", outcome)
        object.__setattr__(self, "rewarded", rewarded)
        object.__setattr__(self, "credited_source_id", credited_source_id)
        object.__setattr__(self, "revenue_micros", revenue_micros)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "counted_events", counted_events)
        object.__setattr__(self, "excluded_events", excluded_events)
        object.__setattr__(self, "config_version", config_version)
        object.__setattr__(self, "rule_version", rule_version)
        object.__setattr__(self, "inputs_hash", inputs_hash)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


@mypyc_attr(allow_interpreted_subclasses=True, acyclic=True)
@dataclass(frozen=True, slots=True)
class ClosedOpportunity:
    """Everything written when an opportunity closes: one transaction's worth."""

    opportunity: Opportunity
    events: tuple[StoredEvent, ...]
    archive: ArchiveRecord

    def __init__(
        self, opportunity: Opportunity, events: tuple[StoredEvent, ...], archive: ArchiveRecord
    ) -> None:
        object.__setattr__(self, "opportunity", opportunity)
        object.__setattr__(self, "events", events)
        object.__setattr__(self, "archive", archive)

    def __getstate__(self) -> list[object]:
        return record_state(self)

    def __setstate__(self, state: Sequence[object]) -> None:
        set_record_state(self, state)


@record
class LateEvent:
    """An event that arrived after its opportunity was archived."""

    stored: StoredEvent


@record
class OrphanEvents:
    """Events whose opportunity never arrived within its window."""

    opportunity_key: str
    events: tuple[StoredEvent, ...]


@record
class DeadLetter:
    """A record the rules refuse, with a stable reason code."""

    reason: str
    detail: str
    opportunity_key: str | None
    payload: Mapping[str, object]
    # The refused event itself: the dataflow takes its source position and
    # original bytes from it.
    event: Event | None = field(default=None, compare=False, repr=False)


Output = ClosedOpportunity | LateEvent | OrphanEvents | DeadLetter
