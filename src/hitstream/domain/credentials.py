"""Secrets as hitstream keeps them: random tokens shown once, stored only as hashes.

API keys, login cookies, shared-link tokens and the one-time setup token are all 32 random
bytes (256 bits, from ``os.urandom`` in the caller: the domain has no randomness of its own)
written as URL-safe base64 after a short readable prefix (``hs_key_``, ``hs_share_`` ...), so
a leaked one is recognisable in logs and by secret scanners. What the store keeps is the
SHA-256 of the whole token: with 256 bits of entropy a slow hash adds nothing (it matters for
passwords, which people choose: those get argon2id elsewhere), and a fast one lets a lookup
by hash find the record in one index probe, without comparing secrets at all. Where two
secrets are compared (the metrics token, a CSRF token), ``same`` compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

TOKEN_BYTES: Final = 32
PREFIXES: Final = {
    "key": "hs_key_",
    "share": "hs_share_",
    "login": "hs_login_",
    "setup": "hs_setup_",
    "csrf": "",
}


def make_token(kind: str, random_bytes: bytes) -> str:
    """A token of ``kind`` from ``TOKEN_BYTES`` random bytes (``os.urandom`` in the caller)."""
    if len(random_bytes) < TOKEN_BYTES:
        raise ValueError(f"a token needs {TOKEN_BYTES} random bytes")
    text = base64.urlsafe_b64encode(random_bytes[:TOKEN_BYTES]).decode().rstrip("=")
    return PREFIXES[kind] + text


def well_formed(token: str, kind: str) -> bool:
    """Whether ``token`` has the shape ``make_token`` gives ``kind`` (a link cut short when
    copied, or typed by hand, has not: it can be refused before any lookup)."""
    prefix = PREFIXES[kind]
    body = token[len(prefix) :]
    return (
        token.startswith(prefix)
        and len(body) == _TEXT_LENGTH
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in body)
    )


_TEXT_LENGTH: Final = len(base64.urlsafe_b64encode(bytes(TOKEN_BYTES)).rstrip(b"="))


def token_hash(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def shown_prefix(token: str) -> str:
    """The first characters of a key, kept in clear to tell keys apart in lists."""
    prefix = next((p for p in PREFIXES.values() if p and token.startswith(p)), "")
    return token[: len(prefix) + 6]


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (the time taken does not tell how much of
    ``given`` matched)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
