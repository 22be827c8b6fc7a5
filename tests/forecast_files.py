"""Small netCDF files in WeatherBench's layout, written by the forecast tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LAT = np.linspace(-78.75, 78.75, 8)
LON = np.arange(0, 360, 22.5)


def weatherbench_files(
    folder: Path, years: tuple[int, ...] = (2015, 2016, 2017), lat: np.ndarray = LAT, lon: np.ndarray = LON
) -> tuple[Path, Path]:
    """geopotential_500 (z, scalar level 500) and temperature (t, levels 500 and 850), 6-hourly, a few
    days of each year; z500 at time index i is i + 0.001 * lon index (so the order of times is visible)."""
    import xarray as xr

    times = np.concatenate(
        [np.datetime64(f"{y}-01-01T00") + np.arange(12) * np.timedelta64(6, "h") for y in years]
    )
    n = len(times)
    z = (
        np.arange(n, dtype=np.float32)[:, None, None]
        + 0.001 * np.arange(len(lon))[None, None, :]
        + np.zeros((1, len(lat), 1))
    )
    coords = {"time": times, "lat": lat, "lon": lon}
    geo = xr.Dataset({"z": (("time", "lat", "lon"), z.astype(np.float32))}, coords={**coords, "level": 500})
    t = 250 + np.random.default_rng(0).normal(size=(n, 2, len(lat), len(lon))).astype(np.float32)
    temp = xr.Dataset({"t": (("time", "level", "lat", "lon"), t)}, coords={**coords, "level": [500, 850]})
    paths = folder / "geopotential_500_5.625deg.nc", folder / "temperature_5.625deg.nc"
    geo.to_netcdf(paths[0])
    temp.to_netcdf(paths[1])
    return paths
