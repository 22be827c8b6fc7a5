"""The papers' experiments, in the order `reslab --help` lists their commands. Each is described in its
own module (an `Experiment`: flags, compute, results file, table, plot); adding one is one line here."""

from __future__ import annotations

from . import ablation, degradation, gradients, responses
from .results import Experiment

EXPERIMENTS: tuple[Experiment, ...] = (
    degradation.EXPERIMENT,
    gradients.EXPERIMENT,
    responses.EXPERIMENT,
    ablation.EXPERIMENT,
)
