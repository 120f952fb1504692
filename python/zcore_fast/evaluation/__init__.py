"""How good is a coreset? Train a linear probe on it and measure test accuracy
for each method, prune rate and seed (`evaluate`); draw the results
(`plot_accuracy`) and the pool's score map (`plot_score_map`).

One job per module: `harness` runs the grid, `probe` is the classifier
(`lbfgs` its optimiser), `splits` makes stratified splits, `results` holds
and writes the numbers, `data` loads and checks inputs, `projection` and
`plots` draw (matplotlib is optional: `pip install "zcore-fast[plot]"`).
"""

from zcore_fast.evaluation.harness import PRUNE_RATES, EvalProgressFn, evaluate
from zcore_fast.evaluation.plots import plot_accuracy, plot_score_map, require_matplotlib
from zcore_fast.evaluation.probe import LinearProbe
from zcore_fast.evaluation.projection import Projection, project
from zcore_fast.evaluation.results import FULL_DATA, EvalResults, Run, Summary

__all__ = [
    "FULL_DATA",
    "PRUNE_RATES",
    "EvalProgressFn",
    "EvalResults",
    "LinearProbe",
    "Projection",
    "Run",
    "Summary",
    "evaluate",
    "plot_accuracy",
    "plot_score_map",
    "project",
    "require_matplotlib",
]
