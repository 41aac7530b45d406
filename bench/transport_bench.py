"""CPU per DNS question through the shared client, transport and reply reader, nothing else.

    .venv/bin/python -m bench.transport_bench [--domains 1000] [--rounds 5]

Starts knot on 127.0.0.1 with the scale bench's zones (:mod:`bench.zones`), then asks the seven
questions of a ``dns`` run for every domain (TXT, DMARC TXT, two DKIM TXT, MX, the MX host's A
and AAAA) as the DNS cycle does: one :class:`~exporter.net.dnsclient.DnsClient` per domain over
the config's :class:`~exporter.net.network.Network`, all domains at once. Each round starts with
the shared answers forgotten, so every question goes on the wire. Prints CPU microseconds per
question for each round and their median, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
from pathlib import Path

from bench.knot import Knot
from bench.zones import SELECTORS, domains, write_zones
from exporter.net.dnsclient import make_resolver
from exporter.net.network import Network
from exporter.runner import run_event_loop


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def questions(n: int) -> list[list[tuple[str, str]]]:
    out = []
    for d in domains(n):
        name = d.name
        out.append(
            [
                (name, "TXT"),
                (f"_dmarc.{name}", "TXT"),
                *((f"{sel}._domainkey.{name}", "TXT") for sel in SELECTORS),
                (name, "MX"),
                (f"mx.{name}", "A"),
                (f"mx.{name}", "AAAA"),
            ]
        )
    return out


async def _one_run(net: Network, asks: list[tuple[str, str]]) -> None:
    client = net.dns_client()
    net.shared.acquire()
    try:
        await asyncio.gather(*(client.query(name, rdtype) for name, rdtype in asks))
    finally:
        net.shared.release()


async def _rounds(port: int, n: int, rounds: int) -> dict[str, object]:
    net = Network(make_resolver([f"127.0.0.1:{port}"]))
    asks = questions(n)
    total = sum(len(a) for a in asks)
    per_question: list[float] = []
    try:
        for _ in range(rounds):
            net.shared.forget()
            c0 = _cpu()
            await asyncio.gather(*(_one_run(net, a) for a in asks))
            per_question.append(round((_cpu() - c0) / total * 1e6, 1))
    finally:
        await net.aclose()
    return {
        "domains": n,
        "questions_per_round": total,
        "cpu_us_per_question": per_question,
        "median_us": statistics.median(per_question),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        work = Path(tmp)
        with Knot(work, write_zones(work / "zones", args.domains)) as knot:
            out = run_event_loop(_rounds(knot.port, args.domains, args.rounds))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
