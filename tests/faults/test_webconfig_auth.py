"""Basic-auth checks of ``--web.config.file`` beyond tests/test_webconfig.py: what is cached,
that unknown users cost a bcrypt check like known ones, and that the cache is bounded."""

from __future__ import annotations

import base64
from typing import Any

import bcrypt
import pytest

from exporter import webconfig

HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The hashes bcrypt.checkpw was asked to compare against, in order."""
    seen: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> Any:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    return seen


def test_wrong_password_is_never_cached(checks: list[bytes]) -> None:
    users, verified = {"alice": HASH.encode()}, set[bytes]()
    for _ in range(3):
        assert not webconfig._check(header("alice", "wrong"), users, verified)
    assert verified == set() and len(checks) == 3


def test_right_password_is_cached_once_verified(checks: list[bytes]) -> None:
    users, verified = {"alice": HASH.encode()}, set[bytes]()
    for _ in range(3):
        assert webconfig._check(header("alice", "right"), users, verified)
    assert len(checks) == 1 and len(verified) == 1
    assert not webconfig._check(header("alice", "right "), users, verified)


def test_unknown_user_costs_a_bcrypt_check_and_fails(checks: list[bytes]) -> None:
    users, verified = {"alice": HASH.encode()}, set[bytes]()
    assert not webconfig._check(header("mallory", "right"), users, verified)
    assert checks == [webconfig._DUMMY_HASH]
    assert bcrypt.checkpw(b"not a password", webconfig._DUMMY_HASH)  # a real bcrypt hash
    assert verified == set()


def test_cache_is_bounded() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
    users = {f"u{i}": hashed for i in range(1100)}
    verified: set[bytes] = set()
    for i in range(1100):
        assert webconfig._check(header(f"u{i}", "pw"), users, verified)
    assert len(verified) == 1024


@pytest.mark.parametrize(
    "value", ["", "Basic", "Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"\xff").decode(),
              "Basic " + base64.b64encode(b"alice").decode()],
)  # fmt: skip
def test_malformed_headers_fail_without_a_bcrypt_check(checks: list[bytes], value: str) -> None:
    assert not webconfig._check(value, {"alice": HASH.encode()}, set())
    assert checks == []
