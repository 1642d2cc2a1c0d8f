"""The notifier port: tell people (or machines) that an alert fired or resolved.

A notifier must never hold up alert evaluation: ``notify`` returns quickly, and one that has
slow work to do (an HTTP call) queues it and does it in the background. Failures it finds
later are counted by the notifier itself (``failures``, and ``on_failure`` if it was given).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hitstream.domain.alerts import Alert


class Notifier(ABC):
    name: str = "notifier"

    @abstractmethod
    async def notify(self, alert: Alert) -> None:
        """Deliver or queue one transition; raise if it cannot even be queued."""

    async def close(self) -> None:
        """Deliver what is queued (for a bounded time), then release connections."""
