"""Transport security sections: ``tls`` targets and ``mta_sts``."""

from __future__ import annotations

import re

from pydantic import (
    model_validator,
)

from exporter.config.fields import DomainName, Duration, HostPort, IPAddress, Model, SecretRef
from exporter.net.addr import split_host_port


class TlsTargetConfig(SecretRef):
    """One ``tls`` entry: a ``host:port`` target, or ``mx_of`` (every MX host, port 25).

    ``starttls`` defaults to true except on port 465 (implicit TLS). ``username`` with
    ``password_env``/``password_file`` adds an SMTP AUTH check (only over a valid certificate).
    ``ehlo_name`` is the name sent in EHLO (default: this machine's host name, no DNS lookup).
    """

    target: HostPort | None = None
    mx_of: DomainName | None = None
    starttls: bool | None = None
    server_name: DomainName | IPAddress | None = None
    ca_file: str | None = None
    username: str | None = None
    ehlo_name: str | None = None
    dane: bool | None = None
    """Check TLSA records (DANE); default on for ``mx_of``, off for ``target``."""
    interval: Duration | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TlsTargetConfig:
        if (self.target is None) == (self.mx_of is None):
            raise ValueError("give exactly one of target and mx_of")
        if self.mx_of is not None:
            for key in ("server_name", "username", "password_env", "password_file"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} cannot be used with mx_of (it probes every MX host)")
            if self.starttls is False:
                raise ValueError("mx_of probes port 25 with STARTTLS; starttls cannot be false")
        if bool(self.username) != self.has_secret:
            raise ValueError("the SMTP AUTH check needs both username and password_env/_file")
        ehlo = self.ehlo_name
        if ehlo is not None and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:_]+", ehlo):
            raise ValueError(f"invalid ehlo_name {self.ehlo_name!r}")
        return self

    @property
    def use_dane(self) -> bool:
        return self.dane if self.dane is not None else self.mx_of is not None

    @property
    def use_starttls(self) -> bool:
        """STARTTLS unless disabled, or unset on port 465 (implicit TLS)."""
        if self.starttls is not None:
            return self.starttls
        return self.target is None or split_host_port(self.target)[1] != 465


class MtaStsConfig(Model):
    """The ``mta_sts`` probe: enabled by the section's presence (``mta_sts: {}`` = defaults), one
    target per ``domains[]`` entry. ``ca_file``: extra CAs (PEM) trusted for the policy hosts,
    besides the system's roots."""

    interval: Duration | None = 3600.0
    timeout: Duration | None = None
    ca_file: str | None = None
