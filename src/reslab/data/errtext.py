"""Library exceptions quoted inside a ReslabError: kept to one line, since the CLI prints one line."""

from __future__ import annotations


def quote(error: BaseException) -> str:
    """`Type: message` with all whitespace runs (newlines from tarfile, zlib, ...) folded to one space."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
