"""The offline caption backend: describe how facial parts move, measured from the 68-landmark tracks.

Each clip's landmarks give per-frame measures (brow height, eye opening, mouth-corner height, lip gap, jaw
opening, head roll/yaw, ...), normalised by the inter-ocular distance so that face size does not matter.
The onset is the clip's first valid frame, the peak the frame that moves farthest from it; the change
from onset to peak of each measure becomes a clause, worded by the phrasebook in config/prompts/. The wording describes actions only: no emotion word
and no label is ever used, so the text is valid in every fold.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from stages.common.errors import StageError

BACKEND_NAME = "landmark-motion"
MODEL_ID = "landmark-motion-v1"  # bump when the measures change meaning

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


MEASURES = ("brow_height", "inner_brow_height", "brow_gap", "eye_opening", "corner_height", "mouth_width",
            "lip_gap", "upper_lip_height", "jaw_opening", "head_roll", "head_yaw")


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
        "upper_lip_height": (pts[:, NOSE_TIP, 1] - pts[:, UPPER_LIP_TOP, 1]) / iod,
        "jaw_opening": np.linalg.norm(pts[:, CHIN] - pts[:, NOSE_TIP], axis=1) / iod,
        "head_roll": roll,
        "head_yaw": yaw,
    }


@dataclass(frozen=True)
class Movement:
    measure: str
    threshold: float  # change from onset to peak that counts as visible movement
    up: tuple[str, ...]
    down: tuple[str, ...]


@dataclass(frozen=True)
class Phrasebook:
    """The describer's wording, read from ``config/prompts/landmark_motion.yaml``."""

    movements: tuple[Movement, ...]
    still: tuple[str, ...]
    connectors: tuple[str, ...]
    max_clauses: int


def load_phrasebook(path: str | Path) -> Phrasebook:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        known = set(MEASURES)
        movements = []
        for measure, spec in raw["movements"].items():
            if measure not in known:
                raise StageError(f"{path}: unknown measure '{measure}'; known measures are {sorted(known)}.")
            movements.append(Movement(measure, float(spec["threshold"]), tuple(spec["up"]), tuple(spec["down"])))
        return Phrasebook(tuple(movements), tuple(raw["still"]), tuple(raw["connectors"]), int(raw["max_clauses"]))
    except FileNotFoundError as err:
        raise StageError(f"{path}: phrasebook of the landmark-motion captioner not found (captions.prompt).") from err
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        raise StageError(f"{path}: malformed phrasebook ({err!r}); compare with config/prompts/landmark_motion.yaml.") from err


def onset_and_peak(measures: dict[str, np.ndarray], valid: np.ndarray, book: Phrasebook) -> tuple[int, int]:
    """Onset = first valid frame; peak = valid frame farthest from the onset over all threshold-scaled measures."""
    onset = int(np.flatnonzero(valid)[0])
    scaled = np.stack([(measures[m.measure] - measures[m.measure][onset]) / m.threshold for m in book.movements], axis=1)
    distance = np.linalg.norm(scaled, axis=1)
    distance[~valid] = -1
    return onset, int(np.argmax(distance))


def movement_changes(landmarks: np.ndarray, valid: np.ndarray, book: Phrasebook) -> dict[str, float]:
    """Change of every measure from the onset to the peak frame (0 for clips with no valid frame)."""
    if not valid.any():
        return {m.measure: 0.0 for m in book.movements}
    measures = measure_frames(landmarks)
    onset, peak = onset_and_peak(measures, valid, book)
    return {m.measure: float(measures[m.measure][peak] - measures[m.measure][onset]) for m in book.movements}


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def describe_changes(changes: dict[str, float], book: Phrasebook, variant: int = 0) -> str:
    """Concise description of the visible movements, strongest first; ``variant`` picks among phrasings."""
    visible = sorted(
        ((abs(changes[m.measure]) / m.threshold, i, m) for i, m in enumerate(book.movements)
         if abs(changes[m.measure]) >= m.threshold),
        reverse=True,
    )
    clauses = []
    for rank, (_, _, movement) in enumerate(visible[: book.max_clauses]):
        options = movement.up if changes[movement.measure] > 0 else movement.down
        clauses.append(options[(variant + rank) % len(options)])
    if not clauses:
        return _sentence(book.still[variant % len(book.still)])
    sentences = []
    for start in range(0, len(clauses), 2):
        pair = clauses[start:start + 2]
        connector = book.connectors[(variant + start) % len(book.connectors)]
        sentences.append(_sentence(connector.join(pair)))
    return " ".join(sentences)


def describe_clip(clip_id: str, landmarks: np.ndarray, valid: np.ndarray, book: Phrasebook) -> str:
    """Caption of one clip; the phrasing variant is derived from the clip id, so reruns are identical."""
    return describe_changes(movement_changes(landmarks, valid, book), book, variant=zlib.crc32(clip_id.encode()))
