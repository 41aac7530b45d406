"""The SPF engine's own error type."""

from __future__ import annotations


class SpfSyntaxError(ValueError):
    """An SPF record, term or macro string does not follow RFC 7208's grammar (a permerror)."""
