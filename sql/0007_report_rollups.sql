-- Daily report rollups (docs/reporting.md, "Rollups"), and the views BI
-- tools read.
--
-- report_rollups holds partial sums of archive records per day, app,
-- placement, credited source, country, os and currency. The sink adds one
-- row per group of the archive records a batch actually inserted, in the
-- same statement (sinks/postgres.py): exactly once, never updated, so no
-- two workers ever wait on each other's rows. `mediation rollups compact`
-- folds a day's rows into one per group; a group's figures are always the
-- SUM of its rows. Each row has its own id, so the hot and the cold copy
-- of a tiered day merge on (day, id) like every other record table.

CREATE SEQUENCE IF NOT EXISTS report_rollups_id_seq;
CREATE TABLE IF NOT EXISTS report_rollups (
    day             date NOT NULL,
    id              bigint NOT NULL DEFAULT nextval('report_rollups_id_seq'),
    app_id          text NOT NULL,
    placement_id    text NOT NULL,
    source_id       text,
    country         text,
    os              text,
    currency        char(3),
    requests        bigint NOT NULL,
    fills           bigint NOT NULL,
    no_fills        bigint NOT NULL,
    load_failures   bigint NOT NULL,
    impressions     bigint NOT NULL,
    clicks          bigint NOT NULL,
    rewarded        bigint NOT NULL,
    revenue_micros  bigint NOT NULL,
    PRIMARY KEY (day, id)
) PARTITION BY RANGE (day);

-- The day partitions every other record table has already.
DO $$
DECLARE
    existing record;
BEGIN
    FOR existing IN
        SELECT DISTINCT substring(c.relname FROM '_(\d{8})$') AS stamp
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'archive_records'
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF report_rollups FOR VALUES FROM (%L) TO (%L)',
            'report_rollups_' || existing.stamp,
            to_date(existing.stamp, 'YYYYMMDD'),
            to_date(existing.stamp, 'YYYYMMDD') + 1
        );
    END LOOP;
END $$;

-- One row per day, app, placement, source, country, os and currency, with
-- the ratios (docs/reporting.md, "SQL views"). Hot days only: tiered days
-- are in Parquet (`mediation report` reads both).
CREATE OR REPLACE VIEW report_daily AS
SELECT
    day,
    app_id,
    placement_id,
    source_id,
    country,
    os,
    rtrim(currency) AS currency,
    sum(requests)::bigint AS requests,
    sum(fills)::bigint AS fills,
    sum(no_fills)::bigint AS no_fills,
    sum(load_failures)::bigint AS load_failures,
    sum(impressions)::bigint AS impressions,
    sum(clicks)::bigint AS clicks,
    sum(rewarded)::bigint AS rewarded,
    sum(revenue_micros)::bigint AS revenue_micros,
    sum(fills)::float8 / NULLIF(sum(requests), 0) AS fill_rate,
    sum(no_fills)::float8 / NULLIF(sum(requests), 0) AS no_fill_share,
    sum(clicks)::float8 / NULLIF(sum(impressions), 0) AS click_through_rate,
    sum(revenue_micros)::float8 * 1000 / NULLIF(sum(impressions), 0) AS ecpm_micros
FROM report_rollups
GROUP BY day, app_id, placement_id, source_id, country, os, currency;

-- One row per counted impression (the export's definition, hot days only).
CREATE OR REPLACE VIEW counted_impressions AS
SELECT
    e.day,
    e.server_ts,
    e.opportunity_key,
    e.event_id,
    e.app_id,
    o.placement_id,
    e.source_id,
    CASE WHEN jsonb_typeof(o.context -> 'country') = 'string'
        THEN o.context ->> 'country' END AS country,
    CASE WHEN jsonb_typeof(o.context -> 'os') = 'string' THEN o.context ->> 'os' END AS os,
    e.revenue_micros,
    rtrim(e.currency) AS currency,
    o.config_version,
    o.rollout_bucket
FROM event_records e
JOIN opportunity_records o
    ON o.day = e.day AND o.opportunity_key = e.opportunity_key AND o.app_id = e.app_id
WHERE e.type = 'impression' AND e.excluded_reason IS NULL AND NOT e.late;
