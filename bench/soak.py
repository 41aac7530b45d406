"""Long soak of the daemon: accelerated probe cycles with reloads, resources printed over time.

    .venv/bin/python bench/soak.py --minutes 10 --interval 0.05 --reload-every 2 --domains 20

Runs the real :class:`exporter.daemon.Exporter` in-process against the project's loopback test
DNS server (``tests/dnsserver.py``; nothing leaves the machine): ``--domains`` healthy domains
plus one whose DNS never answers, every interval accelerated to ``--interval`` seconds, and a
config reload (adding and removing one domain) every ``--reload-every`` seconds. Every
``--report-every`` seconds it prints cycles, reloads, open file descriptors, asyncio tasks,
objects tracked by the garbage collector and RSS; at the end it compares the first report after
warm-up with the last and exits 1 if descriptors or tasks grew, or RSS grew more than
``--rss-slack`` MiB. The in-suite version is ``tests/faults/test_soak.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import yaml  # noqa: E402
from dnsserver import DnsServer  # noqa: E402
from exporter.state import State  # noqa: E402
from faults.leakcheck import Usage, settle, usage  # noqa: E402

from exporter import daemon  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.daemon import Exporter  # noqa: E402
from exporter.runner import RunRecord  # noqa: E402


class CountingState(State):
    runs = 0

    def record(self, rec: RunRecord) -> None:
        self.runs += 1
        super().record(rec)


def write(path: Path, dns: DnsServer, domains: list[str], interval: float) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "interval": f"{interval * 1000:g}ms",
                    "timeout": "5s",
                    "nameservers": [dns.address],
                    "dnssec": False,  # the soak's DNS server is not signed
                    "allow_short_intervals": True,
                },
                "domains": [{"domain": d, "sending_ips": ["192.0.2.10"]} for d in domains],
                "blacklists": {"ip_zones": [], "domain_zones": []},
            }
        )
    )


async def soak(args: argparse.Namespace) -> int:
    dns = DnsServer()
    names = [f"d{i}.soak.test" for i in range(args.domains + 1)]
    for d in names:
        dns.add_txt(d, "v=spf1 ip4:192.0.2.0/24 -all")
        dns.add_txt(f"_dmarc.{d}", f"v=DMARC1; p=reject; rua=mailto:r@{d}")
        dns.add(d, "MX", f"10 mx.{d}.")
        dns.add(f"mx.{d}", "A", "192.0.2.25")
    dns.timeout.add("silent.soak.test")
    dns.start()
    daemon.FIRST_RUN_JITTER = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    path = tmp / "config.yaml"
    stable = [*names[:-1], "silent.soak.test"]
    write(path, dns, stable, args.interval)
    state = CountingState()
    exporter = Exporter(config_path=path, config=load_config(path), state=state)
    exporter.start()
    reloads = 0
    start = time.monotonic()
    end = start + args.minutes * 60
    next_reload = start + args.reload_every
    next_report = start + args.warmup
    reports: list[Usage] = []
    try:
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if now >= next_reload:
                domains = stable + ([names[-1]] if reloads % 2 == 0 else [])
                write(path, dns, domains, args.interval)
                ok, message = exporter.reload()
                if not ok:
                    print(f"reload failed: {message}", file=sys.stderr)
                    return 1
                reloads += 1
                next_reload = now + args.reload_every
            if now >= next_report:
                await settle()
                u = usage()
                reports.append(u)
                print(f"{now - start:7.1f}s cycles={state.runs} reloads={reloads} {u}", flush=True)
                next_report = now + args.report_every
    finally:
        exporter.stop()
        dns.stop()
    if len(reports) < 2:
        print("too short to compare: raise --minutes", file=sys.stderr)
        return 1
    first, last = reports[0], reports[-1]
    grew = (
        last.fds > first.fds + 2
        or last.tasks > first.tasks + args.domains + 3
        or last.rss_kib > first.rss_kib + args.rss_slack * 1024
    )
    print(
        f"{'GREW' if grew else 'flat'}: {first} -> {last}; {state.runs} cycles, {reloads} reloads"
    )
    return 1 if grew else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.05, help="probe interval, seconds")
    parser.add_argument("--reload-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the baseline")
    parser.add_argument("--report-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--rss-slack", type=float, default=32.0, help="MiB")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
