"""What DNSSEC validation adds to the ``dns`` probe's cycle: N signed domains under shared parents.

    .venv/bin/python -m bench.dnssec_bench                 # N = 100 and 1,000
    .venv/bin/python -m bench.dnssec_bench --sizes 20      # a quick look

The zones are those of the scale bench (:mod:`bench.zones`: SPF with provider includes, DMARC,
two DKIM selectors, an MX), but each domain ``dNNNNN.bench.test`` is a zone of its own, delegated
with a DS from ``bench.test``, which is delegated from ``test.`` and that from a root ``.`` of the
bench's own; the providers ``espK.test`` are signed zones too. Every zone is signed with
dnspython (ECDSA P-256, NSEC) and served by knot (:mod:`bench.knot`, signing off, counting every
query it answers). The root's DS is the exporter's trust anchor.

For each N, in a fresh process each (:func:`measure`): the ``dns`` probe's cycle (every domain
started at once through ``run_probe``, as the daemon's first cycle) twice with ``dnssec: false``,
then twice with ``dnssec: true`` in one process (the second cycle reuses the zone cache: only the
domains' own answers are validated again; two cycles without DNSSEC too, for a like-for-like
second cycle: the DNS client shares answers between runs for 15 s). Wall and CPU seconds, queries
knot answered, and the verdicts (every domain must come out secure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.dnssectypes
import dns.zone
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from bench.knot import Knot, queries
from bench.zones import ESPS, PARENT, SELECTORS, BenchDomain, dkim_txt, domains, esp_zone

ROOT = Path(__file__).resolve().parent.parent
ALGORITHM = dns.dnssectypes.Algorithm.ECDSAP256SHA256


def _head(origin: str) -> list[str]:
    return [
        f"$ORIGIN {origin}",
        "$TTL 300",
        "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300",
        "@ NS ns.test.",
    ]


def _domain_zone(d: BenchDomain, i: int, dkim: str) -> str:
    policy = "none" if i % 50 == 3 else "quarantine"
    lines = [
        *_head(d.name + "."),
        f'@ TXT "v=spf1 ip4:{d.sending_ip} include:_spf.{d.esp} ~all"',
        "@ MX 10 mx",
        "mx A 127.0.0.1",
        f'_dmarc TXT "v=DMARC1; p={policy}; rua=mailto:dmarc@{d.name}"',
        *(f"{sel}._domainkey TXT {dkim}" for sel in SELECTORS),
    ]
    return "\n".join(lines) + "\n"


def _sign(text: str, origin: str) -> tuple[str, str]:
    """The zone signed with a fresh key, and the DS rdata of that key."""
    private = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags=257)
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    now = int(time.time())
    dns.dnssec.sign_zone(
        zone, keys=[(private, dnskey)], inception=now - 3600, expiration=now + 14 * 86400
    )
    return f"$ORIGIN {origin}\n" + zone.to_text(relativize=False), dns.dnssec.make_ds(
        origin, dnskey, "SHA256"
    ).to_text()


def write_signed_zones(directory: Path, n: int) -> tuple[dict[str, Path], str]:
    """Every zone signed, written to ``directory``; returns zone -> file and the root DS line."""
    directory.mkdir(parents=True, exist_ok=True)
    dkim = dkim_txt()
    texts: dict[str, str] = {}
    parent_lines = _head(PARENT + ".")
    for i, d in enumerate(domains(n)):
        texts[d.name + "."], ds = _sign(_domain_zone(d, i, dkim), d.name + ".")
        label = d.name.removesuffix("." + PARENT)
        parent_lines += [f"{label} NS ns.test.", f"{label} DS {ds}"]
    tld_lines = [*_head("test."), "ns A 127.0.0.1"]
    for k in range(ESPS):
        esp = f"esp{k}.test"
        texts[esp + "."], ds = _sign(esp_zone(esp, k), esp + ".")
        tld_lines += [f"{esp}. NS ns.test.", f"{esp}. DS {ds}"]
    texts[PARENT + "."], ds = _sign("\n".join(parent_lines) + "\n", PARENT + ".")
    tld_lines += [f"{PARENT}. NS ns.test.", f"{PARENT}. DS {ds}"]
    texts["test."], ds = _sign("\n".join(tld_lines) + "\n", "test.")
    root = [*_head("."), "test. NS ns.test.", f"test. DS {ds}"]
    texts["."], root_ds = _sign("\n".join(root) + "\n", ".")
    out: dict[str, Path] = {}
    for zone, text in texts.items():
        path = directory / (f"{zone}zone" if zone != "." else "root.zone")
        path.write_text(text)
        out[zone] = path
    return out, f". IN DS {root_ds}\n"


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _cycles(config_path: Path, control: Path, rounds: int) -> list[dict[str, Any]]:
    from exporter.config import load_config
    from exporter.probes import PROBES
    from exporter.runner import Runtime, run_probe, tune_gc

    config = load_config(config_path)
    runtime = Runtime.for_config(config)
    tune_gc()
    kind = PROBES["dns"]
    targets = kind.targets(config)
    out = []
    for _ in range(rounds):
        q0, c0, t0 = queries(control), _cpu(), time.perf_counter()
        recs = await asyncio.gather(*(run_probe(kind, t, runtime) for t in targets))
        wall, cpu, q = time.perf_counter() - t0, _cpu() - c0, queries(control) - q0
        statuses: dict[str, int] = {}
        for r in recs:
            for s in r.result.samples:
                if s.metric == "dnssec_status" and s.value == 1:
                    status = dict(s.labels)["status"]
                    statuses[status] = statuses.get(status, 0) + 1
        out.append({
            "targets": len(targets),
            "succeeded": sum(r.success for r in recs),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "queries": q,
            "dnssec_status": statuses,
            "errors": sorted({(r.result.error or "")[:100] for r in recs if not r.success})[:3],
        })  # fmt: skip
    await runtime.aclose()
    return out


def measure(config: Path, control: Path, rounds: int) -> list[dict[str, Any]]:
    """The cycle(s) in a fresh process, so that its CPU and memory are its own."""
    res = subprocess.run(
        [sys.executable, "-m", "bench.dnssec_bench", "--measure", str(config),
         "--knot-control", str(control), "--rounds", str(rounds)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"measure failed: {res.stderr[-2000:]}")
    return list(json.loads(res.stdout))


def bench(n: int, workdir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    zones, root_ds = write_signed_zones(workdir / "zones", n)
    signing = time.perf_counter() - t0
    anchors = workdir / "root-anchors.txt"
    anchors.write_text(root_ds)
    with Knot(workdir / "knot", zones) as knot:
        result: dict[str, Any] = {"n": n, "zones": len(zones), "signing_s": round(signing, 1)}
        for name, dnssec in (("off", False), ("on", True)):
            config = workdir / f"config-{name}.yml"
            glob = {"nameservers": [f"127.0.0.1:{knot.port}"], "interval": "1h",
                    "timeout": "60s", "dnssec": dnssec,
                    "dnssec_trust_anchors": str(anchors)}  # fmt: skip
            config.write_text(yaml.safe_dump({
                "global": glob,
                "domains": [{"domain": d.name, "dkim_selectors": list(SELECTORS),
                             "sending_ips": [d.sending_ip]} for d in domains(n)],
            }))  # fmt: skip
            result[f"dnssec_{name}"] = measure(config, knot.socket, rounds=2)
    (off1, off2), (on1, on2) = result["dnssec_off"], result["dnssec_on"]
    result["added"] = {
        "first_cycle_wall_s": round(on1["wall_s"] - off1["wall_s"], 3),
        "first_cycle_cpu_s": round(on1["cpu_s"] - off1["cpu_s"], 3),
        "first_cycle_queries": on1["queries"] - off1["queries"],
        "next_cycle_wall_s": round(on2["wall_s"] - off2["wall_s"], 3),
        "next_cycle_cpu_s": round(on2["cpu_s"] - off2["cpu_s"], 3),
        "next_cycle_queries": on2["queries"] - off2["queries"],
        "cpu_ms_per_domain_first": round(1000 * (on1["cpu_s"] - off1["cpu_s"]) / n, 2),
        "cpu_ms_per_domain_next": round(1000 * (on2["cpu_s"] - off2["cpu_s"]) / n, 2),
    }
    return result


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| N | dnssec | cycle | wall s | CPU s | queries | secure | succeeded |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows = [
            (name, i + 1, c) for name in ("off", "on") for i, c in enumerate(r[f"dnssec_{name}"])
        ]
        for name, i, c in rows:
            secure = c["dnssec_status"].get("secure", "-")
            lines.append(
                f"| {r['n']:,} | {name} | {i} | {c['wall_s']} | {c['cpu_s']} | {c['queries']:,}"
                f" | {secure} | {c['succeeded']}/{c['targets']} |"
            )
    lines.append("")
    for r in results:
        a = r["added"]
        lines.append(
            f"N = {r['n']:,}: DNSSEC adds {a['first_cycle_cpu_s']} s CPU"
            f" ({a['cpu_ms_per_domain_first']} ms per domain), {a['first_cycle_wall_s']} s wall and"
            f" {a['first_cycle_queries']:,} queries to the first cycle; {a['next_cycle_cpu_s']} s"
            f" CPU ({a['cpu_ms_per_domain_next']} ms per domain), {a['next_cycle_wall_s']} s wall"
            f" and {a['next_cycle_queries']:,} queries to the next (zone cache warm)."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--knot-control", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        from exporter.runner import run_event_loop

        print(json.dumps(run_event_loop(_cycles(args.measure, args.knot_control, args.rounds))))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="dnssec-bench-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            results.append(bench(n, Path(tmp) / str(n)))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"dnssec-{stamp}.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (out / f"dnssec-{stamp}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
