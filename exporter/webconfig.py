"""``--web.config.file``: TLS and basic auth for the HTTP server, in the Prometheus
exporter-toolkit format (``tls_server_config``, ``basic_auth_users`` with bcrypt hashes).

Supported keys: ``tls_server_config.cert_file``, ``key_file``, ``client_auth_type``
(``NoClientCert``, ``RequestClientCert``, ``RequireAnyClientCert``, ``VerifyClientCertIfGiven``,
``RequireAndVerifyClientCert``), ``client_ca_file``, ``min_version`` (``TLS12``/``TLS13``), and
``basic_auth_users``. Auth applies to every endpoint.

Python's TLS server verifies every client certificate it asks for against ``client_ca_file``;
there is no "any certificate" mode, so every ``client_auth_type`` but ``NoClientCert`` needs
``client_ca_file`` (without it every client would be refused: a config error instead).

Basic auth (:class:`BasicAuth`): bcrypt costs about 250 ms a try at cost 12, so it never runs on
the event loop, where 8 clients sending wrong passwords stalled scrapes and probes for seconds. A
small thread pool verifies (bcrypt releases the GIL); at most :data:`MAX_PENDING_PER_WORKER` tries
per worker wait, and a try beyond that is answered ``503`` at once without a bcrypt check.
A successful verification is cached for :data:`CACHE_TTL` seconds (at most :data:`CACHE_SIZE`
entries), keyed by an HMAC-SHA256 of the ``Authorization`` header under a random key made when
the process starts: the cache never holds a password or anything that can be tested offline
against one, and the key being secret, a dictionary lookup leaks no timing an attacker could
use. An unknown user is checked against a dummy hash of the same cost as the configured hashes
(the highest, when they differ), so timing does not tell which user names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import os
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import bcrypt
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exporter.config import format_loc
from exporter.config.yamlload import YamlError, load_yaml

CACHE_TTL = 300.0
"""Seconds a verified ``Authorization`` header is trusted without bcrypt (Prometheus scrapes
every 15-60 s, so a scraper pays bcrypt once per 5 minutes)."""
CACHE_SIZE = 1024
"""Verified headers kept at most (the oldest goes first)."""
MAX_PENDING_PER_WORKER = 4
"""Tries queued per pool worker before new ones are refused: with 1 worker at cost 12 a try
waits at most about 1.25 s."""
MAX_COST = 16
"""The highest bcrypt cost accepted: each step doubles the time; cost 16 takes about 4 s per try
on a 2 GHz core, the most that still fits a 10 s scrape timeout with a queue ahead of it."""

_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    pass


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ClientAuth = Literal[
    "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]  # fmt: skip


class TlsServerConfig(_M):
    cert_file: str
    key_file: str
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"

    @model_validator(mode="after")
    def _ca_for_client_certs(self) -> TlsServerConfig:
        if self.client_auth_type != "NoClientCert" and not self.client_ca_file:
            raise ValueError(
                f"client_ca_file: required with client_auth_type {self.client_auth_type} "
                "(client certificates are verified against it; without it every client is "
                "refused)"
            )
        return self


def bcrypt_cost(hashed: str) -> int:
    """The cost of a bcrypt hash (``$2b$12$...`` -> 12); ValueError if it is not one."""
    m = _BCRYPT.fullmatch(hashed)
    if m is None:
        raise ValueError("not a bcrypt hash (expected $2b$<cost>$ and 53 characters)")
    cost = int(m.group(1))
    if not 4 <= cost <= MAX_COST:
        raise ValueError(f"bcrypt cost {cost} is outside 4-{MAX_COST}")
    try:
        # The same salt at cost 4 (about 1 ms): bcrypt refuses a salt it cannot decode.
        bcrypt.checkpw(b"", f"{hashed[:4]}04{hashed[6:]}".encode())
    except ValueError:
        raise ValueError("not a bcrypt hash (its salt does not decode)") from None
    return cost


class WebConfig(_M):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @property
    def users(self) -> dict[str, str]:
        return self.basic_auth_users

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.tls_server_config
        if tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
        )
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_auth_type != "NoClientCert":
            if tls.client_ca_file:
                ctx.load_verify_locations(tls.client_ca_file)
            ctx.verify_mode = (
                ssl.CERT_REQUIRED
                if tls.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert")
                else ssl.CERT_OPTIONAL
            )
        return ctx

    def basic_auth(self, *, workers: int | None = None) -> BasicAuth:
        """The basic-auth checker for ``basic_auth_users`` (call only when there are users)."""
        return BasicAuth(self.basic_auth_users, workers=workers)


def default_workers() -> int:
    """Half the CPUs, 1 to 4: the other half stays free for the event loop and the probes."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def dummy_hash(cost: int) -> bytes:
    """A bcrypt hash of cost ``cost`` that no password matches, made without paying that cost:
    a fresh salt of that cost with the checksum of an unrelated cost-4 hash. Checking against it
    costs exactly what checking against a real hash of that cost does."""
    salt = bcrypt.gensalt(rounds=cost, prefix=b"2b")
    other = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=4, prefix=b"2b"))
    return salt + other[-31:]


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a password bcrypt refuses (e.g. a NUL byte)
        return False


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """Checks ``Authorization: Basic`` headers off the event loop (see the module docstring).

    :meth:`check` returns True (verified), False (wrong or malformed) or None (too many tries
    waiting: refused without a check). :attr:`middleware` answers 401 and 503 accordingly.
    Call :meth:`close` when the server stops.
    """

    def __init__(self, users: dict[str, str], *, workers: int | None = None) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        cost = max((bcrypt_cost(h) for h in users.values()), default=4)
        self.dummy = dummy_hash(cost)
        self.workers = workers or default_workers()
        self.max_pending = self.workers * MAX_PENDING_PER_WORKER
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bcrypt")
        self._key = secrets.token_bytes(32)
        self._verified: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self.pending = 0
        self.refused = 0
        """Tries refused because the pool was busy (for tests and benches)."""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _cached(self, digest: bytes, now: float) -> bool:
        expires = self._verified.get(digest)
        if expires is None:
            return False
        if expires <= now:
            del self._verified[digest]
            return False
        return True

    def _remember(self, digest: bytes, now: float) -> None:
        self._verified[digest] = now + CACHE_TTL
        self._verified.move_to_end(digest)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    async def check(self, header: str) -> bool | None:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        digest = hmac.new(self._key, header.encode(), hashlib.sha256).digest()
        now = time.monotonic()
        if self._cached(digest, now):
            return True
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        if self.pending >= self.max_pending:
            self.refused += 1
            return None
        hashed = self._users.get(user)
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            # An unknown user pays for a check of the same cost too (no user enumeration).
            ok = await loop.run_in_executor(
                self._pool, _checkpw, password.encode(), hashed or self.dummy
            )
        finally:
            self.pending -= 1
        ok = ok and hashed is not None
        if ok:
            self._remember(digest, time.monotonic())
        return ok

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        verdict = await self.check(request.headers.get("Authorization", ""))
        if verdict:
            return await handler(request)
        if verdict is None:
            return web.Response(
                status=503, text="Too many authentication attempts\n", headers={"Retry-After": "1"}
            )
        return web.Response(
            status=401,
            text="Unauthorized\n",
            headers={"WWW-Authenticate": 'Basic realm="deliverability-exporter"'},
        )


def load_web_config(path: str) -> WebConfig:
    try:
        data = load_yaml(path) or {}
    except OSError as exc:
        raise WebConfigError(f"{path}: {exc.strerror}") from None
    except YamlError as exc:
        raise WebConfigError(f"{path}: {exc}") from None
    try:
        cfg = WebConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False, include_input=False):
            where = format_loc(tuple(e["loc"]))
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            msg = msg.removeprefix("Value error, ")
            if msg.startswith("client_ca_file: "):  # the model validator names its key itself
                where, msg = f"{where}.client_ca_file", msg.removeprefix("client_ca_file: ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise WebConfigError(f"{path}: " + "; ".join(problems)) from None
    for user, hashed in cfg.basic_auth_users.items():
        try:
            bcrypt_cost(hashed)
        except ValueError as exc:
            raise WebConfigError(f"{path}: basic_auth_users.{user}: {exc}") from None
    try:
        cfg.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{path}: tls_server_config: {exc}") from None
    return cfg
