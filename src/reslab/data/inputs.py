"""The image files a command is pointed at: files, folders (searched recursively) and @lists.

An INPUT is an image file, a folder (every image file under it, by extension, sorted; hidden files and
folders skipped), or `@FILE`, a text file listing one path per line (blank lines and lines starting with
`#` skipped; relative paths are relative to the list's folder). A list names files, never folders:
its paths are taken as they are, not walked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ReslabError
from .images import IMAGE_EXTENSIONS


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _listed(list_file: Path) -> Iterator[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ReslabError(f"cannot read the list {str(list_file)!r}: {reason}") from None
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            path = Path(text)
            yield path if path.is_absolute() else list_file.parent / path


def iter_images(inputs: Sequence[str | Path]) -> Iterator[Path]:
    """The image paths INPUTs name, in the order given (see the module docstring). A named file or folder
    that does not exist is a ReslabError; a listed file is yielded as it is (reading it reports it)."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    for item in inputs:
        text = str(item)
        if text.startswith("@") and not Path(text).exists():
            yield from _listed(Path(text[1:]))
            continue
        path = Path(item)
        if path.is_dir():
            yield from _images_under(path)
        elif path.exists():
            yield path
        else:
            raise ReslabError(f"image {text!r} does not exist")


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """iter_images as a list; no image at all is a ReslabError."""
    found = list(iter_images(inputs))
    if not found:
        named = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        raise ReslabError(
            "no images found in " + ", ".join(repr(str(p)) for p in named) if named else "no images given"
        )
    return found
