-- Safe restart offsets per input topic partition, written by the worker
-- process that owns the partition (sinks/positions.py): re-reading from
-- here rebuilds the partition's open state, and everything before it is
-- closed and committed. A process that takes over a partition without a
-- recovery store of its own for it (rescaling N -> M workers) starts here
-- (docs/operations.md, "Rescaling the workers").
CREATE TABLE IF NOT EXISTS worker_positions (
    topic text NOT NULL,
    partition integer NOT NULL CHECK (partition >= 0),
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
