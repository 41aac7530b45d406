"""Benchmark: one dnsbl cycle of N sending IPs x Z zones against a loopback DNS server, side by
side with pydnsbl (a peer library, never a project dependency) on the same data.

    python bench/dnsbl_bench.py                       # 1,000 IPs x 8 zones, 5 rounds
    python bench/dnsbl_bench.py --ips 1000 --zones 8 --rounds 5
    python bench/dnsbl_bench.py --smoke               # 50 IPs x 2 zones, 1 round, seconds

The DNS server is knot (Debian ``knot``) when ``knotd`` is installed, else the project's test
server (tests/dnsserver.py) in its own process; it serves Z zones with the RFC 5782 test entries
and every ``--listed-every``-th IP listed (A 127.0.0.2 plus a TXT reason), NXDOMAIN for the rest.

Each measurement runs in a fresh process, rounds alternate between the contestants, and the
table reports the median (and best) wall time of the cycle, CPU time of the client process
during the cycle, lookups per second, RSS after imports and setup, and peak RSS:

* ``ours (probe)``: the real thing, every dnsbl target (N IP jobs + Z zone jobs) through
  :func:`exporter.runner.run_probe` at once, as the scheduler starts them: self-tests, N x Z A
  lookups, a TXT lookup for each listing, results, findings;
* ``ours (lookups)``: only the N x Z A lookups through :mod:`exporter.net.dnsbulk`, the
  same work pydnsbl does;
* ``pydnsbl``: ``DNSBLIpChecker.bulk_check`` over the N IPs with Z providers (its defaults:
  concurrency 200, c-ares through aiodns).

The peer runs from its own interpreter: ``--peer-python`` (default ``bench/.venv-peers/bin/python``)
made with ``python -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install pydnsbl``.
Results are also written as JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER = ROOT / "bench" / ".venv-peers" / "bin" / "python"


def ip_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def zones_of(n: int) -> list[str]:
    return [f"bl{z}.bench.test" for z in range(1, n + 1)]


def listed_ips(ips: int, every: int) -> list[int]:
    return list(range(0, ips, every))


# ----- the DNS server --------------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def zone_records(args: argparse.Namespace) -> dict[str, list[tuple[str, str, str]]]:
    """zone -> [(relative name, type, rdata)]"""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for zone in zones_of(args.zones):
        recs = [("2.0.0.127", "A", "127.0.0.2"), ("2.0.0.127", "TXT", '"test entry"')]
        for i in listed_ips(args.ips, args.listed_every):
            rel = ".".join(reversed(ip_of(i).split(".")))
            recs += [(rel, "A", "127.0.0.2"), (rel, "TXT", f'"listed by {zone}"')]
        out[zone] = recs
    return out


class Server:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.port = free_port()
        self.kind = args.server
        records = zone_records(args)
        if self.kind == "knot":
            self.proc = self._knot(records, workdir)
        else:
            self.proc = self._python(records, workdir)
        self._wait_ready()

    def _knot(
        self, records: dict[str, list[tuple[str, str, str]]], d: Path
    ) -> subprocess.Popen[bytes]:
        for sub in ("run", "db", "zones"):
            (d / sub).mkdir()
        for zone, recs in records.items():
            lines = [f"$ORIGIN {zone}.", "$TTL 300", "@ SOA ns hostmaster 1 60 60 60 60",
                     "@ NS ns", "ns A 127.0.0.1"]  # fmt: skip
            lines += [f"{name} {rtype} {rdata}" for name, rtype, rdata in recs]
            (d / "zones" / f"{zone}.zone").write_text("\n".join(lines) + "\n")
        conf = [
            "server:",
            f'    rundir: "{d}/run"',
            f"    listen: 127.0.0.1@{self.port}",
            "log:",
            "  - target: stderr",
            "    any: warning",
            "database:",
            f'    storage: "{d}/db"',
            "template:",
            "  - id: default",
            f'    storage: "{d}/zones"',
            '    file: "%s.zone"',
            "zone:",
        ] + [f"  - domain: {zone}" for zone in records]
        (d / "knot.conf").write_text("\n".join(conf) + "\n")
        return subprocess.Popen(["knotd", "-c", str(d / "knot.conf")], stderr=subprocess.DEVNULL)

    def _python(
        self, records: dict[str, list[tuple[str, str, str]]], d: Path
    ) -> subprocess.Popen[bytes]:
        flat = [[f"{name}.{zone}", rtype, rdata] for zone, recs in records.items()
                for name, rtype, rdata in recs]  # fmt: skip
        (d / "records.json").write_text(json.dumps(flat))
        code = (
            "import json, sys, threading\n"
            f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            "from dnsserver import DnsServer\n"
            f"s = DnsServer(port={self.port})\n"
            f"for n, t, v in json.load(open({str(d / 'records.json')!r})): s.add(n, t, v)\n"
            "s.start()\n"
            "threading.Event().wait()\n"
        )
        return subprocess.Popen([sys.executable, "-c", code])

    def _wait_ready(self) -> None:
        import dns.message
        import dns.query

        q = dns.message.make_query(f"2.0.0.127.{zones_of(1)[0]}", "A")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.2)
                if r.answer:
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("benchmark DNS server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ----- workers (each run in a fresh process) ---------------------------------------------------


def _usage() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def worker_ours(args: argparse.Namespace, probe_path: bool) -> dict[str, object]:
    import asyncio
    from collections import Counter

    sys.path.insert(0, str(ROOT))
    from exporter.config import parse_config
    from exporter.net.dnsbulk import BulkLookups
    from exporter.net.dnsclient import make_resolver
    from exporter.probes.dnsbl import DnsblProbe
    from exporter.runner import Runtime, run_probe

    ips = [ip_of(i) for i in range(args.ips)]
    zones = zones_of(args.zones)
    address = f"127.0.0.1:{args.port}"

    async def probe_cycle() -> tuple[float, float, float, dict[str, int]]:
        config = parse_config(
            {
                "global": {"nameservers": [address], "timeout": "60s"},
                "domains": [{"domain": "example.test", "sending_ips": ips}],
                "blacklists": {"ip_zones": zones, "domain_zones": []},
            }
        )
        probe = DnsblProbe()
        targets = probe.targets(config)
        deps = Runtime(make_resolver(config.global_.nameservers), config)
        cpu0, rss0 = _usage()
        t0 = time.perf_counter()
        records = await asyncio.gather(*(run_probe(probe, t, deps) for t in targets))
        wall = time.perf_counter() - t0
        cpu1, _ = _usage()
        counts: Counter[str] = Counter()
        for rec in records:
            counts["targets"] += 1
            counts["failed"] += not rec.success
            for s in rec.result.samples:
                if s.metric == "dnsbl_listed":
                    counts["listed"] += s.value == 1
                    counts["answered"] += 1
        return wall, cpu1 - cpu0, rss0, dict(counts)

    async def lookups_only() -> tuple[float, float, float, dict[str, int]]:
        from exporter.probes.dnsbl_zones import reverse_ip

        names = [f"{reverse_ip(ip)}.{zone}" for ip in ips for zone in zones]
        engine = BulkLookups([("127.0.0.1", args.port)], attempt_timeout=2.0, lifetime=5.0,
                            max_in_flight=64)  # fmt: skip
        cpu0, rss0 = _usage()
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(engine.query(n) for n in names), return_exceptions=True)
        wall = time.perf_counter() - t0
        cpu1, _ = _usage()
        engine.close()
        counts: Counter[str] = Counter()
        for a in answers:
            counts["answered"] += not isinstance(a, BaseException)
            counts["listed"] += not isinstance(a, BaseException) and a.status == "ok"
        return wall, cpu1 - cpu0, rss0, dict(counts)

    wall, cpu, rss0, counts = asyncio.run(probe_cycle() if probe_path else lookups_only())
    return {"wall": wall, "cpu": cpu, "rss_setup_mb": rss0, "rss_peak_mb": _usage()[1], **counts}


def worker_pydnsbl(args: argparse.Namespace) -> dict[str, object]:
    import asyncio
    import warnings

    import aiodns
    from pydnsbl import DNSBLIpChecker
    from pydnsbl.providers import Provider

    warnings.simplefilter("ignore", DeprecationWarning)
    ips = [ip_of(i) for i in range(args.ips)]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    checker = DNSBLIpChecker(providers=[Provider(z) for z in zones_of(args.zones)], loop=loop)
    # pydnsbl has no nameserver/port option; its c-ares resolver takes both.
    checker._resolver = aiodns.DNSResolver(
        nameservers=["127.0.0.1"], loop=loop, timeout=5, tries=2,
        udp_port=args.port, tcp_port=args.port,
    )  # fmt: skip
    cpu0, rss0 = _usage()
    t0 = time.perf_counter()
    results = checker.bulk_check(ips)
    wall = time.perf_counter() - t0
    cpu1, _ = _usage()
    return {
        "wall": wall,
        "cpu": cpu1 - cpu0,
        "rss_setup_mb": rss0,
        "rss_peak_mb": _usage()[1],
        "listed": sum(len(r.detected_by) for r in results),
        "answered": sum(len(r.providers) - len(r.failed_providers) for r in results),
    }


# ----- driver ----------------------------------------------------------------------------------


def run_worker(python: str, name: str, args: argparse.Namespace) -> dict[str, object]:
    cmd = [python, __file__, "--worker", name, "--port", str(args.port), "--ips", str(args.ips),
           "--zones", str(args.zones), "--listed-every", str(args.listed_every)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ips", type=int, default=1000)
    parser.add_argument("--zones", type=int, default=8)
    parser.add_argument("--listed-every", type=int, default=50, help="every K-th IP is listed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="50 IPs x 2 zones, 1 round")
    parser.add_argument("--server", choices=["knot", "python"],
                        default="knot" if shutil.which("knotd") else "python")  # fmt: skip
    parser.add_argument("--peer-python", default=str(DEFAULT_PEER))
    parser.add_argument("--worker", choices=["probe", "lookups", "pydnsbl"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "pydnsbl":
            result = worker_pydnsbl(args)
        else:
            result = worker_ours(args, probe_path=args.worker == "probe")
        print(json.dumps(result))
        return
    if args.smoke:
        args.ips, args.zones, args.rounds = 50, 2, 1

    peer = args.peer_python if Path(args.peer_python).exists() else None
    contestants = ["probe", "lookups"] + (["pydnsbl"] if peer else [])
    results: dict[str, list[dict[str, object]]] = {c: [] for c in contestants}
    with tempfile.TemporaryDirectory(prefix="dnsbl-bench-") as tmp:
        server = Server(args, Path(tmp))
        args.port = server.port
        try:
            for _ in range(args.rounds):
                for c in contestants:
                    python = peer if c == "pydnsbl" and peer else sys.executable
                    results[c].append(run_worker(python, c, args))
        finally:
            server.stop()

    lookups = args.ips * args.zones
    expected = len(listed_ips(args.ips, args.listed_every)) * args.zones
    names = {"probe": "ours (probe, all jobs)", "lookups": "ours (lookups only)",
             "pydnsbl": "pydnsbl 1.x (bulk_check)"}  # fmt: skip
    print(f"\n{args.ips} IPs x {args.zones} zones = {lookups} lookups, {expected} listings; "
          f"server {server.kind} on 127.0.0.1:{args.port}; {os.cpu_count()} CPUs; "
          f"{args.rounds} round(s), median (best)\n")  # fmt: skip
    print("| client | wall s | CPU s | lookups/s | RSS after setup MB | peak RSS MB | listings |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for c, runs in results.items():
        walls = [float(str(r["wall"])) for r in runs]
        cpus = [float(str(r["cpu"])) for r in runs]
        med = statistics.median(walls)
        row = {
            "wall_median": med,
            "wall_best": min(walls),
            "cpu_median": statistics.median(cpus),
            "lookups_per_s": lookups / med,
            "rss_setup_mb": max(float(str(r["rss_setup_mb"])) for r in runs),
            "rss_peak_mb": max(float(str(r["rss_peak_mb"])) for r in runs),
            "listed": runs[-1].get("listed"),
            "runs": runs,
        }
        summary[c] = row
        ok = "ok" if row["listed"] == expected else f"WRONG: {row['listed']}"
        print(f"| {names[c]} | {med:.2f} ({min(walls):.2f}) | {row['cpu_median']:.2f} | "
              f"{row['lookups_per_s']:,.0f} | {row['rss_setup_mb']:.0f} | "
              f"{row['rss_peak_mb']:.0f} | {ok} |")  # fmt: skip
    if not peer:
        print(f"\n(pydnsbl skipped: no interpreter at {args.peer_python}; see the docstring)")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"dnsbl-{args.ips}x{args.zones}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "worker"},
                                "server": server.kind, "results": summary}, indent=2))  # fmt: skip
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
