-- hitstream on DuckDB, schema 6: the exact half-hour rollups (hitstream/domain/rollups.py),
-- as PostgreSQL keeps them, so that a dashboard over millions of events reads thousands of rows.
--
-- rollups, rollup_sums and rollup_loads hold *deltas*: a write appends what it adds (no key,
-- no index: an ART index would live in memory and slow every write), and every query sums
-- them, so several rows of one key mean the same as their sum. The store compacts recent
-- periods now and then (one row per key again); correctness never waits for it.

-- Chained counts per (site, property, value, period, previous period); property '' = totals.
CREATE TABLE rollups (
    site_id     VARCHAR NOT NULL,
    dim         VARCHAR NOT NULL,
    value       VARCHAR NOT NULL,
    hour        BIGINT  NOT NULL,
    prev        BIGINT  NOT NULL,
    visitors    BIGINT  NOT NULL,
    visits      BIGINT  NOT NULL,
    measured    BIGINT  NOT NULL,
    bounces     BIGINT  NOT NULL,
    duration    BIGINT  NOT NULL,
    pageviews   BIGINT  NOT NULL,
    events      BIGINT  NOT NULL
);

-- Plain sums of the event properties behind time_on_page, scroll_depth and avg_duration.
CREATE TABLE rollup_sums (
    site_id     VARCHAR NOT NULL,
    dim         VARCHAR NOT NULL,
    value       VARCHAR NOT NULL,
    hour        BIGINT  NOT NULL,
    engagements BIGINT  NOT NULL,
    engaged     BIGINT  NOT NULL,
    engaged_n   BIGINT  NOT NULL,
    scroll      BIGINT  NOT NULL,
    scroll_n    BIGINT  NOT NULL,
    timed       BIGINT  NOT NULL,
    timed_n     BIGINT  NOT NULL
);

-- Page load times: how many pageviews of a period had each value (exact percentiles).
CREATE TABLE rollup_loads (
    site_id     VARCHAR NOT NULL,
    hour        BIGINT  NOT NULL,
    load_ms     BIGINT  NOT NULL,
    n           BIGINT  NOT NULL
);

-- What one visitor's events in one visit ('' for none) and one period had (slot_document):
-- one row per key, replaced whole by the write that changes it.
CREATE TABLE rollup_slots (
    site_id     VARCHAR NOT NULL,
    visitor_id  VARCHAR NOT NULL,
    session_id  VARCHAR NOT NULL,
    hour        BIGINT  NOT NULL,
    members     VARCHAR NOT NULL
);

-- Ranges of a site that start before rollup_from are answered from raw events (no row: the
-- rollups hold everything). A store with events from before this schema starts its rollups
-- after its last event, until `hitstream migrate --rebuild-rollups` recomputes them;
-- retention moves it past the periods that lost events.
CREATE TABLE rollup_state (
    site_id     VARCHAR NOT NULL PRIMARY KEY,
    rollup_from BIGINT  NOT NULL
);
INSERT INTO rollup_state
SELECT site_id, (max(ts) // 1800000 + 1) * 1800000 FROM events GROUP BY site_id;
