"""Reading a running hitstream's ``/metrics``: one scrape, a sampler over time, settling.

Counters are the server's own account of what it accepted and processed, so the benchmarks
compare them with what wrk saw and with what the store holds afterwards.
"""

from __future__ import annotations

import threading
import time

import httpx


def scrape(client: httpx.Client, url: str) -> dict[str, float]:
    """Prometheus text from ``url/metrics``: each series as printed (``name{labels}``) -> value,
    and each bare name -> the sum of its labelled series."""
    response = client.get(f"{url}/metrics", timeout=5.0)
    response.raise_for_status()
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            number = float(value)
        except ValueError:
            continue
        values[name] = values.get(name, 0.0) + number
        if name_part != name:
            values[name_part] = number
    return values


class Sampler(threading.Thread):
    """Scrapes accepted / processed / dropped counters from ``/metrics`` until stopped."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, float, float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self._halt.is_set():
                try:
                    m = scrape(client, self.url)
                except httpx.HTTPError:
                    self._halt.wait(self.interval)
                    continue
                self.samples.append(
                    (
                        time.monotonic(),
                        m.get("hitstream_events_accepted_total", 0.0),
                        m.get("hitstream_events_processed_total", 0.0),
                        m.get("hitstream_events_dropped_total", 0.0),
                    )
                )
                self._halt.wait(self.interval)

    def latest(self) -> tuple[float, float, float, float] | None:
        return self.samples[-1] if self.samples else None

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(10)


def processor_rate(samples: list[tuple[float, float, float, float]]) -> float | None:
    """Events/s stored from the first sample showing progress to the first showing the end."""
    moving = [(t, p + d) for t, _, p, d in samples if p + d > 0]
    if len(moving) < 2:
        return None
    final = moving[-1][1]
    end = next(s for s in moving if s[1] >= final)
    start = moving[0]
    if end[0] <= start[0]:
        return None
    return round((end[1] - start[1]) / (end[0] - start[0]), 1)


def settled(url: str, name: str, quiet_s: float = 1.0, timeout: float = 30.0) -> float:
    """``name`` from ``/metrics`` once it has not moved for ``quiet_s``: when wrk stops, the
    requests it had in flight are still being answered, and their events count too."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        value = scrape(client, url).get(name, 0.0)
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = scrape(client, url).get(name, 0.0)
            if now != value:
                value, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return value
    raise RuntimeError(f"{name} still moving after {timeout}s")
