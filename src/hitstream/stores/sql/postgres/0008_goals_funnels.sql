-- Goals and saved funnels of a site (issue 12): one row per (site, kind, name), kind 'goal'
-- or 'funnel', the definition a JSON document (hitstream.stores.sql.registry reads it).
CREATE TABLE site_definitions (
    site_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    PRIMARY KEY (site_id, kind, name)
);
