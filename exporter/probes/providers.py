"""Sending providers: a provider-neutral snapshot of a sending account, and its thresholds.

A sending provider is the API of a service that sends mail for you (today only AWS SES, in
:mod:`exporter.probes.ses`). A provider fetches a :class:`SendingAccount`: its quota, whether it may
send, its enforcement status, its reputation rates and the state of each configured identity.
Each part is optional, since one API call may fail while the others answer; a failed call adds
a line to ``errors`` (the probe then reports ``probe_success 0``) and leaves its part ``None``.

The thresholds below, and the pure functions that apply them, are shared by every provider, so
another provider adds only its ``fetch`` and the mapping of its snapshot to metrics and findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from exporter.findings import CRITICAL, WARNING

QUOTA_WARNING = 0.80
"""Share of the 24-hour quota used from which a warning is raised (inclusive)."""
QUOTA_CRITICAL = 0.95
BOUNCE_WARNING = 0.02
"""Bounce rate from which a warning is raised (inclusive); critical above BOUNCE_CRITICAL."""
BOUNCE_CRITICAL = 0.05
COMPLAINT_WARNING = 0.0005
COMPLAINT_CRITICAL = 0.001

VERIFIED = "SUCCESS"
NOT_FOUND = "NOT_FOUND"
"""Pseudo verification status of an identity the provider does not know at all."""
TRANSIENT_STATUSES = frozenset({"PENDING", "TEMPORARY_FAILURE"})
"""Statuses that may still turn into SUCCESS on their own (a warning, not a critical)."""


@dataclass(frozen=True)
class Quota:
    max_24h_send: float
    """Messages allowed per rolling 24 hours; negative (SES: -1) means unlimited."""
    max_send_rate: float
    sent_last_24h: float

    @property
    def usage(self) -> float | None:
        """Share of the 24-hour quota used (0..1+), None when the quota is unlimited."""
        if self.max_24h_send <= 0 or not math.isfinite(self.max_24h_send):
            return None
        return self.sent_last_24h / self.max_24h_send


@dataclass(frozen=True)
class AccountState:
    sending_enabled: bool | None
    production_access: bool | None
    enforcement_status: str | None


@dataclass(frozen=True)
class RateSample:
    """The latest datapoint of a reputation rate (a ratio, 0 to 1)."""

    value: float
    timestamp: datetime


@dataclass(frozen=True)
class IdentityState:
    name: str
    verification: str
    """SUCCESS, PENDING, FAILED, TEMPORARY_FAILURE, NOT_STARTED, or NOT_FOUND."""
    dkim: str | None
    """DKIM status (same values but NOT_FOUND), None when the provider reports none."""

    @property
    def verified(self) -> bool:
        return self.verification == VERIFIED

    @property
    def dkim_verified(self) -> bool:
        return self.dkim == VERIFIED


@dataclass
class SendingAccount:
    """What one fetch saw; a part is None when its call failed or the provider has no data."""

    quota: Quota | None = None
    account: AccountState | None = None
    bounce_rate: RateSample | None = None
    complaint_rate: RateSample | None = None
    identities: list[IdentityState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)


class SendingProvider(Protocol):
    """A provider's API client for one configured account; ``fetch`` never raises."""

    async def fetch(self) -> SendingAccount: ...


def quota_level(usage: float | None) -> str | None:
    """Severity for a share of the 24-hour quota used (None = no finding)."""
    if usage is None or math.isnan(usage):
        return None
    if usage >= QUOTA_CRITICAL:
        return CRITICAL
    if usage >= QUOTA_WARNING:
        return WARNING
    return None


def rate_level(value: float, warning: float, critical: float) -> str | None:
    """Severity for a reputation rate: warning from ``warning``, critical above ``critical``."""
    if math.isnan(value):
        return None
    if value > critical:
        return CRITICAL
    if value >= warning:
        return WARNING
    return None


def identity_level(verification: str) -> str | None:
    """Severity for an identity's verification status (None = verified)."""
    if verification == VERIFIED:
        return None
    return WARNING if verification in TRANSIENT_STATUSES else CRITICAL


def dkim_level(status: str | None) -> str | None:
    """Severity for an identity's DKIM status: critical only when verification failed."""
    if status == VERIFIED:
        return None
    return CRITICAL if status == "FAILED" else WARNING
