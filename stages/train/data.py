"""Training and evaluation data: clips from the features cache as frame, parsing and landmark tensors.

Sampling (SPEC §1.3). Test mode takes each segment's centre frame (``test_indices``). Training draws one
frame per segment among the ``K`` cached candidates (``draw_train_indices``), again every epoch, with an
rng seeded from ``(seed, epoch, crc32(clip_id))``: the draw is deterministic given ``(seed, epoch)`` and
does not depend on which other clips or shards are loaded, nor on the DataLoader workers.

Augmentation (SPEC §1.4) is clip-consistent: one random draw per clip, applied to all T frames and to the
parsing and landmark images of that clip, in DFER-CLIP's order:
1. brightness factor U(max(0, 1 - b), 1 + b) (frames only: maps drawn over the frame are not brightened;
   applied after the geometry, which commutes with it up to interpolation rounding);
2. rotation by U(-d, d) degrees about the image centre, black fill;
3. Inception crop as DFER-CLIP's GroupRandomSizedCrop: area U(crop_scale) of the image, aspect ratio
   *uniform* in crop_ratio, width and height swapped with p 0.5, 10 tries, then the centred square;
   resized to S x S;
4. horizontal flip with p ``flip``. Parsing classes 2<->3 (brows) and 4<->5 (eyes) are swapped when the
   clip is flipped, before colours are rendered: the flipped image shows a mirrored subject whose right
   brow is the one on the image left, so class 2 ("right brow") keeps meaning the subject's right brow.
   Landmark dots carry no left/right identity, so the flip is purely geometric for them.
Test mode resizes to S x S without a crop (aspect not kept), as DFER-CLIP.

Interpolation: frames and landmark images bilinear (area when shrinking both sides); parsing class maps
nearest, so colours stay pure palette colours. Landmark images are rendered from the stored landmarks at
the stored frame's size, then transformed exactly like the frame, so dots stay on the facial points.
Frames whose face_status is "missing" (and every frame of a no_face clip) get black parsing and landmark
images. The landmark dots are drawn once, by the features stage, into the same per-frame map as the parsing
classes (``face_maps``: one decompression per frame for both). Parsing maps on black leave the loader as class
ids and are coloured on the training device after the geometry (nearest interpolation commutes with the colour
lookup); over the frame they are blended in the loader.

Items hold uint8 images (white-on-black landmark images as one grey channel, parsing on black as one channel of
class ids) and each clip's brightness factor;
:func:`model_inputs`, called on the training device right after a batch arrives, makes the models' float inputs:
values in [0, 1], brightness, and with ``normalize: clip`` OpenAI CLIP's mean/std for all modalities (DFER-CLIP
uses no normalisation, SPEC §0.5). Workers thus pass a quarter of the bytes, and the float work is batched.
"""
from __future__ import annotations

import copy
import math
import multiprocessing as mp
import random
import zlib
from dataclasses import dataclass, field, fields
from typing import Mapping, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from stages.common.errors import StageError
from stages.common.io import read_parquet
from stages.common.schemas import APPROVED_SCHEMA, FEATURES_SCHEMA
from stages.faces.parsing import L_BROW, L_EYE, NUM_CLASSES, R_BROW, R_EYE
from stages.faces.render import CLASS_BITS, PALETTE, decode_face_map
from stages.frames.sampling import draw_train_indices

MODALITIES = frozenset({"frames", "parsing", "landmarks", "caption"})
IMAGES = ("frames", "parsing", "landmarks")  # the item keys holding uint8 images
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_TRIES = 10

FLIP_CLASSES = np.arange(NUM_CLASSES, dtype=np.uint8)  # class id lookup applied to flipped parsing maps
FLIP_CLASSES[[R_BROW, L_BROW, R_EYE, L_EYE]] = [L_BROW, R_BROW, L_EYE, R_EYE]
FLIPPED_PALETTE = PALETTE[FLIP_CLASSES]
_FLIP_LUT = np.arange(256, dtype=np.uint8)  # cv2.LUT table of FLIP_CLASSES (ids past the classes never occur)
_FLIP_LUT[:NUM_CLASSES] = FLIP_CLASSES


def _from_dict(cls, values: Mapping | None, where: str, nested: Mapping[str, type] | None = None) -> dict:
    """Keyword arguments for ``cls`` from a config mapping; unknown keys are an error, lists become tuples."""
    values = dict(values or {})
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise StageError(f"{where}: unknown keys {unknown}; known keys are {known}.")
    for key, value in values.items():
        if key in (nested or {}):
            values[key] = nested[key].from_dict(value)
        elif isinstance(value, list):
            values[key] = tuple(value)
    return values


@dataclass(frozen=True)
class AugmentConfig:
    """Clip-consistent training augmentation (SPEC §1.4). Defaults are MAFW's pipeline (crop + flip);
    DFEW adds ``brightness: 0.5``, FERV39k ``rotation_degrees: 4``."""

    brightness: float = 0.0  # factor U(max(0, 1 - b), 1 + b) as ColorJitter; 0 = off
    rotation_degrees: float = 0.0  # angle U(-d, d); 0 = off
    crop_scale: tuple[float, float] = (0.08, 1.0)  # crop area as a fraction of the image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio w / h, drawn uniformly
    flip: float = 0.5  # horizontal flip probability

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        r_lo, r_hi = self.crop_ratio
        if not (self.brightness >= 0 and self.rotation_degrees >= 0 and 0 < lo <= hi <= 1
                and 0 < r_lo <= r_hi and 0 <= self.flip <= 1):
            raise StageError(f"augment config out of range: {self}; need brightness >= 0, rotation_degrees >= 0, "
                             "0 < crop_scale[0] <= crop_scale[1] <= 1, 0 < crop_ratio[0] <= crop_ratio[1], 0 <= flip <= 1.")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> "AugmentConfig":
        return cls(**_from_dict(cls, values, "train data augment config"))


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 224
    normalize: str = "none"  # "none" (DFER-CLIP) | "clip" (OpenAI CLIP mean/std)
    middle_level_background: str = "black"  # "black" | "frame": parsing colours / landmark dots on black or on the frame
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.num_workers < 0:
            raise StageError(f"train data config: image_size must be >= 1 and num_workers >= 0, got {self}.")
        if self.normalize not in ("none", "clip"):
            raise StageError(f"train data config: normalize must be 'none' or 'clip', got {self.normalize!r}.")
        if self.middle_level_background not in ("black", "frame"):
            raise StageError("train data config: middle_level_background must be 'black' or 'frame', "
                             f"got {self.middle_level_background!r}.")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> "DataConfig":
        return cls(**_from_dict(cls, values, "train data config", {"augment": AugmentConfig}))


# ------------------------------------------------------------------------------------------- augmentation

@dataclass(frozen=True)
class ClipAugment:
    """One clip's random draw: brightness factor, rotation (degrees, counter-clockwise), crop box
    ``(x, y, w, h)`` in stored-frame pixels after the rotation, and whether to flip."""

    brightness: float
    angle: float
    box: tuple[int, int, int, int]
    flip: bool


def random_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Inception crop ``(x, y, w, h)``: area U(scale) * H * W, aspect U(ratio), w/h swapped with p 0.5;
    after ``CROP_TRIES`` misses, the centred square."""
    for _ in range(CROP_TRIES):
        area = rng.uniform(*scale) * height * width
        aspect = rng.uniform(*ratio)
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if rng.random() < 0.5:
            w, h = h, w
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def draw_augment(cfg: AugmentConfig, height: int, width: int, rng: np.random.Generator) -> ClipAugment:
    brightness = rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness) if cfg.brightness else 1.0
    angle = rng.uniform(-cfg.rotation_degrees, cfg.rotation_degrees) if cfg.rotation_degrees else 0.0
    box = random_crop_box(height, width, cfg.crop_scale, cfg.crop_ratio, rng)
    return ClipAugment(float(brightness), float(angle), box, bool(rng.random() < cfg.flip))


def transform(image: np.ndarray, aug: ClipAugment | None, size: int, nearest: bool = False) -> np.ndarray:
    """(size, size[, C]) image: rotate, crop, resize, flip as ``aug`` says (None = test mode: resize only)."""
    if aug is not None and aug.angle:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), aug.angle, 1.0)
        image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if aug is not None:
        x, y, w, h = aug.box
        image = image[y : y + h, x : x + w]
    h, w = image.shape[:2]
    if nearest:
        interpolation = cv2.INTER_NEAREST_EXACT
    else:
        interpolation = cv2.INTER_AREA if h > size and w > size else cv2.INTER_LINEAR
    image = cv2.resize(image, (size, size), interpolation=interpolation)
    if aug is not None and aug.flip:
        image = cv2.flip(image, 1)  # contiguous, unlike a reversed numpy view
    return image


# ------------------------------------------------------------------------------------------------ dataset

def _decode_jpeg(buffer) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(buffer, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a cached JPEG does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_tensor(images: Sequence[np.ndarray], order: np.ndarray) -> torch.Tensor:
    """(T, C, S, S) uint8 whose frame t is the (S, S, C) or (S, S) (C = 1) uint8 image ``images[order[t]]``."""
    size, channels = images[0].shape[0], (images[0].shape + (1,))[2]
    planar = np.empty((len(order), channels, size, size), np.uint8)
    for t, j in enumerate(order):
        planar[t] = images[j].reshape(size, size, channels).transpose(2, 0, 1)
    return torch.from_numpy(planar)


def _class_ids(classes: Sequence[np.ndarray | None], order: np.ndarray, flipped: bool, size: int) -> torch.Tensor:
    """(T, 1, S, S) uint8 parsing class ids ``classes[order[t]]`` (0, background, whose colour is black, where a map
    is None); ``flipped`` swaps the left/right classes. :func:`model_inputs` colours them on the device."""
    planar = np.zeros((len(order), 1, size, size), np.uint8)
    for t, j in enumerate(order):
        if classes[j] is not None:
            if flipped:
                cv2.LUT(classes[j], _FLIP_LUT, dst=planar[t, 0])
            else:
                planar[t, 0] = classes[j]
    return torch.from_numpy(planar)


def _parsing_over_frames(classes: Sequence[np.ndarray | None], frames: Sequence[np.ndarray], order: np.ndarray,
                         flipped: bool) -> torch.Tensor:
    """(T, 3, S, S) uint8: palette colours blended 50/50 over the (transformed) frames, black where a map is None."""
    palette = FLIPPED_PALETTE if flipped else PALETTE
    blank = np.zeros_like(frames[0])
    maps = [blank if c is None else cv2.addWeighted(f, 0.5, np.take(palette, c, axis=0), 0.5, 0.0)
            for c, f in zip(classes, frames)]
    return _to_tensor(maps, order)


def read_captions(path: str | None, clip_ids: list[str]) -> tuple[list[str], set[str]]:
    """The approved caption of each clip ("" when it has none, or without ``path``) and the label hints used."""
    if path is None:
        return [""] * len(clip_ids), set()
    table = read_parquet(path, APPROVED_SCHEMA, columns=["clip_id", "caption", "label_hint"])
    ids = table.column("clip_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise StageError(f"{path}: clip ids occur more than once; rerun the review stage (apply_review).")
    by_id = dict(zip(ids, zip(table.column("caption").to_pylist(), table.column("label_hint").to_pylist())))
    found = [by_id.get(clip_id, ("", "")) for clip_id in clip_ids]
    return [caption for caption, _ in found], {hint for caption, hint in found if caption} - {""}


class ClipDataset(Dataset):
    """Clips of ``fold``/``split`` from features shards; items are dicts (see :meth:`__getitem__`).

    Captions come from ``captions_path`` (``captions/approved.parquet``) when the model reads them; without
    it every caption is "" (the visual cache holds none).

    Bytes stay in the Arrow tables (no per-frame Python objects); per clip only the id, label, caption and
    a few small numbers live as Python/numpy objects. Item ``i`` is table row ``_rows[i]``, so that
    :meth:`subset` shares the cache.
    """

    def __init__(self, feature_paths: Sequence[str], fold: str, split: str, config: DataConfig, train: bool,
                 seed: int = 0, modalities: set[str] | frozenset[str] = frozenset({"frames", "caption"}),
                 captions_path: str | None = None):
        unknown = set(modalities) - MODALITIES
        if unknown:
            raise StageError(f"unknown modalities {sorted(unknown)}; known: {sorted(MODALITIES)}.")
        if split not in ("train", "test"):
            raise StageError(f"split must be 'train' or 'test', got {split!r}.")
        self.config, self.train, self.seed, self.epoch = config, train, seed, 0
        self.modalities = frozenset(modalities)
        self.need_frames = "frames" in self.modalities or (
            config.middle_level_background == "frame" and bool(self.modalities & {"parsing", "landmarks"}))
        columns = ["clip_id", "label", "class_name", "splits", "test_indices", "train_candidates", "frame_indices",
                   "width", "height"]
        columns += ["jpeg"] * self.need_frames
        columns += ["face_maps", "face_status"] * bool(self.modalities & {"parsing", "landmarks"})

        wanted, names, tables = {"fold": fold, "split": split}, {}, []
        for path in feature_paths:
            table = read_parquet(path, FEATURES_SCHEMA, columns=columns)
            for label, name in set(zip(table.column("label").to_pylist(), table.column("class_name").to_pylist())):
                if names.setdefault(label, name) != name:
                    raise StageError(f"{path}: label {label} is both {names[label]!r} and {name!r}; rerun the index "
                                     "stage and everything after it.")
            keep = [wanted in splits for splits in table.column("splits").to_pylist()]
            tables.append(table.drop_columns(["splits", "class_name"]).filter(pa.array(keep, pa.bool_())))
        if not tables or sum(t.num_rows for t in tables) == 0:
            raise StageError(f"no clips of {fold} {split} in {list(feature_paths)}; check the fold name and the "
                             "dataset's fold lists.")
        gaps = sorted(set(range(max(names) + 1)) - set(names))
        if gaps:
            raise StageError(f"features shards {list(feature_paths)} have no clip of labels {gaps}; class names "
                             "cannot be told. Train on all shards of the dataset.")
        self.class_names = [names[label] for label in range(len(names))]
        self.table = pa.concat_tables(tables)
        self._rows = np.arange(self.table.num_rows)
        self._ids: list[str] = self.table.column("clip_id").to_pylist()
        self._captions, hints = read_captions(captions_path, self._ids)
        self._labels = self.table.column("label").to_numpy().astype(np.int64)
        self._sizes = np.stack([self.table.column("height").to_numpy(), self.table.column("width").to_numpy()], 1)
        self._crc = np.array([zlib.crc32(c.encode("utf-8")) for c in self._ids], dtype=np.int64)
        self.label_hint = "+".join(sorted(hints))  # how the captions were made: "none", "paper", or "" without any

        lengths = np.unique(pc.list_value_length(self.table.column("test_indices")).to_numpy())
        if len(lengths) != 1:
            raise StageError(f"features shards {list(feature_paths)} mix clips of {sorted(lengths)} segments; "
                             "rerun the frames stage with one num_segments.")
        self.num_frames = int(lengths[0])
        rows = range(self.table.num_rows)
        self._test_positions = np.stack([self._positions(r, self._list(r, "test_indices")) for r in rows])
        for r in rows:  # every training candidate must be a cached frame
            self._positions(r, self._list(r, "train_candidates"))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def clip_ids(self) -> list[str]:
        return [self._ids[r] for r in self._rows]

    @property
    def captions(self) -> list[str]:
        return [self._captions[r] for r in self._rows]

    @property
    def labels(self) -> np.ndarray:
        return self._labels[self._rows]

    def subset(self, positions: Sequence[int], train: bool | None = None) -> "ClipDataset":
        """Items ``positions`` of this dataset, sharing its cache; ``train`` switches sampling and augmentation."""
        sub = copy.copy(self)
        sub._rows = self._rows[np.asarray(positions, dtype=np.int64)]
        sub.train = self.train if train is None else train
        return sub

    def set_epoch(self, epoch: int) -> None:
        """Training frames and augmentation are redrawn per epoch; call before iterating a (non-persistent) loader."""
        self.epoch = int(epoch)

    def _list(self, row: int, column: str) -> np.ndarray:
        return self.table.column(column)[row].values.to_numpy()

    def _positions(self, row: int, frame_numbers: np.ndarray) -> np.ndarray:
        """Positions in the clip's ``frame_indices`` of source frame numbers; error when one is not cached."""
        cached = self._list(row, "frame_indices")
        positions = np.minimum(np.searchsorted(cached, frame_numbers), len(cached) - 1)
        if not np.array_equal(cached[positions], frame_numbers):
            raise StageError(f"features cache: clip {self._ids[row]} lacks frames "
                             f"{sorted(set(frame_numbers.tolist()) - set(cached.tolist()))}; rerun the frames stage.")
        return positions

    def rng(self, i: int) -> np.random.Generator:
        """Item ``i``'s generator for this epoch: seeded by (seed, epoch, crc32 of the clip id)."""
        return np.random.default_rng([self.seed, self.epoch, int(self._crc[self._rows[i]])])

    def draw(self, i: int) -> tuple[np.ndarray, ClipAugment | None]:
        """Positions in ``frame_indices`` of the T frames of item ``i``, and its augmentation (None in test mode)."""
        row = self._rows[i]
        if not self.train:
            return self._test_positions[row], None
        rng = self.rng(i)
        candidates = self._list(row, "train_candidates").reshape(self.num_frames, -1)
        positions = self._positions(row, draw_train_indices(candidates, rng))
        height, width = (int(v) for v in self._sizes[row])
        return positions, draw_augment(self.config.augment, height, width, rng)

    def __getitem__(self, i: int) -> dict:
        """``frames`` (T, 3, S, S); ``parsing`` (T, 1, S, S) class ids on black, (T, 3, S, S) colours over the frame;
        ``landmarks`` (T, 1, S, S) white on black, (T, 3, S, S) over the frame; uint8 (those requested;
        :func:`model_inputs` makes them model inputs), ``brightness`` the clip's
        factor for the frames (float32, 1 in test mode), ``source_frames`` (T,) source frame numbers, ``caption``
        str, ``label`` int, ``clip_id`` str, ``index`` int (= i)."""
        size, modalities, column, row = self.config.image_size, self.modalities, self.table.column, self._rows[i]
        positions, aug = self.draw(i)
        unique, inverse = np.unique(positions, return_inverse=True)  # short clips repeat frames: work on each once
        flipped = aug is not None and aug.flip
        item: dict = {}
        if self.need_frames:
            jpegs = column("jpeg")[row].values
            stored = [_decode_jpeg(jpegs[int(p)].as_buffer()) for p in unique]
            frames = [transform(f, aug, size) for f in stored]
            if "frames" in modalities:
                item["frames"] = _to_tensor(frames, inverse)
        on_frame = self.config.middle_level_background == "frame"  # maps over the frame (without brightness)
        if modalities & {"parsing", "landmarks"}:
            missing = pc.equal(column("face_status")[row].values, "missing").to_numpy(zero_copy_only=False)[unique]
            buffers, (height, width) = column("face_maps")[row].values, self._sizes[row]
            maps = [None if missing[k] else decode_face_map(buffers[int(p)].as_buffer(), height, width)
                    for k, p in enumerate(unique)]
        if "parsing" in modalities:
            classes = [None if m is None else transform(m & CLASS_BITS, aug, size, nearest=True) for m in maps]
            item["parsing"] = (_parsing_over_frames(classes, frames, inverse, flipped) if on_frame
                               else _class_ids(classes, inverse, flipped, size))
        if "landmarks" in modalities:
            dots = [None if m is None else cv2.threshold(m, CLASS_BITS, 255, cv2.THRESH_BINARY)[1] for m in maps]
            if on_frame:  # white dots drawn into the stored frame (render_landmarks' pixels), then transformed
                blank = np.zeros((size, size, 3), np.uint8)
                images = [blank if d is None else transform(np.where(d[..., None] > 0, np.uint8(255), f), aug, size)
                          for d, f in zip(dots, stored)]
            else:  # white on black: every channel is the mask, so one channel goes (model_inputs repeats it)
                blank = np.zeros((size, size), np.uint8)
                images = [blank if d is None else transform(d, aug, size) for d in dots]
            item["landmarks"] = _to_tensor(images, inverse)

        item["brightness"] = torch.tensor(1.0 if aug is None else aug.brightness, dtype=torch.float32)
        item["source_frames"] = torch.from_numpy(self._list(row, "frame_indices")[positions].astype(np.int64))
        item.update(caption=self._captions[row], label=int(self._labels[row]), clip_id=self._ids[row], index=int(i))
        return item


def model_inputs(batch: dict, config: DataConfig, device: torch.device) -> dict:
    """A collated batch moved to ``device``, its uint8 images made the models' float inputs there in one batched step
    per modality: the one place where this happens (training, evaluation, zero-shot and the predict CLI call it).

    Values in [0, 1]; frames times each clip's brightness factor, clamped (maps drawn over the frame are not
    brightened); parsing class ids (black background) replaced by their palette colours; one-channel landmark images
    repeated over RGB (a view); ``normalize: clip``: OpenAI CLIP's mean/std.
    """
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    brightened = "brightness" in batch and bool((batch["brightness"] != 1).any())  # on the host: no device sync
    mean, std = (torch.tensor(values, device=device) for values in (CLIP_MEAN, CLIP_STD))
    for key in IMAGES:
        if key not in out:
            continue
        if key == "parsing" and config.middle_level_background == "black":
            # the palette goes through the same float steps as a coloured image would, then is looked up per pixel
            palette = torch.from_numpy(PALETTE).to(device).float().div_(255)
            out[key] = _colour(out[key], (palette - mean) / std if config.normalize == "clip" else palette)
            continue
        image = out[key].float().div_(255)
        if key == "frames" and brightened:
            image.mul_(out["brightness"].view(-1, 1, 1, 1, 1)).clamp_(0, 1)
        image = image.expand(-1, -1, 3, -1, -1)
        out[key] = (image - mean.view(3, 1, 1)) / std.view(3, 1, 1) if config.normalize == "clip" else image
    return out


def _colour(class_ids: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) float ``palette[class id]`` of (B, T, 1, S, S) uint8 class ids, one channel at a time (an
    ``index_select`` per channel took 8 ms per clip of 16 224 px frames on a CPU, a gather of RGB triples and a
    transpose 13 ms)."""
    flat = class_ids.reshape(-1).long()
    shape = class_ids.shape[:2] + class_ids.shape[3:]
    out = torch.empty(class_ids.shape[:2] + (3,) + class_ids.shape[3:], device=class_ids.device)
    for channel in range(3):
        out[:, :, channel] = palette[:, channel].index_select(0, flat).view(shape)
    return out


# ------------------------------------------------------------------------------------------------- loader

def collate(items: Sequence[dict]) -> dict:
    """Tensors stacked, ints as a LongTensor, strings (caption, clip_id) kept as lists.

    This is torch's ``default_collate``, which in a worker stacks straight into shared memory (saving a copy
    of every batch, ~6 MB per clip at 224 px with three modalities in uint8).
    """
    return default_collate(list(items))


class EpochShuffle(Sampler[int]):
    """A permutation seeded by ``(seed, dataset.epoch)``: epoch e has the same order whether or not training resumed.

    Under torchrun, process ``rank`` of ``world`` takes every world-th clip of that order (all ranks equally many).
    """

    def __init__(self, dataset: ClipDataset, seed: int, rank: int = 0, world: int = 1):
        self.dataset, self.seed, self.rank, self.world = dataset, seed, rank, world

    def __len__(self) -> int:
        return len(self.dataset) // self.world

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.dataset.epoch, 1]).permutation(len(self.dataset))
        return iter(order[self.rank: len(self) * self.world: self.world].tolist())


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # base_seed (from the loader's seeded generator) + worker_id
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: ClipDataset, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                num_workers: int = 0, epoch: int | None = None, rank: int = 0, world: int = 1) -> DataLoader:
    """A DataLoader with :func:`collate`; shuffling by :class:`EpochShuffle`, workers seeded from ``seed``;
    ``epoch``, when given, is passed to ``dataset.set_epoch``.

    Workers are not persistent, so ``dataset.set_epoch`` before each epoch reaches them. They are forked where the
    platform can, so the Arrow cache is shared rather than pickled into each worker. With workers, OpenCV is set
    to one thread here, in the parent: calling ``cv2.setNumThreads`` inside a forked worker whose parent already
    used OpenCV's thread pool deadlocks.
    """
    if epoch is not None:
        dataset.set_epoch(epoch)
    context = None
    if num_workers > 0:
        cv2.setNumThreads(1)
        context = "fork" if "fork" in mp.get_all_start_methods() else None
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochShuffle(dataset, seed, rank, world) if shuffle else None,
        drop_last=drop_last, num_workers=num_workers, collate_fn=collate, worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
        multiprocessing_context=context,
    )
