"""Creating the pipeline's Kafka topics (idempotent)."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

__all__ = ["TopicSetupError", "ensure_topics"]


class TopicSetupError(RuntimeError):
    """The broker refused to create a topic (other than 'already exists')."""


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
