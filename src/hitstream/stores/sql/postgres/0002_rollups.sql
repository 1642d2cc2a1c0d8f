-- hitstream on PostgreSQL, schema 2: exact hourly rollups kept by the processor.
--
-- See hitstream/domain/rollups.py for the rule that keeps visitors and visits exact: every
-- entity is counted at each hour it was seen in, with the previous hour it was seen in, and a
-- range [a, b) of whole hours sums the rows with a <= hour < b AND prev < a.

-- The counts: one row per (site, property, value, hour, prev). The totals are property ''.
-- Pageviews/events are plain sums; visitors, visits, measured, bounces and duration are the
-- chained counts (only rows with prev < the range start are summed).
CREATE TABLE rollups (
    site_id     TEXT    NOT NULL,
    dim         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    hour        BIGINT  NOT NULL,
    prev        BIGINT  NOT NULL,
    visitors    BIGINT  NOT NULL,
    visits      BIGINT  NOT NULL,
    measured    BIGINT  NOT NULL,
    bounces     BIGINT  NOT NULL,
    duration    BIGINT  NOT NULL,
    pageviews   BIGINT  NOT NULL,
    events      BIGINT  NOT NULL,
    PRIMARY KEY (site_id, dim, hour, value, prev)
);

-- What the events of one visitor, in one visit (or none: ''), in one hour had: members is a
-- JSON object "property:value" -> [pageviews, events] (the totals are ":"). A write loads the
-- slots of the visits and visitors it touches to recompute what they count.
CREATE TABLE rollup_slots (
    site_id     TEXT    NOT NULL,
    visitor_id  TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    hour        BIGINT  NOT NULL,
    members     JSONB   NOT NULL,
    PRIMARY KEY (site_id, visitor_id, session_id, hour)
);
CREATE INDEX rollup_slots_visit ON rollup_slots (site_id, session_id);
CREATE INDEX rollup_slots_hour_brin ON rollup_slots USING brin (hour);

-- Page load times per hour: value -> how many pageviews had it (exact percentiles).
CREATE TABLE rollup_loads (
    site_id     TEXT    NOT NULL,
    hour        BIGINT  NOT NULL,
    load_ms     BIGINT  NOT NULL,
    n           BIGINT  NOT NULL,
    PRIMARY KEY (site_id, hour, load_ms)
);

-- Ranges that start before rollup_from are answered from raw events: the rollups of a site
-- that had events before this migration hold only what came after, and retention moves it up.
ALTER TABLE sites ADD COLUMN rollup_from BIGINT NOT NULL DEFAULT -9223372036854775808;
UPDATE sites SET rollup_from = coalesce(
    (SELECT (floor(max(e.ts) / 3600000.0)::bigint + 1) * 3600000
     FROM events e WHERE e.site_id = sites.site_id),
    -9223372036854775808
);
