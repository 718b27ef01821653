"""Checks of a radiograph pair before a reconstruction: does it look like two views of one patient that the
model can use? Each problem is one sentence for the user; the caller refuses the pair or, when the user
overrides the checks, keeps the sentences as notes with the result.

Thresholds were set on DRR pairs of held-out phantoms (frontal-lateral correlation 0.62-0.90, head-feet profile
correlation 0.98-0.99, under 1 % saturated pixels, neighbouring pixels correlated at about 0.99) and are
deliberately loose: they catch mistakes, not quality.
"""

from __future__ import annotations

import numpy as np

from ..imaging.image_io import Radiograph

SAME_IMAGE_CORRELATION = 0.97  # a frontal and a lateral view of one patient never look this alike
SAME_REGION_PROFILE_CORRELATION = 0.5  # head-feet brightness profiles of the two views of one region agree
SATURATED_FRACTION = 0.3  # pixels stuck at the brightest or darkest value
BLANK_NEIGHBOUR_CORRELATION = 0.5  # anatomy makes neighbouring pixels alike (about 0.99); pure noise does not
COLOUR_PHOTO_CHROMA = 0.15  # radiographs saved in colour are grey; photographs are not
# Inverted polarity: in a radiograph the darkest pixels are air beside the body or the lungs, far from the middle
# column (mean distance 0.60-0.99 of the half-width on phantom DRRs and the sample, cropped ones included); in an
# inverted one they are the spine's (0.06-0.35), and the middle third is darker than the outer ones, not brighter.
INVERTED_DARKEST_SPREAD = 0.4
INVERTED_PROFILE_CONTRAST = -0.05
DARKEST_PERCENTILE = 3.0
# Swapped views: a frontal view shows the torso's width, a lateral view its depth (phantom DRRs on the model's
# detector: 75-94 % of the columns inside the body frontally, 58-67 % laterally).
BODY_LEVEL = 0.15  # normalised intensity above which a pixel is inside the body
SWAPPED_WIDTH_RATIO = 0.95


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (1 identical up to brightness and contrast)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


def _image_problems(radiograph: Radiograph, normalised: np.ndarray, role: str) -> list[str]:
    name = radiograph.path.name
    problems = []
    if radiograph.colourfulness > COLOUR_PHOTO_CHROMA:
        problems.append(
            f"{name}: the {role} image is a colour picture (chroma {radiograph.colourfulness:.2f}), not a radiograph"
        )
    pixels = radiograph.pixels
    for extreme, label in ((pixels.max(), "brightest"), (pixels.min(), "darkest")):
        fraction = float((pixels == extreme).mean())
        if fraction > SATURATED_FRACTION:
            problems.append(f"{name}: {100 * fraction:.0f} % of the {role} image is saturated at its {label} value")
    structure = normalised_cross_correlation(normalised[:, 1:], normalised[:, :-1])
    if structure < BLANK_NEIGHBOUR_CORRELATION:
        problems.append(
            f"{name}: the {role} image is nearly blank: noise without anatomy (neighbour correlation {structure:.2f})"
        )
    return problems


def _looks_inverted(pixels: np.ndarray) -> bool:
    """Air bright and bone dark: the darkest pixels gather at the middle column and the middle third is darker."""
    cols = pixels.shape[1]
    _, where = np.nonzero(pixels <= np.percentile(pixels, DARKEST_PERCENTILE))
    spread = float(np.mean(np.abs(where - (cols - 1) / 2.0)) / ((cols - 1) / 2.0))
    profile = pixels.mean(axis=0)
    middle, outer = (
        profile[cols // 3 : 2 * cols // 3].mean(),
        np.r_[profile[: cols // 3], profile[2 * cols // 3 :]].mean(),
    )
    contrast = float((middle - outer) / max(float(np.ptp(np.percentile(pixels, (0.5, 99.5)))), 1e-6))
    return spread < INVERTED_DARKEST_SPREAD and contrast < INVERTED_PROFILE_CONTRAST


def polarity_problems(ap: Radiograph, lateral: Radiograph) -> list[str]:
    """Views whose pixels look inverted (air bright, bone dark). Judged on the pixels as read, before cleaning,
    which would take bright air at the borders for collimation."""
    return [
        f"{radiograph.path.name}: the {role} image looks inverted (air bright, bone dark): its darkest pixels lie in "
        "the middle of the body, where a radiograph is brightest; invert it "
        "(for DICOM, check PhotometricInterpretation)"
        for radiograph, role in ((ap, "frontal"), (lateral, "lateral"))
        if _looks_inverted(radiograph.pixels)
    ]


def _body_width(image: np.ndarray) -> float:
    """Median over rows of the fraction of columns inside the body, on a model-domain image."""
    return float(np.median((image > BODY_LEVEL).mean(axis=1)))


def _swapped_views(ap: Radiograph, lateral: Radiograph, images: np.ndarray) -> list[str]:
    """Views given in each other's slot, judged when neither file says which view it is: the body is wider in a
    frontal view (the torso's width) than in a lateral one (its depth)."""
    if ap.view_from_file or lateral.view_from_file:
        return []
    frontal, side = _body_width(images[0]), _body_width(images[1])
    if frontal >= SWAPPED_WIDTH_RATIO * side:
        return []
    return [
        f"{ap.path.name} and {lateral.path.name}: the views look swapped: the body spans {100 * frontal:.0f} % of the "
        f"frontal image's width but {100 * side:.0f} % of the lateral one's, and a frontal view shows the torso's "
        "width, wider than its depth"
    ]


def pair_problems(ap: Radiograph, lateral: Radiograph, images: np.ndarray) -> list[str]:
    """Problems of a pair: ``images`` are the two model-domain images ``(2, P, P)`` from ``prepare_pair``."""
    problems = _image_problems(ap, images[0], "frontal") + _image_problems(lateral, images[1], "lateral")
    problems += _swapped_views(ap, lateral, images)
    similarity = normalised_cross_correlation(images[0], images[1])
    if similarity > SAME_IMAGE_CORRELATION:
        problems.append(
            f"{lateral.path.name}: the lateral image looks like the frontal one (correlation {similarity:.2f}); "
            "is it a second frontal view?"
        )
    profiles = normalised_cross_correlation(images[0].mean(axis=1), images[1].mean(axis=1))
    if profiles < SAME_REGION_PROFILE_CORRELATION:
        problems.append(
            f"{ap.path.name} and {lateral.path.name}: the two views do not seem to show the same body region "
            f"(their head-to-feet profiles correlate at {profiles:.2f})"
        )
    return problems
