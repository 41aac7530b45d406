"""``--web.config.file``: TLS and basic auth for the HTTP server, in the Prometheus
exporter-toolkit format (``tls_server_config``, ``basic_auth_users`` with bcrypt hashes).

Supported keys: ``tls_server_config.cert_file``, ``key_file``, ``client_auth_type``
(``NoClientCert``, ``RequireAnyClientCert``, ``VerifyClientCertIfGiven``,
``RequireAndVerifyClientCert``), ``client_ca_file``, ``min_version`` (``TLS12``/``TLS13``), and
``basic_auth_users``. Auth applies to every endpoint. Verified credentials are cached (by a hash
of the header) so a scrape does not pay bcrypt's cost every time, as the exporter-toolkit does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.config import format_loc


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

    def auth_middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        users = {u: h.encode() for u, h in self.basic_auth_users.items()}
        verified: set[bytes] = set()

        @web.middleware
        async def basic_auth(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            if _check(header, users, verified):
                return await handler(request)
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="deliverability-exporter"'},
            )

        return basic_auth


_DUMMY_HASH = b"$2b$10$6iYuF2eq9qQdYX3EUQVHoeOAk4.ApgOt.ht9cs6y0t2vgPguB1dOi"
"""bcrypt of a password no one uses (cost 10, as ``htpasswd -B`` makes by default)."""


def _check(header: str, users: dict[str, bytes], verified: set[bytes]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    digest = hashlib.sha256(header.encode()).digest()
    if any(hmac.compare_digest(digest, v) for v in verified):
        return True
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    hashed = users.get(user)
    if not sep:
        return False
    try:
        # An unknown user pays for a bcrypt check too, so timing does not reveal which user
        # names exist (as the exporter-toolkit does).
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
    except ValueError:
        return False
    if ok and len(verified) < 1024:
        verified.add(digest)
    return ok


def load_web_config(path: str) -> WebConfig:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise WebConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: invalid YAML: {exc}") from None
    try:
        cfg = WebConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{format_loc(tuple(e['loc']))}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise WebConfigError(f"{path}: " + "; ".join(problems)) from None
    for user, hashed in cfg.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash")
    try:
        cfg.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{path}: tls_server_config: {exc}") from None
    return cfg
