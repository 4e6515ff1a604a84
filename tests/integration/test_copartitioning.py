"""Co-partitioning is a contract: one key, one partition number, in every producer.

The gateway's producer (and every producer built on ``producer_config``)
puts a key on the partition Java's murmur2 partitioner computes, so an
opportunity and its events land on the same partition number of their
two topics, whoever produced them. A worker refuses topics whose
partition counts differ, in one line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from gateway.producer import AsyncProducer
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.sim.processes import mediation_command
from mediation.topics import (
    TopicLayoutError,
    check_copartitioned,
    ensure_topics,
    producer_config,
)

pytestmark = pytest.mark.integration


def _murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's Java client: ``toPositive(murmur2(key)) % partitions`` (the reference)."""
    m, r = 0x5BD1E995, 24
    length = len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    if tail:
        rest = key[length - tail :]
        if tail >= 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_the_reference_matches_kafkas_own_vectors() -> None:
    # Kafka's UtilsTest.testMurmur2 values, as partitions of 2**31 - 1 ... checked
    # here through toPositive: murmur2(b"21") == -973932308.
    assert _murmur2_partition(b"21", 2**31 - 1) == (-973932308 & 0x7FFFFFFF) % (2**31 - 1)
    assert _murmur2_partition(b"foobar", 2**31 - 1) == (-790332482 & 0x7FFFFFFF) % (2**31 - 1)


def _partitions_seen(settings: Settings, topic: str, partitions: int) -> dict[bytes, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "cp"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: dict[bytes, int] = {}
    for _round in range(40):
        for message in consumer.consume(1000, 0.25):
            if message.error() is None:
                seen[message.key()] = message.partition()
    consumer.close()
    return seen


def test_every_producer_puts_a_key_on_the_partition_murmur2_computes(settings: Settings) -> None:
    prefix = f"cp{uuid.uuid4().hex[:8]}."
    opportunities, events = f"{prefix}opportunities.v1", f"{prefix}events.v1"
    ensure_topics(settings.kafka_bootstrap_servers, [opportunities, events], partitions=24)
    keys = [encode_ulid(1_767_225_600_000 + i, os.urandom(10)).encode() for i in range(200)]

    async def through_the_gateway() -> None:
        producer = AsyncProducer(settings.kafka_bootstrap_servers)
        try:
            await producer.send_all(opportunities, [(key, b"{}") for key in keys], 30)
        finally:
            producer.close()

    asyncio.run(through_the_gateway())
    tool = Producer(producer_config(settings.kafka_bootstrap_servers))  # benches, re-drive
    for key in keys:
        tool.produce(events, b"{}", key)
    assert tool.flush(30) == 0

    expected = {key: _murmur2_partition(key, 24) for key in keys}
    assert _partitions_seen(settings, opportunities, 24) == expected
    assert _partitions_seen(settings, events, 24) == expected


def test_a_worker_refuses_topics_that_are_not_co_partitioned(settings: Settings) -> None:
    prefix = f"cp{uuid.uuid4().hex[:8]}."
    ensure_topics(settings.kafka_bootstrap_servers, [f"{prefix}opportunities.v1"], partitions=4)
    ensure_topics(settings.kafka_bootstrap_servers, [f"{prefix}events.v1"], partitions=8)
    with pytest.raises(TopicLayoutError, match=r"has 4 partitions, .*events\.v1 has 8"):
        check_copartitioned(
            settings.kafka_bootstrap_servers, f"{prefix}opportunities.v1", f"{prefix}events.v1"
        )
    assert (
        check_copartitioned(
            settings.kafka_bootstrap_servers, settings.topics.opportunities, settings.topics.events
        )
        == 2
    )
    env = {**settings.child_env(), "KAFKA_TOPIC_PREFIX": prefix}
    done = subprocess.run(
        mediation_command("worker", "--metrics-port", "0"),
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("mediation worker: topics are not co-partitioned")
    assert "Traceback" not in done.stderr
