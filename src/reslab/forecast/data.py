"""Gridded fields for forecasting, read from netCDF with xarray: WeatherBench files or the simulator's.

`netcdf:FILE_OR_GLOB` (or a folder: its *.nc) names the files. Files that carry a `split` attribute
(train/val/test; the simulator writes them) are separate trajectories; others are joined along time and
split by year (the last year is test, the one before validation, unless named). Each variable is taken
on (time, lat, lon) or (time, y, x); `z500` means `z` at level 500 when the file has levels.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ReslabError

if TYPE_CHECKING:
    import xarray as xr

SPLITS = ("train", "val", "test")
GRID_DIMS = (("lat", "lon"), ("latitude", "longitude"), ("y", "x"))


@dataclass(frozen=True)
class DataConfig:
    spec: str
    variables: tuple[str, ...] = ("z250", "t500")
    levels: tuple[int, ...] = ()  # with a variable that has levels: take it at each of these
    history: int = 3  # input states t, t - step, ..., stacked as channels (Rasp & Thuerey: t, t-6h, t-12h)
    val_years: tuple[int, ...] = ()  # for files without a split attribute
    test_years: tuple[int, ...] = ()


@dataclass
class GriddedData:
    """Fields in physical units, [time, variable, lat, lon] per contiguous segment, by split."""

    names: list[str]
    splits: dict[str, list[np.ndarray]]
    step_hours: float
    weights: np.ndarray  # (lat,) cos(lat) / mean(cos(lat)); ones on a channel (y, x)
    mean: np.ndarray  # (variable,), from the training split only
    std: np.ndarray

    @property
    def grid(self) -> tuple[int, int]:
        return self.splits["train"][0].shape[-2:]

    def steps(self, hours: float, what: str = "lead") -> int:
        """hours as a whole number of the data's time steps, or a one-line error."""
        steps = hours / self.step_hours
        if hours <= 0 or abs(steps - round(steps)) > 1e-9:
            raise ReslabError(
                f"{what} {hours:g}h is not a positive multiple of the data's time step ({self.step_hours:g}h)",
                params=(what,),
            )
        return round(steps)

    def normalised(self, split: str) -> list[torch.Tensor]:
        scale = (self.mean[:, None, None], self.std[:, None, None])
        return [
            torch.from_numpy(((seg - scale[0]) / scale[1]).astype(np.float32)) for seg in self.splits[split]
        ]


def xarray() -> ModuleType:
    """xarray, or a one-line error saying how to install it (it is an optional dependency)."""
    try:
        import netCDF4  # noqa: F401  (the engine the simulator writes with)
        import xarray as xr
    except ImportError:
        raise ReslabError(
            "reslab forecast needs xarray and netCDF4: pip install 'reslab[forecast]'"
        ) from None
    return xr


def parse_hours(text: str, what: str = "lead") -> float:
    """'24h', '24', '3d' -> hours."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hd]?)\s*", text)
    if not match:
        raise ReslabError(f"{what} {text!r} is not a duration such as 6h or 3d", params=(what,))
    return float(match.group(1)) * (24 if match.group(2) == "d" else 1)


def resolve_files(spec: str) -> list[str]:
    pattern = spec.removeprefix("netcdf:")
    if Path(pattern).is_dir():
        pattern = str(Path(pattern) / "*.nc")
    files = sorted(glob.glob(pattern))
    if not files:
        raise ReslabError(f"no netCDF file matches {pattern!r}", params=("data",))
    return files


def pick_variable(
    ds: xr.Dataset, name: str, levels: tuple[int, ...], spec: str
) -> list[tuple[str, xr.DataArray]]:
    """The named variable on (time, lat, lon); several when it has levels and `levels` names them."""
    if name in ds.data_vars:
        da = ds[name]
        if "level" not in da.dims:
            return [(name, da)]
        if not levels:
            raise ReslabError(
                f"{name!r} in {spec!r} has levels; name one ({name}{int(da.level[0])}) or give levels",
                params=("vars", "levels"),
            )
        return [pick_level(da, f"{name}{level}", level, spec) for level in levels]
    match = re.fullmatch(r"(.*?)(\d+)", name)
    if match and match.group(1) in ds.data_vars:
        return [pick_level(ds[match.group(1)], name, int(match.group(2)), spec)]
    have = ", ".join(str(v) for v in ds.data_vars)
    raise ReslabError(f"{spec!r} has no variable {name!r} (it has {have})", params=("vars",))


def pick_level(da: xr.DataArray, name: str, level: int, spec: str) -> tuple[str, xr.DataArray]:
    have = np.atleast_1d(da["level"].values) if "level" in da.coords else np.array([])
    if level not in have:
        raise ReslabError(
            f"{spec!r} has no level {level} of {da.name!r} (for {name!r})", params=("vars", "levels")
        )
    return name, (da.sel(level=level) if "level" in da.dims else da)


def on_grid(da: xr.DataArray, spec: str) -> xr.DataArray:
    """(time, lat, lon), with attrs["geographic"]: True for lat/lon (cos-lat weights), False for y/x."""
    for lat, lon in GRID_DIMS:
        if lat in da.dims and lon in da.dims:
            out = da.transpose("time", lat, lon).rename({lat: "lat", lon: "lon"})
            return out.assign_attrs(geographic=int(lat != "y"))
    raise ReslabError(
        f"{da.name!r} in {spec!r} is not on (time, lat, lon) or (time, y, x): {da.dims}", params=("data",)
    )


def with_scalar_levels_named(ds: xr.Dataset) -> xr.Dataset:
    """WeatherBench's single-level files (z with a scalar level 500) name their variable z500 here, so
    files of several levels merge without conflict."""
    if "level" not in ds.coords or ds["level"].ndim != 0:
        return ds
    level = int(ds["level"])
    return ds.drop_vars("level").rename(
        {name: f"{name}{level}" for name in ds.data_vars if "time" in ds[name].dims}
    )


def open_splits(files: list[str]) -> dict[str | None, xr.Dataset]:
    """The files combined by coordinates (years joined, variables merged): one dataset per split
    attribute when every file has one, else one under None."""
    xr = xarray()
    opened = [with_scalar_levels_named(xr.open_dataset(path)) for path in files]
    labels = [ds.attrs.get("split") for ds in opened]
    groups = {
        label: [ds for ds, other in zip(opened, labels, strict=True) if other == label]
        for label in SPLITS
        if label in labels
    }
    if not all(label in SPLITS for label in labels):
        groups = {None: opened}
    return {
        label: xr.combine_by_coords(group, combine_attrs="drop_conflicts") for label, group in groups.items()
    }


def fields_of(ds: xr.Dataset, config: DataConfig) -> tuple[list[str], xr.DataArray]:
    """The named variables as one array [time, variable, lat, lon], read into memory."""
    xr = xarray()
    picked = [
        item for name in config.variables for item in pick_variable(ds, name, config.levels, config.spec)
    ]
    arrays = [on_grid(da, config.spec).drop_vars("level", errors="ignore") for _, da in picked]
    stacked = xr.concat(arrays, dim="variable", coords="minimal", compat="override", combine_attrs="override")
    return [name for name, _ in picked], stacked.transpose("time", "variable", "lat", "lon").load()


def contiguous(field: xr.DataArray, step: np.timedelta64) -> list[xr.DataArray]:
    """The field cut where a time step is missing (years left out for validation, say)."""
    cuts = np.flatnonzero(np.diff(field.time.values) != step) + 1
    bounds = [0, *cuts, field.sizes["time"]]
    return [field.isel(time=slice(a, b)) for a, b in pairwise(bounds)]


def year_splits(field: xr.DataArray, config: DataConfig) -> dict[str, list[xr.DataArray]]:
    """One record split by year: the last year is test and the one before validation unless named."""
    spacings, counts = np.unique(np.diff(field.time.values), return_counts=True)
    step = spacings[np.argmax(counts)] if len(counts) else None  # the usual spacing; a gap cuts a segment
    year = field.time.dt.year.values
    years = np.unique(year)
    test = list(config.test_years or years[-1:])
    val = list(config.val_years or [y for y in years[-2:-1] if y not in test])
    masks = {"train": ~np.isin(year, test + val), "val": np.isin(year, val), "test": np.isin(year, test)}
    return {
        split: contiguous(field.isel(time=np.flatnonzero(mask)), step) if mask.any() else []
        for split, mask in masks.items()
    }


def load_data(config: DataConfig) -> GriddedData:
    """Read, split and measure (step, latitude weights, training mean/std) the named variables."""
    datasets = open_splits(resolve_files(config.spec))
    try:
        read = {label: fields_of(ds, config) for label, ds in datasets.items()}
    finally:
        for ds in datasets.values():
            ds.close()
    names = next(iter(read.values()))[0]
    if None in read:
        by_split = year_splits(read[None][1], config)
    else:
        by_split = {split: [read[split][1]] if split in read else [] for split in SPLITS}
    for split, fields in by_split.items():
        if not fields or max(f.sizes["time"] for f in fields) < 2:
            raise ReslabError(
                f"the data in {config.spec!r} has no {split} period of two or more times", params=("data",)
            )
    field = by_split["train"][0]
    weights = np.ones(field.sizes["lat"])
    if field.attrs.get("geographic"):
        weights = np.cos(np.deg2rad(field.lat.values))
        weights = weights / weights.mean()
    splits = {split: [f.values.astype(np.float32) for f in fields] for split, fields in by_split.items()}
    train = np.concatenate(splits["train"])
    mean, std = train.mean(axis=(0, 2, 3), dtype=np.float64), train.std(axis=(0, 2, 3), dtype=np.float64)
    return GriddedData(
        names,
        splits,
        time_step(by_split, config.spec),
        weights,
        mean.astype(np.float32),
        std.astype(np.float32),
    )


def time_step(by_split: dict[str, list[xr.DataArray]], spec: str) -> float:
    steps = np.concatenate(
        [np.diff(f.time.values) / np.timedelta64(1, "h") for fs in by_split.values() for f in fs]
    )
    if len(steps) == 0 or not np.allclose(steps, steps[0]):
        raise ReslabError(f"the times in {spec!r} are not evenly spaced", params=("data",))
    return float(steps[0])


class Samples:
    """(input, target) pairs of one split: inputs are `history` states stacked as channels (latest first),
    targets are the state `lead` steps after the latest input. Samples never span two segments."""

    def __init__(self, segments: list[torch.Tensor], history: int, lead: int, every: int = 1) -> None:
        self.data = torch.cat(segments)
        starts = np.cumsum([0] + [len(s) for s in segments])
        index = [np.arange(a + history - 1, b - lead) for a, b in pairwise(starts)]
        self.index = torch.from_numpy(np.concatenate(index)[::every].copy())
        self.history, self.lead = history, lead

    def __len__(self) -> int:
        return len(self.index)

    def inputs(self, positions: torch.Tensor) -> torch.Tensor:
        frames = self.data[positions[:, None] - torch.arange(self.history)]  # (B, history, V, lat, lon)
        return frames.flatten(1, 2)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self.index[rows]
        return self.inputs(positions), self.data[positions + self.lead]
