"""Report parsing: rate and memory on a 1 MB DMARC aggregate report.

    python -m bench.reports_bench                 # 1 MB report, best of 5 rounds
    python -m bench.reports_bench --size 5000000 --repeat 3

Generates an aggregate report of ``--size`` bytes of XML (records of a large reporter: IPv4
and IPv6 sources, every disposition, DKIM and SPF results, some failing) and measures, in this
process:

* ``parse``: :func:`exporter.reports.dmarc.parse_aggregate` on the XML (reports/s, MB/s,
  records/s);
* ``message``: :func:`exporter.reports.mime.parse_message` on a whole mail carrying the report
  gzipped and base64-encoded, as reporters send it (MIME walk, base64, gunzip with its caps,
  parse);
* ``baseline``: the standard library's ``xml.etree.ElementTree.fromstring`` on the same XML,
  the whole tree at once and nothing defused or extracted: what the streaming, defused parse
  costs beside the plainest parse there is;

then the memory of one ``parse`` and one ``message``, each in a fresh child process: the peak
of Python allocations (``tracemalloc``, which sees expat's buffers too: pyexpat allocates
through Python) and the growth of the peak resident set (``VmHWM`` after resetting it through
``/proc/self/clear_refs``). Beside them (``--no-peer`` to skip), the peer the issue names:
parsedmarc's ``parse_aggregate_report_xml`` and ``parse_report_email`` on the same XML and mail,
offline, in its own virtualenv (``bench/peers.py``). Prints a table and one JSON line;
``--out FILE`` writes the JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from exporter.reports.dmarc import parse_aggregate
from exporter.reports.mime import parse_message

_DISPOSITIONS = ("none", "none", "none", "quarantine", "reject")


def make_report(size: int) -> bytes:
    """An aggregate report of about ``size`` bytes."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feedback>\n  <version>1.0</version>\n'
        "  <report_metadata>\n    <org_name>bench.example</org_name>\n"
        "    <email>noreply-dmarc@bench.example</email>\n"
        "    <report_id>bench-1</report_id>\n"
        "    <date_range><begin>1700000000</begin><end>1700086399</end></date_range>\n"
        "  </report_metadata>\n  <policy_published>\n    <domain>example.com</domain>\n"
        "    <adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct>\n"
        "  </policy_published>\n"
    )
    parts = [head]
    total = len(head)
    i = 0
    while total < size - 20:
        ip = f"198.{18 + i % 2}.{i // 256 % 256}.{i % 256}" if i % 5 else f"2001:db8::{i:x}"
        dkim = "pass" if i % 7 else "fail"
        spf = "pass" if i % 3 else "fail"
        record = (
            "  <record>\n    <row>\n"
            f"      <source_ip>{ip}</source_ip>\n      <count>{1 + i % 97}</count>\n"
            "      <policy_evaluated>\n"
            f"        <disposition>{_DISPOSITIONS[i % 5]}</disposition>\n"
            f"        <dkim>{dkim}</dkim>\n        <spf>{spf}</spf>\n"
            "      </policy_evaluated>\n    </row>\n"
            "    <identifiers>\n      <envelope_from>example.com</envelope_from>\n"
            "      <header_from>example.com</header_from>\n    </identifiers>\n"
            "    <auth_results>\n"
            f"      <dkim><domain>example.com</domain><selector>s{i % 4}</selector>"
            f"<result>{dkim}</result></dkim>\n"
            f"      <spf><domain>example.com</domain><scope>mfrom</scope><result>{spf}</result>"
            "</spf>\n    </auth_results>\n  </record>\n"
        )
        parts.append(record)
        total += len(record)
        i += 1
    parts.append("</feedback>\n")
    return "".join(parts).encode()


def make_message(xml: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "noreply-dmarc@bench.example"
    msg["To"] = "dmarc@example.com"
    msg["Subject"] = "Report domain: example.com Submitter: bench.example Report-ID: bench-1"
    msg.set_content("This is an aggregate report from bench.example.")
    msg.add_attachment(
        gzip.compress(xml, mtime=0),
        maintype="application",
        subtype="gzip",
        filename="bench.example!example.com!1700000000!1700086399.xml.gz",
    )
    return msg.as_bytes(policy=SMTP)


def best_rate(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Calls per second: the best of ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return 1 / best


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child_memory(what: str, size: int) -> dict[str, float]:
    """Run in a fresh process: the memory one parse costs."""
    import tracemalloc

    xml = make_report(size)
    data = make_message(xml) if what == "message" else xml
    fn = parse_message if what == "message" else parse_aggregate
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    result = fn(data)  # type: ignore[operator]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _status_kib("VmHWM")
    assert result is not None
    return {"tracemalloc_peak_mib": peak / 2**20, "rss_growth_mib": (hwm - rss_before) / 1024}


def run_parsedmarc(xml: bytes, message: bytes, number: int, repeat: int) -> dict[str, Any]:
    """parsedmarc on the same XML and mail (``bench/peers.py parsedmarc``), in the peers'
    virtualenv: its rates and the peak of Python allocations of one parse of each."""
    from bench.run import peer_python

    python = peer_python()
    with tempfile.TemporaryDirectory() as tmp:
        xml_file, mail_file = Path(tmp) / "report.xml", Path(tmp) / "report.eml"
        xml_file.write_bytes(xml)
        mail_file.write_bytes(message)
        peers = Path(__file__).resolve().parent / "peers.py"
        out = subprocess.run(
            [str(python), str(peers), "parsedmarc", str(xml_file), str(mail_file),
             str(max(1, number // 4)), str(repeat)],
            check=True, capture_output=True, text=True, timeout=1800,
        ).stdout  # fmt: skip
    found: dict[str, Any] = json.loads(out)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="bytes of XML")
    parser.add_argument("--number", type=int, default=20, help="calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (best is kept)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--no-peer", action="store_true", help="skip parsedmarc")
    parser.add_argument("--child", choices=["parse", "message"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_memory(args.child, args.size)))
        return 0

    xml = make_report(args.size)
    message = make_message(xml)
    report = parse_aggregate(xml)
    assert [r.key for r in parse_message(message).dmarc] == [report.key]
    records = len(report.records)
    rates = {
        "parse": best_rate(lambda: parse_aggregate(xml), args.number, args.repeat),
        "message": best_rate(lambda: parse_message(message), args.number, args.repeat),
        "baseline": best_rate(lambda: ET.fromstring(xml), args.number, args.repeat),
    }
    memory = {}
    for what in ("parse", "message"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.reports_bench",
                "--child",
                what,
                "--size",
                str(args.size),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        memory[what] = json.loads(out)
    peer = None if args.no_peer else run_parsedmarc(xml, message, args.number, args.repeat)
    result = {
        "parsedmarc": peer,
        "xml_bytes": len(xml),
        "message_bytes": len(message),
        "records": records,
        "reports_per_s": {k: round(v, 1) for k, v in rates.items()},
        "mb_per_s": {k: round(v * len(xml) / 1e6, 1) for k, v in rates.items()},
        "records_per_s": {k: round(v * records) for k, v in rates.items()},
        "memory_mib": {k: {m: round(x, 1) for m, x in v.items()} for k, v in memory.items()},
        "python": sys.version.split()[0],
    }
    print(f"1 report of {len(xml):,} bytes of XML, {records:,} records; mail {len(message):,} B")
    print(
        f"{'':18} {'reports/s':>10} {'MB/s':>7} {'records/s':>11} {'tracemalloc':>12} {'RSS+':>7}"
    )
    for what, rate in rates.items():
        mem = memory.get(what, {})
        trace = f"{mem['tracemalloc_peak_mib']:.1f} MiB" if mem else "-"
        rss = f"{mem['rss_growth_mib']:.1f}" if mem else "-"
        print(
            f"{what:18} {rate:10.1f} {rate * len(xml) / 1e6:7.1f} {rate * records:11,.0f}"
            f" {trace:>12} {rss:>7}"
        )
    if peer is not None:
        for what, rate in peer["reports_per_s"].items():
            trace = f"{peer['tracemalloc_peak_mib'][what]:.1f} MiB"
            print(
                f"{'parsedmarc ' + what:18} {rate:10.1f} {rate * len(xml) / 1e6:7.1f}"
                f" {rate * records:11,.0f} {trace:>12} {'-':>7}"
            )
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
