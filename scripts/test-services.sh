#!/usr/bin/env bash
# Make sure the real services the test tiers talk to are there: start them when absent.
# PostgreSQL and Redis are expected on 127.0.0.1 (5432, 6379); Chromium at /usr/bin/chromium.
set -uo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "PostgreSQL is not running: starting it" >&2
  if ! command -v pg_ctlcluster >/dev/null; then
    as_root apt-get update -qq && as_root apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] && as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || echo "could not start PostgreSQL" >&2
fi

if ! port_open 6379; then
  echo "Redis is not running: starting it" >&2
  command -v redis-server >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq redis-server >/dev/null; }
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || echo "could not start Redis" >&2
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "Chromium is not installed: installing Debian's package" >&2
  { as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null; } || echo "could not install chromium" >&2
fi
if ! command -v promtool >/dev/null; then
  echo "promtool is not installed: installing Debian's prometheus package (for deploy/ checks)" >&2
  { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || echo "could not install promtool" >&2
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  as_root pkill -x prometheus >/dev/null 2>&1 || true
fi

# Plausible's and Umami's official trackers for the browser tests, from the npm registry at
# the versions and integrity hashes of tests/trackers/package-lock.json
trackers="$(cd "$(dirname "$0")/.." && pwd)/tests/trackers"
if [ ! -d "$trackers/node_modules" ]; then
  command -v npm >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq npm >/dev/null; }
  (cd "$trackers" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null) || echo "could not install the trackers (tests/trackers)" >&2
fi
exit 0
