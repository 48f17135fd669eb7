"""Follow one face through a clip for the face crop, across camera motion and scene cuts.

Scene cuts are found by the change of colour histogram between consecutive decoded frames. In each shot the face is
detected on a few key frames only (evenly spaced, plus the shot's first and last frame: about ``detections``
per clip), so the cost stays close to a handful of detections per clip. The track starts from the best face of the
key frame nearest the middle and is followed forwards and backwards: within a shot a detection continues it only
when it lies where the track's motion predicts and has the track's size, so a pan does not jump to another person;
after a cut the face most like the track (size and position) is taken. Key-frame boxes are smoothed, frames between two linked key
frames are interpolated, and every other frame is *filled* with the nearest tracked box and counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
Detector = Callable[[np.ndarray], list[Box]]  # boxes of one frame, best first

HISTOGRAM_BINS = 32
THUMBNAIL = 64
LINK_REACH = 1.0  # a detection continues the track when its centre is this many box sides from the predicted one
LINK_SIZE_RATIO = 1.5  # ... and its side is within this factor of the predicted side
STATUSES = ("detected", "interpolated", "filled")


@dataclass(frozen=True)
class FaceTrack:
    boxes: list[Box | None]  # per frame; all None when no frame of the clip has a face
    status: list[str]  # per frame, one of STATUSES
    cuts: list[int]  # positions (in the frame list) where a new shot starts

    @property
    def filled_fraction(self) -> float:
        return self.status.count("filled") / len(self.status) if self.status else 0.0


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """(3, HISTOGRAM_BINS) per-channel histogram of a small thumbnail, each row summing to 1."""
    thumb = cv2.resize(rgb, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    bins = (thumb.astype(np.int64) * HISTOGRAM_BINS) // 256
    return np.stack([np.bincount(bins[..., c].ravel(), minlength=HISTOGRAM_BINS) for c in range(3)]) / bins[..., 0].size


def scene_cuts(frames: Sequence[np.ndarray], threshold: float) -> list[int]:
    """Positions i > 0 whose colour histogram differs from frame i - 1's by more than ``threshold`` (half the L1
    distance, averaged over the channels: 0 = same colours, 1 = no colour in common)."""
    histograms = [colour_histogram(frame) for frame in frames]
    return [i for i in range(1, len(frames))
            if 0.5 * np.abs(histograms[i] - histograms[i - 1]).sum(axis=1).mean() > threshold]


def shots(n: int, cuts: Sequence[int]) -> list[range]:
    edges = [0, *cuts, n]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:])]


def key_frames(shot: range, spacing: int) -> list[int]:
    """Every ``spacing``-th frame of the shot, and its last one."""
    return sorted({*shot[::spacing], shot[-1]})


def predicted_box(history: list[tuple[int, Box]], position: int) -> Box:
    """Where the track's box should be at ``position``: its centre moved on linearly from the last two links in this
    shot, its size the last link's. Sizes are not extrapolated: detectors jump between scales on a still face (dlib
    alternates 89 and 107 px boxes on the demo's faces), and extrapolating that jitter soon predicts a box no
    detection fits, which lost the face in still clips."""
    (p1, b1) = history[-1]
    if len(history) == 1:
        return b1
    (p0, b0) = history[-2]
    step = (position - p1) / (p1 - p0)
    (x0, y0), (x1, y1) = centre(b0), centre(b1)
    cx, cy = x1 + (x1 - x0) * step, y1 + (y1 - y0) * step
    half_w, half_h = (b1[2] - b1[0]) / 2, (b1[3] - b1[1]) / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def linked(boxes: list[Box], predicted: Box) -> Box | None:
    """The detection that continues the track in the same shot: of those of about the predicted size whose centre
    lies within LINK_REACH box sides of the predicted centre, the nearest; None when there is none."""
    side = math.sqrt(area(predicted))
    near = [box for box in boxes if abs(math.log(area(box) / area(predicted))) <= 2 * math.log(LINK_SIZE_RATIO)
            and math.dist(centre(box), centre(predicted)) <= LINK_REACH * side]
    return min(near, key=lambda box: math.dist(centre(box), centre(predicted)), default=None)


def most_alike(boxes: list[Box], previous: Box) -> Box | None:
    """After a cut: the detection closest to the track's last box in size and position."""
    def distance(box: Box) -> float:
        size, size0 = math.sqrt(area(box)), math.sqrt(area(previous))
        shift = math.dist(centre(box), centre(previous)) / size0
        return abs(math.log(size / size0)) + shift

    return min(boxes, key=distance, default=None)


def area(box: Box) -> float:
    return max(box[2] - box[0], 1e-6) * max(box[3] - box[1], 1e-6)


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def follow(order: list[int], detections: dict[int, list[Box]], shot_of: list[int],
           history: list[tuple[int, Box]]) -> dict[int, Box]:
    """Link detections along ``order`` (key frames from the seed outwards); ``history``: the track's links so far,
    the seed's last, in the order they were followed."""
    links: dict[int, Box] = {}
    for position in order:
        if shot_of[position] != shot_of[history[-1][0]]:  # a cut: whoever looks most like the track
            box = most_alike(detections[position], history[-1][1])
            history = [(position, box)] if box is not None else history
        else:
            box = linked(detections[position], predicted_box(history, position))
            if box is not None:
                history = [*history, (position, box)]
        if box is not None:
            links[position] = box
    return links


def smoothed(links: dict[int, Box], keys: list[int]) -> dict[int, Box]:
    """Linked key-frame boxes of one shot, each averaged with the straight line between its two neighbouring key
    frames when these are linked too ([1, 2, 1] / 4 for evenly spaced ones); a steady motion stays exact."""
    out = {}
    for j, key in enumerate(keys):
        if key not in links:
            continue
        out[key] = links[key]
        if 0 < j < len(keys) - 1 and keys[j - 1] in links and keys[j + 1] in links:
            before, after = keys[j - 1], keys[j + 1]
            weight = (key - before) / (after - before)
            line = [(1 - weight) * a + weight * b for a, b in zip(links[before], links[after])]
            out[key] = tuple((own + on_line) / 2 for own, on_line in zip(links[key], line))
    return out


def track_face(frames: Sequence[np.ndarray], detect: Detector, detections: int, cut_threshold: float) -> FaceTrack:
    """The face box of every frame (see the module docstring); ``detect`` gives a frame's faces, best first."""
    n = len(frames)
    cuts = scene_cuts(frames, cut_threshold)
    spans = shots(n, cuts)
    spacing = max(1, math.ceil(n / max(detections, 1)))
    keys = [key_frames(shot, spacing) for shot in spans]
    shot_of = [s for s, shot in enumerate(spans) for _ in shot]
    found = {key: detect(frames[key]) for shot_keys in keys for key in shot_keys}
    seeds = sorted((key for key, boxes in found.items() if boxes), key=lambda key: (abs(key - (n - 1) / 2), key))
    if not seeds:
        return FaceTrack([None] * n, ["filled"] * n, cuts)
    seed = seeds[0]
    ordered = sorted(found)
    start = found[seed][0]
    backward = follow([key for key in reversed(ordered) if key < seed], found, shot_of, [(seed, start)])
    # Forwards, the motion is known from the first backward link of the seed's shot.
    before = [(key, box) for key, box in backward.items() if shot_of[key] == shot_of[seed]][:1]
    forward = follow([key for key in ordered if key > seed], found, shot_of, [*before, (seed, start)])
    links = {**backward, seed: start, **forward}

    boxes: list[Box | None] = [None] * n
    status = ["filled"] * n
    for shot_keys in keys:
        smooth = smoothed(links, shot_keys)
        for key, box in smooth.items():
            boxes[key], status[key] = box, "detected"
        for a, b in zip(shot_keys[:-1], shot_keys[1:]):
            if a in smooth and b in smooth:
                for position in range(a + 1, b):
                    weight = (position - a) / (b - a)
                    boxes[position] = tuple((1 - weight) * u + weight * v for u, v in zip(smooth[a], smooth[b]))
                    status[position] = "interpolated"
    tracked = [i for i in range(n) if status[i] != "filled"]
    for i in range(n):
        if status[i] == "filled":
            same_shot = [j for j in tracked if shot_of[j] == shot_of[i]] or tracked
            boxes[i] = boxes[min(same_shot, key=lambda j: (abs(j - i), j))]
    return FaceTrack(boxes, status, cuts)
