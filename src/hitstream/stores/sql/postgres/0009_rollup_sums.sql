-- hitstream on PostgreSQL, schema 9: the engagement sums in the rollups, as DuckDB keeps them
-- (hitstream/domain/rollups.py SUMS): per (site, event property, value, half hour), how many
-- engagement events, the sums and counts of their engaged_ms and scroll_depth, and the sum and
-- count of duration_ms over the other events. With them the dashboard's page and event_name
-- breakdowns (time on page, scroll depth, average duration) read rollups instead of scanning
-- every event of the range.
CREATE TABLE rollup_sums (
    site_id     TEXT    NOT NULL,
    dim         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    hour        BIGINT  NOT NULL,
    engagements BIGINT  NOT NULL,
    engaged     BIGINT  NOT NULL,
    engaged_n   BIGINT  NOT NULL,
    scroll      BIGINT  NOT NULL,
    scroll_n    BIGINT  NOT NULL,
    timed       BIGINT  NOT NULL,
    timed_n     BIGINT  NOT NULL,
    PRIMARY KEY (site_id, dim, hour, value)
);

-- The sums of a site hold only what is written from now on: ranges starting before sums_from
-- that ask these metrics scan raw events (as before this schema), until
-- `hitstream migrate --rebuild-rollups` recomputes every rollup; retention moves rollup_from,
-- which bounds these too.
ALTER TABLE sites ADD COLUMN sums_from BIGINT NOT NULL DEFAULT -9223372036854775808;
UPDATE sites SET sums_from = coalesce(
    (SELECT (floor(max(e.ts) / 1800000.0)::bigint + 1) * 1800000
     FROM events e WHERE e.site_id = sites.site_id),
    -9223372036854775808
);
