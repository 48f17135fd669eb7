"""The source face: scikit-image's astronaut photo (public domain) and its dlib 68 landmarks."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.common.errors import StageError
from stages.common.face_detect import detect_faces, landmarks_68


@dataclass(frozen=True)
class SourceFace:
    image: np.ndarray  # RGB uint8
    landmarks: np.ndarray  # (68, 2) float32, iBUG 300-W order, image pixels


def astronaut_rgb() -> np.ndarray:
    # Imported here: skimage.data is slow to import and only the generator needs it.
    from skimage import data

    return data.astronaut()


def detect_landmarks(rgb: np.ndarray) -> np.ndarray:
    """68 landmarks of the most confident face; a clear error when there is none."""
    faces = detect_faces(rgb, upsample=1)
    if not faces:
        raise StageError("dlib found no face in the demo source photo; check the dlib and scikit-image installs.")
    return landmarks_68(rgb, faces[0].box)


def face_size(landmarks: np.ndarray) -> float:
    """Jaw width (point 0 to point 16): the unit that expression displacements are written in."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0]))


def face_center(landmarks: np.ndarray) -> np.ndarray:
    """Middle of the landmark bounding box, i.e. roughly the nose: head motion pivots here."""
    return (landmarks.min(axis=0) + landmarks.max(axis=0)) / 2


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors towards the image-right eye and towards the chin, so displacements follow head roll."""
    ex = landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)
    ex = ex / np.linalg.norm(ex)
    return ex, np.array([-ex[1], ex[0]])


def load_source(face_px: float) -> SourceFace:
    """The astronaut photo rescaled so that its jaw width is ``face_px`` pixels, with its landmarks."""
    rgb = astronaut_rgb()
    landmarks = detect_landmarks(rgb)
    scale = face_px / face_size(landmarks)
    # INTER_AREA when shrinking avoids aliasing; the landmarks scale with the pixel grid's corners.
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    h, w = rgb.shape[:2]
    image = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=interp)
    return SourceFace(image, ((landmarks + 0.5) * scale - 0.5).astype(np.float32))
