-- Replay requests run as jobs (the replay API's large ranges): each request
-- is a replay_records row whose status moves queued -> running -> done or
-- failed; a finished job names where its result object is. Rows recorded
-- before jobs existed were all finished.
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'done'
    CHECK (status IN ('queued', 'running', 'done', 'failed'));
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS config_version integer;
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS records bigint;
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS result_location text;
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS error text;
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS finished_at timestamptz;
-- A job's output format, and until when its runner holds it: a runner
-- renews the lease as it goes; a job whose lease ran out (its runner died)
-- is taken up again from the start (replay is deterministic).
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS output_format text;
ALTER TABLE replay_records ADD COLUMN IF NOT EXISTS lease_until timestamptz;
CREATE INDEX IF NOT EXISTS replay_records_open ON replay_records (id)
    WHERE status IN ('queued', 'running');

-- The seed's warm and cold tiers: a dropped day is warm (Parquet in the
-- standard storage class); moved_at says when its objects went to the
-- infrequent-access class; deleted_at when retention deleted them (an audit
-- record says so too).
ALTER TABLE tiering_catalog ADD COLUMN IF NOT EXISTS storage_class text NOT NULL
    DEFAULT 'STANDARD';
ALTER TABLE tiering_catalog ADD COLUMN IF NOT EXISTS moved_at timestamptz;
ALTER TABLE tiering_catalog ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
