"""Data: spec strings -> in-memory uint8 data sets -> device batches."""

from .batches import DeviceBatches, normalise
from .bundle import DataBundle, Split
from .sources import load_data

__all__ = ["DataBundle", "DeviceBatches", "Split", "load_data", "normalise"]
