"""Notifiers, picked by URL: ``log://`` logs, ``http(s)://...`` POSTs to a webhook."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from hitstream.errors import ConfigError
from hitstream.notifiers.base import Notifier

__all__ = ["Notifier", "make_notifier", "make_notifiers"]


def make_notifier(url: str, on_failure: Callable[[], None] | None = None) -> Notifier:
    """One notifier for ``url``; ``on_failure`` is called for every alert it gives up on."""
    scheme = urlsplit(url).scheme
    if scheme == "log":
        from hitstream.notifiers.log import LogNotifier

        return LogNotifier()
    if scheme == "memory":
        from hitstream.notifiers.memory import MemoryNotifier

        return MemoryNotifier()
    if scheme in ("http", "https"):
        from hitstream.notifiers.webhook import WebhookNotifier

        try:
            return WebhookNotifier(url, on_failure=on_failure)
        except ValueError as exc:
            raise ConfigError(f"alert notifier: {exc}") from exc
    shown = scheme or url.split("/")[0]
    raise ConfigError(f"unknown alert notifier {shown!r} (use log:// or an http(s):// webhook)")


def make_notifiers(urls: str, on_failure: Callable[[str], None] | None = None) -> list[Notifier]:
    """Notifiers for a comma-separated URL list; ``on_failure`` gets the notifier's name."""
    notifiers: list[Notifier] = []
    for url in (part.strip() for part in urls.split(",")):
        if url:
            hook = None if on_failure is None else _bind(on_failure, urlsplit(url).scheme)
            notifiers.append(make_notifier(url, hook))
    return notifiers


def _bind(on_failure: Callable[[str], None], scheme: str) -> Callable[[], None]:
    name = "webhook" if scheme in ("http", "https") else scheme
    return lambda: on_failure(name)
