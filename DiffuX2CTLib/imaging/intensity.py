"""Clinical radiograph intensities towards the DRR domain the model was trained on.

The model sees line integrals of attenuation (bone bright, air dark, smooth), percentile-normalised. Clinical
images differ in three ways handled here: detector images stored linear in X-ray intensity (DICOM
PixelIntensityRelationship ``LIN``) need ``-ln(I / I0)``; collimated borders are flat bright bands that a DRR
would show as air; burned-in text and side markers are small plateaus at the maximum value. Training applies the
same cleaning to augmented DRRs (:func:`add_collimation_and_marker`), so the model sees what inference feeds it.

The VOI LUT (window centre/width, VOI LUT function or sequence) is a display transform applied after these
intensities; it is deliberately not applied: it only clips or bends grey levels away from the line integrals.
"""

from __future__ import annotations

import numpy as np

FLAT_BAND_TOLERANCE = 0.02
"""A border row or column is part of a collimation band when its standard deviation is below this fraction of
the image's dynamic range."""
MAX_BAND_FRACTION = 0.4
MARKER_MAX_AREA_FRACTION = 0.01
MARKER_MIN_PIXELS = 4
MARKER_RING_PIXELS = 3


def _dynamic_range(pixels: np.ndarray) -> float:
    low, high = np.percentile(pixels, (0.5, 99.5))
    return float(max(high - low, 1e-6))


def linear_to_line_integral(pixels: np.ndarray, intensity_increases_with_value: bool = True) -> np.ndarray:
    """Pixels proportional to X-ray intensity -> ``-ln(I / I0)`` (bone bright), with ``I0`` the brightest pixel
    (the percentile normalisation downstream removes the constant offset of any other choice)."""
    intensity = pixels.astype(np.float64)
    if not intensity_increases_with_value:  # reversed within the same value range
        intensity = intensity.max() + intensity.min() - intensity
    if intensity.min() <= 0:
        intensity = intensity - intensity.min()
    floor = max(float(intensity[intensity > 0].min()) if (intensity > 0).any() else 1.0, 1e-6)  # no log(0)
    unattenuated = max(float(intensity.max()), floor * 2)  # any other I0 only shifts the result by a constant
    return np.maximum(-np.log(np.clip(intensity, floor, None) / unattenuated), 0.0).astype(np.float32)


def _leading(flags: np.ndarray) -> int:
    """How many entries from the start are True (at most ``MAX_BAND_FRACTION`` of them)."""
    limit = int(len(flags) * MAX_BAND_FRACTION)
    count = 0
    while count < limit and flags[count]:
        count += 1
    return count


def collimation_bands(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """Widths (top, bottom, left, right) of border bands whose rows or columns are flat and brighter than the
    image's median: collimator shadows in a bone-bright image. Flat dark borders are air, as in a DRR."""
    tolerance = FLAT_BAND_TOLERANCE * _dynamic_range(pixels)
    level = float(np.median(pixels))
    rows = (pixels.std(axis=1) < tolerance) & (pixels.mean(axis=1) > level)
    cols = (pixels.std(axis=0) < tolerance) & (pixels.mean(axis=0) > level)
    return _leading(rows), _leading(rows[::-1]), _leading(cols), _leading(cols[::-1])


def mask_collimation(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Bright collimation bands set to the image's air level; a note says how wide they were."""
    top, bottom, left, right = collimation_bands(pixels)
    if not any((top, bottom, left, right)):
        return pixels, None
    rows, cols = pixels.shape
    air = float(np.percentile(pixels[top : rows - bottom, left : cols - right], 0.5))
    cleaned = pixels.copy()
    cleaned[:top], cleaned[rows - bottom :], cleaned[:, :left], cleaned[:, cols - right :] = air, air, air, air
    return cleaned, f"collimation borders masked as air (top {top}, bottom {bottom}, left {left}, right {right} pixels)"


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2D boolean mask: labels ``1..n`` (0 outside) and ``n``. Minimum-label hooking
    with pointer jumping over the graph of the mask's pixels, in numpy (no imaging library, so training needs none)."""
    rows, cols = mask.shape
    found_rows, found_cols = np.nonzero(mask)
    node = np.full(mask.shape, -1, dtype=np.int64)
    node[found_rows, found_cols] = np.arange(len(found_rows))
    first, second = [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r, c = found_rows + dr, found_cols + dc
        inside = (r < rows) & (c >= 0) & (c < cols)
        neighbour = np.full(len(r), -1, dtype=np.int64)
        neighbour[inside] = node[r[inside], c[inside]]
        linked = neighbour >= 0
        first.append(np.flatnonzero(linked))
        second.append(neighbour[linked])
    first, second = np.concatenate(first), np.concatenate(second)
    parent = np.arange(len(found_rows))
    while True:
        low = np.minimum(parent[first], parent[second])
        before = parent.copy()
        np.minimum.at(parent, parent[first], low)
        np.minimum.at(parent, parent[second], low)
        while True:  # pointer jumping: every pixel points at its tree's root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        if np.array_equal(parent, before):
            break
    unique, compact = np.unique(parent, return_inverse=True)
    labels = np.zeros(mask.shape, dtype=np.int32)
    labels[found_rows, found_cols] = compact + 1
    return labels, len(unique)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2D mask by a disc of ``radius`` pixels."""
    grown = mask.copy()
    rows, cols = mask.shape
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if dr * dr + dc * dc > (radius + 0.5) ** 2 or (dr == 0 and dc == 0):  # the disc ITK calls a ball
                continue
            grown[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)] |= mask[
                max(-dr, 0) : rows + min(-dr, 0), max(-dc, 0) : cols + min(-dc, 0)
            ]
    return grown


def remove_markers(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Small plateaus at the image's maximum value (burned-in text, side markers) filled with the median of a
    ring around each; large saturated areas and plateaus touching the border (collimation) are left alone."""
    at_top = pixels >= pixels.max()
    labels, count = label_components(at_top)
    limit = MARKER_MAX_AREA_FRACTION * pixels.size
    rows, cols = pixels.shape
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    cleaned, marks = pixels.copy(), 0
    for label in range(1, count + 1):
        if not MARKER_MIN_PIXELS <= sizes[label] <= limit:
            continue
        where = labels == label
        found_rows, found_cols = np.nonzero(where)
        if (
            found_rows.min() == 0
            or found_cols.min() == 0
            or found_rows.max() == rows - 1
            or found_cols.max() == cols - 1
        ):
            continue  # plateaus touching the border are collimation, not markers
        ring = _dilate(where, MARKER_RING_PIXELS) & ~at_top
        cleaned[where] = float(np.median(pixels[ring])) if ring.any() else float(np.median(pixels))
        marks += 1
    if not marks:
        return pixels, None
    return cleaned, f"{marks} burned-in marker(s) or text at the maximum value removed"


def clean_radiograph(pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Marker removal (markers often sit on a collimation band and would break its flatness), then collimation
    masking, on a bone-bright image; returns the pixels and what was done."""
    notes = []
    for step in (remove_markers, mask_collimation):
        pixels, note = step(pixels)
        if note:
            notes.append(note)
    return pixels, notes


def add_collimation_and_marker(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: bright collimation bands (each side with probability 0.3, up to 12 % of the
    width) and, with probability 0.3, a small saturated side marker, as clinical images carry them."""
    rows, cols = pixels.shape
    out = pixels.copy()
    bright = float(pixels.max()) * float(rng.uniform(1.0, 1.5))
    for side in ("top", "bottom", "left", "right"):
        if rng.random() < 0.3:
            length = rows if side in ("top", "bottom") else cols
            width = int(rng.integers(1, max(2, int(0.12 * length))))
            band = slice(0, width) if side in ("top", "left") else slice(length - width, length)
            out[(band, slice(None)) if side in ("top", "bottom") else (slice(None), band)] = bright
    if rng.random() < 0.3:
        height, width = int(rng.integers(2, max(3, rows // 12))), int(rng.integers(2, max(3, cols // 12)))
        row, col = int(rng.integers(0, rows - height)), int(rng.integers(0, cols - width))
        out[row : row + height, col : col + width] = max(bright, float(out.max())) * 1.1
    return out
