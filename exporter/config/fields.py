"""Field types and bases of the config models: durations, names, addresses, secrets.

Standard library and pydantic only (no DNS code): checking an address here is parsing it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    model_validator,
)

from exporter import redact
from exporter.config.files import read_regular_file
from exporter.idn import to_alabels
from exporter.net.addr import parse_nameserver, split_host_port

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION = 365 * 86400.0
MAX_SECRET_BYTES = 64 * 1024
"""Of a ``password_file`` (with its final newline): a password, a token, a key."""


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '500ms' or a number of seconds -> seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer of 309 digits or more
            raise ValueError("duration must be at most 365d") from None
    elif isinstance(value, str):
        text = value.strip()
        pos = 0
        seconds = 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"invalid duration {value!r}: expected a duration like 30s, 5m or 1h")
    else:
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if seconds <= 0:
        raise ValueError("duration must be greater than zero")
    # NaN, infinity and centuries pass "> 0" but crash the scheduler's date arithmetic.
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError("duration must be at most 365d")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def check_domain(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a domain name")
    name = to_alabels(value.strip()).rstrip(".").lower()
    if not name or len(name) > 253:
        raise ValueError(f"invalid domain name {value!r}")
    for label in name.split("."):
        if (
            not label
            or len(label) > 63
            or not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?", label)
        ):
            raise ValueError(f"invalid domain name {value!r}")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValueError(f"expected a domain name, got the IP address {value!r}")


DomainName = Annotated[str, BeforeValidator(check_domain)]


def _check_ip(value: Any) -> str:
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        # fe80::1%eth0: a zone names an interface of this machine, meaningless to others.
        raise ValueError(
            f"{value!r} is a scoped IPv6 address: give the address receivers see, without"
            f" %{addr.scope_id}"
        )
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # One spelling on every Python (3.13 changed str() of these to the dotted form).
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


IPAddress = Annotated[str, BeforeValidator(_check_ip)]


def _check_nameserver(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected 'host' or 'host:port' with an IP address")
    parse_nameserver(value)
    return value.strip()


Nameserver = Annotated[str, BeforeValidator(_check_nameserver)]


def _check_host_port(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected host:port")
    host, port = split_host_port(value)
    if not host.isascii():  # an IDN host: its A-label is what DNS, SNI and labels use
        return f"{to_alabels(host)}:{port}"
    return value.strip()


HostPort = Annotated[str, BeforeValidator(_check_host_port)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(Model):
    """Mixin for sections with a password given as ``password_env`` or ``password_file``."""

    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if self.password_env and self.password_file:
            raise ValueError("give only one of password_env and password_file")
        return self

    @property
    def has_secret(self) -> bool:
        return bool(self.password_env or self.password_file)

    def read_secret(self, where: str) -> str | None:
        return read_secret(self.password_env, self.password_file, where)


def read_secret(env: str | None, file: str | None, where: str) -> str | None:
    """Read a secret from an environment variable or a file; the value never enters a message,
    and is registered with :mod:`exporter.redact` so that no output shows it, in any form."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{where}: environment variable {env} is not set")
        redact.add(value)
        return value
    if file:
        try:
            raw = read_regular_file(file, MAX_SECRET_BYTES).rstrip(b"\r\n")
        except OSError as exc:
            raise ValueError(f"{where}: cannot read password_file {file}: {exc.strerror}") from None
        redact.add(raw.decode("utf-8", "surrogateescape"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # its message would show a byte of the secret and where
            raise ValueError(f"{where}: password_file {file} is not UTF-8 text") from None
    return None


Security = Literal["starttls", "tls", "none"]


def _check_mail_host(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a host name or IP address")
    host = value.strip().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return check_domain(host)


MailHost = Annotated[str, BeforeValidator(_check_mail_host)]


def _check_address(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+", value):
        raise ValueError(f"expected a mail address like user@example.com, got {value!r}")
    return value


MailAddress = Annotated[str, BeforeValidator(_check_address)]


def _check_folder(value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        raise ValueError(
            "expected a folder name in printable ASCII (e.g. INBOX, Junk, [Gmail]/Spam)"
        )
    return value


Folder = Annotated[str, BeforeValidator(_check_folder)]


ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def check_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
        raise ValueError(f"invalid URL {value!r}: expected http(s)://host[:port][/path]")
    return value


def no_duplicates(values: list[str], section: str, key: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{section}: duplicate {key} {value!r}")
        seen.add(value)


def check_name(value: str) -> str:
    """A target name that goes into mail headers, IMAP searches and labels."""
    if not re.fullmatch(r"[A-Za-z0-9._:@+-]{1,64}", value):
        raise ValueError("name must be 1-64 characters of letters, digits and . _ : @ + -")
    return value
