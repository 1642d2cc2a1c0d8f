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
    (``metrics``, ``filters``, ``rules[2].threshold``) and ``reason`` says why. ``status`` is
    the HTTP answer: 400, or 413 for a request body over its limit."""

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


class Conflict(HitstreamError):
    """What was asked collides with what exists (a site or user registered already): a 409
    naming the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class AccessDenied(HitstreamError):
    """The caller may not do this: 401 without a credential, 403 with one that does not
    reach (``status``). ``field`` names what was refused (``authorization``, ``site_id``)."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason


class RateLimited(HitstreamError):
    """Too many requests: a 429 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, field: str, reason: str, retry_after: int) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.retry_after = retry_after


class NotFound(HitstreamError):
    """What was named does not exist (a site that is not registered, a key id): a 404."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
