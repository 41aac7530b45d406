"""The config's field types: durations, domain names, addresses, mail hosts and folders, the
strict base model every section derives from, and secret references (read only when needed, their
values never in a message). :mod:`exporter.config` builds the sections from them.

Kept apart from the sections so that module stays readable in one sitting (and within the
project's module size); everything here is re-exported by :mod:`exporter.config`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from exporter.net.addr import parse_nameserver, split_host_port

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION = 365 * 86400.0


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '500ms' or a number of seconds -> seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
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
    name = value.strip().rstrip(".").lower()
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
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


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
    split_host_port(value)
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
    """Read a secret from an environment variable or a file; the value never enters a message."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{where}: environment variable {env} is not set")
        return value
    if file:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{where}: cannot read password_file {file}: {exc.strerror}") from None
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
