"""Checks of a radiograph pair before a reconstruction: does it look like two views of one patient that the
model can use? Each problem is one sentence for the user; the caller refuses the pair or, when the user
overrides the checks, keeps the sentences as notes with the result.

Thresholds were set on DRR pairs of held-out phantoms (frontal-lateral correlation 0.62-0.90, head-feet profile
correlation 0.98-0.99, under 1 % saturated pixels, neighbouring pixels correlated at about 0.99) and are deliberately loose: they catch mistakes, not quality.
"""

from __future__ import annotations

import numpy as np

from .data.io import Radiograph

SAME_IMAGE_CORRELATION = 0.97  # a frontal and a lateral view of one patient never look this alike
SAME_REGION_PROFILE_CORRELATION = 0.5  # head-feet brightness profiles of the two views of one region agree
SATURATED_FRACTION = 0.3  # pixels stuck at the brightest or darkest value
BLANK_NEIGHBOUR_CORRELATION = 0.5  # anatomy makes neighbouring pixels alike (about 0.99); pure noise does not
COLOUR_PHOTO_CHROMA = 0.15  # radiographs saved in colour are grey; photographs are not


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (1 identical up to brightness and contrast)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


def _image_problems(radiograph: Radiograph, normalised: np.ndarray, role: str) -> list[str]:
    name = radiograph.path.name
    problems = []
    if radiograph.colourfulness > COLOUR_PHOTO_CHROMA:
        problems.append(f"{name}: the {role} image is a colour picture (chroma {radiograph.colourfulness:.2f}), not a radiograph")
    pixels = radiograph.pixels
    for extreme, label in ((pixels.max(), "brightest"), (pixels.min(), "darkest")):
        fraction = float((pixels == extreme).mean())
        if fraction > SATURATED_FRACTION:
            problems.append(f"{name}: {100 * fraction:.0f} % of the {role} image is saturated at its {label} value")
    structure = normalised_cross_correlation(normalised[:, 1:], normalised[:, :-1])
    if structure < BLANK_NEIGHBOUR_CORRELATION:
        problems.append(f"{name}: the {role} image is nearly blank: noise without anatomy (neighbour correlation {structure:.2f})")
    return problems


def pair_problems(ap: Radiograph, lateral: Radiograph, images: np.ndarray) -> list[str]:
    """Problems of a pair: ``images`` are the two model-domain images ``(2, P, P)`` from ``prepare_pair``."""
    problems = _image_problems(ap, images[0], "frontal") + _image_problems(lateral, images[1], "lateral")
    similarity = normalised_cross_correlation(images[0], images[1])
    if similarity > SAME_IMAGE_CORRELATION:
        problems.append(f"{lateral.path.name}: the lateral image looks like the frontal one (correlation {similarity:.2f}); is it a second frontal view?")
    profiles = normalised_cross_correlation(images[0].mean(axis=1), images[1].mean(axis=1))
    if profiles < SAME_REGION_PROFILE_CORRELATION:
        problems.append(
            f"{ap.path.name} and {lateral.path.name}: the two views do not seem to show the same body region "
            f"(their head-to-feet profiles correlate at {profiles:.2f})"
        )
    return problems
