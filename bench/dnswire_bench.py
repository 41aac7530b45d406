"""Micro-benchmark: reading one DNS reply, dnspython's way and :mod:`exporter.net.dnswire`'s.

    python -m bench.dnswire_bench              # knot serving the scale bench's zones (10 domains)
    python -m bench.dnswire_bench --number 2000

Starts knot (Debian ``knot``) on loopback with the zones of the scale bench
(:mod:`bench.zones`, as ``bench/run.py`` does), asks it the questions a DNS probe cycle asks of
one domain (SPF and DMARC TXT, a 2048-bit DKIM key TXT, MX with its glue A, the MX host's A, a
NODATA with SOA for its AAAA, an NXDOMAIN with SOA), each with the EDNS OPT record the transport
writes, and times, per reply, in this process:

* ``dnspython``: what the transport did for every reply before, and still does for the replies
  the fast reader declines: ``dns.message.from_wire`` + ``resolve_chaining`` + the
  :class:`~exporter.net.dnsclient.DnsAnswer` (``parse_reply`` + ``message_answer``);
* ``fast``: :func:`exporter.net.dnswire.read_reply` + the answer (``fast_answer``);

and the question's encoding, ``dns.name.from_text(name).to_wire()`` against
:func:`exporter.net.dnswire.name_to_wire`. Both readers' answers are checked equal first. Times are
the best of ``--repeat`` rounds of ``--number`` calls, in microseconds per call; prints a table
and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rdatatype

from bench.knot import Knot
from bench.zones import write_zones
from exporter.net.dnstransport import fast_answer, message_answer, parse_reply
from exporter.net.dnswire import name_to_wire, rdatatype, read_reply

QUESTIONS = [
    ("spf TXT", "d00001.bench.test", "TXT"),
    ("dmarc TXT", "_dmarc.d00001.bench.test", "TXT"),
    ("dkim TXT", "s1._domainkey.d00001.bench.test", "TXT"),
    ("MX + glue", "d00001.bench.test", "MX"),
    ("A", "mx.d00001.bench.test", "A"),
    ("NODATA + SOA", "mx.d00001.bench.test", "AAAA"),
    ("NXDOMAIN + SOA", "_dmarc.mx.d00001.bench.test", "TXT"),
]


def ask(port: int, name: str, rdtype: str) -> bytes:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        return sock.recv(65535)


def best_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def measure(port: int, number: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for label, name, rdtype in QUESTIONS:
        wire = ask(port, name, rdtype)
        qname, qtype = name_to_wire(name), rdatatype(rdtype)
        fast = read_reply(wire, qname, qtype)
        if fast is None:
            raise SystemExit(f"{label}: the fast reader declined knot's reply")
        slow_answer = message_answer(name, rdtype, parse_reply(wire))
        quick = fast_answer(name, rdtype, fast)
        if quick != slow_answer:
            raise SystemExit(f"{label}: answers differ: {quick} != {slow_answer}")

        def slow() -> object:
            return message_answer(name, rdtype, parse_reply(wire))  # noqa: B023

        def quick() -> object:
            reply = read_reply(wire, qname, qtype)  # noqa: B023
            assert reply is not None
            return fast_answer(name, rdtype, reply)  # noqa: B023

        def encode_slow() -> object:
            return dns.name.from_text(name).to_wire()  # noqa: B023

        def encode_fast() -> object:
            return name_to_wire(name)  # noqa: B023

        rows.append(
            {
                "reply": label,
                "bytes": len(wire),
                "status": slow_answer.status,
                "records": len(slow_answer.rdatas),
                "dnspython_us": round(best_us(slow, number, repeat), 1),
                "fast_us": round(best_us(quick, number, repeat), 1),
                "encode_dnspython_us": round(best_us(encode_slow, number, repeat), 2),
                "encode_fast_us": round(best_us(encode_fast, number, repeat), 2),
                "rdatatype_dnspython_us": round(
                    best_us(lambda: dns.rdatatype.from_text(rdtype), number, repeat),  # noqa: B023
                    2,
                ),
                "rdatatype_fast_us": round(
                    best_us(lambda: rdatatype(rdtype), number, repeat),  # noqa: B023
                    2,
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=3000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the best is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dnswire-bench-") as tmp:
        work = Path(tmp)
        zones = write_zones(work / "zones", 10)
        with Knot(work, zones) as knot:
            rows = measure(knot.port, args.number, args.repeat)
    head = f"{'reply':16} {'bytes':>5} {'status':9} {'dnspython':>10} {'fast':>8} {'x':>5}"
    print(head + f"   {'encode: dnspython':>17} {'fast':>6}")
    for r in rows:
        ratio = r["dnspython_us"] / r["fast_us"]
        print(
            f"{r['reply']:16} {r['bytes']:5} {r['status']:9} {r['dnspython_us']:8.1f}us"
            f" {r['fast_us']:6.1f}us {ratio:5.1f}   {r['encode_dnspython_us']:15.2f}us"
            f" {r['encode_fast_us']:4.2f}us"
        )
    print(json.dumps({"unit": "us per call", "rows": rows}))


if __name__ == "__main__":
    main()
