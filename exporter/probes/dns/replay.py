"""The ``dns`` probe's memory of each domain's last run: its questions, its answers, its result.

A domain's DNS rarely changes between two runs, yet judging it (SPF analysis and check_host()
for every sending IP, the DMARC tree walk, DKIM keys, the bulk-sender rules, the baseline, the
samples and findings) cost about half of a run. So each run still asks **every question the
last run asked**, on the wire, all at once; when every answer is the same as last time, the
result of the sub-checks is the one kept, not worked out again.

Why that is sound: the sub-checks (:mod:`.spf`, :mod:`.dmarc`, :mod:`.dkim`, :mod:`.mx`,
:mod:`.fcrdns`) and the post-checks (:mod:`.readiness`, :mod:`.baseline`) are functions of the
domain's config and of the answers they get from ``ctx.dns``: given the same answers they ask
the same questions, in the same order of dependence, and return the same result. The config is
fixed for the life of the memo (a reload makes new resources, so an empty memo). The two
exceptions are handled here:

* time: the SPF ``%{t}`` macro expands to the current time, so a run that read a TXT record
  containing ``%{t`` is never kept; the DNSSEC sub-check (signature expiry in days, its own
  validator and cache) runs every time and its result is compared: when it changed, the
  post-checks run again on the kept sub-checks' result and the new DNSSEC result;
* "could not tell": a run in which any question failed (a :class:`DnsTempError`), was cancelled
  or had not finished, or whose sub-checks reported an error, is never kept; when a replayed
  question fails, the run is a full one (it finds that answer in the run's cache and reports
  the failure exactly as without the memo).

"The same answer": the same status, the same CNAME target and the same records **in the same
order**, case included (a record whose case changed is judged again: the details show it). A
server that rotates the order of a record set makes those runs full ones: slower, never wrong.

What it keeps, per configured domain: the answers of the last run (they name their questions;
17 per domain in the bench, 8 of them shared with every other domain: a provider's SPF
includes), the result (its lists are the ones the state's latest result holds), DNSSEC's result
when there is one, and where the sub-checks' part of the result ends: about 0.3 KB per domain
beyond the answers themselves, which the memo holds for the whole
interval (``bench/README.md`` has the cycle and the memory with and without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from dns.rdata import Rdata
from dns.rdatatype import AAAA, CNAME, MX, PTR, TXT, A

from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsAnswer
from exporter.probes.dns.common import gather
from exporter.results import ProbeResult


@dataclass(frozen=True, slots=True)
class Kept:
    """One domain's last full run."""

    answers: tuple[DnsAnswer, ...]
    """The answer to each question of the run (each names its question), in the order asked."""
    result: ProbeResult
    """What the run returned. Never handed out itself (the runner rebinds the fields of what a
    run returns): :func:`handout` gives an object of its own with the same lists, which nobody
    modifies in place once a run returned them (:class:`~exporter.results.ProbeResult`)."""
    signed: ProbeResult | None
    """The DNSSEC sub-check's result (None: it published nothing)."""
    cut: tuple[int, int, int, int]
    """How many samples, findings, details and tables of :attr:`result` are the sub-checks'
    (they come first, DNSSEC's and the post-checks' after them)."""

    def pure(self) -> ProbeResult:
        """The merged result of the sub-checks that read only the answers (all but DNSSEC)."""
        samples, findings, details, tables = self.cut
        r = self.result
        return ProbeResult(
            samples=r.samples[:samples],
            findings=r.findings[:findings],
            details=dict(islice(r.details.items(), details)),
            tables=r.tables[:tables],
        )

    def same_signed(self, signed: ProbeResult) -> bool:
        return _empty(signed) if self.signed is None else signed == self.signed


class Replays:
    """The memo of one config's ``dns`` runs, by domain (held by
    :class:`~exporter.probes.dns.common.DnsResources`): at most one entry per configured domain,
    gone with the config."""

    def __init__(self) -> None:
        self._kept: dict[str, Kept] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, domain: str) -> Kept | None:
        return self._kept.get(domain)

    def keep(self, domain: str, dns: DnsClient, pure: ProbeResult, signed: ProbeResult,
             result: ProbeResult) -> None:  # fmt: skip
        """Remember a finished run (``result``: ``pure``, then ``signed``, then the
        post-checks' merged), or forget the domain when the run may not be replayed."""
        answers = dns.answers()
        if answers is None or pure.error is not None or _timed(answers):
            self._kept.pop(domain, None)
            return
        cut = (len(pure.samples), len(pure.findings), len(pure.details), len(pure.tables))
        kept = Kept(tuple(answers), result, None if _empty(signed) else signed, cut)
        if kept.pure() != pure:  # a later check rewrote a detail of the sub-checks: no memo
            self._kept.pop(domain, None)
            return
        self._kept[domain] = kept

    def clear(self) -> None:
        """Forget every domain: each next run is a full one (the bench's cycle in which every
        domain is judged again)."""
        self._kept.clear()


async def unchanged(kept: Kept, dns: DnsClient) -> bool:
    """Ask every question of the kept run again, at once; True when every answer is the same.
    A question that fails is not the same (its failure waits in the run's cache for the full
    run)."""
    kept_answers = kept.answers
    now = await gather(*(dns.attempt(old.name, old.rdtype) for old in kept_answers))
    return all(
        isinstance(new, DnsAnswer) and same(old, new)
        for old, new in zip(kept_answers, now, strict=True)
    )


def same(old: DnsAnswer, new: DnsAnswer) -> bool:
    """The same answer (module docstring): status, CNAME target, records in order."""
    if old is new:
        return True
    if old.status != new.status or old.canonical_name != new.canonical_name:
        return False
    return _same_records(old.rdatas, new.rdatas)


def _same_records(old: Sequence[Rdata], new: Sequence[Rdata]) -> bool:
    if len(old) != len(new):
        return False
    return all(a is b or _same_record(a, b) for a, b in zip(old, new, strict=True))


def _same_record(a: Any, b: Any) -> bool:
    """The same record, case included: by its fields for the types the probe reads most (as
    fast as comparing two tuples), by its text for the others."""
    rdtype = a.rdtype
    if rdtype != b.rdtype:
        return False
    if rdtype == TXT:
        return bool(a.strings == b.strings)
    if rdtype in (A, AAAA):
        return bool(a.address == b.address)
    if rdtype == MX:
        return bool(a.preference == b.preference and a.exchange.labels == b.exchange.labels)
    if rdtype in (CNAME, PTR):
        return bool(a.target.labels == b.target.labels)
    return bool(a.to_text() == b.to_text())


def _empty(result: ProbeResult) -> bool:
    """Nothing published (the DNSSEC sub-check with ``global.dnssec: false``)."""
    r = result
    return not (r.samples or r.findings or r.error is not None or r.details or r.tables)


def _timed(answers: Sequence[DnsAnswer]) -> bool:
    """A TXT answer with the SPF ``%{t}`` macro (the current time) in it."""
    return any(
        answer.rdtype == "TXT" and "%{t" in text.lower()
        for answer in answers
        for text in answer.texts()
    )


def handout(result: ProbeResult) -> ProbeResult:
    """What a run returns for a kept result: an object of its own (the runner may rebind its
    fields) sharing the kept lists and dict, so the state's latest result and the memo hold one
    copy of them."""
    return ProbeResult(result.samples, result.findings, result.error, result.details, result.tables)


def copy(result: ProbeResult) -> ProbeResult:
    """A result with lists and dict of its own, to merge more into; samples, findings and tables
    are immutable and shared."""
    return ProbeResult(
        samples=list(result.samples),
        findings=list(result.findings),
        error=result.error,
        details=dict(result.details),
        tables=list(result.tables),
    )
