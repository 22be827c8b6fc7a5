"""WeatherBench's scores: exact on a perfect forecast and on persistence of a known field, and equal to
score.py's formulas written with xarray."""

from __future__ import annotations

import numpy as np
import pytest

from reslab.forecast.metrics import weighted_acc, weighted_rmse

xr = pytest.importorskip("xarray")

LAT = np.array([-60.0, -20.0, 20.0, 60.0])


def lat_weights() -> np.ndarray:
    w = np.cos(np.deg2rad(LAT))
    return w / w.mean()


def test_perfect_forecast_scores_rmse_0_and_acc_1() -> None:
    truth = np.random.default_rng(0).normal(size=(5, 2, 4, 8))
    assert np.array_equal(weighted_rmse(truth, truth, lat_weights()), [0.0, 0.0])
    np.testing.assert_allclose(weighted_acc(truth, truth, lat_weights()), [1.0, 1.0], rtol=0, atol=1e-15)


def test_persistence_of_a_linear_trend_has_exact_scores() -> None:
    # truth(t) = t * pattern: persisting t - 1 over one step errs by exactly the pattern.
    rng = np.random.default_rng(1)
    pattern = rng.normal(size=(1, 1, 4, 8))
    pattern -= pattern.mean()  # so anomalies centred on their overall mean stay (t - c) * pattern
    t = np.arange(10.0)[:, None, None, None]
    truth, persisted = t[1:] * pattern, t[:-1] * pattern
    expected_rmse = np.sqrt((pattern[0, 0] ** 2 * lat_weights()[:, None]).mean())
    np.testing.assert_allclose(weighted_rmse(persisted, truth, lat_weights()), [expected_rmse], rtol=1e-12)
    # Climatology is truth's time mean, 5 * pattern: the anomalies are (t - 6) * pattern and (t - 5) *
    # pattern for t = 1..9, so the ACC is their correlation over time alone.
    s = np.arange(1.0, 10.0)
    expected_acc = ((s - 6) * (s - 5)).sum() / np.sqrt(((s - 6) ** 2).sum() * ((s - 5) ** 2).sum())
    np.testing.assert_allclose(weighted_acc(persisted, truth, lat_weights()), [expected_acc], rtol=1e-12)
    # A sign-flipped anomaly pattern is perfectly anti-correlated.
    np.testing.assert_allclose(
        weighted_acc(2 * truth.mean(0) - truth, truth, lat_weights()), [-1.0], rtol=1e-12
    )


def score_py(forecast: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """WeatherBench's score.py (compute_weighted_rmse, compute_weighted_acc), as published."""
    dims = ("time", "lat", "lon")
    fc = xr.DataArray(forecast, dims=dims, coords={"lat": LAT})
    tr = xr.DataArray(truth, dims=dims, coords={"lat": LAT})
    weights_lat = np.cos(np.deg2rad(tr.lat))
    weights_lat /= weights_lat.mean()
    rmse = float(np.sqrt(((fc - tr) ** 2 * weights_lat).mean()))
    clim = tr.mean("time")
    fa, a = fc - clim, tr - clim
    fa_prime, a_prime = fa - fa.mean(), a - a.mean()
    acc = float(
        np.sum(weights_lat * fa_prime * a_prime)
        / np.sqrt(np.sum(weights_lat * fa_prime**2) * np.sum(weights_lat * a_prime**2))
    )
    return rmse, acc


def test_scores_equal_weatherbench_score_py() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(6, 4, 8))
    forecast = truth + rng.normal(scale=0.7, size=truth.shape) + 0.3
    rmse, acc = score_py(forecast, truth)
    assert weighted_rmse(forecast[:, None], truth[:, None], lat_weights())[0] == pytest.approx(
        rmse, rel=1e-12
    )
    assert weighted_acc(forecast[:, None], truth[:, None], lat_weights())[0] == pytest.approx(acc, rel=1e-12)
