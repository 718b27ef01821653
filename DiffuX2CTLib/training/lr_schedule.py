"""How the learning rate moves over a run (``train --lr-schedule``), kept free of torch so the command line can
name the choices without loading it."""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")
"""``constant`` holds ``--lr``; ``cosine`` decays it along a half cosine to 0 at the run's last step."""


def learning_rate_at(schedule: str, peak: float, step: int, steps: int) -> float:
    """The learning rate of the step that follows ``step`` steps done of ``steps``: a function of the step alone, so
    a resumed run continues the schedule where it stopped. With ``cosine`` a fine-tune's last steps move the weights
    little, so it ends near the training loss's floor rather than on batch-1 noise around it."""
    if schedule == "constant":
        return peak
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
