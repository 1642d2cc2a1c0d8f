-- hitstream on PostgreSQL, schema 12: a visitor's stored visits found by the visitor
-- (decision 0057). An event sent late, whose visit the processor no longer holds, has that
-- visit loaded from here first (`visits_of`), so it continues it instead of starting one.
CREATE INDEX sessions_visitor ON sessions (site_id, visitor_id, last_seen);
