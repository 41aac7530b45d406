"""Basic-auth checks of ``--web.config.file`` beyond tests/test_webconfig.py: bcrypt runs off the
event loop in a bounded pool (excess refused with 503), what is cached and how, and that unknown
users cost a bcrypt check of the same cost as known ones. The stall this prevents is measured by
``bench/auth_stall.py`` (docs/HARDENING.md), not timed here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web

from exporter import webconfig
from exporter.webconfig import BasicAuth, bcrypt_cost

HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(5)).decode()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Checks:
    """Every bcrypt.checkpw call: the hash compared against and the thread it ran on."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.threads: set[int] = set()
        self.gate: threading.Event | None = None


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Checks]:
    seen = Checks()
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> Any:
        seen.hashes.append(hashed)
        seen.threads.add(threading.get_ident())
        if seen.gate is not None:
            assert seen.gate.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    yield seen
    if seen.gate is not None:
        seen.gate.set()


@pytest.fixture
def auth(checks: Checks) -> Iterator[BasicAuth]:
    a = BasicAuth({"alice": HASH}, workers=1)
    checks.hashes.clear()  # loading validated the hash's salt with a cost-4 check
    checks.threads.clear()
    yield a
    a.close()


async def test_bcrypt_runs_off_the_event_loop(auth: BasicAuth, checks: Checks) -> None:
    assert await auth.check(header("alice", "wrong")) is False
    assert await auth.check(header("mallory", "wrong")) is False
    assert len(checks.hashes) == 2
    assert threading.get_ident() not in checks.threads


async def test_wrong_password_is_never_cached(auth: BasicAuth, checks: Checks) -> None:
    for _ in range(3):
        assert await auth.check(header("alice", "wrong")) is False
    assert len(checks.hashes) == 3


async def test_right_password_is_cached_once_verified(auth: BasicAuth, checks: Checks) -> None:
    for _ in range(3):
        assert await auth.check(header("alice", "right"))
    assert len(checks.hashes) == 1
    assert await auth.check(header("alice", "right ")) is False
    assert len(checks.hashes) == 2


async def test_cache_entry_expires(
    auth: BasicAuth, checks: Checks, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(webconfig.time, "monotonic", lambda: now[0])
    assert await auth.check(header("alice", "right"))
    now[0] += webconfig.CACHE_TTL - 1
    assert await auth.check(header("alice", "right"))
    assert len(checks.hashes) == 1
    now[0] += 2
    assert await auth.check(header("alice", "right"))
    assert len(checks.hashes) == 2


async def test_cache_key_is_a_keyed_hmac_not_the_password(auth: BasicAuth) -> None:
    value = header("alice", "right")
    assert await auth.check(value)
    other = BasicAuth({"alice": HASH}, workers=1)
    try:
        assert await other.check(value)
        (key,) = auth._verified
        (other_key,) = other._verified
    finally:
        other.close()
    # A per-process random key: the same header gives different entries, and neither is a
    # plain hash of the header (which could be tested offline against guessed passwords).
    assert key != other_key
    assert key != hashlib.sha256(value.encode()).digest()
    assert b"right" not in key and b"right" not in other_key


async def test_unknown_user_costs_a_check_of_the_configured_cost(checks: Checks) -> None:
    for cost in (5, 7):
        hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(cost)).decode()
        a = BasicAuth({"alice": hashed}, workers=1)
        try:
            assert await a.check(header("mallory", "right")) is False
        finally:
            a.close()
        assert checks.hashes[-1] == a.dummy
        assert bcrypt_cost(a.dummy.decode()) == cost
        # A hash bcrypt accepts, that no password matches.
        assert not bcrypt.checkpw(b"", a.dummy)


def test_dummy_takes_the_highest_configured_cost() -> None:
    users = {"a": bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(), "b": HASH}
    a = BasicAuth(users, workers=1)
    a.close()
    assert bcrypt_cost(a.dummy.decode()) == 5


async def test_excess_tries_are_refused_without_a_check(checks: Checks) -> None:
    auth = BasicAuth({"alice": HASH}, workers=1)
    checks.hashes.clear()
    checks.gate = threading.Event()
    try:
        tries = [
            asyncio.create_task(auth.check(header("alice", f"guess{i}")))
            for i in range(auth.max_pending + 3)
        ]
        await asyncio.wait(tries, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        # The three beyond the bound are answered at once, while the others wait for the pool.
        refused = [t for t in tries if t.done()]
        assert len(refused) == 3 and all(t.result() is None for t in refused)
        assert auth.refused == 3
        checks.gate.set()
        results = await asyncio.gather(*tries)
        assert results.count(False) == auth.max_pending
        assert checks.hashes == [HASH.encode()] * auth.max_pending
        assert auth.pending == 0
    finally:
        auth.close()


async def test_middleware_answers_503_when_busy_and_401_when_wrong(checks: Checks) -> None:
    auth = BasicAuth({"alice": HASH}, workers=1)
    checks.hashes.clear()
    checks.gate = threading.Event()
    app = web.Application(middlewares=[auth.middleware])

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/"
    try:
        async with aiohttp.ClientSession() as session:

            async def get(user: str, password: str) -> tuple[int, str | None]:
                async with session.get(url, headers={"Authorization": header(user, password)}) as r:
                    return r.status, r.headers.get("Retry-After")

            waiting = [asyncio.create_task(get("alice", "wrong")) for _ in range(auth.max_pending)]
            while auth.pending < auth.max_pending:  # noqa: ASYNC110 (the server has no event)
                await asyncio.sleep(0.01)
            assert await get("alice", "right") == (503, "1")
            checks.gate.set()
            assert [s for s, _ in await asyncio.gather(*waiting)] == [401] * auth.max_pending
            assert await get("alice", "right") == (200, None)
    finally:
        await runner.cleanup()
        auth.close()


async def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webconfig, "CACHE_SIZE", 50)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    auth = BasicAuth({f"u{i}": hashed for i in range(60)}, workers=2)
    try:
        for i in range(60):
            assert await auth.check(header(f"u{i}", "pw"))
        assert len(auth._verified) == 50
    finally:
        auth.close()


@pytest.mark.parametrize(
    "value", ["", "Basic", "Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"\xff").decode(),
              "Basic " + base64.b64encode(b"alice").decode()],
)  # fmt: skip
async def test_malformed_headers_fail_without_a_bcrypt_check(
    auth: BasicAuth, checks: Checks, value: str
) -> None:
    assert await auth.check(value) is False
    assert checks.hashes == []


async def test_passwords_bcrypt_refuses_are_wrong_not_errors(auth: BasicAuth) -> None:
    assert await auth.check(header("alice", "x" * 100)) is False
    assert await auth.check(header("alice", "a\x00b")) is False
