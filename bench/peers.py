"""The peer tools of the scale bench, run from their own virtualenv (``bench/.venv-peers``).

    bench/.venv-peers/bin/python bench/peers.py checkdmarc PORT DOMAINS_FILE
    bench/.venv-peers/bin/python bench/peers.py pydnsbl PORT IPS_FILE ZONE [ZONE ...]
    bench/.venv-peers/bin/python bench/peers.py parsedmarc XML_FILE MAIL_FILE NUMBER REPEAT

Prints one JSON object: domains/IPs checked, wall and CPU seconds, failures. This file imports
neither the project nor anything the project depends on being installed; the peers are never
project dependencies.

Never the internet: an audit hook refuses every socket ``connect``/``sendto`` to an address
outside 127.0.0.0/8 (the process fails loudly instead of leaking a query), dnspython's default
resolver is replaced by one that asks only the loopback knot, and checkdmarc is called with that
resolver for the checks compared (SPF, DMARC, MX: the ones the exporter's ``dns`` probe makes;
its DNSSEC, NS, SOA, MTA-STS and BIMI checks are not called, so nothing else is asked). Its
public suffix list is the copy bundled with ``publicsuffixlist`` (no download). parsedmarc runs
with ``offline=True`` and ``always_use_local_files=True`` (no reverse DNS of the sources, its
bundled IP database and reverse-DNS map, no download).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("socket.connect", "socket.sendto"):
        return
    address = args[-1]
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        host = address[0]
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise RuntimeError(f"bench peer tried to reach {host}: refused (loopback only)")


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _since_process_start() -> float | None:
    """Seconds since this process started (Linux ``/proc``, 10 ms ticks), as ``bench.cycle``
    measures the exporter's first cycle from its process start."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - ticks / os.sysconf("SC_CLK_TCK"), 3)


def run_checkdmarc(port: int, names: list[str]) -> dict[str, Any]:
    import dns.nameserver
    import dns.resolver
    from checkdmarc.dmarc import check_dmarc
    from checkdmarc.smtp import check_mx
    from checkdmarc.spf import check_spf

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.timeout = resolver.lifetime = 5.0
    dns.resolver.default_resolver = resolver
    # Some checks (DNSSEC of the MX hosts) take nameservers rather than a resolver.
    ns = [dns.nameserver.Do53Nameserver("127.0.0.1", port)]
    failures = 0
    c0, t0 = _cpu(), time.perf_counter()
    for name in names:
        spf = check_spf(name, nameservers=ns, resolver=resolver, timeout=5.0)
        dmarc = check_dmarc(name, nameservers=ns, resolver=resolver, timeout=5.0)
        mx = check_mx(name, nameservers=ns, resolver=resolver, timeout=5.0)
        if not spf.get("valid") or not dmarc.get("valid") or not mx.get("hosts"):
            failures += 1
    return {
        "tool": "checkdmarc",
        "checks": "spf, dmarc, mx (sequential; checkdmarc has no DKIM check)",
        "domains": len(names),
        "wall_s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(_cpu() - c0, 3),
        "from_start_s": _since_process_start(),
        "failures": failures,
    }


def run_pydnsbl(port: int, ips: list[str], zones: list[str]) -> dict[str, Any]:
    import asyncio

    import aiodns
    from pydnsbl import DNSBLIpChecker
    from pydnsbl.providers import Provider

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    checker = DNSBLIpChecker(providers=[Provider(z) for z in zones], loop=loop, timeout=5)
    # pydnsbl has no nameserver option: point its c-ares channel at the loopback knot.
    checker._resolver = aiodns.DNSResolver(
        nameservers=["127.0.0.1"], loop=loop, udp_port=port, tcp_port=port, timeout=5, tries=2
    )
    c0, t0 = _cpu(), time.perf_counter()
    results = checker.bulk_check(ips)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {
        "tool": "pydnsbl",
        "ips": len(ips),
        "zones": len(zones),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "listed": sum(1 for r in results if r.blacklisted),
        "failures": sum(1 for r in results if r.failed_providers),
    }


def run_parsedmarc(xml_file: str, mail_file: str, number: int, repeat: int) -> dict[str, Any]:
    """parsedmarc's aggregate-report parse of the XML and of the whole mail, as
    ``bench.reports_bench`` measures the exporter's: calls per second (best of ``repeat`` rounds
    of ``number`` calls), and the peak of Python allocations of one parse of each."""
    import tracemalloc

    from parsedmarc import parse_aggregate_report_xml, parse_report_email

    with open(xml_file, "rb") as fh:
        xml = fh.read()
    with open(mail_file, "rb") as fh:
        mail = fh.read()
    opts: dict[str, Any] = {"offline": True, "always_use_local_files": True}
    calls = {
        "parse": lambda: parse_aggregate_report_xml(xml, **opts),
        "message": lambda: parse_report_email(mail, **opts),
    }
    out: dict[str, Any] = {"tool": "parsedmarc", "reports_per_s": {}, "tracemalloc_peak_mib": {}}
    for what, fn in calls.items():
        report = fn()  # warm: parsedmarc loads its IP database and maps on first use
        tracemalloc.start()
        fn()
        out["tracemalloc_peak_mib"][what] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - t0) / number)
        out["reports_per_s"][what] = round(1 / best, 1)
        if what == "parse":
            out["records"] = len(report["records"])
    return out


def main(argv: list[str]) -> int:
    sys.addaudithook(_loopback_only)
    if argv[0] == "parsedmarc":
        out = run_parsedmarc(argv[1], argv[2], int(argv[3]), int(argv[4]))
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(out))
        return 0
    tool, port = argv[0], int(argv[1])
    with open(argv[2]) as fh:
        items = [line.strip() for line in fh if line.strip()]
    if tool == "checkdmarc":
        out = run_checkdmarc(port, items)
    elif tool == "pydnsbl":
        out = run_pydnsbl(port, items, argv[3:])
    else:
        raise SystemExit(f"unknown peer {tool}")
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
