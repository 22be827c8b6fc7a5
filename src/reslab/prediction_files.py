"""Prediction rows streamed to a .csv or .jsonl file, one row per image as it is classified.

Rows go to `<out>.partial`, flushed after every row, and the file is renamed to `<out>` when the run
ends normally: an interrupted run leaves what it had classified in the .partial file and never a
half-written `<out>` (an older `<out>` stays as it was).

CSV columns: path, error, class_1, probability_1, ..., class_k, probability_k (empty where an image
could not be read, or has fewer classes). JSONL: each row as JSON (see reslab.batch_predict).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .errors import ReslabError

FORMATS = (".csv", ".jsonl")


class PredictionFile:
    def __init__(self, path: str | Path, topk: int) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower()
        if self.format not in FORMATS:
            raise ReslabError(
                f"cannot write predictions to {str(path)!r}: name a .csv or .jsonl file", params=("out",)
            )
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.topk = topk
        self._handle: IO[str] | None = None
        self._csv: Any = None

    def __enter__(self) -> PredictionFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.partial, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise ReslabError(f"cannot write {str(self.partial)!r}: {exc.strerror or exc}") from None
        if self.format == ".csv":
            self._csv = csv.writer(self._handle)
            header = ["path", "error"]
            for rank in range(1, self.topk + 1):
                header += [f"class_{rank}", f"probability_{rank}"]
            self._csv.writerow(header)
        return self

    def write(self, row: dict[str, Any]) -> None:
        assert self._handle is not None
        if self._csv is not None:
            cells = [row["path"], row["error"] or ""]
            for rank in range(self.topk):
                top = row["top"][rank] if rank < len(row["top"]) else None
                cells += [top["class"], top["probability"]] if top else ["", ""]
            self._csv.writerow(cells)
        else:
            self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        self._handle.close()
        if kind is None:
            os.replace(self.partial, self.path)
