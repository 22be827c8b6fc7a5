"""The forecasts a learned model must beat, on normalised fields [sample, variable, lat, lon].

Persistence: the latest state. Climatology: the training period's mean state, per grid point (the
simulator has no seasons; on real data this is WeatherBench's "climatology" baseline, not the weekly one).
Ridge: linear regression on the networks' inputs (all history states, flattened), one model per lead,
fitted to the change from the latest state, its penalty chosen on the validation split.

Ridge is solved in its dual (kernel) form, since inputs outnumber samples: one eigendecomposition of the
training Gram matrix serves every lead and every penalty. sklearn's RidgeCV does the same per call, but
its leave-one-out pass over thousands of targets took over ten minutes per lead here.
"""

from __future__ import annotations

import torch

from .data import Samples

RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def persistence(samples: Samples, positions: torch.Tensor) -> torch.Tensor:
    return samples.data[positions]


def climatology(train: Samples, count: int) -> torch.Tensor:
    return train.data.mean(dim=0, keepdim=True).expand(count, -1, -1, -1)


class RidgeForecasts:
    """Ridge regression from the stacked inputs (centred) to the change over each lead, up to max_lead
    steps; the same training rows (initial times) for every lead."""

    def __init__(
        self, train_segments: list[torch.Tensor], history: int, max_lead: int, max_samples: int = 3000
    ) -> None:
        anchor = Samples(train_segments, history, max_lead)
        self.data = anchor.data
        self.positions = anchor.index[:: max(1, len(anchor) // max_samples)]
        x = anchor.inputs(self.positions).flatten(1).double()
        self.x_mean = x.mean(dim=0)
        self.x = x - self.x_mean
        eigenvalues, self.u = torch.linalg.eigh(self.x @ self.x.T)
        self.eigenvalues = eigenvalues.clamp(min=0)

    def kernel_u(self, inputs: torch.Tensor) -> torch.Tensor:
        return ((inputs.flatten(1).double() - self.x_mean) @ self.x.T) @ self.u

    def fit_predict(self, lead: int, val: Samples, test_inputs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Forecasts from test_inputs `lead` steps ahead, and the penalty that did best on `val` (whose
        samples must be at the same lead)."""
        variables = self.data.shape[1]
        change = (self.data[self.positions + lead] - self.data[self.positions]).flatten(1).double()
        y_mean = change.mean(dim=0)
        projected = self.u.T @ (change - y_mean)
        val_x, val_y = val.batch(torch.arange(len(val)))
        val_u = self.kernel_u(val_x)
        val_change = (val_y - val_x[:, :variables]).flatten(1).double()
        errors = {
            alpha: ((val_u / (self.eigenvalues + alpha)) @ projected + y_mean - val_change)
            .pow(2)
            .mean()
            .item()
            for alpha in RIDGE_ALPHAS
        }
        alpha = min(errors, key=errors.__getitem__)
        change = (self.kernel_u(test_inputs) / (self.eigenvalues + alpha)) @ projected + y_mean
        return test_inputs[:, :variables] + change.float().view(-1, *self.data.shape[1:]), alpha
