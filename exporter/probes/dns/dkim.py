"""DKIM sub-check of the ``dns`` probe: each configured selector's public key (RFC 6376 §3.6.1).

Parses the key record's tags, recognizes a revoked key (empty ``p=``), loads the key with
``cryptography`` to learn its real size (RSA modulus from the DER key, SubjectPublicKeyInfo or
PKCS#1; ed25519 per RFC 8463), and applies RFC 8301: RSA keys under 1024 bits are invalid,
under 2048 a warning; over 4096 a warning too (verifiers need only handle 1024-4096 bits).

Size bounds: a ``p=`` longer than :data:`MAX_P_CHARS` is refused before it is decoded, and a key
over :data:`MAX_KEY_BITS` is invalid (OpenSSL refuses to verify with an RSA modulus over 16,384
bits, ``OPENSSL_RSA_MAX_MODULUS_BITS``, so no receiver using it can). A target's DNS decides what
we parse; these bounds keep that work small whatever it publishes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from exporter.config import DomainConfig
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.common import DnsContext, checksum, dns_failure, gather_merged
from exporter.results import Finding, ProbeResult, sample

MIN_BITS = 1024
GOOD_BITS = 2048
MAX_VERIFIED_BITS = 4096
"""RFC 8301 §3.2: verifiers MUST be able to validate keys of 1024 to 4096 bits; no more."""
MAX_KEY_BITS = 16384
MAX_P_CHARS = 4096
"""A 16,384-bit RSA key is 2,784 base64 characters as SubjectPublicKeyInfo; this leaves room for
a large exponent, never for a key over :data:`MAX_KEY_BITS`."""


class DkimKeyError(ValueError):
    """The key record cannot be used."""


@dataclass(frozen=True)
class DkimKey:
    key_type: str
    bits: int
    revoked: bool
    testing: bool


def parse_tags(text: str) -> dict[str, str]:
    """RFC 6376 §3.2 tag-list; raises DkimKeyError on malformed or duplicate tags."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or not name.replace("_", "a").isalnum():
            raise DkimKeyError(f"'{part.strip()}' is not a tag=value pair")
        if name in tags:
            raise DkimKeyError(f"tag {name} appears twice")
        tags[name] = value.strip()
    return tags


@lru_cache(maxsize=4096)
def parse_key(text: str) -> DkimKey:
    """Parse a DKIM key record and load its key; raise DkimKeyError when it is unusable.

    Kept by text (the result is immutable): a key record rarely changes between runs, and
    loading an RSA key is most of the sub-check's CPU."""
    tags = parse_tags(text)
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        raise DkimKeyError("v= must be DKIM1 and the first tag")
    if "p" not in tags:
        raise DkimKeyError("the required p= tag is missing")
    key_type = tags.get("k", "rsa").strip().lower()
    flags = {f.strip() for f in tags.get("t", "").split(":")}
    testing = "y" in flags
    data = "".join(tags["p"].split())
    if not data:
        return DkimKey(key_type, 0, revoked=True, testing=testing)
    if len(data) > MAX_P_CHARS:
        raise DkimKeyError(
            f"p= is {len(data)} characters: a key over {MAX_KEY_BITS} bits, which no verifier uses"
        )
    try:
        der = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DkimKeyError("p= is not valid base64") from None
    if key_type == "ed25519":
        if len(der) != 32:
            raise DkimKeyError(f"an ed25519 key is 32 bytes, this one is {len(der)}")
        ed25519.Ed25519PublicKey.from_public_bytes(der)
        return DkimKey(key_type, 256, revoked=False, testing=testing)
    if key_type != "rsa":
        raise DkimKeyError(f"unknown key type k={key_type}")
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # UnsupportedAlgorithm: well-formed DER naming an algorithm OpenSSL does not know.
        raise DkimKeyError("p= does not hold a DER-encoded RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise DkimKeyError("k=rsa but p= holds a non-RSA key")
    if key.key_size > MAX_KEY_BITS:
        raise DkimKeyError(
            f"RSA key of {key.key_size} bits: over {MAX_KEY_BITS}, no verifier uses it"
        )
    return DkimKey(key_type, key.key_size, revoked=False, testing=testing)


async def _selector(domain: str, selector: str, ctx: DnsContext) -> ProbeResult:
    result = ProbeResult()
    qname = f"{selector}._domainkey.{domain}"
    try:
        answer = await ctx.dns.query(qname, "TXT")
    except DnsTempError as exc:
        return dns_failure(f"DKIM selector {selector}", exc)
    texts = answer.texts()
    # A record without p= and v= is not a key record (some hosts answer with unrelated TXT).
    keys = [t for t in texts if "p=" in t.replace(" ", "") or t.strip().startswith("v=DKIM1")]
    valid = False
    bits: int | None = None
    if not keys:
        result.findings.append(
            Finding("dkim_key_missing", subject=selector, evidence=f"no DKIM key at {qname}")
        )
    elif len(keys) > 1:
        result.findings.append(
            Finding("dkim_multiple_records", subject=selector, evidence=f"{len(keys)} at {qname}")
        )
    else:
        result.details[f"dkim.{selector}.record"] = keys[0]
        try:
            key = parse_key(keys[0])
        except DkimKeyError as exc:
            result.findings.append(Finding("dkim_key_invalid", subject=selector, evidence=str(exc)))
        else:
            bits = key.bits
            if key.revoked:
                result.findings.append(
                    Finding("dkim_key_revoked", subject=selector, evidence=f"empty p= at {qname}")
                )
            elif key.key_type == "rsa" and key.bits < MIN_BITS:
                result.findings.append(
                    Finding("dkim_key_invalid", subject=selector,
                            evidence=f"RSA key of {key.bits} bits (RFC 8301 requires 1024+)")
                )  # fmt: skip
            else:
                valid = True
                if key.key_type == "rsa" and key.bits < GOOD_BITS:
                    result.findings.append(
                        Finding("dkim_key_weak", subject=selector,
                                evidence=f"RSA key of {key.bits} bits")
                    )  # fmt: skip
                elif key.key_type == "rsa" and key.bits > MAX_VERIFIED_BITS:
                    result.findings.append(
                        Finding("dkim_key_too_long", subject=selector,
                                evidence=f"RSA key of {key.bits} bits (RFC 8301: 1024-4096)")
                    )  # fmt: skip
            if key.testing:
                result.findings.append(Finding("dkim_testing_mode", subject=selector))
    if keys:
        result.samples.append(checksum(domain, f"dkim:{selector}", keys))
    result.samples.append(sample("dkim_key_valid", valid, domain=domain, selector=selector))
    if bits is not None:
        result.samples.append(sample("dkim_key_bits", bits, domain=domain, selector=selector))
    return result


async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    return await gather_merged(_selector(domain.domain, s, ctx) for s in domain.dkim_selectors)
