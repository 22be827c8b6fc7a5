"""Errors a user can cause. The CLI turns each into one line on stderr and an exit status.

Messages name settings as Python spells them (`batch_size`) and list those names in `params`; the CLI
shows its own flags in their place (`--batch-size`), so flag names live only in `reslab.cli`. A message
uses a named setting's word only for the setting itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class _NamesParams:
    """Mixed into the user-facing errors: `params` are the setting names the message mentions."""

    params: tuple[str, ...] = ()

    def _keep_params(self, params: tuple[str, ...]) -> None:
        self.params = tuple(params)

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors travel between DDP ranks by pickle; the params must travel with the message.
        return (type(self), (str(self),), {"params": self.params, **getattr(self, "__dict__", {})})


class ReslabError(_NamesParams, ValueError):
    """A user mistake: unknown name, bad path, corrupt file, impossible setting. CLI exit status 2."""

    exit_code = 2

    def __init__(self, message: str = "", *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self._keep_params(params)


class DivergedError(_NamesParams, RuntimeError):
    """Training produced a NaN or infinite loss. CLI exit status 3; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, message: str = "", *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self._keep_params(params)


def message_with_flags(exc: BaseException, flags: Mapping[str, str]) -> str:
    """The error's message with each named setting shown as its command-line flag (outside quoted
    values such as paths, which may contain the same word)."""
    names = [name for name in getattr(exc, "params", ()) if name in flags]
    if not names:
        return str(exc)
    # Whole words only, and not inside a path (runs/out/x, out.d) or a longer flag (--nproc-per-node).
    pattern = re.compile(rf"(?<![\w\-/.])({'|'.join(map(re.escape, names))})(?![\w\-/]|\.\w)")
    parts = re.split(r"('[^']*')", str(exc))  # odd indices: quoted
    return "".join(
        part if i % 2 else pattern.sub(lambda m: flags[m.group(1)], part) for i, part in enumerate(parts)
    )


def error_line(command: str, exc: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """The one line the CLI prints for a user-facing error of `reslab <command>`."""
    text = message_with_flags(exc, flags or {})
    if isinstance(exc, ReslabError):
        return f"reslab {command}: error: {text}"
    return f"reslab {command}: {text}"
