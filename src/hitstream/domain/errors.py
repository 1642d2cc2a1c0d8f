"""The domain's error: something asked of hitstream that cannot be used as asked, by field.

One class for every "field + reason" problem the rules find: a stats query parameter, a
filter, a live view, an alert rule. The web layer maps it to a 400 in one place; bootstrap
turns one found in settings (an alert rule) into a ``ConfigError``. ``HitstreamError`` is
rooted here so that the domain's error sits in hitstream's hierarchy (``hitstream.errors``
re-exports both) while the domain imports nothing but the standard library.
"""

from __future__ import annotations


class HitstreamError(Exception):
    """Base of every error hitstream raises on purpose."""


class QueryError(HitstreamError):
    """A query, filter, view or rule that cannot be used as asked; ``field`` names the part
    (``metrics``, ``filters``, ``rules[2].threshold``) and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
