"""Keeps tests that send events now and read "today" away from midnight UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def clear_of_midnight(before_s: float = 120, after_s: float = 90) -> None:
    """Sleeps through the minutes around midnight UTC. A test that sends events (some a
    minute old) and reads ``period=day`` must not straddle the day's start: its events
    would be yesterday's, and its expected counts wrong for a reason that is not a defect."""
    now = datetime.now(UTC)
    since = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    until = timedelta(days=1).total_seconds() - since
    if since < after_s:
        time.sleep(after_s - since)
    elif until < before_s:
        time.sleep(until + after_s)
