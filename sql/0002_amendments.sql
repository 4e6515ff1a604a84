-- Amendment ledger: what each late event would have changed in its archive record.
--
-- An event that arrives after its opportunity was archived never changes the
-- archive record (it stands as it was closed); it is stored with late = true
-- and, here, one row says what the record would be had the late events been
-- in time: per changed field, the archived value and the value with them.
-- An empty object means the late event would have changed nothing (e.g. it
-- falls outside the closure window anyway).
CREATE TABLE IF NOT EXISTS amendment_records (
    day              date        NOT NULL,  -- the opportunity's day, like its other records
    opportunity_key  text        NOT NULL,
    app_id           text        NOT NULL,
    event_id         text        NOT NULL,  -- the late event
    rule_version     text        NOT NULL,
    changes          jsonb       NOT NULL,  -- {"field": {"archived": v, "with_late": v}}
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, opportunity_key, app_id, event_id)
) PARTITION BY RANGE (day);
