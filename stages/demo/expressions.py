"""FACS-like expression patterns as displacements of the 68 iBUG landmarks.

Each pattern lists (landmark indices, outward, upward) moves in units of face size (jaw width) at full
intensity. "Outward" is away from the face's midline, so one entry moves both sides symmetrically;
"upward" is towards the brows. The iBUG layout: 0-16 jaw, 17-21 / 22-26 brows (outer to inner / inner to
outer), 27-35 nose, 36-41 / 42-47 eyes, 48-59 outer lips (48 and 54 corners), 60-67 inner lips.
"""
from __future__ import annotations

import numpy as np

from stages.demo.face_model import face_axes, face_size

# DFEW / DFER-CLIP class order; a clip's label is its index here.
CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")

# -1 image-left of the midline, +1 image-right, 0 on it: turns "outward" into a signed x move.
SIDE = np.zeros(68)
SIDE[[*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67]] = -1
SIDE[[*range(9, 17), *range(22, 27), 34, 35, *range(42, 48), 52, 53, 54, 55, 56, 63, 64, 65]] = 1

BROWS_INNER, BROWS_MID, BROWS_OUTER = [21, 22], [19, 20, 23, 24], [17, 18, 25, 26]
UPPER_LIDS, LOWER_LIDS = [37, 38, 43, 44], [40, 41, 46, 47]
CORNERS = [48, 54, 60, 64]
NOSE_LOWER = [30, 31, 32, 33, 34, 35]

PATTERNS: dict[str, list[tuple[list[int], float, float]]] = {
    # AU6 + AU12: corners up and out, cheeks push the lower lids up.
    "happiness": [
        (CORNERS, 0.045, 0.05),
        ([49, 53, 55, 59, 61, 63, 65, 67], 0.025, 0.03),
        ([50, 52, 56, 58], 0.01, 0.015),
        (LOWER_LIDS, 0.0, 0.015),
        ([36, 45], 0.0, 0.006),
        ([2, 3, 4, 12, 13, 14], 0.008, 0.012),
        ([31, 35], 0.008, 0.005),
    ],
    # AU1 + AU4 + AU15: inner brows up and together, corners down, chin pushed up a little.
    "sadness": [
        (BROWS_INNER, -0.012, 0.05),
        ([20, 23], -0.006, 0.03),
        (BROWS_OUTER, 0.0, -0.01),
        (UPPER_LIDS, 0.0, -0.008),
        (CORNERS, -0.012, -0.045),
        ([55, 59], 0.0, -0.02),
        ([56, 57, 58], 0.0, 0.004),
        ([7, 8, 9], 0.0, 0.01),
    ],
    # Idle motion only (added to every class by the clip generator).
    "neutral": [],
    # AU4 + AU7 + AU24: brows down and together, lids tightened, lips pressed thin.
    "anger": [
        (BROWS_INNER, -0.04, -0.07),
        (BROWS_MID, -0.022, -0.05),
        (BROWS_OUTER, -0.005, -0.025),
        (UPPER_LIDS, 0.0, -0.008),
        (LOWER_LIDS, 0.0, 0.015),
        ([49, 50, 51, 52, 53], 0.0, -0.02),
        ([61, 62, 63], 0.0, -0.008),
        ([55, 56, 57, 58, 59], 0.0, 0.025),
        ([65, 66, 67], 0.0, 0.008),
        (CORNERS, -0.02, 0.0),
        ([31, 35], 0.012, 0.0),
    ],
    # AU1 + AU2 + AU5 + AU26: brows up, upper lids up, jaw drops into an open, rounded mouth.
    "surprise": [
        (BROWS_INNER + BROWS_MID + BROWS_OUTER, 0.0, 0.075),
        (UPPER_LIDS, 0.0, 0.025),
        (LOWER_LIDS, 0.0, -0.006),
        ([49, 50, 51, 52, 53, 61, 62, 63], 0.0, 0.01),
        (CORNERS, -0.02, -0.05),
        ([55, 59, 65, 67], -0.008, -0.1),
        ([56, 57, 58, 66], 0.0, -0.12),
        ([6, 7, 8, 9, 10], 0.0, -0.11),
        ([4, 5, 11, 12], 0.0, -0.06),
        ([3, 13], 0.0, -0.025),
    ],
    # AU9 + AU10 + AU4: nose wrinkles up, upper lip raised, brows lowered, cheeks up.
    "disgust": [
        ([50, 51, 52], 0.0, 0.06),
        ([49, 53], 0.0, 0.045),
        ([61, 62, 63], 0.0, 0.055),
        (CORNERS, 0.0, 0.015),
        (NOSE_LOWER, 0.0, 0.04),
        ([31, 35], 0.015, 0.0),
        ([28, 29], 0.0, 0.02),
        (BROWS_INNER, -0.025, -0.045),
        (BROWS_MID, -0.012, -0.03),
        (LOWER_LIDS, 0.0, 0.02),
        ([55, 56, 57, 58, 59], 0.0, 0.01),
    ],
    # AU1 + AU2 + AU4 + AU5 + AU20 + AU26: brows up and together, eyes wide, mouth stretched sideways and open.
    "fear": [
        (BROWS_INNER, -0.02, 0.06),
        (BROWS_MID, -0.012, 0.05),
        (BROWS_OUTER, 0.0, 0.035),
        (UPPER_LIDS, 0.0, 0.03),
        (LOWER_LIDS, 0.0, 0.006),
        (CORNERS, 0.05, -0.015),
        ([49, 53, 55, 59, 61, 63, 65, 67], 0.028, -0.008),
        ([55, 56, 57, 58, 59, 65, 66, 67], 0.0, -0.035),
        ([6, 7, 8, 9, 10], 0.0, -0.03),
    ],
}

# The astronaut smiles with her teeth showing; this relaxes her mouth towards a neutral rest pose, which
# every frame starts from, so that "neutral" does not look happy and "happiness" has room to move.
REST = [
    (CORNERS, -0.02, -0.05),
    ([49, 53, 55, 59, 61, 63, 65, 67], -0.01, -0.025),
    ([61, 62, 63], 0.0, -0.012),
    ([65, 66, 67], 0.0, 0.018),
    ([56, 57, 58], 0.0, 0.015),
    (LOWER_LIDS, 0.0, -0.01),
    ([2, 3, 4, 12, 13, 14], 0.0, -0.01),
]

# Another person's face shape, for a dataset whose subject should differ from the demo's (config `identity`):
# wider-set eyes, higher brows, a longer nose, a wider, lower mouth and a longer, narrower chin.
IDENTITY = [
    ([*range(36, 48)], 0.02, 0.0),
    ([*range(17, 27)], 0.01, 0.025),
    ([31, 32, 33, 34, 35], 0.01, -0.02),
    ([*range(48, 68)], 0.0, -0.025),
    (CORNERS, 0.025, 0.0),
    ([6, 7, 8, 9, 10], -0.01, -0.04),
    ([3, 4, 5, 11, 12, 13], -0.02, -0.015),
]


def pattern_field(moves: list[tuple[list[int], float, float]]) -> np.ndarray:
    """(68, 2) displacement in face units and face axes (x outward-signed to image-right, y down)."""
    field = np.zeros((68, 2))
    for idx, out, up in moves:
        field[idx, 0] += out * SIDE[idx]
        field[idx, 1] -= up
    return field


def to_image(field: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Face-unit displacements -> image pixels, rotated with the face's roll."""
    ex, ey = face_axes(landmarks)
    return (face_size(landmarks) * (field[:, :1] * ex + field[:, 1:] * ey)).astype(np.float32)


def displacement(name: str, landmarks: np.ndarray, intensity: float = 1.0) -> np.ndarray:
    """(68, 2) pixel displacement of ``name`` at ``intensity`` (1 = the pattern's full strength)."""
    return to_image(intensity * pattern_field(PATTERNS[name]), landmarks)


def rest_displacement(landmarks: np.ndarray) -> np.ndarray:
    return to_image(pattern_field(REST), landmarks)


def identity_displacement(landmarks: np.ndarray, strength: float) -> np.ndarray:
    """(68, 2) pixels: the face shape moved ``strength`` of the way to IDENTITY (0 keeps the photo's own face)."""
    return to_image(strength * pattern_field(IDENTITY), landmarks)
