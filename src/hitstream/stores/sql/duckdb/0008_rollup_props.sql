-- hitstream on DuckDB, schema 8: custom properties in the rollups (decision 0022).
-- The keys a site rolls up (the first 32 it sends), each from_slot on: the half hour after the
-- site's newest event stored when the key was first seen. A `prop:<key>` breakdown whose range
-- starts there or later reads rollups; an earlier start scans raw events, until
-- `hitstream migrate --rebuild-rollups` registers every key from the beginning.
CREATE TABLE rollup_props (
    site_id     VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    from_slot   BIGINT  NOT NULL,
    PRIMARY KEY (site_id, key)
);
