"""DNSSEC validated by the exporter itself, from the trust anchors down (see :mod:`.validator`)."""

from exporter.dnssec.anchors import (
    BUILTIN_ANCHORS,
    TrustAnchorError,
    TrustAnchors,
    load_trust_anchors,
    parse_trust_anchors,
)
from exporter.dnssec.model import STATUSES, DnssecUnavailable, Status, Verdict, ZoneState
from exporter.dnssec.resource import validator_for
from exporter.dnssec.validator import Validator

__all__ = [
    "BUILTIN_ANCHORS",
    "STATUSES",
    "DnssecUnavailable",
    "Status",
    "TrustAnchorError",
    "TrustAnchors",
    "Validator",
    "Verdict",
    "ZoneState",
    "load_trust_anchors",
    "parse_trust_anchors",
    "validator_for",
]
