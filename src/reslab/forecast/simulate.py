"""A two-layer quasi-geostrophic channel: the built-in atmosphere that `reslab forecast` learns from.

Phillips (1956) two-layer model on a beta plane, in the form of Vallis (2017, Atmospheric and Oceanic Fluid
Dynamics, 2nd ed., the layered QG equations of chapter 5 and the Phillips problem of chapter 9): equal layers, a uniform vertical shear U1 - U2 that is
baroclinically unstable, linear drag on the lower layer, and a spectral filter at the grid scale. The
domain is periodic in x and has walls in y (a band of latitudes), which matches the forecast networks'
circular padding in longitude and zero padding in latitude. Walls are exact: the eddy streamfunction is
odd about both walls, so the channel is integrated as its odd extension on a doubly periodic grid twice as
tall, with FFTs. The model grid is `refine` times finer than the output grid, and snapshots are 2-D block
means of it, as WeatherBench regrids ERA5 to 5.625 degrees.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_path
from .data import xarray

if TYPE_CHECKING:
    import xarray as xr

DAY = 86400.0


@dataclass(frozen=True)
class QGConfig:
    """The model's parameters (SI units). Defaults: a mid-latitude atmosphere (f0 = 1e-4 1/s at 45 deg)."""

    ny: int = 32  # output grid (rows between the walls)
    nx: int = 64  # output grid (columns around the periodic direction)
    refine: int = 1  # model grid points per output grid point, each way
    length_x: float = 20.0e6  # m; the channel is length_x / 2 wide, so output cells are square
    beta: float = 1.6e-11  # 1/(m s), df/dy at 45 deg
    deformation_radius: float = 600.0e3  # m, baroclinic: F1 = F2 = 1 / (2 rd^2)
    shear: float = 14.0  # m/s, U1 - U2 (unstable: above beta / F1 = 2 beta rd^2 = 11.5 m/s)
    drag_days: float = 2.0  # e-folding time of the lower layer's Ekman drag
    dt: float = 600.0  # s; eddy winds reach ~100 m/s, and AB3 needs u * pi / dx * dt < 0.7
    snapshot_hours: float = 6.0
    noise: float = 1.0e4  # m^2/s, amplitude of the random initial streamfunction

    @property
    def length_y(self) -> float:
        return self.length_x * self.ny / self.nx


class QGModel:
    """The state is the eddy PV of both layers, q[..., layer, y, kx] (Fourier in x and y, odd in y)."""

    def __init__(self, config: QGConfig) -> None:
        self.config = c = config
        self.ny, self.nx = 2 * c.ny * c.refine, c.nx * c.refine  # the odd extension: twice as tall
        dy = 2 * c.length_y / self.ny
        self.k = (2 * np.pi * np.fft.rfftfreq(self.nx, c.length_x / self.nx))[None, :]
        self.l = (2 * np.pi * np.fft.fftfreq(self.ny, dy))[:, None]
        self.k2 = self.k**2 + self.l**2
        self.f = 1.0 / (2 * c.deformation_radius**2)
        self.u = np.array([c.shear / 2, -c.shear / 2])[:, None, None]  # upper, lower; a frame moving
        self.qy = np.array([c.beta + self.f * c.shear, c.beta - self.f * c.shear])[:, None, None]
        self.drag = 1.0 / (c.drag_days * DAY)
        self.flip = (-np.arange(self.ny)) % self.ny  # index of -l
        self.filter = self._grid_filter(dy, c.length_x / self.nx)

    def _grid_filter(self, dy: float, dx: float) -> np.ndarray:
        # The exponential filter of Arbic & Flierl (2004), as in pyqg: removes enstrophy at the grid scale.
        kstar = np.sqrt((self.k * dx) ** 2 + (self.l * dy) ** 2)
        cut = 0.65 * np.pi
        return np.where(kstar > cut, np.exp(-23.6 * (kstar - cut) ** 4), 1.0)

    def initial_state(self, rng: np.random.Generator, members: int) -> np.ndarray:
        psi = rng.standard_normal((members, 2, self.ny, self.nx)) * self.config.noise
        return self.odd(self.q_of_psi(np.fft.rfft2(psi)) * self.filter)

    def odd(self, field_hat: np.ndarray) -> np.ndarray:
        """Keep the part that is odd in y: zero at both walls."""
        return 0.5 * (field_hat - field_hat[..., self.flip, :])

    def q_of_psi(self, psi: np.ndarray) -> np.ndarray:
        stretch = self.f * (psi[..., ::-1, :, :] - psi)
        return -self.k2 * psi + stretch

    def psi_of_q(self, q: np.ndarray) -> np.ndarray:
        k2, f = self.k2, self.f
        det = k2 * (k2 + 2 * f)
        det = np.where(det == 0, np.inf, det)  # the mean has no streamfunction
        psi1 = (-(k2 + f) * q[..., 0, :, :] - f * q[..., 1, :, :]) / det
        psi2 = (-f * q[..., 0, :, :] - (k2 + f) * q[..., 1, :, :]) / det
        return np.stack([psi1, psi2], axis=-3)

    def tendency(self, q: np.ndarray) -> np.ndarray:
        psi = self.psi_of_q(q)
        ik, il = 1j * self.k, 1j * self.l
        grid = np.fft.irfft2(np.stack([ik * psi, il * psi, ik * q, il * q]), s=(self.ny, self.nx))
        jacobian = np.fft.rfft2(grid[0] * grid[3] - grid[1] * grid[2])  # J(psi, q) = psi_x q_y - psi_y q_x
        linear = -self.u * ik * q - self.qy * ik * psi
        linear[..., 1, :, :] += self.drag * self.k2 * psi[..., 1, :, :]  # -r * laplacian(psi2)
        return linear - jacobian

    def step(self, q: np.ndarray, history: list[np.ndarray]) -> np.ndarray:
        """Third-order Adams-Bashforth (lower orders for the first two steps), then the filter."""
        history.insert(0, self.tendency(q))
        del history[3:]
        weights = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12)}[len(history)]
        update = sum(w * h for w, h in zip(weights, history, strict=True))
        return self.odd((q + self.config.dt * update) * self.filter)

    def snapshot(self, q: np.ndarray) -> np.ndarray:
        """Eddy streamfunction on the output grid, [member, layer, y, x] at cell centres (block means)."""
        c, r = self.config, self.config.refine
        psi = self.psi_of_q(q) * np.exp(0.5j * self.l * 2 * c.length_y / self.ny)  # half a cell north
        fine = np.fft.irfft2(psi, s=(self.ny, self.nx))[..., : self.ny // 2, :]
        return fine.reshape(*fine.shape[:-2], c.ny, r, c.nx, r).mean(axis=(-3, -1))

    def energy(self, q: np.ndarray) -> np.ndarray:
        """Eddy energy (kinetic + available potential) per unit mass, m^2/s^2, the channel's and both
        layers' mean, per member (Parseval: the rfft's other half counted twice)."""
        psi = self.psi_of_q(q)
        weight = np.where(self.k == 0, 1.0, 2.0)
        kinetic = (self.k2 * np.abs(psi) ** 2 * weight).sum(axis=(-3, -2, -1)) / 2
        potential = (self.f * np.abs(psi[..., 0, :, :] - psi[..., 1, :, :]) ** 2 * weight).sum(
            axis=(-2, -1)
        ) / 2
        return (kinetic + potential) / (self.ny * self.nx) ** 2 / 2


@dataclass(frozen=True)
class SimulationConfig:
    """What `reslab forecast simulate` writes: three trajectories from separate random initial states."""

    years: float = 3.0  # training trajectory, 365-day years
    val_years: float = 0.5
    test_years: float = 1.0
    seed: int = 0
    spinup_days: float = 200.0  # before the first snapshot; energy is stationary after ~150 days
    model: QGConfig = field(default_factory=QGConfig)


SPLITS = ("train", "val", "test")
GAS_CONSTANT = 287.0  # J/(kg K), dry air
F0 = 1.0e-4  # 1/s
LEVELS = (250, 750)  # hPa, the middles of two equal-mass layers


def run_trajectory(
    model: QGConfig, seed: int, days: float, spinup_days: float, on_day: Callable[[], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spin up from a random state, then integrate for `days`: the snapshots [time, layer, y, x] (eddy
    streamfunction, m^2/s) and the daily eddy energy, spin-up included."""
    qg = QGModel(model)
    q, history = qg.initial_state(np.random.default_rng(seed), 1), []
    per_snapshot = round(model.snapshot_hours * 3600 / model.dt)
    per_day = round(24 / model.snapshot_hours)
    spinup, count = round(spinup_days * per_day), round(days * per_day)
    snapshots, energy = [], []
    for index in range(spinup + count):
        for _ in range(per_snapshot):
            q = qg.step(q, history)
        if index >= spinup:
            snapshots.append(qg.snapshot(q)[0].astype(np.float32))
        if (index + 1) % per_day == 0:
            energy.append(float(qg.energy(q)[0]))
            if not np.isfinite(energy[-1]):
                raise RuntimeError(f"the QG model blew up after {len(energy)} days; lower dt")
            if on_day is not None:
                on_day()
    return np.stack(snapshots), np.array(energy)


def to_dataset(psi: np.ndarray, energy: np.ndarray, split: str, config: SimulationConfig) -> xr.Dataset:
    """One split in WeatherBench's layout: geopotential `z` (m^2/s^2) at the two layers' levels and the
    500 hPa temperature `t500` (K, from the layers' thickness by the hypsometric equation), with the
    background shear's fields included, on (time, y, x); y and x in km at cell centres."""
    xr = xarray()
    m = config.model
    dx = m.length_x / m.nx
    y = (np.arange(m.ny) + 0.5) * dx
    background = -np.array([m.shear / 2, -m.shear / 2])[:, None] * (y - m.length_y / 2)  # -U (y - Ly/2)
    z = F0 * (psi + background[None, :, :, None])
    t500 = (z[:, 0] - z[:, 1]) / (GAS_CONSTANT * np.log(LEVELS[1] / LEVELS[0]))
    time = np.datetime64("2000-01-01T00") + np.arange(len(psi)) * np.timedelta64(round(m.snapshot_hours), "h")
    coords = {"time": time, "level": list(LEVELS), "y": y / 1e3, "x": np.arange(m.nx) * dx / 1e3}
    return xr.Dataset(
        {
            "z": (
                ("time", "level", "y", "x"),
                z.astype(np.float32),
                {"units": "m**2 s**-2", "long_name": "Geopotential"},
            ),
            "t500": (
                ("time", "y", "x"),
                t500.astype(np.float32),
                {"units": "K", "long_name": "Temperature anomaly at 500 hPa"},
            ),
            "eddy_energy": (
                ("day",),
                energy,
                {"units": "m**2 s**-2", "long_name": "Eddy energy, spin-up included"},
            ),
        },
        coords=coords,
        attrs={"split": split, "source": "reslab two-layer QG channel", "config": json.dumps(asdict(config))},
    )


def write_dataset(ds: xr.Dataset, path: Path) -> Path:
    with atomic_path(path, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return path


def split_days(config: SimulationConfig) -> dict[str, float]:
    return dict(
        zip(SPLITS, (365 * config.years, 365 * config.val_years, 365 * config.test_years), strict=True)
    )


def simulate(
    out: str | Path, config: SimulationConfig, on_day: Callable[[], None] | None = None
) -> list[Path]:
    """Write out/{train,val,test}.nc, each a trajectory from its own random initial state (seeds drawn
    from config.seed). A split whose file was already written with the same settings is kept, so an
    interrupted run resumes at the split it was on."""
    xr = xarray()
    out = Path(out)
    settings = json.dumps(asdict(config))
    seeds = np.random.SeedSequence(config.seed).generate_state(len(SPLITS))
    paths = []
    for seed, (split, days) in zip(seeds, split_days(config).items(), strict=True):
        path = out / f"{split}.nc"
        paths.append(path)
        if path.is_file():
            with xr.open_dataset(path) as ds:
                if ds.attrs.get("config") == settings:
                    continue
        psi, energy = run_trajectory(config.model, int(seed), days, config.spinup_days, on_day)
        write_dataset(to_dataset(psi, energy, split, config), path)
    return paths
