"""``deliverability-exporter spf IP SENDER``: one RFC 7208 check_host() from the command line.

Prints the result, the explanation and the trail of lookups that led there (``--format json``:
an object with at least ``result`` and ``lookups``). Exit status: 0 when the result is
``pass``, 1 for any other result, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys

from exporter.net.addr import parse_nameserver
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.spf.evaluate import check_host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ip", help="connecting client IP address (IPv4 or IPv6)")
    parser.add_argument(
        "sender",
        help="envelope sender (MAIL FROM), 'local@domain' or a bare domain;"
        " '' checks the HELO identity",
    )
    parser.add_argument("--helo", default="", help="HELO/EHLO host name (for %%{h} and '')")
    parser.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="resolver to ask (repeatable); default: the system resolver",
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="overall time limit in seconds (default 20)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        ipaddress.ip_address(args.ip.strip())
    except ValueError:
        print(f"spf: {args.ip!r} is not an IP address", file=sys.stderr)
        return 2
    try:
        for spec in args.nameserver:
            parse_nameserver(spec)
    except ValueError as exc:
        print(f"spf: {exc}", file=sys.stderr)
        return 2
    if not args.sender and not args.helo:
        print("spf: an empty sender needs --helo", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    resolver = make_resolver(args.nameserver, attempt_timeout=2.0, lifetime=5.0)
    client = DnsClient(resolver)
    try:
        result = await asyncio.wait_for(
            check_host(client, args.ip, args.sender, args.helo), timeout=args.timeout
        )
        data = result.as_dict()
    except TimeoutError:
        data = {
            "result": "temperror",
            "problem": f"check_host() took longer than {args.timeout:g}s",
            "lookups": 0,
            "trail": [],
        }
    data["ip"] = args.ip
    data["sender"] = args.sender
    data["helo"] = args.helo
    data["dns_queries"] = client.stats.queries
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(f"result: {data['result']}")
        if data.get("mechanism"):
            print(f"decided by: {data['mechanism']}")
        if data.get("problem"):
            print(f"problem: {data['problem']}")
        if data.get("explanation"):
            print(f"explanation: {data['explanation']}")
        print(f"DNS lookups (RFC 7208 §4.6.4): {data['lookups']} of 10")
        print("trail:")
        trail = data.get("trail")
        for line in trail if isinstance(trail, list) else []:
            print(f"  {line}")
    return 0 if data["result"] == "pass" else 1
