"""Scores as WeatherBench computes them (Rasp et al. 2020, score.py), and the training loss.

Arrays are [time, variable, lat, lon]; `weights` is (lat,), cos(lat) / mean(cos(lat)) on a globe and ones on
a channel. Scores are per variable, averaged over all times and grid points at once (the RMSE is the root of
that mean, not a mean of per-time RMSEs).
"""

from __future__ import annotations

import numpy as np
import torch


def weighted_rmse(forecast: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """score.compute_weighted_rmse: sqrt(mean(L(lat) * (forecast - truth)^2)), per variable."""
    error = forecast.astype(np.float64) - truth
    return np.sqrt((error**2 * weights[:, None]).mean(axis=(0, 2, 3)))


def weighted_acc(forecast: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """score.compute_weighted_acc: the weighted correlation of anomalies from the verifying period's
    climatology (truth's time mean per grid point), each anomaly centred on its own overall mean."""
    climatology = truth.mean(axis=0, dtype=np.float64)
    fa, a = forecast - climatology, truth - climatology
    fa = fa - fa.mean(axis=(0, 2, 3), keepdims=True)
    a = a - a.mean(axis=(0, 2, 3), keepdims=True)
    w = weights[:, None]
    covariance = (w * fa * a).sum(axis=(0, 2, 3))
    return covariance / np.sqrt((w * fa**2).sum(axis=(0, 2, 3)) * (w * a**2).sum(axis=(0, 2, 3)))


def weighted_loss(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, kind: str
) -> torch.Tensor:
    """Latitude-weighted MAE ('mae', Rasp & Thuerey) or MSE ('mse'), over batch, variables and grid."""
    error = (prediction - target).abs()
    return (weights[:, None] * (error if kind == "mae" else error**2)).mean()
