"""The DMARC DNS tree walk (RFC 9989 §4.10): policy discovery and the organizational domain.

RFC 9989 replaces RFC 7489's Public Suffix List with a walk up the DNS:

* the names: the domain itself, then — if it has 8 or more labels — its last 7 labels, else its
  parent, then each parent in turn up to the single-label top; so at most 8 queries
  (:data:`MAX_QUERIES`) however long the name (§4.10 steps 3-7);
* at each name, ``_dmarc.<name>`` TXT: records not starting ``v=DMARC1`` are discarded, and
  several DMARC records at one name are all discarded; a single record with ``psd=n`` or
  ``psd=y`` stops the walk;
* the organizational domain (§4.10.2), over the names that had a record, longest first: the
  one with ``psd=n``; else one label below the one with ``psd=y`` (unless that is the start);
  else the one with the fewest labels; with no record at all, the start itself;
* the policy record (§4.10.1): the domain's own, else the organizational domain's, else the
  public suffix domain's (the ``psd=y`` one); a record not the domain's own applies ``sp`` (or,
  to a domain that does not exist, ``np``) instead of ``p``.

Hand-written: the walk is these few rules over :class:`~exporter.net.dnsclient.DnsClient`
queries (cached per run, so the walks for the domain, its return-path domain and its report
destinations share their common parents); the libraries that implement it (checkdmarc 5.16,
mail-auth) come with their own resolvers. A temporary DNS failure at the domain's own name
raises :class:`~exporter.net.dnsmodel.DnsTempError`: nothing is known. One higher up (SERVFAIL at
``_dmarc.<tld>``) stops the walk there and is kept: the domain's own record still applies (a
receiver needs no parent for it), while what depends on the failed level (the organizational
domain, the record of a domain without its own, the walk of a subdomain) raises it when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.dns.dmarc_record import DmarcRecord, is_dmarc, parse_dmarc

MAX_QUERIES = 8
SHORTCUT_LABELS = 7
"""A name of 8 or more labels is shortened to its last 7 after the first query (§4.10 step 4)."""
MAX_NAME = 253

Role = Literal["domain", "organizational", "public suffix"]


def walk_names(domain: str) -> list[str]:
    """The names a full walk from ``domain`` queries, in order (at most :data:`MAX_QUERIES`)."""
    labels = domain.rstrip(".").lower().split(".")
    names = [".".join(labels)]
    keep = min(len(labels) - 1, SHORTCUT_LABELS)
    while keep >= 1:
        names.append(".".join(labels[-keep:]))
        keep -= 1
    return names


@dataclass(frozen=True)
class Step:
    """One name of the walk and the DMARC records found at ``_dmarc.<name>``."""

    name: str
    records: tuple[str, ...] = ()
    parsed: DmarcRecord | None = None
    """The record when exactly one was found (several are all discarded)."""
    ignored: tuple[str, ...] = ()
    """The other TXT records at the name (receivers discard them), in a stable order."""

    @classmethod
    def of(cls, name: str, texts: list[str]) -> Step:
        records = tuple(t for t in texts if is_dmarc(t))
        others = tuple(sorted(t for t in texts if not is_dmarc(t)))
        return cls(name, records, parse_dmarc(records[0]) if len(records) == 1 else None, others)

    @property
    def psd(self) -> str:
        return self.parsed.psd if self.parsed is not None else "u"

    @property
    def stops(self) -> bool:
        return self.psd in ("y", "n")


@dataclass(frozen=True)
class Applicable:
    """The record that applies to the walk's start, and in what role it was found."""

    step: Step
    role: Role
    record: DmarcRecord


@dataclass(frozen=True)
class TreeWalk:
    """The steps of one walk from ``start``, up to the step that stopped it."""

    start: str
    steps: tuple[Step, ...]
    failure: DnsTempError | None = None
    """The lookup above the first name that could not be answered (the walk stopped there)."""

    @property
    def found(self) -> list[Step]:
        return [s for s in self.steps if s.parsed is not None]

    def _complete(self) -> None:
        failure = self.failure
        if failure is not None:  # a fresh one each time: no traceback piles up on the kept one
            raise DnsTempError(failure.name, failure.rdtype, failure.reason)

    def organizational_domain(self) -> str:
        """RFC 9989 §4.10.2; raises the walk's :attr:`failure` when it stopped short."""
        self._complete()
        found = self.found
        for step in found:
            if step.psd == "n":
                return step.name
            if step.psd == "y" and step.name != self.start:
                return child_towards(self.start, step.name)
        return found[-1].name if found else self.start

    def public_suffix_domain(self) -> str | None:
        """The name whose record says ``psd=y``, if the walk met one."""
        return next((s.name for s in self.found if s.psd == "y"), None)

    def applicable(self) -> Applicable | None:
        """RFC 9989 §4.10.1: the domain's own record, else its organizational domain's, else
        its public suffix domain's; None when no record applies. The domain's own record is
        known without the levels above; any other answer raises the walk's :attr:`failure`."""
        first = self.steps[0] if self.steps else None
        if first is not None and first.name == self.start and first.parsed is not None:
            return Applicable(first, "domain", first.parsed)
        self._complete()
        org = self.organizational_domain()
        for step in self.found:
            if step.name == org and step.parsed is not None:
                return Applicable(step, "organizational", step.parsed)
        for step in self.found:
            if step.psd == "y" and step.parsed is not None:
                return Applicable(step, "public suffix", step.parsed)
        return None

    def below(self) -> TreeWalk:
        """The walk a subdomain of ``start`` without a record of its own would make.

        Every name it queries after the subdomain itself is one this walk queried (or would
        have, had it not stopped at the same record), so no new query is needed."""
        virtual = f"*.{self.start}"
        names = set(walk_names(virtual)[1:])
        steps = (Step(virtual), *(s for s in self.steps if s.name in names))
        return TreeWalk(virtual, steps, self.failure)

    def trail(self) -> str:
        """The walk for people: each name and what was found there."""
        out = []
        for step in self.steps:
            if step.parsed is not None:
                what = f"psd={step.psd}" if step.psd != "u" else "record"
            elif step.records:
                what = f"{len(step.records)} records (all ignored)"
            else:
                what = "none"
            out.append(f"_dmarc.{step.name}: {what}")
        if self.failure is not None:
            out.append(f"{self.failure.name}: could not tell ({self.failure.reason})")
        return " -> ".join(out)


def child_towards(start: str, ancestor: str) -> str:
    """The name one label below ``ancestor`` on the way to ``start`` (its descendant)."""
    labels = start.split(".")
    depth = len(ancestor.split(".")) + 1
    return ".".join(labels[-depth:])


async def walk(dns: DnsClient, domain: str) -> TreeWalk:
    """Walk from ``domain``; raises DnsTempError when the domain's own name cannot be
    answered, and keeps a later failure in :attr:`TreeWalk.failure` (the walk stops there)."""
    start = domain.rstrip(".").lower()
    steps: list[Step] = []
    for name in walk_names(start):
        qname = f"_dmarc.{name}"
        if len(qname) > MAX_NAME:  # no such name can exist in the DNS
            steps.append(Step(name))
            continue
        try:
            answer = await dns.query(qname, "TXT")
        except DnsTempError as exc:
            if not steps:
                raise
            return TreeWalk(start, tuple(steps), exc)
        step = Step.of(name, answer.texts())
        steps.append(step)
        if step.stops:
            break
    return TreeWalk(start, tuple(steps))


async def organizational_domain(dns: DnsClient, domain: str) -> str:
    return (await walk(dns, domain)).organizational_domain()
