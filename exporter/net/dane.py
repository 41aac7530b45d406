"""DANE: TLSA records matched against the certificate chain a server presents (RFC 6698, RFC 7671,
RFC 7672 for SMTP).

Only the DANE usages count: DANE-EE (3) matches the leaf certificate, DANE-TA (2) a certificate of
the presented chain that the leaf chains to (issuer by issuer, signatures checked), or, for a
``2 1 0`` record, the full public key of an issuer the server left out (RFC 7671 §5.2.2). The
PKIX usages 0 and 1 are ignored: SMTP senders must ignore them (RFC 7672 §3.1.3), and elsewhere
they would only add to the Web PKI check the TLS probe makes anyway. Selectors: the whole
certificate (0) or its SubjectPublicKeyInfo (1); matching types: exact (0), SHA-256 (1),
SHA-512 (2). Records with other values are unusable and ignored (RFC 6698 §4.1).

With DANE-EE the certificate's names and dates do not matter to a DANE sender (RFC 7672 §3.1.1):
:attr:`DaneResult.ee_matched` says so, for the status page. Why hand-written: no maintained
Python library matches TLSA records against a chain; the hashing and the signature checks are
``hashlib`` and ``cryptography``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import dns.rdtypes.ANY.TLSA
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa


class Usage(IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


SELECTORS = (0, 1)
MATCHING_TYPES = (0, 1, 2)


@dataclass(frozen=True)
class Tlsa:
    """One TLSA record: certificate usage, selector, matching type, association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @classmethod
    def from_rdata(cls, rdata: dns.rdtypes.ANY.TLSA.TLSA) -> Tlsa:
        return cls(rdata.usage, rdata.selector, rdata.mtype, rdata.cert)

    @property
    def usable(self) -> bool:
        return (
            self.usage in (Usage.DANE_TA, Usage.DANE_EE)
            and self.selector in SELECTORS
            and self.mtype in MATCHING_TYPES
        )

    def to_text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    def short(self) -> str:
        """``3 1 1 9f3c…`` for findings: enough of the data to tell records apart."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()[:16]}"


def tlsa_name(host: str, port: int) -> str:
    """Where the TLSA records of a TLS service live (RFC 6698 §3)."""
    return f"_{port}._tcp.{host.rstrip('.')}."


def selected(cert: x509.Certificate, selector: int) -> bytes:
    """The DER bytes a selector picks: the whole certificate (0) or its public key (1)."""
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def digest(raw: bytes, mtype: int) -> bytes:
    """Association data for a matching type: exact (0), SHA-256 (1), SHA-512 (2)."""
    if mtype == 1:
        return hashlib.sha256(raw).digest()
    if mtype == 2:
        return hashlib.sha512(raw).digest()
    return raw


def association(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    """The association data a TLSA record with this selector and matching type has for
    ``cert`` (what a zone operator publishes)."""
    return digest(selected(cert, selector), mtype)


def matches(record: Tlsa, cert: x509.Certificate) -> bool:
    """Whether ``record``'s selector and matching type applied to ``cert`` give its data."""
    if record.selector not in SELECTORS or record.mtype not in MATCHING_TYPES:
        return False
    return association(cert, record.selector, record.mtype) == record.data


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def issuers(chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of the presented chain the leaf (``chain[0]``) chains to, nearest first:
    each one issued (and signed) the previous; certificates that do not are left out."""
    if not chain:
        return []
    path: list[x509.Certificate] = []
    current = chain[0]
    rest = list(chain[1:])
    while rest and current.subject != current.issuer:
        nxt = next((c for c in rest if _issued_by(current, c)), None)
        if nxt is None:
            break
        path.append(nxt)
        rest.remove(nxt)
        current = nxt
    return path


def _signed_by_key(cert: x509.Certificate, spki: bytes) -> bool:
    """Whether ``cert`` was signed by the public key in the DER SubjectPublicKeyInfo ``spki``."""
    try:
        key = serialization.load_der_public_key(spki)
        algorithm = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def record_matches(record: Tlsa, chain: Sequence[x509.Certificate]) -> bool:
    """Whether one usable record matches the presented chain (leaf first)."""
    if not chain or not record.usable:
        return False
    if record.usage == Usage.DANE_EE:
        return matches(record, chain[0])
    path = issuers(chain)
    if any(matches(record, c) for c in path):
        return True
    if record.selector == 1 and record.mtype == 0:
        top = path[-1] if path else chain[0]
        return _signed_by_key(top, record.data)
    return False


@dataclass(frozen=True)
class DaneResult:
    """The usable records and those that matched the presented chain."""

    usable: tuple[Tlsa, ...]
    matched: tuple[Tlsa, ...]

    @property
    def valid(self) -> bool | None:
        """True when a usable record matches, False when none does, None without usable ones."""
        if not self.usable:
            return None
        return bool(self.matched)

    @property
    def ee_matched(self) -> bool:
        """A DANE-EE record matched: senders ignore the certificate's names and dates."""
        return any(r.usage == Usage.DANE_EE for r in self.matched)

    @property
    def single_ee(self) -> bool:
        """Exactly one usable record and it is DANE-EE: with no record for the next key
        published beside it, the next certificate or key change breaks DANE delivery."""
        return len(self.usable) == 1 and self.usable[0].usage == Usage.DANE_EE


def check(records: Iterable[Tlsa], chain: Sequence[x509.Certificate]) -> DaneResult:
    """Match every usable record against the chain (leaf first)."""
    usable = tuple(dict.fromkeys(r for r in records if r.usable))
    matched = tuple(r for r in usable if record_matches(r, chain))
    return DaneResult(usable, matched)
