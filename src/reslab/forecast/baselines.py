"""The forecasts a learned model must beat, on normalised fields [sample, variable, lat, lon].

Persistence: the latest state. Climatology: the training period's mean state, per grid point (the
simulator has no seasons; on real data this is WeatherBench's "climatology" baseline, not the weekly one).
Ridge: linear regression on the networks' inputs (all history states, flattened), one model per lead,
fitted to the change from the latest state, its penalty chosen by leave-one-out error (sklearn RidgeCV).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from .data import Samples

RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def persistence(samples: Samples, positions: torch.Tensor) -> torch.Tensor:
    return samples.data[positions]


def climatology(train: Samples, count: int) -> torch.Tensor:
    return train.data.mean(dim=0, keepdim=True).expand(count, -1, -1, -1)


class RidgeForecast:
    """Ridge regression from the stacked inputs to the change over one lead."""

    def __init__(self, train: Samples, max_samples: int = 3000) -> None:
        every = max(1, len(train) // max_samples)
        rows = torch.arange(0, len(train), every)
        x, y = train.batch(rows)
        latest = x[:, : y.shape[1]]
        self.shape = y.shape[1:]
        self.model = RidgeCV(alphas=RIDGE_ALPHAS).fit(x.flatten(1).numpy(), (y - latest).flatten(1).numpy())

    @property
    def alpha(self) -> float:
        return float(self.model.alpha_)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        change = torch.from_numpy(self.model.predict(inputs.flatten(1).numpy()).astype(np.float32))
        return inputs[:, : self.shape[0]] + change.view(-1, *self.shape)
