"""Data spec strings -> DataBundle. See load_data for the grammar."""

from __future__ import annotations

from ..errors import ReslabError
from .bundle import DataBundle
from .digits import load_digits_bundle

SPEC_HELP = "digits, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, folder:DIR"


def load_data(spec: str = "digits", seed: int = 0, download: bool = False) -> DataBundle:
    """Load a data set by spec string (digits | fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR |
    cifar100:DIR | folder:DIR). The validation split is held out of the training data, seeded."""
    kind, _, _arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits":
        return load_digits_bundle(seed)
    raise ReslabError(f"unknown data spec {spec!r}; use one of: {SPEC_HELP}")
