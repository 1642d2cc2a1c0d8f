"""Tokens, their hashes and the constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from hitstream.domain.credentials import make_token, same, shown_prefix, token_hash


def test_a_token_carries_its_kind_and_256_random_bits() -> None:
    raw = bytes(range(32))
    token = make_token("key", raw)
    assert token.startswith("hs_key_")
    body = token.removeprefix("hs_key_")
    assert len(body) == 43  # 32 bytes in unpadded base64
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert make_token("key", os.urandom(32)) != make_token("key", os.urandom(32))
    with pytest.raises(ValueError, match="32 random bytes"):
        make_token("key", b"short")


def test_the_stored_hash_is_sha256_of_the_whole_token() -> None:
    token = make_token("share", b"\x01" * 32)
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_hash(token) != token_hash(token[:-1])
    assert token not in token_hash(token)


def test_the_shown_prefix_tells_keys_apart_without_revealing_them() -> None:
    token = make_token("key", b"\xff" * 32)
    assert shown_prefix(token) == token[: len("hs_key_") + 6]
    assert len(shown_prefix(token)) < len(token) // 3


def test_same_is_equality() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd")
    assert not same("abc", "abcd")
    assert not same("", "x")
    assert same("ü", "ü")


def test_same_compares_through_the_constant_time_primitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing is not asserted here (no timed assertions in tests): what is checked is that
    every comparison goes through ``hmac.compare_digest``, whose documented promise is that
    its time does not depend on where the inputs differ, and never through ``==``."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert same("secret-1", "secret-1")
    assert not same("secret-1", "secret-2")
    assert seen == [(b"secret-1", b"secret-1"), (b"secret-1", b"secret-2")]
