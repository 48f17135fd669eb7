"""Caption stage: one description of facial movements per clip of a shard, from the configured backend.

``landmark-motion`` (offline default) reads the faces shard and its phrasebook (its "prompt"). ``video-llava``
reads 8 frames sampled uniformly from the clip's original source, as the paper did, and the prompt file.
"""
from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from stages.captions import landmark_motion
from stages.captions.backend import ClipFrames, uniform_indices
from stages.common.errors import StageError
from stages.common.io import read_parquet
from stages.common.schemas import CAPTIONS_RAW_SCHEMA, FACES_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA, NUM_LANDMARKS

BACKENDS = ("landmark-motion", "video-llava")
LABEL_HINTS = ("none", "paper")


@dataclass(frozen=True)
class VideoLlavaConfig:
    model_dir: str = "weights/Video-LLaVA-7B-hf"
    dtype: str = "auto"
    load_in_4bit: bool = False
    max_new_tokens: int = 120
    batch_size: int = 4
    device: str = "auto"


@dataclass(frozen=True)
class CaptionsConfig:
    backend: str = "landmark-motion"
    label_hint: str = "none"
    # Under label_hint "paper": fraction of clips captioned a second time with another label (leakage check).
    counterfactual_fraction: float = 0.1
    seed: int = 0
    video_llava: VideoLlavaConfig = field(default_factory=VideoLlavaConfig)

    @classmethod
    def from_dict(cls, raw: dict) -> CaptionsConfig:
        raw = dict(raw)
        llava = raw.pop("video_llava", {}) or {}
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise StageError(f"captions config: unknown keys {unknown}; known keys are {sorted(cls.__dataclass_fields__)}.")
        config = cls(**raw, video_llava=VideoLlavaConfig(**llava))
        if config.backend not in BACKENDS:
            raise StageError(f"captions config: backend must be one of {BACKENDS}, got {config.backend!r}.")
        if config.label_hint not in LABEL_HINTS:
            raise StageError(f"captions config: label_hint must be one of {LABEL_HINTS}, got {config.label_hint!r}.")
        if config.label_hint == "paper" and config.backend == "landmark-motion":
            raise StageError("captions config: label_hint 'paper' only applies to the video-llava backend "
                             "(landmark-motion never sees the label). Set label_hint: none.")
        return config


def landmark_tracks(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 2) landmarks and the mask of frames whose landmarks come from that frame itself."""
    landmarks = np.asarray(row["landmarks"], dtype=np.float32).reshape(-1, NUM_LANDMARKS, 2)
    valid = np.array([status == "detected" for status in row["face_status"]], dtype=bool)
    return landmarks, valid


def file_sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def caption_landmark_motion(faces: pa.Table, phrasebook_path: str, progress: bool = True) -> list[dict]:
    """Describe each clip's landmark motion; clips without any detected face get status no_face and no text."""
    book = landmark_motion.load_phrasebook(phrasebook_path)
    prompt_sha = file_sha(phrasebook_path)
    rows = []
    for row in tqdm(faces.to_pylist(), desc="captions (landmark-motion)", unit="clip", disable=not progress, file=sys.stderr):
        landmarks, valid = landmark_tracks(row)
        found = row["clip_flag"] != "no_face" and valid.any()
        text = landmark_motion.describe_clip(row["clip_id"], landmarks, valid, book) if found else ""
        rows.append(_row(row["clip_id"], text, landmark_motion.BACKEND_NAME, landmark_motion.MODEL_ID, prompt_sha,
                         "none", "ok" if found else "no_face"))
    return rows


def counterfactual_label(label: int, n_classes: int, rng: np.random.Generator) -> int:
    return int((label + rng.integers(1, n_classes)) % n_classes)


def caption_video_llava(frames: pa.Table, index: pa.Table, prompt_path: str, config: CaptionsConfig,
                        progress: bool = True) -> list[dict]:
    """Batched Video-LLaVA captions from 8 uniformly sampled source frames per clip."""
    from stages.captions.video_llava import VideoLlavaBackend
    from stages.frames.decode import read_frames

    template = Path(prompt_path).read_text(encoding="utf-8")
    prompt_sha = file_sha(prompt_path)
    llava = config.video_llava
    backend = VideoLlavaBackend(llava.model_dir, template, label_hint=config.label_hint, dtype=llava.dtype,
                                load_in_4bit=llava.load_in_4bit, max_new_tokens=llava.max_new_tokens,
                                batch_size=llava.batch_size, device=llava.device)
    class_names = _class_names(index)
    rng = np.random.default_rng(config.seed)
    clips = frames.select(["clip_id", "source", "source_kind", "n_frames", "label"]).to_pylist()
    batches = [clips[start:start + llava.batch_size] for start in range(0, len(clips), llava.batch_size)]

    def decode(batch: list[dict]) -> tuple[list[ClipFrames], list[str]]:
        inputs, statuses = [], []
        for clip in batch:
            try:
                images = read_frames(clip["source"], clip["source_kind"], uniform_indices(clip["n_frames"]), clip["n_frames"])
                statuses.append("ok")
            except StageError as err:
                # A blank stand-in keeps the batch shape; the row is written with status "error: ..." and no text.
                images = [np.zeros((224, 224, 3), np.uint8)] * 8
                statuses.append(f"error: {err}")
            inputs.append(ClipFrames(clip["clip_id"], images, class_names[clip["label"]]))
        return inputs, statuses

    rows = []
    with ThreadPoolExecutor(max_workers=1) as pool:  # decodes the next batch while the GPU generates
        decoded = pool.map(decode, batches)
        for batch, (inputs, statuses) in tqdm(zip(batches, decoded), total=len(batches), desc="captions (video-llava)",
                                              unit="batch", disable=not progress, file=sys.stderr):
            rows += _describe_batch(backend, batch, inputs, statuses, config, class_names, rng, prompt_sha)
    return rows


def _describe_batch(backend, batch, inputs, statuses, config, class_names, rng, prompt_sha) -> list[dict]:
    """Captions of one decoded batch, plus counterfactual captions (another label) for a sample under "paper"."""
    texts = backend.describe(inputs)
    if config.label_hint == "paper":
        swapped = [c for c in inputs if rng.random() < config.counterfactual_fraction]
        other = {c.clip_id: class_names[counterfactual_label(class_names.index(c.label_name), len(class_names), rng)]
                 for c in swapped}
        counter = dict(zip(other, backend.describe([ClipFrames(c.clip_id, c.frames, other[c.clip_id]) for c in swapped])))
    else:
        counter = {}
    rows = []
    for clip, text, status in zip(batch, texts, statuses):
        if status == "ok" and not text.strip():
            status = "empty"
        rows.append(_row(clip["clip_id"], text if status == "ok" else "", backend.name, backend.model_id, prompt_sha,
                         config.label_hint, status, counter.get(clip["clip_id"], "")))
    return rows


def _class_names(index: pa.Table) -> list[str]:
    pairs = dict(zip(index.column("label").to_pylist(), index.column("class_name").to_pylist()))
    return [pairs[i] for i in sorted(pairs)]


def _row(clip_id, caption, backend, model_id, prompt_sha, label_hint, status, counterfactual="") -> dict:
    return {"clip_id": clip_id, "caption": caption, "backend": backend, "model_id": model_id, "prompt_sha": prompt_sha,
            "label_hint": label_hint, "status": status, "counterfactual_caption": counterfactual}


def run(faces_path: str, frames_path: str, index_path: str, prompt_path: str, config: CaptionsConfig,
        progress: bool = True) -> pa.Table:
    if config.backend == "landmark-motion":
        rows = caption_landmark_motion(read_parquet(faces_path, FACES_SCHEMA), prompt_path, progress)
    else:
        rows = caption_video_llava(read_parquet(frames_path, FRAMES_SCHEMA), read_parquet(index_path, INDEX_SCHEMA),
                                   prompt_path, config, progress=progress)
    return pa.Table.from_pylist(rows, schema=CAPTIONS_RAW_SCHEMA)
