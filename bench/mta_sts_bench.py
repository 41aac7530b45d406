"""MTA-STS probe benchmark: one cycle of N ``mta_sts`` targets, and the parsers' throughput.

The world, all on loopback: knot serving N domains ``dNNNNN.sts.test`` (``_mta-sts`` and
``_smtp._tls`` TXT, two MX records, ``mta-sts.<domain>`` A), and one HTTPS policy host for all of
them in a process of its own (aiohttp, port 443 of a loopback address, a trustme certificate per
``mta-sts.<domain>`` chosen by SNI), which answers each host's policy by the ``Host`` header. The
exporter's side runs every target at once through :func:`exporter.runner.run_probe` with the
daemon's shared runtime, as the scheduler starts a first cycle.

Reported: the cycle's wall and CPU seconds (the exporter's process only), each run's duration
(p50/p95/max), queries answered by knot, the resident memory after the cycle, and how many
policies and records the parsers read per second.

Needs the Debian package ``knot`` and root (port 443):
``.venv/bin/python bench/mta_sts_bench.py [--domains 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench.knot import Knot  # noqa: E402
from exporter.config import parse_config  # noqa: E402
from exporter.mtasts import discover_sts, discover_tlsrpt, parse_policy  # noqa: E402
from exporter.net.dnsclient import make_resolver  # noqa: E402
from exporter.probes import PROBES  # noqa: E402
from exporter.runner import Runtime, run_probe  # noqa: E402

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx1.{d}\r\nmx: *.mail.{d}\r\nmax_age: 604800\r\n"


def serve(address: str, cert: str, key: str, domains: list[str]) -> None:
    """The policy host (run in a child process): every ``mta-sts.<domain>`` on address:443."""
    import ssl

    from aiohttp import web

    bodies = {f"mta-sts.{d}": POLICY.format(d=d).encode() for d in domains}

    async def answer(request: web.Request) -> web.Response:
        body = bodies.get(request.host.rsplit(":", 1)[0])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="text/plain")

    contexts = {}
    for i, d in enumerate(domains):
        one = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        one.load_cert_chain(f"{cert}.{i}", f"{key}.{i}")
        contexts[f"mta-sts.{d}"] = one
    ctx = next(iter(contexts.values()))

    def pick(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        obj.context = contexts.get(name or "", ctx)

    ctx.sni_callback = pick
    app = web.Application()
    app.router.add_get("/.well-known/mta-sts.txt", answer)
    web.run_app(app, host=address, port=443, ssl_context=ctx, print=None, access_log=None)


def zone(domains: list[str], address: str) -> str:
    lines = ["$ORIGIN sts.test.", "$TTL 300",
             "@ SOA ns.sts.test. hostmaster.sts.test. 1 3600 600 86400 300", "@ NS ns",
             "ns A 127.0.0.1"]  # fmt: skip
    for d in domains:
        label = d.removesuffix(".sts.test")
        lines += [
            f'_mta-sts.{label} TXT "v=STSv1; id=20250101T000000"',
            f'_smtp._tls.{label} TXT "v=TLSRPTv1; rua=mailto:tls@{d}"',
            f"{label} MX 10 mx1.{d}.",
            f"{label} MX 20 in.mail.{d}.",
            f"mta-sts.{label} A {address}",
        ]
    return "\n".join(lines) + "\n"


def parser_rates(seconds: float = 1.0) -> dict[str, float]:
    policy = POLICY.format(d="example.com").encode()
    sts = ["v=spf1 -all", "v=STSv1; id=20250101T000000"]
    rpt = ["v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/v1"]
    out = {}
    for name, fn in (
        ("policies_per_s", lambda: parse_policy(policy)),
        ("sts_rrsets_per_s", lambda: discover_sts(sts)),
        ("tlsrpt_rrsets_per_s", lambda: discover_tlsrpt(rpt)),
    ):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(100):
                fn()
            n += 100
        out[name] = round(n / (time.perf_counter() - t0))
    return out


def prepare(n: int, workdir: Path) -> tuple[list[str], str, Path]:
    """Certificates and zone for ``n`` domains: (domains, policy host address, CA file)."""
    import trustme
    from servers.https import loopback_address

    domains = [f"d{i:05d}.sts.test" for i in range(n)]
    ca = trustme.CA()
    for i, d in enumerate(domains):  # a certificate of its own per policy host, as in life
        leaf = ca.issue_cert(f"mta-sts.{d}")
        with (workdir / f"cert.pem.{i}").open("wb") as f:
            for blob in leaf.cert_chain_pems:
                f.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(workdir / f"key.pem.{i}"))
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    address = loopback_address()
    (workdir / "sts.test.zone").write_text(zone(domains, address))
    return domains, address, workdir / "ca.pem"


async def cycle(domains: list[str], address: str, ca_file: Path, knot: Knot) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:  # the policy host's process is up when it accepts a connection
        try:
            _, writer = await asyncio.open_connection(address, 443)
            writer.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    ns = f"127.0.0.1:{knot.port}"
    config = parse_config(
        {
            "global": {"nameservers": [ns], "timeout": "30s"},
            "domains": [{"domain": d} for d in domains],
            "mta_sts": {"ca_file": str(ca_file)},
        }
    )
    kind = PROBES["mta_sts"]
    targets = kind.targets(config)
    runtime = Runtime(make_resolver([ns], attempt_timeout=2, lifetime=5), config)
    q0 = knot.queries()
    cpu0, t0 = time.process_time(), time.perf_counter()
    records = await asyncio.gather(*(run_probe(kind, t, runtime) for t in targets))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    queries = knot.queries() - q0
    await runtime.aclose()
    durations = sorted(r.duration for r in records)
    failed = [r.result.error for r in records if not r.success]
    return {
        "domains": len(domains),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "run_p50_s": round(statistics.median(durations), 4),
        "run_p95_s": round(durations[int(len(durations) * 0.95) - 1], 4),
        "run_max_s": round(durations[-1], 4),
        "failed": len(failed),
        "first_error": failed[0] if failed else None,
        "findings": sum(len(r.result.findings) for r in records),
        "dns_queries": queries,
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        address, cert, key, n = sys.argv[2:6]
        serve(address, cert, key, [f"d{i:05d}.sts.test" for i in range(int(n))])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=500)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="mta-sts-bench-") as tmp:
        workdir = Path(tmp)
        domains, address, ca_file = prepare(args.domains, workdir)
        files = [str(workdir / "cert.pem"), str(workdir / "key.pem")]
        server = subprocess.Popen([sys.executable, __file__, "--serve", address, *files,
                                   str(args.domains)])  # fmt: skip
        try:
            with Knot(workdir, {"sts.test": workdir / "sts.test.zone"}) as knot:
                result = uvloop.run(cycle(domains, address, ca_file, knot))
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps({"parsers": parser_rates(), "cycle": result}, indent=2))


if __name__ == "__main__":
    main()
