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
# Mirrored lateral: the spine, the densest vertical band of a lateral view (the column profile's sharpest peak
# above its smoothed trend), lies on the posterior side of the body, the right of the image as the model takes it.
# Its position across the body (0 anterior edge, 1 posterior edge) is measured over the whole body and over the
# body's inner part (a pelvic view's pubic bones make an anterior band at the body's edge), and a lateral is judged
# mirrored only when both lie in the anterior MIRRORED_SPINE_POSITION, confirmed only when both lie as far on the
# posterior side. Measured (Testing/benchmarks/orientation_checks.py, results/orientation.md) on DRR laterals of 8
# real CTs (6 patients, chest and abdomen) and 30 held-out phantoms (6 per region): as given, 29 of 38 confirmed,
# 7 unclear, 2 judged mirrored (pelvic views, 2 of 6); mirrored, 29 caught, 7 unclear, 2 confirmed (the same two).
# So a lateral whose file gives no orientation is refused when judged mirrored (the checks can be turned off), and
# one whose file gives it (DICOM PatientOrientation, a header direction in patient space) only gets a note.
MIRRORED_SPINE_POSITION = 0.4
SPINE_TREND_WIDTH = 0.1  # sigma of the smoothed trend, as a share of the image width
SPINE_INNER_PART = 0.6  # the body's inner part: the middle 60 % of its depth


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


def _smoothed(profile: np.ndarray, sigma: float) -> np.ndarray:
    """``profile`` convolved with a Gaussian of ``sigma`` samples (edges extended)."""
    radius = max(1, int(round(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(profile, radius, mode="edge"), kernel / kernel.sum(), mode="valid")


def spine_position(lateral_image: np.ndarray, inner_part: float = 1.0) -> float | None:
    """Where the densest vertical band (the spine) of a model-domain lateral image lies across the body: 0 at the
    body's left edge in the image (anterior, as the model takes it), 1 at its right edge (posterior), looking only
    in the middle ``inner_part`` of the body's depth; None when the image shows no body to measure."""
    profile = lateral_image.mean(axis=0)
    inside = np.flatnonzero(profile > BODY_LEVEL)
    if inside.size < 4:
        return None
    first, last = int(inside[0]), int(inside[-1])
    margin = int(round((1.0 - inner_part) / 2.0 * (last - first)))
    detail = profile - _smoothed(profile, SPINE_TREND_WIDTH * lateral_image.shape[1])
    peak = first + margin + int(np.argmax(detail[first + margin : last - margin + 1]))
    return float((peak - first) / (last - first))


def spine_side(lateral_image: np.ndarray) -> tuple[str, float | None]:
    """``("posterior" | "anterior" | "unclear", position)`` of a model-domain lateral's spine, the position over
    the whole body: anterior (the image looks mirrored) or posterior only when the whole body and its inner part
    agree (see :data:`MIRRORED_SPINE_POSITION`)."""
    whole, inner = spine_position(lateral_image), spine_position(lateral_image, SPINE_INNER_PART)
    if whole is None or inner is None:
        return "unclear", None
    if max(whole, inner) < MIRRORED_SPINE_POSITION:
        return "anterior", whole
    if min(whole, inner) > 1.0 - MIRRORED_SPINE_POSITION:
        return "posterior", whole
    return "unclear", whole


def _looks_mirrored(lateral: Radiograph, position: float) -> str:
    """The sentence for a lateral whose spine lies on the anterior side."""
    return (
        f"{lateral.path.name}: the lateral image looks mirrored left-right: its densest vertical band, the spine, "
        f"lies at {100 * position:.0f} % of the body's depth from the image's left, but the model takes laterals "
        "with anterior on the left and the spine on the posterior, right side; mirror it (a pelvic view can "
        "mislead this check, and an image that is no lateral view fails it too)"
    )


def _mirrored_lateral(lateral: Radiograph, image: np.ndarray) -> list[str]:
    """A lateral view whose orientation was assumed and whose spine lies on the anterior side: mirrored (see
    :data:`MIRRORED_SPINE_POSITION`); a file that gives the orientation is trusted (:func:`orientation_notes`)."""
    side, position = spine_side(image)
    return [_looks_mirrored(lateral, position)] if side == "anterior" and not lateral.orientation_from_file else []


def orientation_notes(ap: Radiograph, lateral: Radiograph, images: np.ndarray) -> list[str]:
    """What the pair's left-right orientation rests on, for the result's notes when a file gave none: the lateral's
    spine (:func:`spine_side`), and that a frontal view's mirror is not detected at all; and a warning when a
    lateral whose file gives its orientation has its spine on the anterior side."""
    notes = []
    if not ap.orientation_from_file:
        notes.append(
            f"{ap.path.name}: a frontal view's left-right mirror cannot be detected (its projection is nearly "
            "symmetric), so the patient's right was assumed on the image's left; mirrored, it gives a mirrored CT"
        )
    side, position = spine_side(images[1])
    if lateral.orientation_from_file:
        if side == "anterior":
            notes.append(f"{_looks_mirrored(lateral, position)}; its file gives this orientation, so check the file")
        return notes
    if side == "anterior":  # a problem of its own (pair_problems)
        return notes
    if position is None:
        notes.append(f"{lateral.path.name}: no body found to tell whether the lateral image is mirrored")
    elif side == "posterior":
        notes.append(
            f"{lateral.path.name}: the spine lies at {100 * position:.0f} % of the body's depth from the image's "
            "left, posterior on the right, as assumed"
        )
    else:
        notes.append(
            f"{lateral.path.name}: where the spine lies does not tell whether the lateral image is mirrored (its "
            f"densest band at {100 * position:.0f} % of the body's depth from the image's left; a pelvic view often "
            "cannot tell)"
        )
    return notes


def pair_problems(ap: Radiograph, lateral: Radiograph, images: np.ndarray) -> list[str]:
    """Problems of a pair: ``images`` are the two model-domain images ``(2, P, P)`` from ``prepare_pair``."""
    problems = _image_problems(ap, images[0], "frontal") + _image_problems(lateral, images[1], "lateral")
    swapped = _swapped_views(ap, lateral, images)
    similarity = normalised_cross_correlation(images[0], images[1])
    # a lateral that is no lateral has no posterior spine to judge its side by
    problems += swapped or ([] if similarity > SAME_IMAGE_CORRELATION else _mirrored_lateral(lateral, images[1]))
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
