"""Internationalised domain names: one spelling (A-labels) for a domain, whoever wrote it.

Reporters and mail systems write a domain as U-labels (``bücher.de``), A-labels
(``xn--bcher-kva.de``) or in mixed case and width; the config, DNS and the metric labels use
A-labels. The ``idna`` package implements IDNA 2008 with the UTS 46 mapping (what browsers and
mail systems do: case, full-width forms and ideographic full stops mapped); the standard
library's ``idna`` codec is IDNA 2003, which maps ``ß`` away and accepts symbols IDNA 2008
refuses.

Two readings: :func:`to_alabels` for the config (a name the user wrote: an invalid one is an
error naming the IDNA rule it breaks; ASCII labels, underscores included, pass as they are), and
:func:`a_label` for names read from reports and events (an invalid one is None: the caller keeps
the text it has).
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


def to_alabels(name: str) -> str:
    """``name`` with its internationalized labels as A-labels (``bücher.example`` ->
    ``xn--bcher-kva.example``: IDNA 2008 after the UTS #46 mapping, which also folds case and
    reads ``。`` as a dot); an ASCII name is returned as it is. Raises ValueError naming the
    IDNA rule an invalid name breaks."""
    if name.isascii():
        return name
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        return ".".join(
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        )
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(
            f"invalid internationalized domain name {name!r}: {exc} (IDNA 2008; give the"
            " xn-- form if the registry accepted it under older rules)"
        ) from None
