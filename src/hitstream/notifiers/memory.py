"""A notifier that keeps what it is told, for tests and for embedding hitstream."""

from __future__ import annotations

from hitstream.domain.alerts import Alert
from hitstream.notifiers.base import Notifier


class MemoryNotifier(Notifier):
    name = "memory"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)
