-- Engagement (decision 0018): what an `engagement` event reports of its pageview, NULL on every
-- other event: visible time on the page (ms) and the deepest scroll reached (percent). Added
-- to the partitioned parent, so every partition (existing and future) has them; a NULL
-- default rewrites no row.
ALTER TABLE events ADD COLUMN engaged_ms BIGINT;
ALTER TABLE events ADD COLUMN scroll_depth BIGINT;
