-- hitstream on DuckDB, schema 7: indexes for the lookups every write makes.
--
-- A write loads the slots of the visits and visitors it touches, and the visit rows they
-- name. Without an index each lookup is a hash join over the whole table: at 10 M events
-- (2.8 M slots, 2.1 M visits) ~130 ms per table, whatever the batch size, so a write of 100
-- events took ~600 ms. These ART indexes answer a list of ids in ~10-40 ms per 500 ids
-- (`rollups._by_ids` keeps each list under DuckDB's index-scan limit).
CREATE INDEX rollup_slots_visit ON rollup_slots (session_id);
CREATE INDEX rollup_slots_visitor ON rollup_slots (visitor_id);
CREATE INDEX sessions_visit ON sessions (session_id);
