-- hitstream on PostgreSQL, schema 10: custom properties in the rollups (decision 0022).
-- The keys a site rolls up (the first 32 it sends), each from_slot on: the half hour after the
-- site's newest event stored when the key was first seen. A `prop:<key>` breakdown whose range
-- starts there or later reads rollups; an earlier start scans raw events, until
-- `hitstream migrate --rebuild-rollups` registers every key from the beginning. Writers read
-- it under ROW SHARE, registration holds EXCLUSIVE: no write stores events without a key's
-- membership after the key's first period.
CREATE TABLE rollup_props (
    site_id     TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    from_slot   BIGINT  NOT NULL,
    PRIMARY KEY (site_id, key)
);
