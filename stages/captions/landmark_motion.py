"""The offline caption backend: describe how facial parts move, measured from the 68-landmark tracks.

Each clip's landmarks give per-frame measures (brow height, eye opening, mouth-corner height, lip gap, jaw
opening, head roll/yaw, ...), normalised by the inter-ocular distance so that face size does not matter.
The onset is the clip's first valid frames, the peak the frame that moves farthest from it; the change
from onset to peak of each measure becomes a clause. The wording describes actions only: no emotion word
and no label is ever used, so the text is valid in every fold.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

BACKEND_NAME = "landmark-motion"
MODEL_ID = "landmark-motion-v1"

# iBUG 300-W 68-point groups.
JAW, CHIN = slice(0, 17), 8
BROW_R, BROW_L = slice(17, 22), slice(22, 27)
INNER_BROW_R, INNER_BROW_L = 21, 22
NOSE_TIP = 33
EYE_R, EYE_L = slice(36, 42), slice(42, 48)
MOUTH_R, MOUTH_L = 48, 54
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 51, 57
INNER_UPPER, INNER_LOWER = 62, 66


def _centre(points: np.ndarray, part: slice) -> np.ndarray:
    return points[:, part].mean(axis=1)


def measure_frames(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame geometric measures of (T, 68, 2) landmarks, in units of the inter-ocular distance.

    Image y grows downwards, so every "height" here is signed such that larger means higher on the face.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_r, eye_l = _centre(pts, EYE_R), _centre(pts, EYE_L)
    iod = np.linalg.norm(eye_l - eye_r, axis=1)
    iod = np.where(iod > 1e-6, iod, 1.0)
    eye_y = (eye_r[:, 1] + eye_l[:, 1]) / 2
    mouth_mid_y = (pts[:, UPPER_LIP_TOP, 1] + pts[:, LOWER_LIP_BOTTOM, 1]) / 2

    def eye_opening(part: slice) -> np.ndarray:
        p = pts[:, part]  # points 1,2 upper lid; 5,4 lower lid
        return (np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)) / 2

    roll = np.degrees(np.arctan2(eye_l[:, 1] - eye_r[:, 1], eye_l[:, 0] - eye_r[:, 0]))
    jaw_left, jaw_right = pts[:, 0, 0], pts[:, 16, 0]
    yaw = (pts[:, NOSE_TIP, 0] - (jaw_left + jaw_right) / 2) / np.maximum(jaw_right - jaw_left, 1e-6)
    return {
        "brow_height": (eye_y - (_centre(pts, BROW_R)[:, 1] + _centre(pts, BROW_L)[:, 1]) / 2) / iod,
        "inner_brow_height": (eye_y - (pts[:, INNER_BROW_R, 1] + pts[:, INNER_BROW_L, 1]) / 2) / iod,
        "brow_gap": np.linalg.norm(pts[:, INNER_BROW_L] - pts[:, INNER_BROW_R], axis=1) / iod,
        "eye_opening": (eye_opening(EYE_R) + eye_opening(EYE_L)) / 2 / iod,
        "corner_height": (mouth_mid_y - (pts[:, MOUTH_R, 1] + pts[:, MOUTH_L, 1]) / 2) / iod,
        "mouth_width": np.linalg.norm(pts[:, MOUTH_L] - pts[:, MOUTH_R], axis=1) / iod,
        "lip_gap": np.linalg.norm(pts[:, INNER_LOWER] - pts[:, INNER_UPPER], axis=1) / iod,
        "upper_lip_height": (pts[:, UPPER_LIP_TOP, 1] - pts[:, NOSE_TIP, 1]) / iod * -1,
        "jaw_opening": np.linalg.norm(pts[:, CHIN] - pts[:, NOSE_TIP], axis=1) / iod,
        "head_roll": roll,
        "head_yaw": yaw,
    }


# Change (peak minus onset) that counts as visible movement, per measure, and the phrases for each direction.
# Head measures are in degrees (roll) or fractions of face width (yaw); the others in inter-ocular distances.
@dataclass(frozen=True)
class Movement:
    measure: str
    threshold: float
    up: tuple[str, ...]
    down: tuple[str, ...]


MOVEMENTS = (
    Movement("brow_height", 0.04, ("the eyebrows lift", "both brows rise", "the brows arch upward"),
             ("the eyebrows lower", "the brows pull down", "the brows drop toward the eyes")),
    Movement("inner_brow_height", 0.05, ("the inner corners of the brows lift", "the inner brows rise"),
             ("the inner brows press down", "the inner ends of the brows sink")),
    Movement("brow_gap", 0.04, ("the brows spread apart", "the space between the brows widens"),
             ("the brows draw together", "the brows knit toward the nose bridge")),
    Movement("eye_opening", 0.025, ("the eyes open wider", "the upper eyelids lift and the eyes widen"),
             ("the eyes narrow", "the eyelids tighten and the eyes narrow")),
    Movement("corner_height", 0.035, ("the mouth corners pull upward", "the lip corners rise"),
              ("the mouth corners turn down", "the lip corners are pulled downward")),
    Movement("mouth_width", 0.05, ("the lips stretch sideways", "the mouth widens"),
             ("the lips purse and narrow", "the mouth narrows")),
    Movement("lip_gap", 0.04, ("the lips part", "the lips separate"),
             ("the lips press together", "the lips close tightly")),
    Movement("upper_lip_height", 0.03, ("the upper lip raises toward the nose", "the upper lip lifts"),
             ("the upper lip lengthens downward", "the upper lip lowers")),
    Movement("jaw_opening", 0.06, ("the jaw drops", "the mouth falls open as the jaw lowers"),
             ("the jaw clenches upward", "the jaw closes")),
    Movement("head_roll", 4.0, ("the head tilts to one side", "the head leans sideways"),
             ("the head tilts to the other side", "the head leans the other way")),
    Movement("head_yaw", 0.05, ("the head turns slightly", "the head turns to one side"),
             ("the head turns the other way", "the head turns slightly away")),
)

STILL_PHRASES = (
    "the face stays mostly still, with only slight movements around the eyes and mouth",
    "the facial features remain nearly motionless throughout the sequence",
    "the face holds a steady, relaxed position with minimal movement",
)
CONNECTORS = (" while ", ", and ", " as ")


def onset_and_peak(measures: dict[str, np.ndarray], valid: np.ndarray) -> tuple[int, int]:
    """Onset = first valid frame; peak = valid frame farthest from the onset over all scaled measures."""
    frames = np.flatnonzero(valid)
    onset = int(frames[0])
    scaled = np.stack([(measures[m.measure] - measures[m.measure][onset]) / m.threshold for m in MOVEMENTS], axis=1)
    distance = np.linalg.norm(scaled, axis=1)
    distance[~valid] = -1
    return onset, int(np.argmax(distance))


def movement_changes(landmarks: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Change of every measure from the onset to the peak frame (0 for clips with no valid frame)."""
    if not valid.any():
        return {m.measure: 0.0 for m in MOVEMENTS}
    measures = measure_frames(landmarks)
    onset, peak = onset_and_peak(measures, valid)
    return {m.measure: float(measures[m.measure][peak] - measures[m.measure][onset]) for m in MOVEMENTS}


def describe_changes(changes: dict[str, float], variant: int = 0) -> str:
    """Concise description of the visible movements, strongest first; ``variant`` picks among phrasings."""
    visible = sorted(
        (abs(changes[m.measure]) / m.threshold, m) for m in MOVEMENTS if abs(changes[m.measure]) >= m.threshold
    )[::-1]
    # Eye opening shares the eyes with lid phrases, jaw with lip gap: keep at most five clauses for concision.
    clauses = []
    for rank, (_, movement) in enumerate(visible[:5]):
        options = movement.up if changes[movement.measure] > 0 else movement.down
        clauses.append(options[(variant + rank) % len(options)])
    if not clauses:
        return STILL_PHRASES[variant % len(STILL_PHRASES)][0].upper() + STILL_PHRASES[variant % len(STILL_PHRASES)][1:] + "."
    sentences = []
    for start in range(0, len(clauses), 2):
        pair = clauses[start:start + 2]
        sentence = CONNECTORS[(variant + start) % len(CONNECTORS)].join(pair) if len(pair) == 2 else pair[0]
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


def describe_clip(clip_id: str, landmarks: np.ndarray, valid: np.ndarray) -> str:
    """Caption of one clip; the phrasing variant is derived from the clip id, so reruns are identical."""
    return describe_changes(movement_changes(landmarks, valid), variant=zlib.crc32(clip_id.encode()))
