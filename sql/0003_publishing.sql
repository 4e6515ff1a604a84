-- Config publishing (config-publish-worker): health thresholds per
-- operation, who started it, and at most one active operation per app.
--
-- Every transition of an operation is a compare-and-set on (state, stage)
-- that also writes a publish_transitions row and an audit record in the
-- same transaction; updated_at is when the operation entered its current
-- (state, stage), which is what a stage's dwell is measured from.
ALTER TABLE publish_operations ADD COLUMN IF NOT EXISTS thresholds jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE publish_operations ADD COLUMN IF NOT EXISTS created_by text NOT NULL DEFAULT 'unknown';
ALTER TABLE publish_transitions ADD COLUMN IF NOT EXISTS stage integer;
ALTER TABLE publish_transitions ADD COLUMN IF NOT EXISTS rollout_percent integer;
ALTER TABLE publish_transitions ADD COLUMN IF NOT EXISTS actor text;

-- Two operators (or two workers) cannot roll out two versions of one app at once.
CREATE UNIQUE INDEX IF NOT EXISTS publish_operations_one_active_per_app
    ON publish_operations (app_id)
    WHERE state IN ('pending', 'validating', 'rolling_out', 'rolling_back');
CREATE INDEX IF NOT EXISTS publish_transitions_operation_idx
    ON publish_transitions (operation_id, id);
