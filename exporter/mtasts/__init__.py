"""MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460): the records, the policy, MX matching.

Pure parsers, no network: :mod:`~exporter.mtasts.records` reads the ``_mta-sts`` and
``_smtp._tls`` TXT records and picks the one record senders use out of a TXT RRset;
:mod:`~exporter.mtasts.policy` reads the policy file and matches MX hosts against its ``mx``
patterns. Each parser raises only its own error type (:class:`StsRecordError`,
:class:`TlsRptError`, :class:`PolicyError`, all ``ValueError``).

Hand-written rather than taken from a library: the Python implementations
(postfix-mta-sts-resolver, checkdmarc) parse leniently into dictionaries (any ``key: value`` line,
last duplicate wins, no ABNF), while a monitor must say *why* a strict sender (mox, Go's and
Postfix's strict parsers) would ignore a record or policy. The grammars are small: the ABNF of
RFC 8461 §3.1/§3.2 and RFC 8460 §3, followed to the letter, with the RFC's rule that a repeated
field other than ``mx`` counts only once (the first).
"""

from __future__ import annotations

from exporter.mtasts.policy import (
    MAX_AGE_LIMIT,
    MODES,
    Mode,
    MxPattern,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
)
from exporter.mtasts.records import (
    Discovery,
    StsRecord,
    StsRecordError,
    TlsRptError,
    TlsRptRecord,
    discover_sts,
    discover_tlsrpt,
    parse_sts_record,
    parse_tlsrpt_record,
)

__all__ = [
    "MAX_AGE_LIMIT",
    "MODES",
    "Discovery",
    "Mode",
    "MxPattern",
    "Policy",
    "PolicyError",
    "StsRecord",
    "StsRecordError",
    "TlsRptError",
    "TlsRptRecord",
    "discover_sts",
    "discover_tlsrpt",
    "mx_matches",
    "parse_policy",
    "parse_sts_record",
    "parse_tlsrpt_record",
]
