"""Static analysis of a domain's SPF policy, independent of any client IP.

Walks the include/redirect tree the way a receiver would if nothing matched early (the worst
case every receiver can reach): terms after the first ``all`` are never evaluated, and
``redirect`` is ignored when the record has an ``all`` (RFC 7208 §6.1). It counts the
DNS-querying terms (§4.6.4) over the whole tree, the void lookups of targets that do not depend
on the sender, and reports each problem as a :class:`Problem` with a finding code from
:mod:`exporter.findings` and the evidence a person needs to fix it.

Only the domain's own TXT lookup may raise :class:`~exporter.net.dnsclient.DnsTempError`; a
temporary failure deeper in the tree becomes the ``spf_lookup_temperror`` problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import lru_cache

import dns.rdata

from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsTempError
from exporter.spf.errors import SpfSyntaxError
from exporter.spf.evaluate import (
    MAX_DNS_LOOKUPS,
    MAX_MX,
    MAX_VOID_LOOKUPS,
    query_name,
    valid_check_domain,
)
from exporter.spf.macro import MacroContext, MacroString, expand_domain
from exporter.spf.parser import DNS_MECHANISMS, QUALIFIERS, Record, is_spf_record, parse_record

MAX_NODES = 60
"""Records visited at most (a receiver stops at 11 lookups; this only bounds pathological trees)."""
RECORD_INFO_BYTES = 255
RECORD_WARN_BYTES = 450
UDP_ANSWER_BYTES = 512


@dataclass(frozen=True)
class Problem:
    code: str
    evidence: str
    subject: str = ""
    severity: str | None = None


@dataclass
class SpfNode:
    """One SPF record in the tree (the domain's own, or reached by include/redirect)."""

    domain: str
    via: str = ""
    """'' for the monitored domain, else 'include' or 'redirect'."""
    record: str | None = None
    error: str = ""
    lookups: int = 0
    """DNS-querying terms of this record itself that a receiver can reach."""
    voids: int = 0
    children: list[SpfNode] = field(default_factory=list)
    all_qualifier: str | None = None
    dynamic: bool = False
    """Uses macros that depend on the sender or IP: cannot be flattened."""

    @property
    def total_lookups(self) -> int:
        return self.lookups + sum(c.total_lookups for c in self.children)

    @property
    def total_voids(self) -> int:
        return self.voids + sum(c.total_voids for c in self.children)

    def render(self, depth: int = 0) -> list[str]:
        head = f"{'  ' * depth}{self.via + ':' if self.via else ''}{self.domain}"
        body = self.record if self.record is not None else f"({self.error or 'no SPF record'})"
        lines = [f"{head} [{self.total_lookups} lookups] {body}"]
        for child in self.children:
            lines.extend(child.render(depth + 1))
        return lines


@dataclass
class SpfAnalysis:
    domain: str
    records: list[str]
    strings: list[list[bytes]]
    """The character-strings of each v=spf1 TXT record, as published."""
    root: SpfNode | None = None
    valid: bool = False
    lookups: int = 0
    void_lookups: int = 0
    all_qualifier: str = "none"
    problems: list[Problem] = field(default_factory=list)

    def tree(self) -> str:
        return "\n".join(self.root.render()) if self.root else ""


_PERMERROR_CODES = frozenset(
    {
        "spf_multiple_records",
        "spf_syntax_error",
        "spf_too_many_lookups",
        "spf_too_many_void_lookups",
        "spf_include_no_spf",
        "spf_include_invalid",
        "spf_include_loop",
        "spf_mx_too_many_records",
        "spf_strings_joined_wrong",
    }
)


async def analyze(domain: str, dns: DnsClient) -> SpfAnalysis:
    """Analyze ``domain``'s SPF policy; raises DnsTempError only for the domain's own TXT."""
    qname = query_name(domain) or domain
    answer = await dns.query(qname, "TXT")
    spf_rdatas = [rd for rd in answer.rdatas if is_spf_record(_joined(rd))]
    out = SpfAnalysis(
        domain=domain,
        records=[_joined(rd) for rd in spf_rdatas],
        strings=[_strings(rd) for rd in spf_rdatas],
    )
    if not out.records:
        out.problems.append(Problem("spf_missing", f"no TXT record at {domain} starts v=spf1"))
        return out
    if len(out.records) > 1:
        out.problems.append(
            Problem(
                "spf_multiple_records",
                f"{len(out.records)} v=spf1 records: " + " | ".join(repr(r) for r in out.records),
            )
        )
        return out
    out.problems.extend(_size_problems(domain, answer.rdatas, spf_rdatas[0]))
    walker = _Walker(dns)
    out.root = await walker.walk(domain, "", (), out.records[0])
    out.problems.extend(walker.problems)
    out.lookups = out.root.total_lookups
    if walker.loop:
        out.lookups = max(out.lookups, MAX_DNS_LOOKUPS + 1)
    out.void_lookups = out.root.total_voids
    out.all_qualifier = _effective_all(out.root)
    if out.lookups > MAX_DNS_LOOKUPS and not walker.loop:
        out.problems.append(Problem("spf_too_many_lookups", _flatten_advice(out.root)))
    elif out.lookups >= MAX_DNS_LOOKUPS - 1 and not walker.loop:
        out.problems.append(
            Problem(
                "spf_lookups_near_limit",
                f"{out.lookups} of {MAX_DNS_LOOKUPS} DNS lookups used: one more include breaks"
                " SPF for every receiver",
            )
        )
    if out.void_lookups > MAX_VOID_LOOKUPS:
        out.problems.append(
            Problem(
                "spf_too_many_void_lookups",
                f"{out.void_lookups} void lookups (limit {MAX_VOID_LOOKUPS}): "
                + ", ".join(walker.void_terms),
            )
        )
    qualifier_code = {"pass": "spf_all_pass", "neutral": "spf_all_neutral", "none": "spf_no_all"}
    code = qualifier_code.get(out.all_qualifier)
    if code:
        out.problems.append(Problem(code, f"effective all: {out.all_qualifier}"))
    out.valid = not any(p.code in _PERMERROR_CODES for p in out.problems)
    return out


class _Walker:
    def __init__(self, dns: DnsClient) -> None:
        self.dns = dns
        self.problems: list[Problem] = []
        self.void_terms: list[str] = []
        self.loop = False
        self.nodes = 0

    async def walk(
        self, domain: str, via: str, path: tuple[str, ...], text: str | None = None
    ) -> SpfNode:
        node = SpfNode(domain, via)
        self.nodes += 1
        where = " -> ".join((*path, domain))
        if domain in path:
            node.error = "loop"
            self.loop = True
            self.problems.append(Problem("spf_include_loop", f"{where}", subject=domain))
            return node
        if self.nodes > MAX_NODES:
            node.error = "not followed (tree too large)"
            return node
        if text is None:
            try:
                answer = await self.dns.query(query_name(domain) or domain, "TXT")
            except DnsTempError as exc:
                node.error = f"temporary DNS failure: {exc.reason}"
                self.problems.append(
                    Problem("spf_lookup_temperror", f"{via}:{domain} ({where}): {exc}", domain)
                )
                return node
            records = [t for t in answer.texts() if is_spf_record(t)] if answer.exists else []
            if not records:
                node.error = "no SPF record"
                self.problems.append(
                    Problem("spf_include_no_spf", f"{via}:{domain} has no SPF record ({where})",
                            domain)
                )  # fmt: skip
                return node
            if len(records) > 1:
                node.error = f"{len(records)} SPF records"
                self.problems.append(
                    Problem("spf_include_invalid", f"{via}:{domain} publishes {len(records)}"
                            f" SPF records ({where})", domain)
                )  # fmt: skip
                return node
            text = records[0]
        node.record = text
        try:
            record = parse_record(text)
        except SpfSyntaxError as exc:
            node.error = f"syntax error: {exc}"
            code = "spf_syntax_error" if not path else "spf_include_invalid"
            self.problems.append(Problem(code, f"{domain}: {exc}", domain if path else ""))
            return node
        await self._terms(node, record, (*path, domain))
        return node

    async def _terms(self, node: SpfNode, record: Record, path: tuple[str, ...]) -> None:
        domain = node.domain
        all_mech = record.all
        reachable = record.mechanisms
        if all_mech is not None:
            idx = record.mechanisms.index(all_mech)
            reachable = record.mechanisms[: idx + 1]
            node.all_qualifier = QUALIFIERS[all_mech.qualifier]
            ignored = [m.text for m in record.mechanisms[idx + 1 :]]
            if record.redirect is not None:
                ignored.append(record.redirect.text)
            if ignored:
                self.problems.append(
                    Problem("spf_terms_after_all", f"{domain}: {' '.join(ignored)} after"
                            f" {all_mech.text} are never evaluated", domain)
                )  # fmt: skip
        children: list[Coroutine[None, None, SpfNode]] = []
        checks: list[Coroutine[None, None, None]] = []
        for mech in reachable:
            if mech.kind not in DNS_MECHANISMS:
                continue
            node.lookups += 1
            if mech.kind == "ptr":
                self.problems.append(Problem("spf_ptr_used", f"{domain}: {mech.text}", domain))
            target = _static_target(mech.domain, domain)
            if target is None:
                node.dynamic = True
                continue
            if mech.kind == "include":
                if not valid_check_domain(target):
                    self.problems.append(
                        Problem("spf_include_no_spf", f"{domain}: {mech.text}: {target!r} is"
                                " not a domain name", target)
                    )  # fmt: skip
                    continue
                children.append(self.walk(target, "include", path))
            elif mech.kind in ("a", "mx", "exists"):
                checks.append(self._void_check(node, mech.text, mech.kind, target))
        if all_mech is None and record.redirect is not None:
            node.lookups += 1
            target = _static_target(record.redirect.value, domain)
            if target is None:
                node.dynamic = True
            elif not valid_check_domain(target):
                self.problems.append(
                    Problem("spf_include_no_spf", f"{domain}: {record.redirect.text}:"
                            f" {target!r} is not a domain name", target)
                )  # fmt: skip
            else:
                children.append(self.walk(target, "redirect", path))
        # Children and checks concurrently; no task at all for the common one-child record.
        if len(children) + len(checks) == 1:
            if children:
                node.children = [await children[0]]
            else:
                await checks[0]
        elif children or checks:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(c) for c in children]
                for check in checks:
                    tg.create_task(check)
            node.children = [t.result() for t in tasks]

    async def _void_check(self, node: SpfNode, term: str, kind: str, target: str) -> None:
        qname = query_name(target)
        if qname is None:
            node.voids += 1
            self.void_terms.append(f"{node.domain}: {term}")
            return
        try:
            if kind == "mx":
                answer = await self.dns.query(qname, "MX")
                if len(answer.rdatas) > MAX_MX:
                    self.problems.append(
                        Problem("spf_mx_too_many_records", f"{node.domain}: {term}: {target} has"
                                f" {len(answer.rdatas)} MX records (limit {MAX_MX})", target)
                    )  # fmt: skip
                void = not answer.exists
            elif kind == "exists":
                void = not (await self.dns.query(qname, "A")).exists
            else:
                a, aaaa = await self.dns.query_both(qname, "A", "AAAA")
                if isinstance(a, DnsTempError):
                    raise a
                if isinstance(aaaa, DnsTempError):
                    raise aaaa
                void = not a.exists and not aaaa.exists
        except DnsTempError as exc:
            self.problems.append(
                Problem("spf_lookup_temperror", f"{node.domain}: {term}: {exc}", target)
            )
            return
        if void:
            node.voids += 1
            self.void_terms.append(f"{node.domain}: {term} ({target} has no records)")


def _static_target(spec: MacroString | None, domain: str) -> str | None:
    """The target name when it does not depend on the sender or IP (%{d} is known)."""
    if spec is None:
        return domain.lower()
    if not spec.letters:
        return _literal_target(spec)
    if spec.letters - {"d"}:
        return None
    return expand_domain(spec, _context(domain)).lower()


def _context(domain: str) -> MacroContext:
    return MacroContext(
        sender="", local_part="", sender_domain="", domain=domain, ip="", client_ip="",
        ip_version="", helo="",
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _literal_target(spec: MacroString) -> str:
    """A target without macros: the same for every domain (kept: providers' includes recur)."""
    return expand_domain(spec, _context("")).lower()


def _effective_all(node: SpfNode) -> str:
    if node.all_qualifier is not None:
        return node.all_qualifier
    redirects = [c for c in node.children if c.via == "redirect"]
    if redirects and redirects[0].record is not None:
        return _effective_all(redirects[0])
    return "none"


def _flatten_advice(root: SpfNode) -> str:
    total = root.total_lookups
    includes = sorted(
        (c for c in root.children if c.via == "include"),
        key=lambda c: c.total_lookups,
        reverse=True,
    )
    picked: list[str] = []
    remaining = total
    for inc in includes:
        if remaining <= MAX_DNS_LOOKUPS:
            break
        if inc.dynamic or _has_dynamic(inc):
            continue
        saved = inc.total_lookups  # the include itself is counted in the parent
        saved += 1
        remaining -= saved
        picked.append(f"include:{inc.domain} (saves {saved})")
    base = f"{total} DNS lookups over the include/redirect tree (limit {MAX_DNS_LOOKUPS})"
    if picked and remaining <= MAX_DNS_LOOKUPS:
        return f"{base}; flatten {', '.join(picked)} into ip4:/ip6: terms to get to {remaining}"
    if picked:
        return (
            f"{base}; flattening {', '.join(picked)} still leaves {remaining}: also replace"
            " a/mx terms with ip4:/ip6:"
        )
    return f"{base}; replace a/mx/include terms with ip4:/ip6: ranges"


def _has_dynamic(node: SpfNode) -> bool:
    return node.dynamic or any(_has_dynamic(c) for c in node.children)


def _size_problems(
    domain: str, rdatas: tuple[dns.rdata.Rdata, ...], spf: dns.rdata.Rdata
) -> list[Problem]:
    problems: list[Problem] = []
    strings = _strings(spf)
    joined = b"".join(strings)
    # Size of the whole TXT answer: header, question, and each record with a compressed owner.
    wire = 12 + len(domain) + 2 + 4
    for rd in rdatas:
        wire += 2 + 10 + sum(1 + len(s) for s in _strings(rd))
    if wire > UDP_ANSWER_BYTES:
        problems.append(
            Problem("spf_record_long", f"the TXT answer at {domain} is about {wire} bytes, over"
                    f" {UDP_ANSWER_BYTES}: receivers without EDNS or TCP cannot read it",
                    severity="warning")
        )  # fmt: skip
    elif len(joined) > RECORD_WARN_BYTES:
        problems.append(
            Problem("spf_record_long", f"the SPF record is {len(joined)} bytes, over the"
                    f" {RECORD_WARN_BYTES} RFC 7208 §3.4 recommends", severity="warning")
        )  # fmt: skip
    elif len(joined) > RECORD_INFO_BYTES - 20:
        problems.append(
            Problem("spf_record_long", f"the SPF record is {len(joined)} bytes, near the"
                    f" {RECORD_WARN_BYTES}-byte recommendation; strings must stay under 255",
                    severity="info")
        )  # fmt: skip
    if len(strings) > 1:
        glued = joined.decode("utf-8", errors="replace")
        spaced = b" ".join(strings).decode("utf-8", errors="replace")
        boundaries = [
            i + 1
            for i in range(len(strings) - 1)
            if strings[i] and strings[i + 1]
            and not strings[i].endswith(b" ") and not strings[i + 1].startswith(b" ")
        ]  # fmt: skip
        if boundaries and not _parses(glued) and _parses(spaced):
            problems.append(
                Problem("spf_strings_joined_wrong", "the record's strings are joined without a"
                        " space (RFC 7208 §3.3), which breaks a term at the end of string "
                        + ", ".join(str(b) for b in boundaries) + f": {glued!r}")
            )  # fmt: skip
    return problems


def _strings(rd: dns.rdata.Rdata) -> list[bytes]:
    strings: tuple[bytes, ...] = getattr(rd, "strings", ())
    return list(strings)


def _joined(rd: dns.rdata.Rdata) -> str:
    return b"".join(_strings(rd)).decode("utf-8", errors="replace")


def _parses(text: str) -> bool:
    try:
        parse_record(text)
    except SpfSyntaxError:
        return False
    return True
