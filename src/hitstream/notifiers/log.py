"""A notifier that writes every transition to the ``hitstream.alerts`` logger (``log://``)."""

from __future__ import annotations

import logging

from hitstream.domain.alerts import Alert, Change
from hitstream.notifiers.base import Notifier

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogNotifier(Notifier):
    """Firing alerts log at their severity's level; resolutions at INFO."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("hitstream.alerts")

    async def notify(self, alert: Alert) -> None:
        resolved = alert.transition.change is Change.RESOLVED
        level = logging.INFO if resolved else _LEVELS.get(alert.rule.severity, logging.WARNING)
        self.logger.log(level, "%s", alert.text())
