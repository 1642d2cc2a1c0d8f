-- hitstream on PostgreSQL, schema 4: rollups per half hour instead of per hour.
--
-- Days in half-hour time zones (India, Iran, Newfoundland, South Australia ...) start on a
-- half hour: with hourly rollups every query of theirs scanned raw events. The "hour" columns
-- now hold the start of a half-hour period. Rollups kept per hour cannot be split, so they go;
-- ranges before the next half hour after a site's last event are answered by raw scans until
-- `hitstream migrate --rebuild-rollups` recomputes them (the daily load-time histogram is
-- rebuilt with the rest).
TRUNCATE rollups, rollup_slots, rollup_loads, rollup_loads_daily;
UPDATE sites SET rollup_from = coalesce(
    (SELECT (floor(max(e.ts) / 1800000.0)::bigint + 1) * 1800000
     FROM events e WHERE e.site_id = sites.site_id),
    -9223372036854775808
);
