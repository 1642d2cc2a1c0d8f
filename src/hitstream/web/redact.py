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

SERVER_LOGGERS: Final = ("uvicorn", "websockets")
OWN_ADDRESS: Final = ("Uvicorn running on ",)
"""Templates of records that name the server's own listening address, never a client's:
left whole (redacted, the banner read ``Uvicorn running on http://-``)."""
CREDENTIAL_PARAMS: Final = ("auth", "token", "key", "api_key", "access_token", "password")
_CREDENTIAL: Final = re.compile(
    r"(?P<name>[?&](?:" + "|".join(CREDENTIAL_PARAMS) + r")=)[^&#\s\"']+", re.IGNORECASE
)
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
        redacted = _CREDENTIAL.sub(r"\g<name>-", _redact(message))
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
