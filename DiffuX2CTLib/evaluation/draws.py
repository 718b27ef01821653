"""Several draws of a sampler on one case: one diffusion sample's score moves with its sampling seed (on the real
validation cubes the three-case mean of one draw spans about 0.6 dB over three seeds), so comparing two models on
one draw each measures the seeds as much as the models. ``evaluate --draws N`` scores each diffusion method N times
and reports the mean of each case's draws."""

from __future__ import annotations

import numpy as np


def mean_of_draws(draws: list):
    """The element-wise mean of several draws' results of one shape: nested dicts of numbers (a metric that is None
    in any draw stays None)."""
    first = draws[0]
    if isinstance(first, dict):
        return {key: mean_of_draws([draw[key] for draw in draws]) for key in first}
    if any(value is None for value in draws):
        return None
    return float(np.mean(draws))


def draw_spread(records: list[dict], method: str, metric: str = "psnr_db") -> float | None:
    """How far one draw's ``metric`` lies from its case's mean of draws: the root mean square over cases of the
    per-case standard deviation (None where the records hold a single draw)."""
    cases = [r["methods"][method].get("draws", []) for r in records]
    spreads = [np.std([draw[metric] for draw in draws]) for draws in cases if len(draws) > 1]
    return float(np.sqrt(np.mean(np.square(spreads)))) if spreads else None
