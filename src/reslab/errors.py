"""Errors a user can cause. The CLI turns each into one line on stderr and an exit status."""


class ReslabError(ValueError):
    """A user mistake: unknown name, bad path, corrupt file, impossible setting. CLI exit status 2."""

    exit_code = 2


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss. CLI exit status 3; the last good checkpoint is kept."""

    exit_code = 3


def error_line(command: str, exc: BaseException) -> str:
    """The one line the CLI prints for a user-facing error of `reslab <command>`."""
    if isinstance(exc, ReslabError):
        return f"reslab {command}: error: {exc}"
    return f"reslab {command}: {exc}"
