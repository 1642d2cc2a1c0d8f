-- hitstream on DuckDB, schema 1: raw events, the visit rollup, log positions, versions, drops.
--
-- Times are BIGINT epoch milliseconds (UTC), as everywhere in the domain, so bucketing in a
-- time zone is done against bucket starts computed in Python (never date_trunc in UTC).
--
-- events: no secondary index. DuckDB keeps min/max "zone maps" per row group, and the processor
-- appends in log order, so rows arrive roughly sorted by ts and a time-range scan skips the
-- row groups outside the range; an ART index would not be used for range scans and would slow
-- every write. The PRIMARY KEY on event_id is the exact dedupe. Measured per 5,000-row batch:
-- a plain INSERT costs the same with or without it (~28 ms), ON CONFLICT DO NOTHING ~66 ms
-- (so the adapter uses it only after the key objected), an index-free anti-join 90-130 ms at
-- 2M rows and growing. Its price is disk: the file doubles (1M events: ~145 MB vs ~71 MB).
CREATE TABLE events (
    event_id        VARCHAR NOT NULL PRIMARY KEY,
    site_id         VARCHAR NOT NULL,
    type            VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    visitor_id      VARCHAR NOT NULL,
    session_id      VARCHAR NOT NULL,
    user_id         VARCHAR NOT NULL,
    hostname        VARCHAR NOT NULL,
    path            VARCHAR NOT NULL,
    url             VARCHAR NOT NULL,
    title           VARCHAR NOT NULL,
    referrer        VARCHAR NOT NULL,
    referrer_domain VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    channel         VARCHAR NOT NULL,
    utm_source      VARCHAR NOT NULL,
    utm_medium      VARCHAR NOT NULL,
    utm_campaign    VARCHAR NOT NULL,
    utm_term        VARCHAR NOT NULL,
    utm_content     VARCHAR NOT NULL,
    browser         VARCHAR NOT NULL,
    browser_version VARCHAR NOT NULL,
    os              VARCHAR NOT NULL,
    os_version      VARCHAR NOT NULL,
    device          VARCHAR NOT NULL,
    country         VARCHAR NOT NULL,
    ts              BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    screen_width    BIGINT,
    duration_ms     BIGINT,
    load_time_ms    BIGINT,
    -- custom properties as canonical text (see hitstream.domain.measures.prop_text)
    props           MAP(VARCHAR, VARCHAR) NOT NULL
);

-- One row per visit, upserted by every batch that extends it.
CREATE TABLE sessions (
    session_id      VARCHAR NOT NULL,
    site_id         VARCHAR NOT NULL,
    visitor_id      VARCHAR NOT NULL,
    entry_page      VARCHAR NOT NULL,
    exit_page       VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    channel         VARCHAR NOT NULL,
    referrer_domain VARCHAR NOT NULL,
    utm_source      VARCHAR NOT NULL,
    utm_medium      VARCHAR NOT NULL,
    utm_campaign    VARCHAR NOT NULL,
    utm_term        VARCHAR NOT NULL,
    utm_content     VARCHAR NOT NULL,
    browser         VARCHAR NOT NULL,
    os              VARCHAR NOT NULL,
    device          VARCHAR NOT NULL,
    country         VARCHAR NOT NULL,
    started_at      BIGINT  NOT NULL,
    last_seen       BIGINT  NOT NULL,
    pageviews       BIGINT  NOT NULL,
    events          BIGINT  NOT NULL,
    PRIMARY KEY (site_id, session_id)
);

-- The event log offsets the stored data reflects: written in the same transaction as the data.
CREATE TABLE positions (
    stream          VARCHAR NOT NULL,
    partition       BIGINT  NOT NULL,
    next_offset     BIGINT  NOT NULL,
    PRIMARY KEY (stream, partition)
);

-- Grows with every write that touches the site: part of every stats cache key.
CREATE TABLE sites (
    site_id         VARCHAR NOT NULL PRIMARY KEY,
    data_version    BIGINT  NOT NULL
);

-- Events the processor dropped, by reason (bot, duplicate ...).
CREATE TABLE drops (
    site_id         VARCHAR NOT NULL,
    reason          VARCHAR NOT NULL,
    count           BIGINT  NOT NULL,
    PRIMARY KEY (site_id, reason)
);
