"""The committed, minified tracker: within its size budget and built from the current source."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

import hitstream.web

WEB = Path(hitstream.web.__file__).parent
MINIFIED = WEB / "static" / "js" / "hitstream.js"
SOURCE = WEB / "tracker" / "hitstream.src.js"
BUDGET_GZIPPED = 1536


def test_minified_tracker_is_at_most_1_5_kb_gzipped() -> None:
    size = len(gzip.compress(MINIFIED.read_bytes(), compresslevel=9))
    assert 0 < size <= BUDGET_GZIPPED, f"{size} bytes gzipped"


def test_minified_tracker_is_smaller_than_its_source() -> None:
    minified = MINIFIED.read_text()
    assert "\n" not in minified.strip(), "not minified: run scripts/build-tracker.sh"
    assert len(minified) < len(SOURCE.read_text()) / 2


_LITERAL = re.compile(r"'([^'\\\n]*)'|\"([^\"\\\n]*)\"")


def _string_literals(js: str) -> set[str]:
    found = {single or double for single, double in _LITERAL.findall(js)}
    return {literal for literal in found if len(literal) >= 3}


def test_minified_tracker_is_built_from_the_current_source() -> None:
    """Every string the source uses (endpoint, attribute names, event names) is in the build:
    an edit to the source without a rebuild fails here."""
    source = SOURCE.read_text()
    code = "\n".join(
        line for line in source.splitlines() if not line.lstrip().startswith(("*", "/*", "//"))
    )
    minified = _string_literals(MINIFIED.read_text())
    missing = _string_literals(code) - minified
    assert not missing, f"rebuild with scripts/build-tracker.sh; missing {sorted(missing)}"


@pytest.mark.parametrize(
    "needle",
    [
        "sendBeacon",  # survives page unload
        "keepalive",  # fetch fallback
        "text/plain",  # no CORS preflight; the collector reads it as JSON
        "hitstream_ignore",  # opt-out
        "data-respect-dnt",
        "doNotTrack",
        "pushState",  # SPA navigations
        "popstate",
        "hashchange",
        "load_time_ms",
        "outbound",
        "download",
        "/api/v1/events",
    ],
)
def test_minified_tracker_keeps_each_feature(needle: str) -> None:
    assert needle in MINIFIED.read_text()


def test_tracker_sets_no_cookie_and_stores_no_id() -> None:
    minified = MINIFIED.read_text()
    assert "cookie" not in minified
    assert "setItem" not in minified  # localStorage is only read, for the opt-out flag
