"""Figures of forecast scores and fields (matplotlib, imported on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..plots import COLOURS, _figure, save_figure
from .data import GriddedData

BASELINE_STYLE = {"persistence": ":", "climatology": "-.", "ridge": "--"}


def zonal_spectrum(fields: np.ndarray) -> np.ndarray:
    """Power per zonal wavenumber of [..., lat, lon] fields, averaged over everything but lon."""
    power = np.abs(np.fft.rfft(fields, axis=-1)) ** 2
    return power.reshape(-1, power.shape[-1]).mean(axis=0)


def plot_rmse(result: dict[str, Any], path: Path) -> Path:
    """RMSE against lead, one panel per variable, every model."""
    variables = list(next(iter(result["models"].values()))["rmse"])
    fig = _figure(figsize=(5 * len(variables), 4), layout="constrained")
    for i, var in enumerate(variables):
        ax = fig.add_subplot(1, len(variables), i + 1)
        for j, (name, scores) in enumerate(result["models"].items()):
            values = np.array([np.nan if v is None else v for v in scores["rmse"][var]])
            style = BASELINE_STYLE.get(name, "-")
            ax.plot(
                result["leads_hours"],
                values,
                style,
                marker="o",
                ms=3,
                color=COLOURS[j % len(COLOURS)],
                label=name,
            )
        ax.set(xlabel="lead (h)", ylabel=f"RMSE {var}", title=var)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_map(
    forecast: np.ndarray, truth: np.ndarray, data: GriddedData, name: str, hours: float, path: Path
) -> Path:
    """Truth, forecast and error of each variable for one case; `forecast` is normalised."""
    forecast = forecast * data.std[:, None, None] + data.mean[:, None, None]
    fig = _figure(figsize=(13, 2.6 * len(data.names)), layout="constrained")
    for i, var in enumerate(data.names):
        low, high = truth[i].min(), truth[i].max()
        error = forecast[i] - truth[i]
        limit = np.abs(error).max()
        panels = (
            (truth[i], "truth", "viridis", low, high),
            (forecast[i], f"{name} +{hours:g}h", "viridis", low, high),
            (error, "error", "RdBu_r", -limit, limit),
        )
        for j, (field, title, cmap, vmin, vmax) in enumerate(panels):
            ax = fig.add_subplot(len(data.names), 3, 3 * i + j + 1)
            image = ax.imshow(field, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal")
            ax.set(title=f"{var}: {title}", xticks=[], yticks=[])
            fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, path)


def plot_spectra(
    forecasts: dict[str, dict[int, torch.Tensor]], truth: dict[int, np.ndarray], data: GriddedData, path: Path
) -> Path:
    """Zonal power spectrum of the first variable for rolled-out forecasts at each lead, against truth."""
    leads = sorted(truth)
    fig = _figure(figsize=(5 * len(forecasts), 4), layout="constrained")
    scale = (data.std[0], data.mean[0])
    truth_power = zonal_spectrum(truth[leads[-1]][:, 0])
    for i, (name, by_lead) in enumerate(forecasts.items()):
        ax = fig.add_subplot(1, len(forecasts), i + 1)
        for j, lead in enumerate(sorted(by_lead)):
            power = zonal_spectrum(by_lead[lead][:, 0].numpy() * scale[0] + scale[1])
            ax.loglog(
                np.arange(1, len(power)),
                power[1:],
                color=COLOURS[j % len(COLOURS)],
                label=f"+{lead * data.step_hours:g}h",
            )
        ax.loglog(np.arange(1, len(truth_power)), truth_power[1:], "k--", label="truth")
        ax.set(
            xlabel="zonal wavenumber", ylabel=f"power of {data.names[0]}", title=f"{name}: rollout spectra"
        )
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def kinetic_energy_spectrum(z: np.ndarray, dx: float) -> np.ndarray:
    """Zonal-wavenumber spectrum of eddy kinetic energy from geopotential [time, y, x] (m^2/s^2) on a
    grid of spacing dx (m): u = -psi_y, v = psi_x with psi = (z - its time mean) / f0."""
    from .simulate import F0

    psi = (z - z.mean(axis=0)) / F0
    v = np.fft.rfft(psi, axis=-1) * 1j * 2 * np.pi * np.fft.rfftfreq(z.shape[-1], dx)
    u = -np.fft.rfft(np.gradient(psi, dx, axis=-2), axis=-1)
    energy = 0.5 * (np.abs(u) ** 2 + np.abs(v) ** 2) / z.shape[-1] ** 2
    energy[..., 1:] *= 2  # the other half of the spectrum
    return energy.reshape(-1, energy.shape[-1]).mean(axis=0)


def plot_simulation(folder: Path) -> dict[str, Any]:
    """spinup.png (daily eddy energy of each trajectory, spin-up shaded) and spectrum.png (eddy kinetic
    energy against zonal wavenumber, first and second half of each trajectory); returns the energy's
    mean and std over each half, the stationarity evidence."""
    import json

    from .data import xarray

    xr = xarray()
    fig = _figure(figsize=(11, 4), layout="constrained")
    ax_energy, ax_spectrum = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    summary: dict[str, Any] = {}
    for i, split in enumerate(("train", "val", "test")):
        with xr.open_dataset(folder / f"{split}.nc") as ds:
            energy = ds.eddy_energy.values
            spinup = json.loads(ds.attrs["config"])["spinup_days"]
            z = ds.z.sel(level=250).values
            dx = float(ds.x[1] - ds.x[0]) * 1e3
        colour = COLOURS[i]
        ax_energy.plot(np.arange(1, len(energy) + 1), energy, color=colour, lw=0.8, label=split)
        recorded = energy[round(spinup) :]
        halves = np.array_split(recorded, 2)
        summary[split] = {
            f"half {j + 1}": {"mean": float(h.mean()), "std": float(h.std())} for j, h in enumerate(halves)
        }
        for j, part in enumerate(np.array_split(z, 2)):
            spectrum = kinetic_energy_spectrum(part, dx)
            ax_spectrum.loglog(
                np.arange(1, len(spectrum)),
                spectrum[1:],
                color=colour,
                ls="-" if j == 0 else "--",
                label=f"{split}, half {j + 1}",
            )
        ax_energy.axvspan(0, spinup, color="0.9")
    k = np.arange(3, 20)
    ax_spectrum.loglog(k, 2e2 * k**-3.0, "k:", label="k^-3")
    ax_spectrum.set_ylim(bottom=ax_spectrum.get_ylim()[1] * 1e-6)  # below: the grid-scale filter's cut
    ax_energy.set(xlabel="day (spin-up shaded)", ylabel="eddy energy (m^2/s^2)", title="spin-up")
    ax_spectrum.set(xlabel="zonal wavenumber", ylabel="eddy KE at 250 hPa (m^2/s^2)", title="energy spectrum")
    ax_energy.legend(fontsize=8)
    ax_spectrum.legend(fontsize=7)
    save_figure(fig, folder / "spinup_spectrum.png")
    return summary
