"""hitstream's errors as gRPC status codes, and the caller's credentials from call metadata.

The one place a call's failure becomes a status, as ``web/app.py`` is for HTTP: a
``QueryError`` is ``INVALID_ARGUMENT`` with ``"<field>: <reason>"`` as its message and
``error-field`` / ``error-reason`` in the trailing metadata; ``AccessDenied`` is
``UNAUTHENTICATED`` (401: no or an unknown credential) or ``PERMISSION_DENIED`` (403);
``NotFound`` is ``NOT_FOUND``; a store that is down is ``UNAVAILABLE``. Refusals are counted
in ``hitstream_requests_rejected_total`` under the HTTP status they stand for, with the field
as the reason, so both edges count bad input alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import grpc

from hitstream.domain.errors import AccessDenied, HitstreamError, NotFound, QueryError, RateLimited
from hitstream.errors import AdapterUnavailable, public_reason
from hitstream.services.access import Credentials

Metadata = Iterable[tuple[str, str | bytes]]

FIELD_KEY: Final = "error-field"
REASON_KEY: Final = "error-reason"


def credentials(metadata: Metadata | None) -> Credentials:
    """The bearer key of ``authorization: Bearer <key>`` (as the HTTP header). Another
    scheme, or a header without a key, is refused: it was meant to identify someone."""
    header = ""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            header = value.decode("latin-1") if isinstance(value, bytes) else value
            break
    scheme, _, token = header.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    if header and not bearer:
        raise AccessDenied(401, "authorization", "must be 'Bearer <key>'")
    return Credentials(bearer=bearer)


def status_of(error: HitstreamError) -> tuple[grpc.StatusCode, int, str, str]:
    """(code, the HTTP status it stands for, field, reason) of an error a call raised."""
    if isinstance(error, QueryError):
        return grpc.StatusCode.INVALID_ARGUMENT, 400, error.field, error.reason
    if isinstance(error, AccessDenied):
        code = (
            grpc.StatusCode.UNAUTHENTICATED
            if error.status == 401
            else grpc.StatusCode.PERMISSION_DENIED
        )
        return code, error.status, error.field, error.reason
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND, 404, error.field, error.reason
    if isinstance(error, RateLimited):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, 429, error.field, error.reason
    if isinstance(error, AdapterUnavailable):
        return grpc.StatusCode.UNAVAILABLE, 503, "service", public_reason(error)
    return grpc.StatusCode.INTERNAL, 500, "service", "internal error"


def trailers(field: str, reason: str) -> tuple[tuple[str, str], ...]:
    """Trailing metadata naming the field and the reason (printable ASCII, as metadata values
    must be: anything else is escaped)."""
    safe = reason.encode("unicode_escape").decode("ascii")
    return ((FIELD_KEY, field), (REASON_KEY, safe))
