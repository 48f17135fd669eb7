"""The unlabelled pre-training corpus: single frames of facial actions and their combinations, each with a caption.

The same astronaut face as the demo clips (stages.demo), but its own seed stream and no clip, class or split of the
demo: each sample draws a few facial actions (brow raise, lip-corner pull, jaw drop, ...) at random intensities, a
random head pose and lighting, and is captioned with the actions only ("brows raised, jaw dropped"). A sample is
cut out the way the frames stage crops a face and comes in the three looks FineCLIPER's encoders see: the frame,
its parsing colours and its landmark dots (rendered by stages.faces like the training loader's inputs), so that the
towers learn to tell actions apart in all three.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from stages.common.errors import StageError
from stages.common.face_detect import square_box
from stages.demo.expressions import (BROWS_INNER, BROWS_MID, BROWS_OUTER, CORNERS, LOWER_LIDS, NOSE_LOWER,
                                     UPPER_LIDS, pattern_field, to_image)
from stages.demo.face_model import face_size
from stages.demo.generate import Scene, idle_motion, pose_matrix, relight, render_face
from stages.faces.parsing import parsing_from_landmarks
from stages.faces.render import render_landmarks, render_parsing

# Facial actions in the notation of stages.demo.expressions (indices, outward, upward at full strength), grouped by
# the part of the face they move: a sample moves each part at most once, so no two actions cancel out.
ACTIONS: dict[str, dict[str, tuple[str, list]]] = {
    "brows": {
        "raise": ("brows raised", [(BROWS_INNER + BROWS_MID + BROWS_OUTER, 0.0, 0.075)]),
        "inner raise": ("inner brows raised", [(BROWS_INNER, -0.012, 0.05), ([20, 23], -0.006, 0.03)]),
        "lower": ("brows lowered and drawn together",
                  [(BROWS_INNER, -0.04, -0.07), (BROWS_MID, -0.022, -0.05), (BROWS_OUTER, -0.005, -0.025)]),
    },
    "eyes": {
        "widen": ("eyes wide open", [(UPPER_LIDS, 0.0, 0.028), (LOWER_LIDS, 0.0, -0.006)]),
        "narrow": ("eyes narrowed", [(UPPER_LIDS, 0.0, -0.01), (LOWER_LIDS, 0.0, 0.018)]),
    },
    "corners": {
        "pull up": ("lip corners pulled up",
                    [(CORNERS, 0.045, 0.05), ([49, 53, 55, 59, 61, 63, 65, 67], 0.025, 0.03),
                     ([50, 52, 56, 58], 0.01, 0.015), ([2, 3, 4, 12, 13, 14], 0.008, 0.012)]),
        "pull down": ("lip corners pulled down", [(CORNERS, -0.012, -0.045), ([55, 59], 0.0, -0.02)]),
        "stretch": ("lips stretched sideways", [(CORNERS, 0.05, -0.015), ([49, 53, 55, 59, 61, 63, 65, 67], 0.028, -0.008)]),
    },
    "lips": {
        "upper raise": ("upper lip raised and nose wrinkled",
                        [([50, 51, 52], 0.0, 0.06), ([49, 53], 0.0, 0.045), ([61, 62, 63], 0.0, 0.055),
                         (NOSE_LOWER, 0.0, 0.04), ([31, 35], 0.015, 0.0), ([28, 29], 0.0, 0.02)]),
        "press": ("lips pressed together",
                  [([49, 50, 51, 52, 53], 0.0, -0.02), ([61, 62, 63], 0.0, -0.008), ([55, 56, 57, 58, 59], 0.0, 0.025),
                   ([65, 66, 67], 0.0, 0.008)]),
    },
    "jaw": {
        "drop": ("jaw dropped and mouth open",
                 [([55, 59, 65, 67], -0.008, -0.1), ([56, 57, 58, 66], 0.0, -0.12), ([6, 7, 8, 9, 10], 0.0, -0.11),
                  ([4, 5, 11, 12], 0.0, -0.06), ([3, 13], 0.0, -0.025)]),
    },
}
RELAXED = "a relaxed face"
PART_CLASSES = [len(actions) + 1 for actions in ACTIONS.values()]  # per part: no action, or one of its actions
LOOKS = ("frame", "parsing", "landmarks")  # what a sample is rendered as; captions say which
SEED_TAG = 0xC0A5  # first entry of every corpus seed: the demo's clip seeds are (seed, label, clip) triples


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 1
    samples: int = 1500
    frame_size: int = 192  # canvas the face is rendered on, as the demo clips
    margin: float = 0.25  # the frames stage's face_crop margin
    max_actions: int = 3


def parse_corpus_config(raw: dict) -> CorpusConfig:
    known = {f.name for f in fields(CorpusConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise StageError(f"pretrain corpus config: unknown keys {unknown}; known keys are {sorted(known)}")
    cfg = CorpusConfig(**raw)
    if cfg.samples < 1 or cfg.frame_size < 64 or not 1 <= cfg.max_actions <= len(ACTIONS):
        raise StageError(f"pretrain corpus config: need samples >= 1, frame_size >= 64 and "
                         f"1 <= max_actions <= {len(ACTIONS)} (got {asdict(cfg)})")
    return cfg


def draw_actions(rng: np.random.Generator, max_actions: int) -> list[tuple[str, str, float]]:
    """(part, action, intensity) for 0..max_actions distinct face parts, in ACTIONS order (so captions are canonical)."""
    count = int(rng.integers(0, max_actions + 1))
    parts = set(rng.choice(list(ACTIONS), size=count, replace=False).tolist())
    drawn = []
    for part in ACTIONS:
        if part in parts:
            action = list(ACTIONS[part])[int(rng.integers(len(ACTIONS[part])))]
            drawn.append((part, action, float(rng.uniform(0.4, 1.0))))
    return drawn


def caption(actions: list[tuple[str, str, float]]) -> str:
    """The actions' phrases, without intensities: few distinct captions, so a batch holds many positives."""
    return ", ".join(ACTIONS[part][action][0] for part, action, _ in actions) or RELAXED


def action_labels(actions: list[tuple[str, str, float]]) -> np.ndarray:
    """Per face part (ACTIONS order), which action the sample shows: 0 none, k its part's k-th action."""
    drawn = {part: action for part, action, _ in actions}
    return np.array([list(ACTIONS[part]).index(drawn[part]) + 1 if part in drawn else 0 for part in ACTIONS])


def action_field(actions: list[tuple[str, str, float]]) -> np.ndarray:
    """(68, 2) displacement in face units of the drawn actions together."""
    return sum((intensity * pattern_field(ACTIONS[part][action][1]) for part, action, intensity in actions),
               np.zeros((68, 2)))


def crop_box(points: np.ndarray, cfg: CorpusConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The frames stage's square face crop around the landmarks' box, jittered a little as a face tracker's box is."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    side = max(x1 - x0, y1 - y0) * rng.uniform(0.95, 1.1)
    cx, cy = (x0 + x1) / 2 + rng.normal(0, 0.03) * side, (y0 + y1) / 2 + rng.normal(0, 0.03) * side
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return square_box(box, cfg.margin, cfg.frame_size, cfg.frame_size)


def sample(scene: Scene, cfg: CorpusConfig, index: int, size: int) -> tuple[list[np.ndarray], list[tuple[str, str, float]]]:
    """One sample's three looks ((size, size, 3) uint8 RGB each, LOOKS order) and its (part, action, intensity)s."""
    rng = np.random.default_rng([SEED_TAG, cfg.seed, index])
    lm = scene.source.landmarks
    actions = draw_actions(rng, cfg.max_actions)
    disp = to_image(action_field(actions), lm) + idle_motion(rng, 1, face_size(lm))[0]
    pose = pose_matrix(scene, rng.uniform(-8, 8), rng.uniform(0.9, 1.1), rng.uniform(-0.04, 0.04, 2) * cfg.frame_size,
                       bool(rng.random() < 0.5))
    frame, points = render_face(scene, disp, pose)
    frame = relight(frame, rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3), rng.uniform(-25, 25),
                    int(rng.integers(2, 8)), rng)
    x0, y0, x1, y1 = crop_box(points, cfg, rng)
    crop = cv2.resize(frame[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    local = (points - (x0, y0)) * (size / (x1 - x0))
    looks = [crop, render_parsing(parsing_from_landmarks(local, size, size)), render_landmarks(local, size, size)]
    return looks, actions


def build_corpus(scene: Scene, cfg: CorpusConfig, size: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(3 * samples, size, size, 3) uint8 images (``size``: the tower's input side), their captions and their
    (3 * samples, parts) action_labels. Parsing and landmark looks are captioned as such ("face map: ...", "face
    points: ..."), so the three looks of one face are not each other's positives; all three share the labels."""
    images, captions, labels = [], [], []
    for i in range(cfg.samples):
        looks, actions = sample(scene, cfg, i, size)
        text = caption(actions)
        images += looks
        captions += [text, f"face map: {text}", f"face points: {text}"]
        labels += [action_labels(actions)] * len(LOOKS)
    return np.stack(images), captions, np.stack(labels)
