"""The pipeline's Kafka topics: creating them (idempotent), and the co-partitioning contract.

An opportunity and all its events go to the same partition number of the
opportunities and events topics (docs/architecture.md): the same key
(``opportunity_key``), the same partition count (``check_copartitioned``,
which a worker runs before it starts) and the same partitioner in every
producer (``producer_config``: the gateway, the simulator, the benches,
the re-drive).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from mediation.errors import ServiceError

__all__ = [
    "PARTITIONER",
    "TopicLayoutError",
    "TopicSetupError",
    "check_copartitioned",
    "ensure_topics",
    "partition_counts",
    "producer_config",
]

# Keyed messages by murmur2 of the key, as the Java client does (so producers
# in other languages agree); librdkafka's own default hashes with CRC32.
PARTITIONER = "murmur2_random"


class TopicSetupError(ServiceError):
    """The broker refused to create a topic (other than 'already exists')."""

    code = "topic_setup_failed"


class TopicLayoutError(TopicSetupError):
    """The input topics are missing or not co-partitioned."""

    code = "topics_not_copartitioned"


def producer_config(
    bootstrap_servers: str, extra: Mapping[str, object] | None = None
) -> dict[str, object]:
    """A producer's configuration: every producer of the project starts from this one."""
    return {"bootstrap.servers": bootstrap_servers, "partitioner": PARTITIONER, **(extra or {})}


def partition_counts(
    bootstrap_servers: str, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """topic -> its partition count, for the topics that exist."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    described = admin.list_topics(timeout=timeout_s).topics
    return {
        topic: len(described[topic].partitions)
        for topic in topics
        if topic in described and described[topic].error is None
    }


def check_copartitioned(
    bootstrap_servers: str, opportunities: str, events: str, timeout_s: float = 10.0
) -> int:
    """The partition count both input topics share; ``TopicLayoutError`` (one line) if not."""
    counts = partition_counts(bootstrap_servers, [opportunities, events], timeout_s)
    missing = [topic for topic in (opportunities, events) if topic not in counts]
    if missing:
        raise TopicLayoutError(
            f"input topic(s) {', '.join(missing)} do not exist at {bootstrap_servers} "
            "(`mediation dev up` creates them locally)"
        )
    if counts[opportunities] != counts[events]:
        raise TopicLayoutError(
            f"topics are not co-partitioned: {opportunities} has {counts[opportunities]} "
            f"partitions, {events} has {counts[events]} (an opportunity and its events must "
            "share a partition number; see docs/operations.md, 'Adding partitions')"
        )
    return counts[events]


def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, timeout_s: float = 10.0
) -> list[str]:
    """Create missing topics; return the names created now."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [t for t in topics if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(topic)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicSetupError(f"cannot create topic {topic}: {exc}") from exc
    return created
