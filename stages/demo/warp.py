"""Fast landmark-driven image warp: a thin-plate spline on a coarse grid, applied with ``cv2.remap``.

The spline's value at any point is linear in the landmark displacements, so the weights that map 68
displacements to the coarse grid are computed once per source image; a frame then costs one small matrix
product and a few remaps at output resolution.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from stages.demo.face_model import face_center, face_size


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return 0.5 * r2 * np.log(np.maximum(r2, 1e-12))  # r^2 log r, written with r^2 to skip a sqrt


def anchor_points(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fixed points: an ellipse around the face (keeps the warp local) and the image border (keeps it bounded)."""
    size, center = face_size(landmarks), face_center(landmarks)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = center + np.stack([0.95 * size * np.cos(t), 1.05 * size * np.sin(t)], axis=1)
    h, w = shape
    xs, ys = np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5)
    border = [(x, y) for x in xs for y in (0, h - 1)] + [(x, y) for x in (0, w - 1) for y in ys[1:-1]]
    return np.concatenate([ring, np.array(border)])


@dataclass(frozen=True)
class Warper:
    weights: np.ndarray  # (grid nodes, 68): landmark displacement -> displacement at each node
    grid_shape: tuple[int, int]
    origin: np.ndarray  # image position of node (0, 0)
    step: int  # image pixels between nodes


def build_warper(
    landmarks: np.ndarray, shape: tuple[int, int], step: int = 4, reach: float = 1.4, smoothing: float = 1e-3
) -> Warper:
    """Thin-plate weights from the 68 landmarks (moving) and anchors (fixed) to a grid every ``step`` pixels.

    The grid spans ``reach`` face sizes around the face centre only: beyond the anchor ring the field is
    close to zero, and a small grid keeps the per-frame matrix product cheap.
    """
    h, w = shape
    lo = np.maximum(np.floor(face_center(landmarks) - reach * face_size(landmarks)), 0)
    hi = np.minimum(np.ceil(face_center(landmarks) + reach * face_size(landmarks)), [w - 1, h - 1])
    gy, gx = np.mgrid[0 : int(hi[1] - lo[1]) // step + 2, 0 : int(hi[0] - lo[0]) // step + 2]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1) * float(step) + lo
    ctrl = np.concatenate([landmarks, anchor_points(landmarks, shape)])
    # Face units keep the linear system well conditioned whatever the image size.
    unit, origin = face_size(landmarks), face_center(landmarks)
    c, g = (ctrl - origin) / unit, (grid - origin) / unit
    n = len(c)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _tps_kernel(c, c) + smoothing * np.eye(n)
    system[:n, n] = system[n, :n] = 1
    system[:n, n + 1 :] = c
    system[n + 1 :, :n] = c.T
    basis = np.concatenate([_tps_kernel(g, c), np.ones((len(g), 1)), g], axis=1)
    weights = basis @ np.linalg.inv(system)[:, :68]
    return Warper(weights.astype(np.float32), gx.shape, lo.astype(np.float32), step)


def coarse_field(warper: Warper, disp: np.ndarray) -> np.ndarray:
    """(gh, gw, 2) forward displacement on the coarse grid for a (68, 2) landmark displacement."""
    # cv2.gemm rather than @: numpy's threaded BLAS is several times slower on a product this small,
    # and far slower still when another process keeps a core busy.
    return cv2.gemm(warper.weights, disp.astype(np.float32), 1.0, None, 0.0).reshape(*warper.grid_shape, 2)


def _sample(field: np.ndarray, grid_pts: np.ndarray) -> np.ndarray:
    return cv2.remap(field, grid_pts[..., 0], grid_pts[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@functools.cache
def _pixel_grid(size: int) -> np.ndarray:
    qy, qx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([qx, qy], axis=-1)


def render(
    image: np.ndarray, warper: Warper, disp: np.ndarray, pose: np.ndarray, size: int, iterations: int = 5
) -> np.ndarray:
    """Move the landmarks of ``image`` by ``disp``, then apply the 2x3 ``pose`` (image -> frame); a size x size frame.

    remap needs, for each frame pixel, where to read in the source: the pose is inverted exactly, the
    displacement d by fixed-point iteration u = d(x - u), which converges because d is smooth (it
    contracts by the field's largest local compression per step; lowered brows are the slowest).
    """
    field = coarse_field(warper, disp)
    inv = cv2.invertAffineTransform(pose)
    x = cv2.transform(_pixel_grid(size), inv)  # image pixels
    to_grid = np.array([[1, 0, -warper.origin[0]], [0, 1, -warper.origin[1]]], np.float32) / warper.step
    xg = cv2.transform(x, to_grid)  # the same points in grid units, where the field is sampled
    u = _sample(field, xg)
    for _ in range(iterations - 1):
        u = _sample(field, cv2.scaleAdd(u, -1.0 / warper.step, xg))
    src = x - u
    return cv2.remap(image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
