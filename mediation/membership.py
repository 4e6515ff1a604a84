"""Which input partitions a worker process owns (pure).

An operator runs N worker processes; each owns a fixed set of partition
numbers of the two co-partitioned input topics and does all their work
(docs/architecture.md):

- ``--member i/N`` (``MEDIATION_WORKER_MEMBER``): partitions p with
  ``p % N == i``; with the partition count a multiple of N every member
  owns as many;
- ``--partitions 0,3,5`` (``MEDIATION_WORKER_PARTITIONS``): exactly those.

The members of one layout must cover every partition once; a member's
recovery store belongs to its layout (``label``), so a changed layout
starts from fresh stores and each partition from its safe offset
(docs/operations.md, "Rescaling the workers").
"""

from __future__ import annotations

from dataclasses import dataclass

from mediation.errors import InputError

__all__ = ["Membership", "MembershipError"]


class MembershipError(InputError):
    """A member or partition list that is malformed or does not fit the topics."""

    code = "membership_invalid"


def _number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise MembershipError(f"{what}: expected a non-negative integer, got {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Membership:
    index: int = 0
    count: int = 1
    partitions: frozenset[int] | None = None  # explicit list (index/count unused)

    @classmethod
    def parse_member(cls, text: str) -> Membership:
        """``"i/N"``, with 0 <= i < N."""
        index_text, sep, count_text = text.partition("/")
        if not sep:
            raise MembershipError(f"member: expected i/N (for instance 0/3), got {text!r}")
        index = _number(index_text, "member index")
        count = _number(count_text, "member count")
        if count < 1 or index >= count:
            raise MembershipError(f"member: expected 0 <= i < N, got {text!r}")
        return cls(index, count)

    @classmethod
    def parse_partitions(cls, text: str) -> Membership:
        """``"0,3,5"``: a comma-separated list of partition numbers."""
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or any(not part for part in parts):
            raise MembershipError(f"partitions: expected a list like 0,3,5, got {text!r}")
        numbers = [_number(part, "partition") for part in parts]
        if len(set(numbers)) != len(numbers):
            raise MembershipError(f"partitions: {text!r} names a partition twice")
        return cls(partitions=frozenset(numbers))

    def owned(self, partition_count: int) -> frozenset[int]:
        """The partitions this member reads, of topics with ``partition_count``."""
        if self.partitions is not None:
            beyond = sorted(p for p in self.partitions if p >= partition_count)
            if beyond:
                raise MembershipError(
                    f"partitions {','.join(map(str, beyond))} do not exist: "
                    f"the input topics have {partition_count} (0..{partition_count - 1})"
                )
            return self.partitions
        if self.count > partition_count:
            raise MembershipError(
                f"member {self.index}/{self.count}: {self.count} members for "
                f"{partition_count} partitions would leave some with nothing to read "
                "(the partition count bounds the number of worker processes)"
            )
        return frozenset(range(self.index, partition_count, self.count))

    @property
    def label(self) -> str:
        """Names this member's recovery store: one per layout."""
        if self.partitions is not None:
            return "partitions-" + "-".join(map(str, sorted(self.partitions)))
        return f"member-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        if self.partitions is not None:
            return "partitions " + ",".join(map(str, sorted(self.partitions)))
        return f"member {self.index}/{self.count}"
