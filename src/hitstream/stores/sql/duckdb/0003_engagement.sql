-- Engagement (decision 0018): what an `engagement` event reports of its pageview, NULL on every
-- other event: visible time on the page (ms) and the deepest scroll reached (percent).
ALTER TABLE events ADD COLUMN engaged_ms BIGINT;
ALTER TABLE events ADD COLUMN scroll_depth BIGINT;
