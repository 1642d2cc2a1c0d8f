#!/usr/bin/env sh
# Minify the tracker: src/hitstream/web/tracker/hitstream.src.js -> web/static/js/hitstream.js.
# Needs Node (npx) at build time only; the minified file is committed, so run time needs none.
# esbuild is pinned so that the same source always gives the same bytes.
set -eu
ESBUILD_VERSION=0.28.2
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/src/hitstream/web/tracker/hitstream.src.js"
out="$root/src/hitstream/web/static/js/hitstream.js"
mkdir -p "$(dirname "$out")"
npx --yes "esbuild@$ESBUILD_VERSION" "$src" --minify --target=es2017 --legal-comments=none \
  --log-level=warning --outfile="$out"
bytes=$(wc -c <"$out")
gz=$(gzip -9 -c "$out" | wc -c)
echo "wrote $out: $bytes bytes, $gz bytes gzipped (budget 2048)"
if [ "$gz" -gt 2048 ]; then
  echo "tracker is over its 2 KB gzipped budget" >&2
  exit 1
fi
