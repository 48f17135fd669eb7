"""An 11-class face parsing map rasterised from 68 iBUG landmarks, in FaceXFormer's label order (SPEC §2.3).

"Right" is the subject's right, i.e. the image left for a frontal face: iBUG points 17-21 are the right brow
and 36-41 the right eye. Regions are painted back to front, each later one over the earlier ones:
hair cap, skin (jaw line closed over an extrapolated forehead), nose, brows, eyes, lips, inner mouth.
Ears, neck and clothes stay background, as in FaceXFormer's scheme.
"""
from __future__ import annotations

import cv2
import numpy as np

BACKGROUND, SKIN, R_BROW, L_BROW, R_EYE, L_EYE, NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP, HAIR = range(11)
NUM_CLASSES = 11
CLASS_NAMES = ("background", "skin", "r_brow", "l_brow", "r_eye", "l_eye", "nose", "u_lip", "mouth", "l_lip", "hair")

_SHIFT = 4  # sub-pixel vertex precision of cv2.fillPoly: coordinates in 1/16 px

# Proportions relative to the brow-to-chin distance (forehead, hair) or to the eye / nose width.
FOREHEAD = 0.35  # forehead height above the brows
HAIR_SCALE = 0.25  # hair cap: upper face outline scaled by 1 + this about the nose bridge
BROW_THICKNESS = 0.3  # of the mean eye width
MIN_MOUTH_GAP = 1.0  # px between inner lips below which the mouth counts as closed (no class 8)


def _fill(mask: np.ndarray, points: np.ndarray, label: int) -> None:
    vertices = np.round(points * (1 << _SHIFT)).astype(np.int32).reshape(1, -1, 2)
    cv2.fillPoly(mask, vertices, int(label), lineType=cv2.LINE_8, shift=_SHIFT)


def parsing_from_landmarks(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 map of class ids 0..10 from (68, 2) landmark (x, y) pixel positions."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    mask = np.zeros((height, width), dtype=np.uint8)
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or infinity")
    brows, chin, bridge = pts[17:27], pts[8], pts[27]
    up = brows.mean(axis=0) - chin
    face_height = float(np.hypot(*up))
    if face_height < 1.0:
        return mask
    up /= face_height
    across = np.array([-up[1], up[0]])  # image-rightward for an upright face

    forehead = brows + up * FOREHEAD * face_height  # points 17..26, image left to right
    cap = bridge + (np.vstack([pts[0], forehead, pts[16]]) - bridge) * (1 + HAIR_SCALE)
    _fill(mask, cap, HAIR)
    _fill(mask, np.vstack([pts[0:17], forehead[::-1]]), SKIN)

    alar = float(np.hypot(*(pts[35] - pts[31])))
    nose = np.vstack(
        [bridge - across * 0.2 * alar, pts[31] - across * 0.1 * alar, pts[32:35], pts[35] + across * 0.1 * alar,
         bridge + across * 0.2 * alar]
    )
    _fill(mask, nose, NOSE)

    eye_width = 0.5 * (np.hypot(*(pts[39] - pts[36])) + np.hypot(*(pts[45] - pts[42])))
    thick = BROW_THICKNESS * eye_width * up
    for label, brow in ((R_BROW, pts[17:22]), (L_BROW, pts[22:27])):
        _fill(mask, np.vstack([brow + 0.3 * thick, (brow - 0.7 * thick)[::-1]]), label)
    _fill(mask, pts[36:42], R_EYE)
    _fill(mask, pts[42:48], L_EYE)

    _fill(mask, np.vstack([pts[48:55], pts[64:59:-1]]), UPPER_LIP)  # outer 48-54, inner 64..60
    _fill(mask, np.vstack([pts[54:60], pts[48], pts[60], pts[67:63:-1]]), LOWER_LIP)  # outer 54-59,48, inner 60,67..64
    gap = np.hypot(*(pts[[61, 62, 63]] - pts[[67, 66, 65]]).T).mean()
    if gap >= MIN_MOUTH_GAP:
        _fill(mask, pts[60:68], INNER_MOUTH)
    return mask


def encode_parsing(parsing: np.ndarray) -> bytes:
    """8-bit single-channel PNG of the class ids."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(parsing, dtype=np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_parsing(png: bytes) -> np.ndarray:
    """(H, W) uint8 class ids from :func:`encode_parsing` bytes."""
    parsing = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if parsing is None or parsing.ndim != 2:
        raise ValueError("not a single-channel PNG parsing map")
    return parsing
