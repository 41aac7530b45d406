"""Trust anchors: the DS or DNSKEY records of the root zone that every chain of trust starts from.

Built in: the IANA root key-signing keys KSK-2017 (key tag 20326) and KSK-2024 (key tag 38696),
as DS records. Their data is IANA's ``root-anchors.xml``
(https://data.iana.org/root-anchors/root-anchors.xml), read from the copy kept in the public
repository takonomura/iana-root-files, ``data/trust-anchors/root-anchors.xml`` at commit
4af370f659bc1d054e7e6c3b4da8b27eb01df8de (KeyDigest ids Klajeyz and Kmyv6jo, digest type 2,
SHA-256); tests/dnssec/test_anchors.py recomputes both digests from the two root DNSKEYs
published in the root zone.

``global.dnssec_trust_anchors`` replaces them with a file of zone-file lines for "." (DS or
DNSKEY, with or without TTL and class; comments with ``;``), the format of unbound's
``root.key``, of Debian's ``dns-root-data`` files, and of ``keymgr ZONE ds``.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import cast

import dns.dnssec
import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rdtypes.dnskeybase
import dns.rrset
import dns.zonefile

from exporter.config.files import read_regular_file

DS = dns.rdtypes.ANY.DS.DS
DNSKEY = dns.rdtypes.ANY.DNSKEY.DNSKEY

BUILTIN_ANCHORS = """\
; IANA root zone KSK-2017 and KSK-2024 (root-anchors.xml)
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
"""

MAX_ANCHOR_FILE = 1 << 20


class TrustAnchorError(ValueError):
    """A trust anchor file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class TrustAnchors:
    """The DS and DNSKEY records a root DNSKEY must match to be trusted."""

    ds: tuple[DS, ...]
    dnskeys: tuple[DNSKEY, ...]
    source: str

    def trusts(self, key: DNSKEY) -> bool:
        """Whether ``key`` (a DNSKEY of ".") is one of the anchors or matches an anchor's DS."""
        if not key.flags & dns.rdtypes.dnskeybase.Flag.ZONE:
            return False
        if key in self.dnskeys:
            return True
        return any(ds_matches(dns.name.root, ds, key) for ds in self.ds)

    def describe(self) -> str:
        tags = sorted({ds.key_tag for ds in self.ds} | {dns.dnssec.key_id(k) for k in self.dnskeys})
        return f"{self.source} (key tags {', '.join(str(t) for t in tags)})"


def ds_matches(owner: dns.name.Name, ds: DS, key: DNSKEY) -> bool:
    """Whether ``ds`` is the digest of ``key`` at ``owner`` (False for digests not supported)."""
    if ds.algorithm != key.algorithm or ds.key_tag != dns.dnssec.key_id(key):
        return False
    try:
        made = dns.dnssec.make_ds(owner, key, ds.digest_type, validating=True)
    except (dns.exception.UnsupportedAlgorithm, dns.exception.DeniedByPolicy):
        return False
    return made.digest == ds.digest


def parse_trust_anchors(text: str, source: str) -> TrustAnchors:
    """Read DS/DNSKEY zone-file lines for ".". Raises :class:`TrustAnchorError`."""
    try:
        rrsets = _read(text)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        message = re.sub(r"^<input>:\d+: ", "", str(exc))
        line = _culprit_line(text)
        where = f"{source}:{line}" if line else source
        raise TrustAnchorError(f"{where}: {message}") from None
    ds: list[DS] = []
    keys: list[DNSKEY] = []
    for rrset in rrsets:
        what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
        if rrset.name != dns.name.root:
            raise TrustAnchorError(f"{source}: {what}: only anchors for the root zone '.' are used")
        if rrset.rdclass != dns.rdataclass.IN:
            raise TrustAnchorError(f"{source}: {what}: class must be IN")
        if rrset.rdtype == dns.rdatatype.DS:
            ds.extend(cast(DS, rd) for rd in rrset)
        elif rrset.rdtype == dns.rdatatype.DNSKEY:
            keys.extend(cast(DNSKEY, rd) for rd in rrset)
        else:
            raise TrustAnchorError(f"{source}: {what}: a trust anchor is a DS or DNSKEY record")
    if not ds and not keys:
        raise TrustAnchorError(f"{source}: no DS or DNSKEY record for '.'")
    return TrustAnchors(tuple(ds), tuple(keys), source)


def _read(text: str) -> list[dns.rrset.RRset]:
    return dns.zonefile.read_rrsets(
        text, rdclass=None, default_ttl=0, origin=dns.name.root, relativize=False
    )


def _culprit_line(text: str, limit: int = 200) -> int | None:
    """The first line at which the text stops parsing (dnspython reports the line its tokenizer
    is on, often the next one): the shortest failing prefix that is not merely cut inside a
    parenthesized record."""
    lines = text.splitlines()
    for count in range(1, min(len(lines), limit) + 1):
        try:
            _read("\n".join(lines[:count]))
        except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
            if "unbalanced" in str(exc) or "unexpected end" in str(exc):
                continue
            return count
    return None


def load_trust_anchors(path: str | None) -> TrustAnchors:
    """The anchors in ``path``, or the built-in IANA root anchors when ``path`` is None."""
    if path is None:
        return parse_trust_anchors(BUILTIN_ANCHORS, "built-in IANA root anchors")
    try:
        # Never blocks: a FIFO here held --config.check, or a reload, until a writer came.
        raw = read_regular_file(path, MAX_ANCHOR_FILE)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise TrustAnchorError(f"{path}: larger than {MAX_ANCHOR_FILE} bytes") from None
        raise TrustAnchorError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TrustAnchorError(f"{path}: not UTF-8 text") from None
    return parse_trust_anchors(text, path)
