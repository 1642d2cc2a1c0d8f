"""Visitor identity without cookies or stored IPs: a daily-salted hash, and time-ordered ids.

``visitor_id = blake2b(key=salt of the day, ip | user agent | site)``. Salts are random, one per
UTC day; the collector keeps today's and yesterday's (so a visit that crosses midnight stays one
visit) and forgets older ones, after which no stored hash can be linked to an IP again. A site
that names its own users (``user_id``) gets a stable, unsalted hash of that name instead.

Ids are prefixed with their salt's day (4 hex digits, then the 16 of the hash), so the ids of
one day sort together: a store's index over visitor ids takes a day's new keys in one small
part of the tree instead of all over it (decision 0034). The day says nothing the event's
timestamp does not. Salts made before that (16 bytes) keep giving unprefixed ids until they
rotate out, so an upgrade does not split a visitor's day in two; salts made since are
``SALT_BYTES`` long, and their length is what tells the two apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

DAY_MS = 86_400_000


def day_key(now_ms: int) -> str:
    """The salt window an instant falls in: the UTC day number, as text."""
    return str(now_ms // DAY_MS)


SALT_BYTES: Final = 32
"""The length of a new salt; a shorter one was made before visitor ids had a day prefix."""


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def visitor_hash(salt: bytes, ip: str, user_agent: str, site_id: str, *, day: int) -> str:
    """The visitor id of (ip, user agent, site) under ``salt``, the salt of UTC day ``day``
    (``day_key``'s number): prefixed with the day unless the salt is an old, short one."""
    digest = hashlib.blake2b(
        f"{ip}\x1f{user_agent}\x1f{site_id}".encode("utf-8", "replace"), key=salt, digest_size=8
    )
    if len(salt) < SALT_BYTES:
        return digest.hexdigest()
    return with_day(day, digest.hexdigest())


def with_day(day: int, digest: str) -> str:
    """A visitor id of UTC day ``day``: the day in 4 hex digits, then the hash's digits."""
    return f"{day:04x}{digest}"


def user_hash(site_id: str, user_id: str) -> str:
    digest = hashlib.blake2b(f"{site_id}\x1fu\x1f{user_id}".encode(), digest_size=8)
    return "u" + digest.hexdigest()[1:]


@dataclass(frozen=True, slots=True)
class Salts:
    """Today's salt and yesterday's; the only salts that exist at any moment."""

    day: str
    current: bytes
    previous: bytes

    def visitor_ids(self, ip: str, user_agent: str, site_id: str) -> tuple[str, str]:
        """The visitor's id under today's salt and under yesterday's (the same id when there
        is no yesterday's salt: after a gap, ``previous`` is ``current``)."""
        today = int(self.day)
        current = visitor_hash(self.current, ip, user_agent, site_id, day=today)
        if self.previous == self.current:
            return current, current
        return current, visitor_hash(self.previous, ip, user_agent, site_id, day=today - 1)


def rotate(salts: Salts | None, now_ms: int, fresh: bytes) -> Salts:
    """The salts for ``now_ms``; ``fresh`` (random bytes) becomes today's if the day changed.

    Yesterday's salt survives one rotation only; a gap of more than a day drops both.
    """
    today = day_key(now_ms)
    if salts is not None and salts.day == today:
        return salts
    if salts is not None and int(salts.day) == int(today) - 1:
        return Salts(day=today, current=fresh, previous=salts.current)
    return Salts(day=today, current=fresh, previous=fresh)


def event_id(now_ms: int, random10: bytes) -> str:
    """A UUIDv7-shaped id: 48 bits of milliseconds then random bits, so ids sort by time."""
    if len(random10) < 10:
        raise ValueError("event_id needs 10 random bytes")
    raw = bytearray(now_ms.to_bytes(6, "big") + random10[:10])
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_VARIANT: Final = {f"{n:x}": "89ab"[n % 4] for n in range(16)}
"""A random hex digit -> byte 8's high nibble once its top bits are set to 10 (RFC 9562)."""


def event_ids(now_ms: int, randoms: bytes) -> list[str]:
    """``event_id(now_ms, r)`` for each 10 bytes ``r`` of ``randoms``, formatted once per
    request: the millisecond prefix is shared, each id is sliced from one hex string.
    Ascending: the events of a batch sent without timestamps share ``now_ms``, and whatever
    orders events by (timestamp, event id) (funnels, exports, the live list) then keeps the
    order they were sent in."""
    if len(randoms) % 10:
        raise ValueError("event_ids needs 10 random bytes per id")
    t = f"{now_ms & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{t[:8]}-{t[8:12]}-7"
    h = randoms.hex()
    variant = _VARIANT
    ids = [
        f"{head}{h[i + 1 : i + 4]}-{variant[h[i + 4]]}{h[i + 5 : i + 8]}-{h[i + 8 : i + 20]}"
        for i in range(0, len(h), 20)
    ]
    ids.sort()
    return ids
