"""Data: spec strings -> data sets (in memory, or files streamed) -> batches on the device."""

from .batches import DeviceBatches, normalise
from .bundle import AnySplit, DataBundle, FileSplit, Split
from .sources import load_data

__all__ = ["AnySplit", "DataBundle", "DeviceBatches", "FileSplit", "Split", "load_data", "normalise"]
