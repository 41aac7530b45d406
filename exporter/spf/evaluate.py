"""RFC 7208 ``check_host()``: the SPF result for one client IP, domain and sender.

Written here rather than taken from pyspf because it must be async on the shared, cached
:class:`~exporter.net.dnsclient.DnsClient` (one probe cycle never asks the same question twice) and
because the processing limits and error classes must follow RFC 7208 exactly:

* record selection (§4.5): TXT only, exactly one ``v=spf1`` record, otherwise permerror;
* the whole record is parsed before evaluation (§4.6), any syntax error is permerror;
* 10 DNS-querying terms across the whole evaluation, nested include/redirect included
  (§4.6.4), counted when a term is evaluated, as receivers do;
* at most 2 void lookups (NXDOMAIN or no answer) (§4.6.4);
* more than 10 MX records on one ``mx`` is permerror; only the first 10 PTR names are used;
* DNS errors are temperror, except in ``ptr``/``%{p}`` (that name is skipped) and ``exp``
  (ignored), as §5.5 and §6.2 say;
* the explanation of ``exp=`` is looked up only for a final ``fail``, from the record that
  produced it (an include's ``exp`` never, a redirect's target's ``exp`` yes; §6.2).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from functools import lru_cache

import dns.name
import dns.rdata
import dns.reversename

from exporter.net.dnsclient import DnsClient
from exporter.net.dnsmodel import DnsAnswer, DnsTempError
from exporter.spf.errors import SpfSyntaxError
from exporter.spf.macro import (
    EXP_LETTERS,
    MacroContext,
    MacroString,
    expand,
    expand_domain,
    parse_macro_string,
)
from exporter.spf.parser import DNS_MECHANISMS, Mechanism, Record, is_spf_record, parse_record

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
MAX_DNS_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX = 10
MAX_PTR = 10

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class SpfResult:
    """The outcome of check_host() and how it was reached."""

    result: str
    domain: str
    explanation: str = ""
    """The explanation for a ``fail`` (from ``exp=`` or the default); empty otherwise."""
    mechanism: str = ""
    """The term that decided the result (``-all``, ``include:x``, ``default`` ...)."""
    problem: str = ""
    """Why the result is permerror/temperror/none."""
    lookups: int = 0
    """DNS-querying terms evaluated (§4.6.4)."""
    void_lookups: int = 0
    trail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "result": self.result,
            "domain": self.domain,
            "explanation": self.explanation,
            "mechanism": self.mechanism,
            "problem": self.problem,
            "lookups": self.lookups,
            "void_lookups": self.void_lookups,
            "trail": list(self.trail),
        }


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class _Outcome:
    result: str
    mechanism: str
    exp_record: Record | None = None
    exp_domain: str = ""


def client_ip(text: str) -> IPAddress:
    """Parse the connecting IP; an IPv4-mapped IPv6 address is its IPv4 address (§5)."""
    ip = ipaddress.ip_address(text.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def split_sender(sender: str, helo: str) -> tuple[str, str, str]:
    """(sender, local-part, domain) per §4.3: empty sender -> postmaster@helo."""
    if not sender:
        sender = f"postmaster@{helo}"
    if "@" in sender:
        local, _, domain = sender.rpartition("@")
    else:
        local, domain = "", sender
        sender = f"postmaster@{sender}"
    if not local:
        local = "postmaster"
        sender = f"postmaster@{domain}"
    return sender, local, domain


@lru_cache(maxsize=8192)
def query_name(domain: str) -> str | None:
    """The domain as dnspython text, or None if it cannot be a DNS name (empty or long label)."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name:
        return None
    labels = name.split(".")
    raw = [label.encode("utf-8", errors="surrogateescape") for label in labels]
    if any(not label or len(label) > 63 for label in raw):
        return None
    if sum(len(label) + 1 for label in raw) + 1 > 255:
        return None
    return dns.name.Name([*raw, b""]).to_text()


@lru_cache(maxsize=8192)
def valid_check_domain(domain: str) -> bool:
    """§4.3: a multi-label domain with valid labels (else check_host() returns none)."""
    if not domain or domain.startswith("["):
        return False
    name = domain[:-1] if domain.endswith(".") else domain
    if "." not in name or len(name) > 253:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return query_name(name) is not None
    return False


async def check_host(
    dns: DnsClient,
    ip: str,
    sender: str,
    helo: str = "",
    *,
    domain: str | None = None,
    receiver: str = "unknown",
    default_explanation: str = "",
) -> SpfResult:
    """Evaluate SPF for ``ip`` sending as ``sender`` (``local@domain``; empty: the HELO
    identity ``postmaster@helo``). ``domain`` overrides the domain taken from the sender.
    Never raises: DNS failures are ``temperror``."""
    evaluation = _Evaluation(
        dns, client_ip(ip), sender, helo, receiver=receiver, default_exp=default_explanation
    )
    return await evaluation.run(domain)


class _Evaluation:
    def __init__(
        self,
        dns: DnsClient,
        ip: IPAddress,
        sender: str,
        helo: str,
        *,
        receiver: str,
        default_exp: str,
    ) -> None:
        self.dns = dns
        self.ip = ip
        self.sender, self.local, self.sender_domain = split_sender(sender, helo)
        self.helo = helo
        self.receiver = receiver or "unknown"
        self.default_exp = default_exp
        self.lookups = 0
        self.voids = 0
        self.trail: list[str] = []
        self._ptr_names: list[str] | None = None
        self._validated: dict[str, bool] = {}
        self.timestamp = int(time.time())

    # ----- entry ------------------------------------------------------------------------------
    async def run(self, domain: str | None) -> SpfResult:
        domain = (domain if domain is not None else self.sender_domain).strip()
        out = SpfResult("none", domain, trail=self.trail)
        if not valid_check_domain(domain):
            out.problem = f"{domain!r} is not a valid multi-label domain name (RFC 7208 §4.3)"
            self.trail.append(f"{domain}: {out.problem}")
            return self._finish(out)
        try:
            outcome = await self._check_host(domain.rstrip("."), depth=0)
        except _PermError as exc:
            out.result, out.problem = "permerror", str(exc)
            return self._finish(out)
        except _TempError as exc:
            out.result, out.problem = "temperror", str(exc)
            return self._finish(out)
        out.result = outcome.result
        out.mechanism = outcome.mechanism
        if outcome.result == "none":
            out.problem = f"{domain} publishes no SPF record"
        if outcome.result == "fail":
            out.explanation = await self._explanation(outcome)
        return self._finish(out)

    def _finish(self, out: SpfResult) -> SpfResult:
        out.lookups = self.lookups
        out.void_lookups = self.voids
        self.trail.append(f"result: {out.result}" + (f" ({out.problem})" if out.problem else ""))
        return out

    # ----- records ----------------------------------------------------------------------------
    async def _lookup(self, name: str, rdtype: str, depth: int) -> DnsAnswer:
        qname = query_name(name)
        if qname is None:  # pragma: no cover - callers check first
            raise _PermError(f"invalid domain name {name!r}")
        try:
            answer = await self.dns.query(qname, rdtype)
        except DnsTempError as exc:
            self.trail.append(f"{_pad(depth)}{rdtype} {name}: temporary DNS failure ({exc.reason})")
            raise _TempError(f"DNS lookup failed: {exc}") from None
        self.trail.append(f"{_pad(depth)}{rdtype} {name}: {_summary(answer)}")
        return answer

    async def _record(self, domain: str, depth: int) -> Record | None:
        answer = await self._lookup(domain, "TXT", depth)
        if answer.status != "ok":
            return None
        records = [t for t in answer.texts() if is_spf_record(t)]
        if not records:
            return None
        if len(records) > 1:
            raise _PermError(f"{domain} publishes {len(records)} SPF records (RFC 7208 §4.5)")
        try:
            return parse_record(records[0])
        except SpfSyntaxError as exc:
            raise _PermError(f"syntax error in the SPF record of {domain}: {exc}") from None

    async def _check_host(self, domain: str, depth: int) -> _Outcome:
        record = await self._record(domain, depth)
        if record is None:
            return _Outcome("none", "")
        self.trail.append(f"{_pad(depth)}{domain}: {record.text}")
        for mech in record.mechanisms:
            if await self._matches(mech, domain, depth):
                self.trail.append(f"{_pad(depth)}{domain}: {mech.text} matched -> {mech.result}")
                return _Outcome(mech.result, f"{mech.text} in {domain}", record, domain)
        if record.redirect is not None:
            self._count(f"redirect={record.redirect.value.text}", depth)
            target = await self._target(record.redirect.value, domain)
            if target is None or not valid_check_domain(target):
                raise _PermError(f"redirect target {target!r} of {domain} is not a domain name")
            self.trail.append(f"{_pad(depth)}{domain}: redirect={target}")
            outcome = await self._check_host(target, depth + 1)
            if outcome.result == "none":
                raise _PermError(f"redirect target {target} publishes no SPF record (§6.1)")
            return outcome
        return _Outcome("neutral", f"default (no mechanism matched in {domain})")

    # ----- mechanisms -------------------------------------------------------------------------
    def _count(self, term: str, depth: int) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_LOOKUPS:
            raise _PermError(
                f"more than {MAX_DNS_LOOKUPS} DNS-querying terms (RFC 7208 §4.6.4) at {term}"
            )

    def _void(self, answer: DnsAnswer, term: str) -> None:
        if answer.exists:
            return
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _PermError(
                f"more than {MAX_VOID_LOOKUPS} void lookups (RFC 7208 §4.6.4) at {term}"
            )

    async def _target(self, spec: MacroString | None, domain: str) -> str | None:
        if spec is None:
            return domain
        ctx = await self._macro_context(domain, spec, depth=0)
        return expand_domain(spec, ctx)

    async def _matches(self, mech: Mechanism, domain: str, depth: int) -> bool:
        kind = mech.kind
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            net = mech.network
            return net is not None and net.version == self.ip.version and self.ip in net
        if kind in DNS_MECHANISMS:
            self._count(mech.text, depth)
        if mech.domain is not None and "p" in mech.domain.letters:
            self._count(f"%{{p}} in {mech.text}", depth)
        target = await self._target(mech.domain, domain)
        assert target is not None
        if kind == "include":
            if not valid_check_domain(target):
                raise _PermError(f"include target {target!r} is not a domain name")
            outcome = await self._check_host(target, depth + 1)
            if outcome.result == "none":
                raise _PermError(f"included domain {target} publishes no SPF record (§5.2)")
            return outcome.result == "pass"
        if query_name(target) is None:
            # A syntactically valid domain-spec that cannot be a DNS name (empty or overlong
            # label): no such name exists, so nothing matches (RFC 7208 §4.3 by analogy).
            self.trail.append(f"{_pad(depth)}{mech.text}: {target!r} is not a DNS name")
            return False
        if kind == "exists":
            answer = await self._lookup(target, "A", depth)
            self._void(answer, mech.text)
            return answer.exists
        if kind == "a":
            answer = await self._lookup(target, self._addr_type, depth)
            self._void(answer, mech.text)
            return self._in_addresses(answer.addresses(), mech)
        if kind == "mx":
            answer = await self._lookup(target, "MX", depth)
            self._void(answer, mech.text)
            hosts = [_rd_name(rd, "exchange") for rd in answer.rdatas if rd.rdtype == 15]
            if len(hosts) > MAX_MX:
                raise _PermError(
                    f"{mech.text}: {target} has {len(hosts)} MX records, over {MAX_MX} (§4.6.4)"
                )
            for host in hosts:
                if not host or query_name(host) is None:
                    continue  # null MX "." (RFC 7505)
                addrs = await self._lookup(host, self._addr_type, depth)
                if self._in_addresses(addrs.addresses(), mech):
                    return True
            return False
        # ptr
        return any(
            name == target.lower() or name.endswith("." + target.lower())
            for name in await self._validated_names(target.lower(), depth)
        )

    @property
    def _addr_type(self) -> str:
        return "A" if self.ip.version == 4 else "AAAA"

    def _in_addresses(self, addresses: list[str], mech: Mechanism) -> bool:
        prefix = mech.cidr4 if self.ip.version == 4 else mech.cidr6
        for text in addresses:
            net = ipaddress.ip_network(f"{text}/{prefix}", strict=False)
            if net.version == self.ip.version and self.ip in net:
                return True
        return False

    # ----- PTR --------------------------------------------------------------------------------
    async def _ptr(self, depth: int) -> list[str]:
        if self._ptr_names is None:
            rname = dns.reversename.from_address(str(self.ip)).to_text()
            try:
                answer = await self.dns.query(rname, "PTR")
            except DnsTempError as exc:
                self.trail.append(f"{_pad(depth)}PTR {rname}: temporary DNS failure ({exc.reason})")
                answer = DnsAnswer(rname, "PTR", "nodata")
            else:
                self.trail.append(f"{_pad(depth)}PTR {rname}: {_summary(answer)}")
            names = [_rd_name(rd, "target").lower() for rd in answer.rdatas if rd.rdtype == 12]
            self._ptr_names = names[:MAX_PTR]
        return self._ptr_names

    async def _is_validated(self, name: str, depth: int) -> bool:
        if name not in self._validated:
            ok = False
            if query_name(name) is not None:
                try:
                    answer = await self.dns.query(query_name(name) or name, self._addr_type)
                except DnsTempError:
                    self.trail.append(f"{_pad(depth)}{self._addr_type} {name}: DNS error, skipped")
                else:
                    ok = any(ipaddress.ip_address(a) == self.ip for a in answer.addresses())
            self._validated[name] = ok
        return self._validated[name]

    async def _validated_names(self, suffix: str, depth: int) -> list[str]:
        """Validated PTR names ending in ``suffix`` (§5.5), in the order of the PTR answer."""
        names = await self._ptr(depth)
        out: list[str] = []
        for name in names:
            if (name == suffix or name.endswith("." + suffix)) and await self._is_validated(
                name, depth
            ):
                out.append(name)
        return out

    async def _ptr_macro(self, domain: str, depth: int) -> str:
        """%{p}: a validated name, preferring <domain>, then its subdomains (§7.3)."""
        domain = domain.lower()
        names = await self._ptr(depth)
        for preferred in (
            [n for n in names if n == domain],
            [n for n in names if n.endswith("." + domain)],
            names,
        ):
            for name in preferred:
                if await self._is_validated(name, depth):
                    return name
        return "unknown"

    # ----- macros and explanation -------------------------------------------------------------
    async def _macro_context(self, domain: str, ms: MacroString, depth: int) -> MacroContext:
        if self.ip.version == 4:
            dotted = str(self.ip)
            version = "in-addr"
        else:
            dotted = ".".join(self.ip.exploded.replace(":", "").upper())
            version = "ip6"
        ptr = await self._ptr_macro(domain, depth) if "p" in ms.letters else "unknown"
        return MacroContext(
            sender=self.sender,
            local_part=self.local,
            sender_domain=self.sender_domain,
            domain=domain,
            ip=dotted,
            client_ip=str(self.ip),
            ip_version=version,
            helo=self.helo,
            receiver=self.receiver,
            timestamp=self.timestamp,
            ptr_name=ptr,
        )

    async def _explanation(self, outcome: _Outcome) -> str:
        """§6.2: any failure to get a usable explanation falls back to the default."""
        record, domain = outcome.exp_record, outcome.exp_domain
        if record is None or record.exp is None:
            return self.default_exp
        target = await self._target(record.exp.value, domain)
        qname = query_name(target or "")
        if qname is None:
            return self.default_exp
        try:
            answer = await self.dns.query(qname, "TXT")
        except DnsTempError:
            self.trail.append(f"exp TXT {target}: temporary DNS failure, explanation ignored")
            return self.default_exp
        texts = answer.texts() if answer.status == "ok" else []
        self.trail.append(f"exp TXT {target}: {_summary(answer)}")
        if len(texts) != 1 or not texts[0].isascii():
            return self.default_exp
        try:
            ms = parse_macro_string(texts[0], letters=EXP_LETTERS, allow_space=True)
        except SpfSyntaxError:
            return self.default_exp
        ctx = await self._macro_context(domain, ms, depth=0)
        return expand(ms, ctx)


def _rd_name(rd: dns.rdata.Rdata, attr: str) -> str:
    """The domain name field of an MX (``exchange``) or PTR (``target``) record."""
    name: dns.name.Name = getattr(rd, attr)
    return name.to_text().rstrip(".")


def _pad(depth: int) -> str:
    return "  " * depth


def _summary(answer: DnsAnswer) -> str:
    if answer.status != "ok":
        return answer.status.upper()
    if answer.rdtype == "TXT":
        return " | ".join(repr(t) for t in answer.texts())
    return ", ".join(rd.to_text() for rd in answer.rdatas)
