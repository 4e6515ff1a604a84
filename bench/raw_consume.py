"""The worker benchmark's baseline: consume + COPY with no rules and no state.

    python bench/raw_consume.py BOOTSTRAP TOPIC[,TOPIC] PARTITIONS MESSAGES DATABASE_URL

Reads every partition from offset 0 with plain confluent-kafka and COPYs
each message (key, JSON value) into one table, a transaction per batch,
until MESSAGES were stored. What the worker does on top of this (decode,
dedup, closing rules, several tables) is what its ratio to this measures.
"""

from __future__ import annotations

import sys

import psycopg
from confluent_kafka import Consumer, TopicPartition


def main() -> int:
    bootstrap, topics, partitions, total, url = sys.argv[1:6]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "raw-bench",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.assign(
        [TopicPartition(t, p, 0) for t in topics.split(",") for p in range(int(partitions))]
    )
    done = 0
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_messages (key text, value jsonb)")
        conn.commit()
        while done < int(total):
            batch = [m for m in consumer.consume(5000, 1.0) if m.error() is None]
            with (
                conn.cursor() as cur,
                cur.copy("COPY raw_messages (key, value) FROM STDIN") as copy,
            ):
                for message in batch:
                    copy.write_row(
                        ((message.key() or b"").decode(), (message.value() or b"").decode())
                    )
            conn.commit()
            done += len(batch)
    consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
