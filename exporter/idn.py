"""Internationalised domain names: one spelling (A-labels) for a domain, whoever wrote it.

Reporters and mail systems write a domain as U-labels (``bücher.de``), A-labels
(``xn--bcher-kva.de``) or in mixed case and width; the config, DNS and the metric labels use
A-labels. The ``idna`` package implements IDNA 2008 with the UTS 46 mapping (what browsers and
mail systems do: case, full-width forms and ideographic full stops mapped); the standard
library's ``idna`` codec is IDNA 2003, which maps ``ß`` away and accepts symbols IDNA 2008
refuses.
"""

from __future__ import annotations

import idna

MAX_TEXT = 1024
"""Longer text is not a domain name (253 characters in A-labels at most)."""


def a_label(domain: str) -> str | None:
    """``domain`` with its internationalised labels as A-labels, lower case, without a
    trailing dot (``*.Bücher.DE.`` -> ``*.xn--bcher-kva.de``); an ASCII name unchanged but
    for case; None when it is not a valid internationalised domain name."""
    text = domain.strip().rstrip(".")
    if text.isascii():
        return text.lower()
    if len(text) > MAX_TEXT:
        return None
    wildcard = text.startswith("*.")
    try:
        encoded = idna.encode(text[2:] if wildcard else text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return ("*." if wildcard else "") + encoded.lower()
