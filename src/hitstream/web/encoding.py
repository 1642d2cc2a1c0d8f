"""Compressed request bodies: ``gzip`` and ``deflate`` are inflated with a bound, others 415.

A server-side integration that sends batches saves most of its bandwidth with gzip, so the
events endpoint honours it. The bound is what makes that safe: the inflated body may be no
larger than the plain body limit (1 MiB), whatever the ratio, so a 1 KB "zip bomb" costs at
most that limit of memory before it is refused with 413. A corrupt or truncated stream is
400; a coding hitstream does not speak (``br``, ``zstd``, ``compress``, or two codings
stacked) is 415, so a client knows to send it plain instead.
"""

from __future__ import annotations

import zlib
from typing import Final

CODINGS: Final = ("gzip", "x-gzip", "deflate")


class EncodingProblem(ValueError):
    """A body that cannot be inflated: the status to answer, the reason, a metric label."""

    def __init__(self, status: int, field: str, reason: str, label: str) -> None:
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason
        self.label = label


def inflate(body: bytes, content_encoding: str, cap: int) -> bytes:
    """``body`` decoded as its ``Content-Encoding`` says, at most ``cap`` bytes, or raise."""
    coding = content_encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in CODINGS:
        raise EncodingProblem(
            415,
            "content-encoding",
            "must be gzip or deflate (one coding), or absent",
            "content-encoding: unsupported",
        )
    if coding != "deflate":
        wbits = zlib.MAX_WBITS | 16
    elif len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0:
        wbits = zlib.MAX_WBITS  # a zlib stream, as RFC 9110 means by "deflate"
    else:
        wbits = -zlib.MAX_WBITS  # raw deflate: what some clients send instead
    out = bytearray()
    data = body
    try:
        while True:  # gzip allows several members one after the other
            stream = zlib.decompressobj(wbits)
            out += stream.decompress(data, cap + 1 - len(out))
            if len(out) > cap:
                raise EncodingProblem(
                    413, "body", f"inflates to more than {cap} bytes", "body: inflates too large"
                )
            if not stream.eof:
                raise EncodingProblem(
                    400, "body", f"is a truncated {coding} stream", "body: corrupt encoding"
                )
            data = stream.unused_data
            if not data or wbits != zlib.MAX_WBITS | 16:
                break
    except zlib.error as exc:
        raise EncodingProblem(
            400, "body", f"is not valid {coding}: {exc}", "body: corrupt encoding"
        ) from None
    if data:
        raise EncodingProblem(
            400, "body", f"has data after the {coding} stream", "body: corrupt encoding"
        )
    return bytes(out)
