"""The papers' experiments, in the order `reslab --help` lists their commands. Each is described in its
own module (an `Experiment`: results file, table, plot, beside its compute functions); adding one is one
line here and, for its command's flags, a module of the same name in reslab.cli.experiments."""

from __future__ import annotations

from . import ablation, degradation, gradients, responses
from .results import Experiment

EXPERIMENTS: tuple[Experiment, ...] = (
    degradation.EXPERIMENT,
    gradients.EXPERIMENT,
    responses.EXPERIMENT,
    ablation.EXPERIMENT,
)
