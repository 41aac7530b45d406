"""The DMARC policy record (RFC 9989 §4.7-4.8): its tags, parsed and checked.

Hand-written: the grammar is a dozen ``tag=value`` pairs, and the libraries that parse it
(checkdmarc, parsedmarc) bring a resolver, a Public Suffix List and their own notion of which
problems are fatal; here each problem is kept as text for the finding that reports it.

RFC 9989 changes from RFC 7489: ``psd`` (public suffix domain: ``y``, ``n`` or ``u``), ``np``
(the policy for non-existent subdomains) and ``t`` (test mode) are new; ``pct``, ``rf`` and ``ri``
are removed (still read here: receivers on RFC 7489 honour them); unknown tags are ignored; a
record without ``p`` acts as ``p=none``; an invalid ``p``, ``sp`` or ``np`` makes receivers act as
if the record said ``p=none`` when it has a valid ``rua``, and ignore it otherwise (§4.10.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from exporter.mtasts.policy import is_hostname

POLICIES = ("none", "quarantine", "reject")
STRENGTH = {p: i for i, p in enumerate(POLICIES)}
REMOVED_TAGS = ("pct", "rf", "ri")
"""Tags of RFC 7489 that RFC 9989 removed."""

# The tag name is an ABNF string literal, so case-insensitive (RFC 5234 §2.3): "V=DMARC1" is a
# DMARC record; the value is spelled out byte by byte (%x44 %x4d ...), so "dmarc1" is not.
_V_DMARC1 = re.compile(r"^\s*[vV]\s*=\s*DMARC1\s*(;|$)")
MAILTO = re.compile(r"^mailto:([^@!\s]+)@([^!\s]+?)(![0-9]+[kmgt]?)?$", re.IGNORECASE)
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:\S+$", re.IGNORECASE)


def valid_uri(uri: str) -> bool:
    """A DMARC URI receivers can send to: a ``mailto:`` needs one address whose host is a host
    name of two labels or more (a final dot allowed); other schemes only URI syntax."""
    m = MAILTO.match(uri)
    if m is not None:
        return is_hostname(m.group(2).removesuffix("."), labels=2)
    return _URI.match(uri) is not None and not uri.lower().startswith("mailto:")


class DmarcSyntaxError(ValueError):
    """The text is not a DMARC record at all (it does not start with ``v=DMARC1``)."""


@dataclass
class DmarcRecord:
    """A parsed DMARC record; ``problems`` lists tags receivers ignore or replace by defaults."""

    text: str
    tags: dict[str, str]
    policy: str | None
    """``p``: None when present but invalid; ``none`` when absent (RFC 9989 §4.7)."""
    subdomain_policy: str | None
    """``sp`` as written (None when absent or invalid)."""
    nonexistent_policy: str | None = None
    """``np`` as written (None when absent or invalid)."""
    psd: str = "u"
    testing: bool = False
    pct: int = 100
    rua: list[str] = field(default_factory=list)
    ruf: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    policy_problem: str | None = None
    """An invalid ``p``, ``sp`` or ``np``: receivers then act as ``p=none`` (with a valid rua)
    or ignore the record (without)."""
    removed: list[str] = field(default_factory=list)
    """Removed RFC 7489 tags present in the record (``pct``, ``rf``, ``ri``)."""
    adkim: str = "r"
    aspf: str = "r"

    @property
    def usable(self) -> bool:
        """Receivers apply the record (with its own policy or, after a bad p/sp/np, as none)."""
        return self.policy_problem is None or bool(self.rua)

    def effective(self, tag: str) -> str:
        """The policy receivers take from ``p`` (``sp``, ``np``) after the fallbacks of §4.7:
        ``np`` falls back to ``sp`` then ``p``; ``sp`` to ``p``; a record with an invalid policy
        tag acts as ``p=none`` altogether."""
        if self.policy_problem is not None or self.policy is None:
            return "none"
        if tag == "np":
            return self.nonexistent_policy or self.subdomain_policy or self.policy
        if tag == "sp":
            return self.subdomain_policy or self.policy
        return self.policy


def is_dmarc(text: str) -> bool:
    return bool(_V_DMARC1.match(text))


def _tags(text: str, problems: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            problems.append(f"'{part}' is not a tag=value pair")
            continue
        if name in tags:
            problems.append(f"tag {name} appears twice")
            continue
        tags[name] = value.strip()
    return tags


def parse_dmarc(text: str) -> DmarcRecord:
    """Parse a DMARC TXT record; raise DmarcSyntaxError when it is not DMARC at all."""
    if not is_dmarc(text):
        raise DmarcSyntaxError("the record does not start with v=DMARC1")
    problems: list[str] = []
    tags = _tags(text, problems)
    rec = DmarcRecord(text=text, tags=tags, policy=None, subdomain_policy=None, problems=problems)
    p = tags.get("p")
    if p is None:
        rec.policy = "none"
    elif p.lower() in POLICIES:
        rec.policy = p.lower()
    else:
        rec.policy_problem = f"p={p} is not none, quarantine or reject"
    for tag, attr in (("sp", "subdomain_policy"), ("np", "nonexistent_policy")):
        value = tags.get(tag)
        if value is None:
            continue
        if value.lower() in POLICIES:
            setattr(rec, attr, value.lower())
        elif rec.policy_problem is None:
            rec.policy_problem = f"{tag}={value} is not none, quarantine or reject"
    _flags(rec, tags, problems)
    rec.removed = [t for t in REMOVED_TAGS if t in tags]
    if "pct" in tags:
        pct = tags["pct"]
        if pct.isascii() and pct.isdigit() and 0 <= int(pct) <= 100:
            rec.pct = int(pct)
        else:
            problems.append(f"pct={pct} is not an integer from 0 to 100")
    if "fo" in tags:
        opts = [o.strip() for o in tags["fo"].split(":")]
        if not opts or any(o not in ("0", "1", "d", "s") for o in opts):
            problems.append(f"fo={tags['fo']} must be 0, 1, d or s, separated by ':'")
    for tag in ("rua", "ruf"):
        if tag not in tags:
            continue
        uris = [u.strip() for u in tags[tag].split(",") if u.strip()]
        good = [u for u in uris if valid_uri(u)]
        problems.extend(f"{tag} URI {bad!r} is not valid" for bad in uris if bad not in good)
        if not uris:
            problems.append(f"{tag}= is empty")
        setattr(rec, tag, good)
    return rec


def _flags(rec: DmarcRecord, tags: dict[str, str], problems: list[str]) -> None:
    """The one-letter tags: adkim, aspf, psd, t (an invalid value is replaced by the default)."""
    for tag in ("adkim", "aspf"):
        if tag in tags:
            if tags[tag].lower() in ("r", "s"):
                setattr(rec, tag, tags[tag].lower())
            else:
                problems.append(f"{tag}={tags[tag]} is not r or s")
    if "psd" in tags:
        if tags["psd"].lower() in ("y", "n", "u"):
            rec.psd = tags["psd"].lower()
        else:
            problems.append(f"psd={tags['psd']} is not y, n or u")
    if "t" in tags:
        if tags["t"].lower() in ("y", "n"):
            rec.testing = tags["t"].lower() == "y"
        else:
            problems.append(f"t={tags['t']} is not y or n")
