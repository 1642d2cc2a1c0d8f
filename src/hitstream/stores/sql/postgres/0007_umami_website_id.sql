-- The id Umami's tracker sends for a site (issue 13): NULL when none is set. Unique among
-- sites; the registry checks it before each write (decision 0014).
ALTER TABLE site_registry ADD COLUMN umami_website_id TEXT;
