-- wrk script for benchmarks/ingest.py: POST JSON events as a browser tracker would.
--
-- Arguments after `--`: site_id, events per request, request cap (whole run), threads.
-- Each thread prepares 256 distinct requests up front (visitor IP in X-Forwarded-For, a real
-- browser User-Agent, pages, referrers) and cycles through them, so Lua costs wrk almost
-- nothing per request. A thread stops itself once it has sent its share of the request cap:
-- the run is bounded in count as well as by wrk's --duration.
-- done() prints one line "BENCH_JSON {...}" that ingest.py parses.
-- Paced mode: with BENCH_DELAY_MS set in the environment, each connection waits that many
-- milliseconds after an answer before its next request (wrk's delay()), so C connections
-- send at most C * 1000 / BENCH_DELAY_MS requests per second (less by the answer time).

local DELAY_MS = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if DELAY_MS > 0 then
  function delay()
    return DELAY_MS
  end
end

local USER_AGENTS = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
}
local PAGES = {
  "/", "/pricing", "/blog", "/docs", "/features", "/signup", "/blog/duckdb-explained",
  "/docs/getting-started/installation", "/changelog", "/about",
}
local REFERRERS = {
  "", "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/",
  "https://duckduckgo.com/",
}
-- /16 blocks the offline IP->country table places in US, DE, GB, IN, FR, JP
local BLOCKS = { "3.0", "84.128", "2.96", "49.32", "90.0", "126.0" }
local VARIANTS = 256

local thread_number = 0
local prepared = {}
local cursor = 0
local sent = 0
local cap = math.huge

function setup(thread)
  thread_number = thread_number + 1
  thread:set("number", thread_number)
end

local function pick(list)
  return list[math.random(#list)]
end

local function event(site)
  local page = pick(PAGES)
  local referrer = pick(REFERRERS)
  local parts = {
    '{"site_id":"', site, '","type":"pageview","url":"https://', site, page,
    '","title":"Bench page","screen_width":1920,"load_time_ms":', tostring(math.random(80, 2500)),
  }
  if referrer ~= "" then
    parts[#parts + 1] = ',"referrer":"' .. referrer .. '"'
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

function init(args)
  local site = args[1] or "bench.example"
  local batch = tonumber(args[2] or "1")
  local limit = tonumber(args[3] or "0")
  local threads = tonumber(args[4] or "1")
  if limit > 0 then
    cap = math.ceil(limit / threads)
  end
  math.randomseed(1000 + (number or 1))
  for i = 1, VARIANTS do
    local body
    if batch == 1 then
      body = event(site)
    else
      local events = {}
      for j = 1, batch do
        events[j] = event(site)
      end
      body = "[" .. table.concat(events, ",") .. "]"
    end
    local ip = string.format("%s.%d.%d", pick(BLOCKS), math.random(0, 255), math.random(1, 254))
    local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = pick(USER_AGENTS),
      ["X-Forwarded-For"] = ip,
    }
    prepared[i] = wrk.format("POST", "/api/v1/events", headers, body)
  end
end

function request()
  sent = sent + 1
  if sent > cap then
    wrk.thread:stop()
  end
  cursor = cursor % VARIANTS + 1
  return prepared[cursor]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
