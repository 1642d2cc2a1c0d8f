-- hitstream on PostgreSQL, schema 1: raw events (partitioned by month), the visit rollup,
-- the exact event-id dedupe set, log positions, site data versions and drop counts.
--
-- Times are BIGINT epoch milliseconds (UTC), as everywhere in the domain; buckets in a time
-- zone are computed in Python (bucket_starts) and matched with width_bucket, never date_trunc.

-- Raw events, RANGE-partitioned on ts by calendar month (UTC). The writer creates the month's
-- partition (events_mYYYYMM) before it first inserts into it; the DEFAULT partition only
-- catches what no month holds (timestamps before 1970 or after 2200, or a month whose
-- partition another process dropped by retention while this one still believed it existed),
-- and creating a month moves its rows out of DEFAULT first. Whole months past retention are
-- dropped as tables instead of deleted row by row.
--
-- No uniqueness here: a primary key on a partitioned table must contain the partition key,
-- and copies of an event_id may carry different timestamps (client-supplied ids are not time
-- ordered), so (event_id, ts) would not dedupe. event_ids below is the exact dedupe.
CREATE TABLE events (
    event_id        TEXT    NOT NULL,
    site_id         TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    visitor_id      TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    hostname        TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    referrer        TEXT    NOT NULL,
    referrer_domain TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    utm_source      TEXT    NOT NULL,
    utm_medium      TEXT    NOT NULL,
    utm_campaign    TEXT    NOT NULL,
    utm_term        TEXT    NOT NULL,
    utm_content     TEXT    NOT NULL,
    browser         TEXT    NOT NULL,
    browser_version TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    os_version      TEXT    NOT NULL,
    device          TEXT    NOT NULL,
    country         TEXT    NOT NULL,
    ts              BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    screen_width    BIGINT,
    duration_ms     BIGINT,
    load_time_ms    BIGINT,
    -- custom properties as canonical text (hitstream.domain.measures.prop_text): props ->> key
    props           JSONB   NOT NULL
) PARTITION BY RANGE (ts);

CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Every stats query is "one site, a time range": this is its access path. Partitions inherit it.
CREATE INDEX events_site_ts ON events (site_id, ts);
-- Rows arrive in roughly time order, so a BRIN on ts is tiny and lets site-less scans by time
-- (retention, moving rows out of DEFAULT) skip most of a partition.
CREATE INDEX events_ts_brin ON events USING brin (ts);

-- The exact dedupe: one row per stored event_id, written in the same transaction as the
-- event (INSERT ... ON CONFLICT DO NOTHING RETURNING decides which events get COPY'd).
-- ts lets retention forget the ids of the events it deletes.
CREATE TABLE event_ids (
    event_id        TEXT    NOT NULL PRIMARY KEY,
    ts              BIGINT  NOT NULL
);
CREATE INDEX event_ids_ts_brin ON event_ids USING brin (ts);

-- One row per visit, upserted by every batch that extends it.
CREATE TABLE sessions (
    site_id         TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    visitor_id      TEXT    NOT NULL,
    entry_page      TEXT    NOT NULL,
    exit_page       TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    referrer_domain TEXT    NOT NULL,
    utm_source      TEXT    NOT NULL,
    utm_medium      TEXT    NOT NULL,
    utm_campaign    TEXT    NOT NULL,
    utm_term        TEXT    NOT NULL,
    utm_content     TEXT    NOT NULL,
    browser         TEXT    NOT NULL,
    os              TEXT    NOT NULL,
    device          TEXT    NOT NULL,
    country         TEXT    NOT NULL,
    started_at      BIGINT  NOT NULL,
    last_seen       BIGINT  NOT NULL,
    pageviews       BIGINT  NOT NULL,
    events          BIGINT  NOT NULL,
    PRIMARY KEY (site_id, session_id)
);
-- open_sessions(since) after a restart or rebalance, and retention.
CREATE INDEX sessions_last_seen ON sessions (last_seen);

-- The event log offsets the stored data reflects, written in the same transaction as the data.
-- A NULL next_offset is a row the writer inserted only so that it could lock it (fencing).
-- Offsets are BIGINT: Redis Streams ids pack to ~1.9e18.
CREATE TABLE positions (
    stream          TEXT    NOT NULL,
    partition       BIGINT  NOT NULL,
    next_offset     BIGINT,
    PRIMARY KEY (stream, partition)
);

-- Grows with every write that touches the site: part of every stats cache key.
CREATE TABLE sites (
    site_id         TEXT    NOT NULL PRIMARY KEY,
    data_version    BIGINT  NOT NULL
);

-- Events the processor dropped, by reason (bot, duplicate ...).
CREATE TABLE drops (
    site_id         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    count           BIGINT  NOT NULL,
    PRIMARY KEY (site_id, reason)
);
