"""The pipeline runner: runs the named steps over a batch, times them, counts every drop.

Steps run step-major (each step over the whole batch) so a step's cost is one timer read per
batch. A step that raises does not sink the batch: that event is dropped with reason
``error:<step>`` and logged with the exception, so one odd event cannot stall the processor.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

from hitstream.domain.events import AcceptedEvent
from hitstream.domain.pipeline import Drop, Step, Working, start
from hitstream.metrics import Metrics

log = logging.getLogger(__name__)


class PipelineRunner:
    def __init__(self, steps: Sequence[tuple[str, Step]], metrics: Metrics) -> None:
        self.steps = list(steps)
        self.metrics = metrics

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def run(
        self, events: Sequence[AcceptedEvent]
    ) -> tuple[list[Working], Counter[tuple[str, str]]]:
        """The events that made it through, in input order, and (site, reason) drop counts."""
        alive: list[Working] = [start(event) for event in events]
        drops: Counter[tuple[str, str]] = Counter()
        for name, step in self.steps:
            began = time.perf_counter()
            kept: list[Working] = []
            for working in alive:
                try:
                    outcome: Drop | None = step(working)
                except Exception:
                    log.exception("pipeline step %s failed on event %s", name, working.out.event_id)
                    outcome = Drop(f"error:{name}")
                if outcome is None:
                    kept.append(working)
                else:
                    drops[(working.out.site_id, outcome.reason)] += 1
                    self.metrics.events_dropped.labels(outcome.reason).inc()
            alive = kept
            self.metrics.step_seconds.labels(name).observe(time.perf_counter() - began)
        return alive, drops
