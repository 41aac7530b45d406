"""Addresses, host:port pairs and nameserver specs: parsing shared by the config and the network
layer. Standard library only, so that loading the config loads no DNS code."""

from __future__ import annotations

import ipaddress


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Parse ``host``, ``host:port``, ``v6addr`` or ``[v6addr]:port`` into (address, port).

    Raises ValueError with a human message when the text is not an IP address with optional port.
    """
    text = spec.strip()
    port = 53
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in nameserver {spec!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected text after ']' in nameserver {spec!r}")
            port = parse_port(rest[1:], spec)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = parse_port(port_text, spec)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"nameserver {spec!r} is not an IP address (use 'host' or 'host:port' with an IP)"
        ) from None
    return host, port


def parse_port(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in nameserver {spec!r}")
    return int(text)


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """'host:port', '[v6]:port' (or 'host' when a default port is given) -> (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {value!r}: expected host:port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ValueError(f"invalid address {value!r}: write IPv6 addresses as [addr]:port")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"invalid address {value!r}: expected host:port")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in {value!r}")
    if not host:
        raise ValueError(f"invalid address {value!r}: missing host")
    return host, int(port_text)


def normalize_name(name: str) -> str:
    """Lower-case, no trailing dot."""
    return name.strip().rstrip(".").lower()


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (not a host name). Host names are told apart without the cost of
    :func:`ipaddress.ip_address` failing on them: an IPv4 address ends in a digit, IPv6 has a
    colon."""
    if ":" not in text and not text[-1:].isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
