"""Atomic file replacement: a crash or a full disk never leaves a half-written file at the target path.

The bytes go to a temp file in the target's folder, are fsynced, get the permissions an ordinary file
would get (mkstemp's 0600 would hide run directories from other users), and are renamed over the target;
the folder is fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import ReslabError


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block ends without error it replaces `path`.

    For writers that need a file name (torch.save to a path, matplotlib, exporters). `suffix` keeps
    the extension for writers that pick the format from it. OSErrors become one-line ReslabErrors.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise ReslabError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ReslabError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_link(source: str | Path, path: str | Path) -> Path:
    """Atomically make `path` a second name of `source`'s current bytes: a hard link (no bytes copied), or
    a copy where the file system has none. Later atomic replacements of `source` leave `path` alone."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return Path(path)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call write(binary_handle) into a temp file, then atomically replace `path` with it."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """`data` as indented JSON (one space), atomically replacing `path`."""
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
