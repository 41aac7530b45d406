"""Redis URLs in the config: what is accepted, and how one is shown without its secrets.

Standard library only (the config imports it). A URL is never echoed in an error: it may carry
a password (the config refuses one, but a message must not repeat it even then).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    """Raise ValueError (with a message that does not contain the URL) unless ``url`` is a
    ``redis://``, ``rediss://`` or ``unix://`` URL without a password nor query parameters."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("invalid redis_url: expected redis://host[:port][/db]") from None
    if parts.scheme not in SCHEMES:
        raise ValueError("redis_url must start with redis://, rediss:// or unix://")
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise ValueError("put the Redis password in password_env or password_file, not redis_url")
    unix_db = parts.scheme == "unix" and re.fullmatch(r"db=\d{1,5}", parts.query)
    if parts.query and not unix_db:
        # redis-py's from_url lets the query override what the probe sets: ssl_cert_reqs=none
        # (no certificate check), ssl_ca_certs (a file read on the event loop), max_connections,
        # the timeouts. The config has keys for what is needed.
        raise ValueError(
            "redis_url takes no query parameters (TLS: ca_file; deadlines: timeout)"
            + ("; the database of a unix:// URL is ?db=N" if parts.scheme == "unix" else "")
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// redis_url needs the socket's path")
        return
    if not parts.hostname:
        raise ValueError("redis_url has no host")
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError("the path of redis_url is the database number, e.g. /0")


def display_redis_url(url: str) -> str:
    """The URL as shown in messages: scheme, host, port and database; no user, no query."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{db}"
