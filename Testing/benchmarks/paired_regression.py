"""Shared by the benchmarks that train the regression stage two ways and compare them on held-out phantoms
(``training_parity.py``, ``config_switch.py``): the scoring of one trained model, and the paired table."""

from __future__ import annotations

import statistics
from pathlib import Path

from compare_evaluations import case_metrics

from DiffuX2CTLib.evaluation.evaluate import HIGHER_IS_BETTER, METRICS, EvaluationSettings, evaluate_set


def regression_scores(model: Path, cases: int, evaluation: Path) -> dict[str, dict[str, float]]:
    """Score ``model``'s regression estimate on ``cases`` held-out phantoms (written into ``evaluation``): metrics
    per case."""
    evaluate_set(EvaluationSettings(test_set="phantoms", out=str(evaluation), model=str(model), cases=cases))
    return {
        case: {metric: methods["regression"][metric] for metric in METRICS}
        for case, methods in case_metrics(evaluation).items()
    }


def paired_rows(scores: dict[str, dict], first: str, second: str) -> dict[str, dict[str, float]]:
    """Per metric: both means, the mean per-case difference ``first - second`` and in how many cases ``first`` is
    better (as ``<first>_better_cases``)."""
    cases = sorted(scores[first])
    rows = {}
    for metric in METRICS:
        differences = [scores[first][c][metric] - scores[second][c][metric] for c in cases]
        rows[metric] = {name: statistics.fmean(scores[name][c][metric] for c in cases) for name in (first, second)}
        rows[metric] |= {
            "difference": statistics.fmean(differences),
            f"{first}_better_cases": sum((d > 0) == HIGHER_IS_BETTER[metric] and d != 0 for d in differences),
        }
    return rows


def paired_table(rows: dict[str, dict[str, float]], first: str, second: str, cases: int) -> list[str]:
    """The markdown table of :func:`paired_rows`."""
    lines = [
        f"| metric | {first} | {second} | {first} - {second}, mean per case | cases better with {first} |",
        "|---|---|---|---|---|",
    ]
    for metric, row in rows.items():
        lines.append(
            f"| {metric} | {row[first]:.3f} | {row[second]:.3f} | {row['difference']:+.3f} | "
            f"{row[f'{first}_better_cases']} of {cases} |"
        )
    return lines
