"""Torch drawing primitives: approximate signed distances of simple solids, painted with partial-volume edges
into bounding-box views of a volume.

Every solid is described in the *body frame* (LPS mm of an upright reference patient). The :class:`Canvas` holds,
for every voxel, the body-frame point it samples (posture rotation, shift and a smooth deformation already
applied), so a primitive only has to map its body-frame bounding box to a voxel box, take views of the coordinate
tensors there and blend its value in with coverage ``clamp(0.5 - distance / spacing, 0, 1)``: edges get a one-voxel
partial-volume ramp without supersampling, and no primitive touches voxels outside its box.

On a CPU a box is painted in slabs of a few slices (:meth:`Canvas.slabs`), so each temporary of the distance and
blending arithmetic stays in the processor's cache instead of streaming through memory (several times faster at
the 320^3 voxels of a 128^3 model's training volumes); on a GPU a box is one slab. Every step is voxel-wise, so
the result does not depend on the slab size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Box = tuple[slice, slice, slice]
"""Voxel slices ``(z, y, x)`` of the volume."""

Value = float | Callable[[Box, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""A constant HU, or ``f(box, x, y, z) -> HU tensor`` for textured fills (``box`` slices full-volume fields)."""

Distance = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``f(x, y, z) -> signed distance (mm, negative inside)`` on body-frame coordinate views."""

SLAB_VOXELS = 1 << 18
"""Voxels per slab and CPU thread when painting on a CPU: about 1 MB per float temporary, which an L2 cache holds."""


def slab_depth(shape: Sequence[int], device: torch.device) -> int:
    """Slices per slab of a box ``shape`` (z, y, x): about :data:`SLAB_VOXELS` voxels per thread on a CPU, the whole
    box on a GPU, where fewer, larger kernels are faster."""
    if device.type != "cpu":
        return int(shape[0])
    return max(1, SLAB_VOXELS * torch.get_num_threads() // (int(shape[1]) * int(shape[2])))


def intersect(a: Box, b: Box) -> Box | None:
    """The overlap of two voxel boxes, or None when they do not overlap."""
    slices = tuple(slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b))
    return None if any(s.stop <= s.start for s in slices) else slices


@dataclass
class Canvas:
    """A HU volume ``[Z, Y, X]``, an optional uint8 label map, and the body-frame point of every voxel.

    ``coords`` is ``(3, Z, Y, X)`` body-frame (x, y, z) mm; ``to_world`` maps body points to world LPS mm (the rigid
    part of the pose) and ``slack_mm`` bounds the deformation, so boxes found from the rigid map still cover a solid.
    """

    hu: torch.Tensor
    labels: torch.Tensor | None
    coords: torch.Tensor
    rotation: np.ndarray  # (3, 3) body -> world
    translation: np.ndarray  # (3,) world position of the body origin
    origin_lps: np.ndarray  # world position of voxel (0, 0, 0)
    spacing_mm: float
    slack_mm: float

    def box(self, low: Sequence[float], high: Sequence[float]) -> Box | None:
        """Voxel slices ``(z, y, x)`` covering the body-frame box ``[low, high]``, or None when it misses."""
        lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        center = self.rotation @ (0.5 * (lo + hi)) + self.translation - self.origin_lps
        half = np.abs(self.rotation) @ (0.5 * (hi - lo)) + self.slack_mm + self.spacing_mm
        first = np.floor((center - half) / self.spacing_mm).astype(int)
        last = np.ceil((center + half) / self.spacing_mm).astype(int) + 1
        shape_xyz = self.hu.shape[::-1]
        slices = []
        for axis in (2, 1, 0):
            a, b = max(0, int(first[axis])), min(shape_xyz[axis], int(last[axis]))
            if b <= a:
                return None
            slices.append(slice(a, b))
        return tuple(slices)

    def paint(
        self,
        low: Sequence[float],
        high: Sequence[float],
        distance: Distance,
        value: Value,
        label: int | None = None,
        below: float | None = None,
        shells: Sequence[tuple[float, Value, int | None]] = (),
    ) -> None:
        """Blend ``value`` into the voxels of the solid ``distance < 0`` inside the body-frame box ``[low, high]``.

        ``below`` restricts painting to voxels currently under that HU (vessels and airways stay inside the lungs).
        ``label`` None leaves the label map as it is; 0 clears it (unlabelled tissue painted over an organ).
        ``shells`` paints further layers ``(inset_mm, value, label)`` of the same solid shrunk by ``inset_mm`` (bone
        marrow inside a cortex, fat under skin) from the one distance evaluation.
        """
        box = self.box(low, high)
        if box is None:
            return
        for slab in self.slabs(box):
            x, y, z = self.coords[(slice(None),) + slab].unbind(0)
            d = distance(x, y, z)
            mask = None if below is None else self.hu[slab] < below
            for inset, fill, tag in ((0.0, value, label), *shells):
                self.blend(slab, d + inset, fill(slab, x, y, z) if callable(fill) else fill, tag, mask)

    def slabs(self, box: Box) -> Iterator[Box]:
        """``box`` cut along z into slabs of :func:`slab_depth` slices."""
        depth, rows, columns = box
        step = slab_depth([s.stop - s.start for s in box], self.hu.device)
        for first in range(depth.start, depth.stop, step):
            yield slice(first, min(first + step, depth.stop)), rows, columns

    def blend(
        self,
        box: Box,
        distance: torch.Tensor,
        fill: float | torch.Tensor,
        label: int | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Blend ``fill`` into the voxel box with coverage from the signed ``distance`` (mm) of each voxel."""
        alpha = (0.5 - distance / self.spacing_mm).clamp_(0.0, 1.0)
        if mask is not None:
            alpha.mul_(mask)
        if label is not None and self.labels is not None:
            self.labels[box].masked_fill_(alpha >= 0.5, label)
        view = self.hu[box]
        view.add_(alpha.mul_(fill - view))

    def paint_world(
        self, low: Sequence[float], high: Sequence[float], distance: Distance, value: float, label: int | None = None
    ) -> None:
        """Like :meth:`paint`, for a solid fixed in the scanner (world LPS mm box and coordinates), e.g. the table."""
        lo = (np.asarray(low, dtype=np.float64) - self.origin_lps) / self.spacing_mm
        hi = (np.asarray(high, dtype=np.float64) - self.origin_lps) / self.spacing_mm
        shape_xyz = self.hu.shape[::-1]
        ranges = [(max(0, int(np.floor(lo[a]))), min(shape_xyz[a], int(np.ceil(hi[a])) + 1)) for a in range(3)]
        if any(b <= a for a, b in ranges):
            return
        box = tuple(slice(a, b) for a, b in ranges[::-1])
        device = self.hu.device
        x, y, z = (
            torch.arange(a, b, device=device, dtype=torch.float32) * self.spacing_mm + float(self.origin_lps[i])
            for i, (a, b) in enumerate(ranges)
        )
        alpha = (0.5 - distance(x.view(1, 1, -1), y.view(1, -1, 1), z.view(-1, 1, 1)) / self.spacing_mm).clamp_(
            0.0, 1.0
        )
        alpha = alpha.expand(self.hu[box].shape)
        view = self.hu[box]
        view.add_(alpha * (value - view))
        if label is not None and self.labels is not None:
            self.labels[box].masked_fill_(alpha >= 0.5, label)

    def world(self, body_point: Sequence[float]) -> np.ndarray:
        """World LPS position of a body-frame point under the rigid pose (deformation ignored)."""
        return self.rotation @ np.asarray(body_point, dtype=np.float64) + self.translation


def frame(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns: the local x, y, z axes in the body frame) turning by ``yaw`` about z, then
    ``pitch`` about x, then ``roll`` about y (degrees)."""
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


def _local(x, y, z, center, axes):
    """Coordinates of body points in a frame at ``center`` with axis columns ``axes`` (None: unrotated)."""
    dx, dy, dz = x - float(center[0]), y - float(center[1]), z - float(center[2])
    if axes is None:
        return dx, dy, dz
    m = np.asarray(axes, dtype=np.float64)
    return tuple((dx * float(m[0, j])).add_(dy, alpha=float(m[1, j])).add_(dz, alpha=float(m[2, j])) for j in range(3))


def _extent(radii, axes) -> np.ndarray:
    """Half-size of the axis-aligned box around a box of half-sizes ``radii`` turned by ``axes``."""
    r = np.asarray(radii, dtype=np.float64)
    return r if axes is None else np.abs(np.asarray(axes)) @ r


def ellipsoid_distance(center, radii, axes: np.ndarray | None = None) -> Distance:
    """Approximate signed distance (first-order, exact on spheres) of an ellipsoid."""
    rx, ry, rz = (float(r) for r in radii)

    def distance(x, y, z):
        u, v, w = _local(x, y, z, center, axes)
        k = torch.sqrt((u / rx) ** 2 + (v / ry) ** 2 + (w / rz) ** 2)
        grad = torch.sqrt((u / rx**2) ** 2 + (v / ry**2) ** 2 + (w / rz**2) ** 2).clamp_(min=1e-6)
        return k * (k - 1.0) / grad

    return distance


def ellipsoid(
    canvas: Canvas,
    center,
    radii,
    value: Value,
    label: int | None = None,
    axes: np.ndarray | None = None,
    below: float | None = None,
    clip: Distance | None = None,
    shells: Sequence = (),
) -> None:
    """Paint an ellipsoid (``axes``: optional orientation); ``clip`` intersects it with another solid."""
    c, e = np.asarray(center, dtype=np.float64), _extent(radii, axes)
    dist = ellipsoid_distance(c, radii, axes)
    canvas.paint(
        c - e,
        c + e,
        dist if clip is None else (lambda x, y, z: torch.maximum(dist(x, y, z), clip(x, y, z))),
        value,
        label,
        below,
        shells,
    )


def shelled_ellipsoid(
    canvas: Canvas,
    center,
    radii,
    shell_mm: float,
    cortex: float,
    marrow: Value,
    label: int | None = None,
    axes: np.ndarray | None = None,
) -> None:
    """A bone as an ellipsoid: cortical shell ``shell_mm`` thick around a trabecular core."""
    ellipsoid(canvas, center, radii, cortex, label, axes, shells=[(shell_mm, marrow, None)])


def cylinder_distance(
    center, radii_xy, half_height: float, power: float = 2.0, axes: np.ndarray | None = None
) -> Distance:
    """Approximate signed distance of a superellipse cylinder along the local z axis (``power`` 2 is elliptic,
    larger is boxier)."""
    rx, ry = (float(r) for r in radii_xy)
    scale = min(rx, ry)

    def distance(x, y, z):
        u, v, w = _local(x, y, z, center, axes)
        k = ((u / rx).abs() ** power + (v / ry).abs() ** power) ** (1.0 / power)
        return torch.maximum((k - 1.0) * scale, w.abs() - half_height)

    return distance


def cylinder(
    canvas: Canvas,
    center,
    radii_xy,
    half_height: float,
    value: Value,
    label: int | None = None,
    power: float = 2.0,
    axes: np.ndarray | None = None,
    shells: Sequence = (),
) -> None:
    """Paint a superellipse cylinder of half-height ``half_height`` along its local z axis."""
    c = np.asarray(center, dtype=np.float64)
    e = _extent((radii_xy[0], radii_xy[1], half_height), axes)
    canvas.paint(c - e, c + e, cylinder_distance(c, radii_xy, half_height, power, axes), value, label, shells=shells)


def tube_distance(points: np.ndarray, radii: np.ndarray) -> Distance:
    """Signed distance of a chain of round-ended cones (capsules with linearly varying radius) through ``points``
    ``(K, 3)`` with radii ``(K,)``; the minimum over the chain's segments."""
    a, b = points[:-1], points[1:]
    ab = b - a
    inv = 1.0 / np.maximum((ab**2).sum(axis=1), 1e-9)

    def distance(x, y, z):
        best = None
        for i in range(len(ab)):
            (ax, ay, az), (bx, by, bz) = (float(v) for v in a[i]), (float(v) for v in ab[i])
            px, py, pz = x - ax, y - ay, z - az
            t = px * (bx * float(inv[i]))
            t.add_(py, alpha=by * float(inv[i])).add_(pz, alpha=bz * float(inv[i])).clamp_(0.0, 1.0)
            px.add_(t, alpha=-bx).square_()
            px.addcmul_(py.add_(t, alpha=-by), py).addcmul_(pz.add_(t, alpha=-bz), pz).sqrt_()
            px.add_(t, alpha=-float(radii[i + 1] - radii[i])).sub_(float(radii[i]))
            best = px if best is None else torch.minimum(best, px, out=best)
        return best

    return distance


def tube(
    canvas: Canvas,
    points,
    radii,
    value: Value,
    label: int | None = None,
    below: float | None = None,
    segments_per_box: int = 3,
    clip: Distance | None = None,
    shells: Sequence = (),
) -> None:
    """Paint a tube along a polyline (ribs, vessels, airways, bowel) as short capsule chains, each chain in its own
    small bounding box; ``radii`` is one radius or one per point."""
    pts = np.asarray(points, dtype=np.float64)
    rad = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(pts),)).copy()
    for start in range(0, len(pts) - 1, segments_per_box):
        sl = slice(start, min(start + segments_per_box, len(pts) - 1) + 1)
        p, r = pts[sl], rad[sl]
        dist = tube_distance(p, r)
        low, high = (p - r[:, None]).min(axis=0), (p + r[:, None]).max(axis=0)
        canvas.paint(
            low,
            high,
            dist if clip is None else (lambda x, y, z, d=dist: torch.maximum(d(x, y, z), clip(x, y, z))),
            value,
            label,
            below,
            shells,
        )


def shelled_tube(
    canvas: Canvas, points, radii, shell_mm: float, cortex: float, marrow: Value, label: int | None = None
) -> None:
    """A long bone or rib: cortical tube around a trabecular (or marrow) core ``shell_mm`` thinner."""
    tube(canvas, points, radii, cortex, label, shells=[(shell_mm, marrow, None)])


def plane_distance(point, normal) -> Distance:
    """Signed distance to the half-space on the ``normal`` side of the plane through ``point`` (inside = behind)."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    p = np.asarray(point, dtype=np.float64)

    def distance(x, y, z):
        return (x - p[0]) * n[0] + (y - p[1]) * n[1] + (z - p[2]) * n[2]

    return distance


def smooth_curve(control: np.ndarray, samples: int) -> np.ndarray:
    """``samples`` points along a Catmull-Rom spline through the control points ``(K, 3)``."""
    c = np.asarray(control, dtype=np.float64)
    padded = np.vstack([2 * c[0] - c[1], c, 2 * c[-1] - c[-2]])
    t = np.linspace(0.0, len(c) - 1.0, samples)
    i = np.minimum(t.astype(int), len(c) - 2)
    s = (t - i)[:, None]
    p0, p1, p2, p3 = padded[i], padded[i + 1], padded[i + 2], padded[i + 3]
    return 0.5 * (
        2 * p1 + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * s**3
    )
