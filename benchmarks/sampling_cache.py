"""Benchmark: what exact training sampling costs in cache size, on the frame counts of DFER-CLIP's real lists.

For every clip of DFEW, FERV39k and MAFW (frame counts from benchmarks/data/dfer_clip_frame_counts.json, copied
from DFER-CLIP's annotation lists), counts the frames the frames stage stores under each candidates_per_segment
setting (``sampling.needed_frames``: the 16 test centres plus the training candidates), and how many clips train
on a subset of their segments (``sampling.is_exact`` false). Bytes are frames x the mean size of a stored frame,
measured here: a 224 px quality-90 JPEG (``stages.frames.stage.encode_frame``) of face crops from scikit-image's
astronaut photo, plus its parsing PNG and landmarks in the features cache. Prints a Markdown table and updates the
sampling-cache section of benchmarks/RESULTS.md.

    python benchmarks/sampling_cache.py      # ~10 s
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.faces.parsing import encode_parsing, parsing_from_landmarks  # noqa: E402
from stages.frames import sampling  # noqa: E402
from stages.common.face_detect import square_box  # noqa: E402
from stages.frames.stage import encode_frame  # noqa: E402
from results_file import update_section  # benchmarks/ is on sys.path when a script runs

BEGIN, END = "<!-- sampling_cache:begin -->", "<!-- sampling_cache:end -->"
COUNTS = ROOT / "benchmarks" / "data" / "dfer_clip_frame_counts.json"
SEGMENTS, SIZE, QUALITY = 16, 224, 90
SETTINGS = ["test only", 1, 2, 3, sampling.ALL]
READING = (
    "Reading it: `all` (the default for the real datasets) stores every frame of the 16 segments, so each epoch draws "
    "from the whole segment exactly as DFER-CLIP; K = 3 stores at most 64 frames per clip and is exact only for clips "
    "of fewer than 64 frames, which is every FERV39k clip (8-47 frames, so there `all` costs nothing more) but not "
    "the share of DFEW and MAFW clips given in the last column. The cost falls on the frames and features caches (and "
    "on the faces stage, which analyses every stored frame); the mp4/JPEG sources are not duplicated beyond this."
)


def histogram(dataset: dict) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted((int(n), int(c)) for n, c in dataset["clips_per_frame_count"].items())
    return np.array([n for n, _ in pairs]), np.array([c for _, c in pairs])


def stored_frames(n: int, setting) -> int:
    if setting == "test only":
        return len(np.unique(sampling.test_indices(n, SEGMENTS)))
    return len(sampling.needed_frames(n, SEGMENTS, setting))


def bytes_per_frame() -> tuple[float, float]:
    """Mean bytes of a stored face frame (JPEG) and of its parsing PNG + landmarks, over 40 shifted face crops."""
    from skimage.data import astronaut

    from stages.common.face_detect import detect_faces, landmarks_68

    photo = astronaut()
    face = detect_faces(photo, 1)[0].box
    jpeg, maps = [], []
    for dx, dy in np.random.default_rng(0).integers(-20, 21, size=(40, 2)):
        box = square_box((face[0] + dx, face[1] + dy, face[2] + dx, face[3] + dy), 0.25, photo.shape[1], photo.shape[0])
        jpeg.append(len(encode_frame(photo, box, SIZE, QUALITY)))
        crop = cv2.resize(photo[box[1]:box[3], box[0]:box[2]], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        found = detect_faces(crop, 0)
        points = landmarks_68(crop, found[0].box) if found else np.zeros((68, 2), np.float32)
        maps.append(len(encode_parsing(parsing_from_landmarks(points, SIZE, SIZE))) + points.size * 4)
    return float(np.mean(jpeg)), float(np.mean(maps))


def label(setting) -> str:
    return "test centres only" if setting == "test only" else f"`{setting}`" if setting == sampling.ALL else f"K = {setting}"


def main() -> None:
    data = json.loads(COUNTS.read_text())
    jpeg, maps = bytes_per_frame()
    lines = [
        BEGIN,
        "## Training-sampling cache: `candidates_per_segment` on the real lists' frame counts (`benchmarks/sampling_cache.py`)",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, OpenCV {cv2.__version__}. Frame counts of every "
        "clip in DFER-CLIP's annotation lists (DFEW and MAFW: set 1 train + test; FERV39k: train + test), copied to "
        "`benchmarks/data/dfer_clip_frame_counts.json`. Stored frames from `sampling.needed_frames` (16 test centres + "
        f"the training candidates); sizes = frames x {jpeg / 1024:.1f} KiB per 224 px quality-90 face JPEG in the "
        f"frames cache and x {(jpeg + maps) / 1024:.1f} KiB per frame in the features cache (JPEG + parsing PNG + "
        "landmarks), both measured on face crops of scikit-image's astronaut photo. *Inexact* = clips whose training "
        "draw covers only part of each segment (segments longer than K).",
        "",
        "| dataset | clips | frames in the lists | setting | stored frames | per clip (mean) | frames cache (GiB) "
        "| features cache (GiB) | vs K = 3 | inexact clips |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, dataset in data["datasets"].items():
        n, clips = histogram(dataset)
        k3 = sum(stored_frames(int(v), 3) * c for v, c in zip(n, clips))
        for setting in SETTINGS:
            frames = sum(stored_frames(int(v), setting) * c for v, c in zip(n, clips))
            inexact = "" if setting == "test only" else \
                f"{sum(c for v, c in zip(n, clips) if not sampling.is_exact(int(v), SEGMENTS, setting)) / clips.sum():.1%}"
            lines.append(f"| {name} | {clips.sum():,} | {int((n * clips).sum()):,} | {label(setting)} | {frames:,} | "
                         f"{frames / clips.sum():.1f} | {frames * jpeg / 2**30:.2f} | {frames * (jpeg + maps) / 2**30:.2f} "
                         f"| {frames / k3:.2f}x | {inexact} |")
    lines += ["", "Reproduce: `python benchmarks/sampling_cache.py`", "", READING, END]
    section = "\n".join(lines)
    print(section)
    update_section(ROOT / "benchmarks" / "RESULTS.md", BEGIN, END, section)


if __name__ == "__main__":
    main()
