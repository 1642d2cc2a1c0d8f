-- hitstream on DuckDB, schema 9: breakdowns under a filter in the rollups (decision 0030).
-- The segments a site rolls up: `dim == value` filters (an event property or a rolled-up
-- custom one), at most 16 a site, registered the first time a breakdown by another property
-- is asked under one, each from_slot on (the half hour after the site's newest event stored
-- then). A segment not asked for a day (`asked_at`, epoch ms) gives its place, and its rows,
-- to a new one when the site has 16. Every event in a segment counts its other properties again under the segment's
-- rollup properties (`seg:["dim","value","group"]`). `hitstream migrate --rebuild-rollups`
-- recomputes them from the beginning.
CREATE TABLE rollup_segments (
    site_id     VARCHAR NOT NULL,
    dim         VARCHAR NOT NULL,
    value       VARCHAR NOT NULL,
    from_slot   BIGINT  NOT NULL,
    asked_at    BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, dim, value)
);
