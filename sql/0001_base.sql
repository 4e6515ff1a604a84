-- Base schema: apps, configs, publishing, the partitioned record tables,
-- dead letters and the tiering catalog. Idempotent (IF NOT EXISTS) so that
-- a half-applied run can be re-run; the runner also records it in
-- schema_migrations inside the same transaction.

CREATE TABLE IF NOT EXISTS apps (
    app_id      text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Write keys are stored as SHA-256 hex; two active keys per app allow rotation.
CREATE TABLE IF NOT EXISTS app_keys (
    key_hash    text PRIMARY KEY,
    app_id      text NOT NULL REFERENCES apps (app_id),
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS app_keys_app_idx ON app_keys (app_id);

CREATE TABLE IF NOT EXISTS config_snapshots (
    app_id      text NOT NULL REFERENCES apps (app_id),
    version     integer NOT NULL CHECK (version > 0),
    body        jsonb NOT NULL,
    checksum    text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, version)
);

CREATE TABLE IF NOT EXISTS publish_operations (
    id                bigserial PRIMARY KEY,
    app_id            text NOT NULL REFERENCES apps (app_id),
    version           integer NOT NULL,
    previous_version  integer,
    state             text NOT NULL,
    plan              jsonb NOT NULL DEFAULT '[]'::jsonb,
    stage             integer NOT NULL DEFAULT 0,
    rollout_percent   integer NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (app_id, version) REFERENCES config_snapshots (app_id, version)
);
CREATE INDEX IF NOT EXISTS publish_operations_app_idx ON publish_operations (app_id, id DESC);

CREATE TABLE IF NOT EXISTS publish_transitions (
    id            bigserial PRIMARY KEY,
    operation_id  bigint NOT NULL REFERENCES publish_operations (id),
    from_state    text,
    to_state      text NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);

-- Record tables: one partition per UTC day (created ahead by
-- `mediation partitions`, and on demand by the worker's sink).

CREATE TABLE IF NOT EXISTS opportunity_records (
    day             date NOT NULL,
    opportunity_key text NOT NULL,
    app_id          text NOT NULL,
    placement_id    text NOT NULL,
    device_hash     text NOT NULL,
    ts              timestamptz NOT NULL,
    client_ts       timestamptz NOT NULL,
    config_version  integer NOT NULL,
    rollout_bucket  smallint NOT NULL,
    context         jsonb NOT NULL DEFAULT '{}'::jsonb,
    closure_window_ms integer NOT NULL,
    grace_ms        integer NOT NULL,
    skew_tolerance_ms integer NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, opportunity_key)
) PARTITION BY RANGE (day);

CREATE TABLE IF NOT EXISTS delivery_records (
    day             date NOT NULL,
    opportunity_key text NOT NULL,
    delivery_id     text NOT NULL,
    status          text NOT NULL CHECK (status IN ('fill', 'no_fill')),
    waterfall       jsonb NOT NULL,
    expires_at      timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, opportunity_key)
) PARTITION BY RANGE (day);

CREATE TABLE IF NOT EXISTS event_records (
    day             date NOT NULL,
    event_id        text NOT NULL,
    app_id          text NOT NULL,
    opportunity_key text NOT NULL,
    type            text NOT NULL,
    ts              timestamptz NOT NULL,
    server_ts       timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    source_id       text,
    revenue_micros  bigint CHECK (revenue_micros >= 0),
    currency        char(3),
    attrs           jsonb NOT NULL DEFAULT '{}'::jsonb,
    late            boolean NOT NULL DEFAULT false,
    excluded_reason text,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, event_id, app_id)
) PARTITION BY RANGE (day);
CREATE INDEX IF NOT EXISTS event_records_opportunity_idx ON event_records (day, opportunity_key);

CREATE TABLE IF NOT EXISTS archive_records (
    day                 date NOT NULL,
    opportunity_key     text NOT NULL,
    app_id              text NOT NULL,
    placement_id        text NOT NULL,
    opened_at           timestamptz NOT NULL,
    closed_at           timestamptz NOT NULL,
    close_reason        text NOT NULL,
    outcome             text NOT NULL,
    rewarded            boolean NOT NULL,
    credited_source_id  text,
    revenue_micros      bigint NOT NULL,
    currency            char(3),
    counts              jsonb NOT NULL,
    counted_events      integer NOT NULL,
    excluded_events     integer NOT NULL,
    config_version      integer NOT NULL,
    rule_version        text NOT NULL,
    inputs_hash         text NOT NULL,
    archived_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, opportunity_key)
) PARTITION BY RANGE (day);

CREATE SEQUENCE IF NOT EXISTS audit_records_id_seq;
CREATE TABLE IF NOT EXISTS audit_records (
    day         date NOT NULL,
    id          bigint NOT NULL DEFAULT nextval('audit_records_id_seq'),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    before      jsonb,
    after       jsonb,
    PRIMARY KEY (day, id)
) PARTITION BY RANGE (day);

-- id is derived from the source position (topic/partition/offset + reason
-- + item) so that re-processing a batch lands the same dead letter once.
CREATE TABLE IF NOT EXISTS dead_letters (
    day              date NOT NULL,
    id               text NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL,
    app_id           text,
    opportunity_key  text,
    source_topic     text,
    source_partition integer,
    source_offset    bigint,
    payload          bytea NOT NULL,
    redrive_status   text NOT NULL DEFAULT 'pending'
                     CHECK (redrive_status IN ('pending', 'redriven', 'discarded')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, id)
) PARTITION BY RANGE (day);
CREATE INDEX IF NOT EXISTS dead_letters_reason_idx ON dead_letters (reason, created_at);

CREATE TABLE IF NOT EXISTS replay_records (
    id              bigserial PRIMARY KEY,
    requested_by    text NOT NULL,
    selector        jsonb NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('snapshot', 'recompute')),
    rule_version    text NOT NULL,
    result_hash     text,
    diff_summary    jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tiering_catalog (
    table_name   text NOT NULL,
    day          date NOT NULL,
    location     text NOT NULL,
    rows         bigint NOT NULL,
    checksum     text NOT NULL,
    exported_at  timestamptz NOT NULL,
    dropped_at   timestamptz,
    PRIMARY KEY (table_name, day)
);
