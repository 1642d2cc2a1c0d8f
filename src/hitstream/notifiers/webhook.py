"""A notifier that POSTs Slack-compatible JSON to a webhook URL, in the background.

``notify`` only queues: a worker task delivers, so a slow or dead webhook never delays alert
evaluation. Each alert is tried once and retried ``retries`` times with exponential backoff on
network errors, timeouts, 429 and 5xx answers; another 4xx is final (retrying cannot fix it).
The queue is bounded and drops its oldest alert when full. Every alert given up on or dropped
counts as a failure. The URL is a secret for Slack and the like: logs show its host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from hitstream import __version__
from hitstream.backoff import Backoff
from hitstream.domain.alerts import Alert
from hitstream.notifiers.base import Notifier

log = logging.getLogger(__name__)


def payload(alert: Alert) -> dict[str, Any]:
    """``{"text": ...}`` for Slack, Mattermost, Rocket.Chat; every structured field beside it,
    and an ``id`` of the transition, the same on every try (also sent as ``Idempotency-Key``):
    a receiver slower than the timeout gets a retry of what it already took, and can tell."""
    message = alert.as_message()
    ident = f"{message['rule']}:{message['site_id']}:{message['state']}:{message['at']}"
    return {"text": alert.text(), "id": ident, **message}


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        queue_size: int = 100,
        close_timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """``backoff`` waits between tries (0.5 s, then doubling, with jitter by default)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook URL needs http(s) and a host, not {parts.scheme!r}")
        self.url = url
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff = backoff or Backoff(first_s=0.5, max_s=30.0)
        self.close_timeout_s = close_timeout_s
        self.failures = 0
        self.delivered = 0
        self._sending: Alert | None = None
        self._transport = transport
        self._on_failure = on_failure
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    async def notify(self, alert: Alert) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self._failed(f"queue full, oldest alert dropped ({self.where})")
        self._queue.put_nowait(alert)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def flush(self) -> None:
        """Wait until every queued alert is delivered or given up on."""
        await self._queue.join()

    async def close(self) -> None:
        if self._worker is not None:
            try:
                await asyncio.wait_for(self.flush(), self.close_timeout_s)
            except TimeoutError:  # the one being sent counts too (it was left out)
                unsent = self._queue.qsize() + (self._sending is not None)
                log.warning("webhook %s: %d alerts not sent", self.where, unsent)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        while True:
            alert = await self._queue.get()
            self._sending = alert
            try:
                await self._deliver(alert)
            except Exception as exc:  # the worker outlives any one alert's surprise
                self._failed(f"{alert.rule.name} on {alert.site_id}: {exc!r}")
            finally:
                self._sending = None
                self._queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s,
                transport=self._transport,
                headers={"user-agent": f"hitstream/{__version__} (alerts)"},
            )
        body = payload(alert)
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await self.backoff.wait(attempt - 1)
            try:
                response = await self._client.post(
                    self.url, json=body, headers={"Idempotency-Key": body["id"]}
                )
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                self.delivered += 1
                return
            reason = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break
        self._failed(
            f"{alert.rule.name} on {alert.site_id} not delivered to {self.where}: {reason}"
        )

    def _failed(self, why: str) -> None:
        self.failures += 1
        log.warning("webhook notifier: %s", why)
        if self._on_failure is not None:
            self._on_failure()
