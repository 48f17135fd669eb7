"""dlib face detection and 68-point landmarks from the models that ship in ``face-recognition-models``, and the
square crop box around a face (the frames stage's crop; the demo towers' pre-training corpus cuts faces the same way).

The model files are located with ``importlib`` (importing ``face_recognition_models`` itself fails on
current setuptools, which no longer ships ``pkg_resources``). Nothing is downloaded.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.common.errors import StageError

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise StageError(
            "package face-recognition-models is not installed; it carries dlib's 68-point landmark model. "
            "Run `make setup` (or `pip install face-recognition-models==0.3.0`)."
        )
    return Path(spec.origin).parent / "models"


@functools.cache
def _detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _predictor():
    import dlib

    path = _models_dir() / PREDICTOR_FILE
    if not path.exists():
        raise StageError(f"{path}: dlib landmark model missing; reinstall face-recognition-models==0.3.0.")
    return dlib.shape_predictor(str(path))


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float


def detect_faces(rgb: np.ndarray, upsample: int = 1) -> list[Face]:
    """All faces dlib's HOG detector finds, best first. Small faces need ``upsample`` >= 1."""
    rects, scores, _ = _detector().run(np.ascontiguousarray(rgb), upsample, 0.0)
    faces = [Face((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
    return sorted(faces, key=lambda f: -f.score)


def landmarks_68(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(68, 2) float32 landmark (x, y) positions inside ``box`` (iBUG 300-W order)."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = _predictor()(np.ascontiguousarray(rgb), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def expand_box(box, margin: float, width: int, height: int) -> tuple[float, float, float, float]:
    """Grow ``box`` by ``margin`` of its size on every side and clip it to the image."""
    x0, y0, x1, y1 = box
    dw, dh = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0.0, x0 - dw), max(0.0, y0 - dh), min(float(width), x1 + dw), min(float(height), y1 + dh))


def square_box(box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow ``box`` by ``margin`` of its size on each side, make it square, and shift it inside the image.

    A square larger than the image's short side shrinks to that side, so the crop is always square.
    """
    x0, y0, x1, y1 = box
    side = int(min(max(x1 - x0, y1 - y0) * (1 + 2 * margin), width, height))
    left = int(round(min(max((x0 + x1 - side) / 2, 0), width - side)))
    top = int(round(min(max((y0 + y1 - side) / 2, 0), height - side)))
    return left, top, left + side, top + side
