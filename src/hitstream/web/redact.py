"""A log filter that takes IP addresses and credentials out of the HTTP server's log lines.

hitstream stores no IP address, and a log file is storage too. uvicorn and websockets name
the client in some of their lines (each WebSocket connection: ``127.0.0.1:51234 - "WebSocket
/api/v1/live" [accepted]``; every connection at trace level). Their wording changes between
versions, so instead of matching messages this rewrites any record from those libraries:
every token that parses as an IP address (with its port) becomes ``-``. hitstream's own
loggers never log a client address and are left alone, so operators still see the addresses
of the brokers and databases they configured.

The same lines carry the request's query string (``"WebSocket /api/v1/live?site_id=a.io&
auth=hs_share_..."``): a shared link's dashboard sends its token as ``auth``, so the value of
every query parameter that can hold a credential (``CREDENTIAL_PARAMS``) becomes ``-`` too.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Final

CLIENT_LOGGERS: Final = ("httpx", "httpcore")
"""The HTTP client's loggers: at info, httpx logs every request with its whole URL (a
webhook's secret path, query or user info). ``cli`` sets them to warnings at least; what they
still log is rewritten like the server's lines."""
SERVER_LOGGERS: Final = ("uvicorn", "websockets", *CLIENT_LOGGERS)
OWN_ADDRESS: Final = ("Uvicorn running on ",)
"""Templates of records that name the server's own listening address, never a client's:
left whole (redacted, the banner read ``Uvicorn running on http://-``)."""
CREDENTIAL_PARAMS: Final = ("auth", "token", "key", "api_key", "access_token", "password")
_CREDENTIAL: Final = re.compile(
    r"(?P<name>[?&](?:" + "|".join(CREDENTIAL_PARAMS) + r")=)[^&#\s\"']+", re.IGNORECASE
)
SECRET_HEADERS: Final = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "sec-websocket-protocol",
)
"""Headers whose value is a credential (a key rides in ``Sec-WebSocket-Protocol`` from a
browser): uvicorn and websockets log every header of a handshake at debug."""
_HEADER: Final = re.compile(
    r"(?P<name>(?:^|[\s<>])(?:" + "|".join(SECRET_HEADERS) + r"):\s*)\S.*$",
    re.IGNORECASE | re.MULTILINE,
)
_TOKEN: Final = re.compile(r"\b(?P<kind>hs_[a-z]+_)[A-Za-z0-9_-]{6,}")
"""hitstream's own credentials (``hs_key_``, ``hs_share_``, ``hs_login_``, ``hs_setup_``...)
wherever else they appear."""
_URL: Final = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?:[^/\s@\"']*@)?(?P<host>[^/\s?#@\"']+)(?P<rest>[^\s\"']*)",
    re.IGNORECASE,
)
"""A whole URL (the HTTP client's lines): only its scheme and host are kept."""


def _url(match: re.Match[str]) -> str:
    rest = "/…" if match.group("rest") else ""
    return f"{match.group('scheme')}{match.group('host')}{rest}"


def _secrets(text: str) -> str:
    text = _URL.sub(_url, text)
    text = _CREDENTIAL.sub(r"\g<name>-", text)
    text = _HEADER.sub(r"\g<name>-", text)
    return _TOKEN.sub(r"\g<kind>-", text)


_CANDIDATE: Final = re.compile(
    r"\[?(?P<ip>[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*[0-9A-Fa-f])\]?(?::(?P<port>\d{1,5}))?"
)


def _redact(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        try:
            ipaddress.ip_address(match.group("ip"))
        except ValueError:
            candidate = match.group("ip")
            # "1.2.3.4:5678" without brackets reads as one IPv6-ish token: try the split
            host, _, port = candidate.rpartition(":")
            if port.isdigit() and _is_ip(host):
                return "-"
            return match.group(0)
        return "-"

    return _CANDIDATE.sub(replace, text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class RedactAddresses(logging.Filter):
    """Install on the handlers: rewrites the server libraries' records (addresses and
    credentials), drops none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] not in SERVER_LOGGERS:
            return True
        if isinstance(record.msg, str) and record.msg.startswith(OWN_ADDRESS):
            return True
        message = record.getMessage()
        redacted = _redact(_secrets(message))
        if redacted != message:
            record.msg = redacted
            record.args = None
        if hasattr(record, "color_message"):
            record.color_message = None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of ``logger`` (the root logger by default)."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactAddresses) for f in handler.filters):
            handler.addFilter(RedactAddresses())
