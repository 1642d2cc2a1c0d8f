-- The site registry: sites, users, API keys, logins, shared links, login links, refusals.
--
-- Secrets are never stored: keys, cookies and link tokens as SHA-256 (hex), passwords as
-- argon2id PHC strings. Lists and settings are JSON text. registry_state.version grows with
-- every change to sites, users, keys and links (processes reload their copies when it moves).
-- Times are epoch milliseconds, as everywhere.
CREATE TABLE registry_state (
    id              INTEGER NOT NULL PRIMARY KEY,
    version         BIGINT  NOT NULL
);
INSERT INTO registry_state VALUES (1, 1);

-- allowed_hosts '[]' means the default: the domain and its subdomains. settings holds what
-- later features add per site (goals, funnels, a Umami website id) without a new column.
CREATE TABLE site_registry (
    site_id         TEXT    NOT NULL PRIMARY KEY,
    timezone        TEXT    NOT NULL,
    allowed_hosts   TEXT    NOT NULL,
    retention_days  BIGINT  NOT NULL,
    public          BOOLEAN NOT NULL,
    created_at      BIGINT  NOT NULL,
    settings        TEXT    NOT NULL
);

-- An upgraded database keeps working: every site that has stored data is registered (UTC,
-- default hosts, kept forever, not public).
INSERT INTO site_registry
SELECT site_id, 'UTC', '[]', 0, FALSE, 0, '{}' FROM sites;

CREATE TABLE users (
    email           TEXT    NOT NULL PRIMARY KEY,
    role            TEXT    NOT NULL,
    sites           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    password_hash   TEXT    NOT NULL
);

CREATE TABLE api_keys (
    key_id          TEXT    NOT NULL PRIMARY KEY,
    site_id         TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    key_hash        TEXT    NOT NULL UNIQUE,
    prefix          TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    last_used_at    BIGINT,
    revoked         BOOLEAN NOT NULL
);

CREATE TABLE logins (
    token_hash      TEXT    NOT NULL PRIMARY KEY,
    email           TEXT    NOT NULL,
    csrf            TEXT    NOT NULL,
    expires_at      BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL
);

CREATE TABLE shared_links (
    link_id         TEXT    NOT NULL PRIMARY KEY,
    site_id         TEXT    NOT NULL,
    token_hash      TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);

-- The first-run setup link (purpose 'setup', used once) and the demo's login link.
CREATE TABLE login_tokens (
    token_hash      TEXT    NOT NULL PRIMARY KEY,
    purpose         TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    expires_at      BIGINT
);

-- Events and requests the collectors refused, by site and reason: kept here (not in process
-- memory) so that the data-quality panel survives restarts.
CREATE TABLE refusals (
    site_id         TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    count           BIGINT  NOT NULL,
    PRIMARY KEY (site_id, reason)
);

-- Identified users forgotten on request: their visitor hash and when. The processor drops
-- events of theirs received before that moment (still in the event log, or replayed), so a
-- forgotten user's events never come back.
CREATE TABLE forgotten (
    site_id         TEXT    NOT NULL,
    visitor_id      TEXT    NOT NULL,
    forgotten_at    BIGINT  NOT NULL,
    PRIMARY KEY (site_id, visitor_id)
);
