"""The validator of a config: its nameservers, its trust anchors, its zone cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.dnssec.anchors import load_trust_anchors
from exporter.dnssec.validator import Validator
from exporter.net.dnsraw import RawDns

if TYPE_CHECKING:
    from exporter.config import GlobalConfig

MAX_LIFETIME = 5.0
"""A question's lifetime, as the DNS client's (exporter.net.network): at most 5 s, less when the
probes' default timeout is shorter."""


def validator_for(config: GlobalConfig) -> Validator | None:
    """A :class:`Validator` asking the configured nameservers (None with ``dnssec: false``).

    Raises :class:`~exporter.dnssec.anchors.TrustAnchorError` when the anchor file cannot be
    read any more (it was checked when the config was loaded)."""
    if not config.dnssec:
        return None
    anchors = load_trust_anchors(config.dnssec_trust_anchors)
    lifetime = min(MAX_LIFETIME, config.timeout)
    raw = RawDns(config.nameservers, attempt_timeout=min(2.0, lifetime), lifetime=lifetime)
    return Validator(raw.query, anchors, owns=raw)
