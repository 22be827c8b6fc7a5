"""Baselines: the dual-form ridge equals sklearn's Ridge; persistence and climatology are what they say."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Ridge

from reslab.forecast import baselines
from reslab.forecast.baselines import RidgeForecasts, climatology, persistence
from reslab.forecast.data import Samples


def test_dual_ridge_equals_sklearn_ridge(monkeypatch) -> None:
    torch.manual_seed(0)
    segments = [torch.randn(40, 2, 3, 4), torch.randn(30, 2, 3, 4)]
    val_segment = [torch.randn(20, 2, 3, 4)]
    monkeypatch.setattr(baselines, "RIDGE_ALPHAS", (3.0,))
    ridge = RidgeForecasts(segments, history=2, max_lead=3)
    lead = 2
    val = Samples(val_segment, 2, lead)
    test_inputs = Samples(val_segment, 2, lead).inputs(torch.tensor([1, 4, 9]))
    forecast, alpha = ridge.fit_predict(lead, val, test_inputs)
    # The same rows sklearn sees: initial times valid for the longest lead (3), in both segments.
    anchor = Samples(segments, 2, 3)
    x = anchor.inputs(anchor.index).flatten(1).numpy().astype(np.float64)
    change = (anchor.data[anchor.index + lead] - anchor.data[anchor.index]).flatten(1).numpy()
    expected = Ridge(alpha=3.0).fit(x, change).predict(test_inputs.flatten(1).numpy().astype(np.float64))
    assert alpha == 3.0
    np.testing.assert_allclose(
        forecast.numpy(),
        (test_inputs[:, :2].flatten(1).numpy() + expected).reshape(3, 2, 3, 4),
        rtol=1e-4,
        atol=1e-5,
    )


def test_ridge_picks_the_penalty_that_does_best_on_validation() -> None:
    # A noiseless linear system: the change over one step is exactly linear in the inputs, so the
    # smallest penalty wins, and the forecast is almost exact.
    rng = np.random.default_rng(0)
    states = [rng.normal(size=(2, 2, 2))]
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]  # orthogonal: states neither grow nor decay
    for _ in range(120):
        states.append((rotation @ states[-1].reshape(8)).reshape(2, 2, 2))
    data = torch.from_numpy(np.stack(states) / np.std(states)).float()
    ridge = RidgeForecasts([data[:80]], history=1, max_lead=1)
    val = Samples([data[80:100]], 1, 1)
    test = Samples([data[100:]], 1, 1)
    forecast, alpha = ridge.fit_predict(1, val, test.inputs(test.index))
    assert alpha == min(baselines.RIDGE_ALPHAS)
    truth = test.data[test.index + 1]
    assert (forecast - truth).pow(2).mean() < 0.05 * (persistence(test, test.index) - truth).pow(2).mean()


def test_climatology_is_the_training_mean_state() -> None:
    train = Samples([torch.arange(6.0).view(6, 1, 1, 1)], 1, 0)
    assert climatology(train, 3).flatten().tolist() == [2.5, 2.5, 2.5]
