"""Training data: fold filtering, sampling per mode and epoch, clip-consistent aligned augmentation, maps, loader."""
from __future__ import annotations

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from stages.common.errors import StageError
from stages.faces.render import PALETTE, render_landmarks, render_parsing
from stages.frames import sampling
from tests.unit.synthetic_features import K, STORED, T, clip_row, write_captions, write_rows
from stages.train.data import (CLIP_MEAN, CLIP_STD, FLIPPED_PALETTE, IMAGES, AugmentConfig, ClipDataset, DataConfig,
                               collate, make_loader, model_inputs, transform)

ALL = {"frames", "parsing", "landmarks", "caption"}
STRONG = AugmentConfig(brightness=0.5, rotation_degrees=10, crop_scale=(0.5, 1.0))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    first = write_rows(folder / "000.parquet", [
        clip_row("long", 50, [("fold1", "train"), ("fold2", "test")], label=1),
        clip_row("short", 7, [("fold1", "test"), ("fold2", "train")], label=0),
    ])
    second = write_rows(folder / "001.parquet", [clip_row("mid", 30, [("fold1", "train")], label=2)])
    return [first, second]


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    """Approved captions of the clips in ``shards`` but "mid", and of a clip in none of them."""
    path = tmp_path_factory.mktemp("captions") / "approved.parquet"
    return write_captions(path, ["short", "long", "elsewhere"], hints={"short": "paper"})


def dataset(paths, split="train", train=True, size=32, modalities=ALL, seed=0, captions=None, **config):
    return ClipDataset(paths, "fold1", split, DataConfig(image_size=size, **config), train=train, seed=seed,
                       modalities=modalities, captions_path=captions)


def inputs(ds: ClipDataset, i: int) -> dict:
    """Item ``i`` with its images as the models get them (``model_inputs`` of a batch of one, on the CPU)."""
    item = ds[i]
    batch = model_inputs(collate([item]), ds.config, torch.device("cpu"))
    return {**item, **{key: batch[key][0] for key in IMAGES if key in batch}}


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """Invert grey(): the source frame number shown by each (unaugmented) frame."""
    return [round(float(f.mean()) * 255 / 5) for f in frames]


# ------------------------------------------------------------------------------ selection and sampling

def test_fold_split_filtering_and_item(shards, captions):
    train = dataset(shards, captions=captions)
    assert train.clip_ids == ["long", "mid"] and len(dataset(shards, "test", train=False)) == 1
    raw, item = train[1], inputs(train, 1)
    assert (item["clip_id"], item["label"], item["index"], item["caption"]) == ("mid", 2, 1, "")  # none approved
    assert raw["frames"].dtype == raw["parsing"].dtype == raw["landmarks"].dtype == torch.uint8
    assert raw["landmarks"].shape == (T, 1, 32, 32)  # white on black: one grey channel until model_inputs
    assert raw["parsing"].shape == (T, 1, 32, 32) and raw["parsing"].max() < 11  # class ids, coloured by model_inputs
    assert train[0]["caption"] == "caption long" and dataset(shards)[0]["caption"] == ""  # captions only when given
    for key in ("frames", "parsing", "landmarks"):
        assert item[key].shape == (T, 3, 32, 32) and item[key].dtype == torch.float32
        assert 0 <= item[key].min() and item[key].max() <= 1
    assert "parsing" not in dataset(shards, modalities={"frames"})[0]
    assert train.class_names == ["class0", "class1", "class2"] and train.num_frames == T
    test = dataset(shards, "test", train=False, captions=captions)
    assert (train.label_hint, test.label_hint, dataset(shards).label_hint) == ("none", "paper", "")
    held_out = train.subset([1], train=False)  # e.g. a validation split: test-mode sampling, shared cache
    assert held_out.clip_ids == ["mid"] and held_out.labels.tolist() == [2] and len(train) == 2
    assert held_out[0]["source_frames"].tolist() == sampling.test_indices(30, T).tolist()
    with pytest.raises(StageError, match="split must be"):
        ClipDataset(shards, "fold1", "validation", DataConfig(), train=False)
    with pytest.raises(StageError, match="no clips of fold9 test"):
        ClipDataset(shards, "fold9", "test", DataConfig(), train=False)


def test_test_mode_uses_test_indices(shards):
    item = inputs(dataset(shards, "test", train=False), 0)
    expected = sampling.test_indices(7, T).tolist()  # edge-padded short clip
    assert item["source_frames"].tolist() == expected
    assert frame_numbers(item["frames"]) == expected


def test_train_frames_redrawn_per_epoch_and_reproducible(shards):
    ds = dataset(shards)
    candidates = sampling.train_candidates(50, T, K)
    draws = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        drawn = item["source_frames"].tolist()
        assert all(f in row for f, row in zip(drawn, candidates))
        draws.append(drawn)
    assert len({tuple(d) for d in draws}) == 3
    ds.set_epoch(1)
    again, other = dataset(shards), dataset(shards, seed=1)
    again.set_epoch(1)
    other.set_epoch(1)
    first, second = ds[0], again[0]
    assert all(torch.equal(first[k], second[k]) for k in ("frames", "parsing", "landmarks", "source_frames"))
    assert not torch.equal(first["frames"], other[0]["frames"])


def test_training_draws_over_whole_segments_from_an_exact_cache(tmp_path):
    """A clip cached with every frame of each segment (the default) next to a K = 3 clip: the loader draws each
    epoch uniformly over the whole segment of the first (avg 9 here), over K frames of the second."""
    paths = [write_rows(tmp_path / "000.parquet", [
        clip_row("exact", 144, [("fold1", "train")], k=sampling.ALL),
        clip_row("cheap", 144, [("fold1", "train")], label=1)])]
    ds = dataset(paths, modalities={"frames"})
    seen = {"exact": set(), "cheap": set()}
    for epoch in range(60):
        ds.set_epoch(epoch)
        for i, clip_id in enumerate(ds.clip_ids):
            drawn = ds[i]["source_frames"].numpy()
            assert (drawn // 9 == np.arange(T)).all()  # one frame inside each segment
            seen[clip_id] |= set((drawn % 9).tolist())
    assert seen["exact"] == set(range(9)) and len(seen["cheap"]) == 3


# ---------------------------------------------------------------------------------- augmentation

def test_augmentation_is_the_same_for_every_frame(tmp_path):
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (STORED, STORED, 3), dtype=np.uint8)
    classes = rng.integers(0, 11, (STORED, STORED), dtype=np.uint8)
    landmarks = rng.uniform(5, STORED - 5, (68, 2)).astype(np.float32)
    path = write_rows(tmp_path / "f.parquet", [clip_row("same", 40, [("fold1", "train")], image=lambda i: texture,
                                                        parsing=classes, landmarks=landmarks)])
    ds = dataset([path], augment=STRONG)
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[0]
        for key in ("frames", "parsing", "landmarks"):
            assert (item[key] == item[key][0]).all(), key
    unaugmented = dataset([path], augment=AugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), flip=0))[0]
    assert not torch.equal(item["frames"], unaugmented["frames"])


def bright_centre(image: torch.Tensor) -> np.ndarray | None:
    """(x, y) centroid of the pixels brighter than half, or None when there are none."""
    ys, xs = np.nonzero(image.amax(0).numpy() > 0.5)
    return np.array([xs.mean(), ys.mean()]) if len(xs) else None


def test_maps_stay_aligned_with_the_frame(tmp_path):
    """A landmark dot lands where the same dot drawn into the frame lands; a parsing blob covers the frame's blob."""
    point = np.array([14.0, 31.0], np.float32)  # off-centre, so flips and rotations move it
    dot = render_landmarks(point[None], STORED, STORED)  # the pixels the landmark image starts from
    classes = np.zeros((STORED, STORED), np.uint8)
    classes[8:16, 28:40] = 6  # nose: no left/right swap
    blob = np.where(classes[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, 2)
    path = write_rows(tmp_path / "f.parquet", [
        clip_row("dot", 40, [("fold1", "train")], image=lambda i: dot, landmarks=np.repeat(point[None], 68, 0)),
        clip_row("blob", 40, [("fold1", "train")], image=lambda i: blob, parsing=classes),
    ])
    ds = dataset([path], size=64, augment=AugmentConfig(rotation_degrees=20, crop_scale=(0.6, 1.0)))
    sides = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = inputs(ds, 0)
        in_frame, in_map = bright_centre(item["frames"][0]), bright_centre(item["landmarks"][0])
        assert (in_frame is None) == (in_map is None)
        if in_map is not None:
            assert np.abs(in_frame - in_map).max() < 0.5, (epoch, in_frame, in_map)
            sides.add(bool(in_map[0] > 32))
        item = inputs(ds, 1)
        in_map, in_frame = item["parsing"][0].amax(0) > 0, item["frames"][0].amax(0) > 0.5
        assert (in_map & in_frame).sum() >= 0.9 * max(in_map.sum(), in_frame.sum())
    assert sides == {False, True}  # flipped and unflipped clips were both checked


def test_flip_swaps_left_right_parsing_classes(tmp_path):
    classes = np.zeros((STORED, STORED), np.uint8)
    classes[10:14, 4:12] = 2  # subject's right brow: image left, small
    classes[10:20, 30:44] = 3  # left brow: image right, large
    classes[24:28, 4:12] = 4
    classes[24:30, 30:44] = 5
    path = write_rows(tmp_path / "f.parquet", [clip_row("brows", 40, [("fold1", "train")], parsing=classes)])
    full = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    plain = inputs(dataset([path], size=STORED, modalities={"parsing"}, augment=AugmentConfig(flip=0, **full)), 0)["parsing"][0]
    flipped = inputs(dataset([path], size=STORED, modalities={"parsing"}, augment=AugmentConfig(flip=1, **full)), 0)["parsing"][0]
    expected = render_parsing(np.array([0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10], np.uint8)[classes[:, ::-1]])
    assert torch.equal(flipped, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    colour = lambda image, y, x: tuple((image[:, y, x] * 255).round().int().tolist())  # noqa: E731
    assert colour(plain, 11, 6) == tuple(PALETTE[2]) and colour(flipped, 11, STORED - 1 - 6) == tuple(PALETTE[3])
    assert colour(flipped, 15, STORED - 1 - 35) == tuple(PALETTE[2])  # the large brow, now on the image left


def test_missing_face_frames_get_black_maps(tmp_path):
    n = 16
    status = ["detected"] * 8 + ["missing"] * 8
    classes = np.full((STORED, STORED), 1, np.uint8)
    path = write_rows(tmp_path / "f.parquet", [clip_row("half", n, [("fold1", "test")], parsing=classes, status=status,
                                                       landmarks=np.full((68, 2), 20, np.float32))])
    for background in ("black", "frame"):
        item = inputs(dataset([path], "test", train=False, middle_level_background=background), 0)
        for key in ("parsing", "landmarks"):
            assert (item[key][:8].amax(dim=(1, 2, 3)) > 0).all() and (item[key][8:] == 0).all(), (key, background)
    no_face = write_rows(tmp_path / "g.parquet", [clip_row("none", n, [("fold1", "test")], status="missing")])
    item = inputs(dataset([no_face], "test", train=False), 0)
    assert (item["landmarks"] == 0).all() and (item["parsing"] == 0).all()  # no 68 dots at the origin


def per_epoch_inputs(ds: ClipDataset, i: int, rows: dict[str, dict], classes: np.ndarray) -> dict[str, torch.Tensor]:
    """Item ``i``'s model inputs as the loader made them before the features stage stored the dots and before the
    float work moved to ``model_inputs``: per item, frames as float in [0, 1] times the brightness factor, clamped;
    parsing colours (``render_parsing``, flipped palette when flipped, blended over the transformed frame when the
    background is the frame); ``render_landmarks`` from the stored points every epoch; CLIP mean/std when asked."""
    size, table = ds.config.image_size, rows[ds.clip_ids[i]]
    positions, aug = ds.draw(i)
    on_frame, flipped = ds.config.middle_level_background == "frame", aug is not None and aug.flip
    points = np.array(table["landmarks"], np.float32).reshape(-1, 68, 2)
    out = {"frames": [], "parsing": [], "landmarks": []}
    for p in positions:
        stored = cv2.cvtColor(cv2.imdecode(np.frombuffer(table["jpeg"][p], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        frame = transform(stored, aug, size)
        blank = np.zeros((size, size, 3), np.uint8)
        missing = table["face_status"][p] == "missing"
        colours = np.take(FLIPPED_PALETTE if flipped else PALETTE, transform(classes, aug, size, nearest=True), axis=0)
        parsing = cv2.addWeighted(frame, 0.5, colours, 0.5, 0.0) if on_frame else colours
        out["frames"].append(frame)
        out["parsing"].append(blank if missing else parsing)
        dots = render_landmarks(points[p], table["height"], table["width"], stored if on_frame else None)
        out["landmarks"].append(blank if missing else transform(dots, aug, size))
    old = {k: torch.from_numpy(np.stack(v).transpose(0, 3, 1, 2).copy()).float().div_(255) for k, v in out.items()}
    if aug is not None and aug.brightness != 1.0:
        old["frames"].mul_(aug.brightness).clamp_(0, 1)
    if ds.config.normalize == "clip":
        mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        old = {k: (v - mean) / std for k, v in old.items()}
    return old


@pytest.mark.parametrize("background,normalize", [("black", "none"), ("frame", "none"), ("black", "clip")])
def test_inputs_equal_the_per_item_rendering(tmp_path, background, normalize):
    """Stored face maps, uint8 items and the batched ``model_inputs`` give exactly the old per-item tensors, in
    training (brightness, rotation, crop, flip; both flip states met) and test mode, with missing-face frames."""
    rng = np.random.default_rng(3)
    points = rng.uniform(2, STORED - 2, (68, 2)).astype(np.float32)
    classes = rng.integers(0, 11, (STORED, STORED), dtype=np.uint8)
    texture = rng.integers(0, 256, (STORED, STORED, 3), dtype=np.uint8)
    status = ["detected", "missing", "filled"] * 20
    path = write_rows(tmp_path / "f.parquet", [
        clip_row(f"c{j}", 40, [("fold1", "train"), ("fold2", "test")], image=lambda i: np.roll(texture, i, 1),
                 parsing=classes, landmarks=points, status=status[:len(sampling.needed_frames(40, T, K))])
        for j in range(3)])
    rows = {r["clip_id"]: r for r in pq.read_table(path).to_pylist()}
    flips = set()
    for train, fold in ((True, "fold1"), (False, "fold2")):
        config = DataConfig(image_size=40, middle_level_background=background, normalize=normalize, augment=STRONG)
        ds = ClipDataset([path], fold, "train" if train else "test", config, train=train,
                         modalities={"frames", "parsing", "landmarks"})
        for epoch in range(3):
            ds.set_epoch(epoch)
            batch = model_inputs(collate([ds[i] for i in range(len(ds))]), config, torch.device("cpu"))
            for i in range(len(ds)):
                old = per_epoch_inputs(ds, i, rows, classes)
                flips.add(ds.draw(i)[1].flip if train else None)
                for key in IMAGES:
                    assert batch[key][i].shape == old[key].shape and torch.equal(batch[key][i], old[key]), (key, train, i)
    assert flips == {True, False, None}


def test_clip_normalisation(shards):
    plain = inputs(dataset(shards, "test", train=False), 0)
    normed = inputs(dataset(shards, "test", train=False, normalize="clip"), 0)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    for key in ("frames", "parsing", "landmarks"):
        assert torch.allclose(normed[key], (plain[key] - mean) / std, atol=1e-6)


# ------------------------------------------------------------------------------------- config, loader

def test_config_from_dict():
    cfg = DataConfig.from_dict({"image_size": 112, "augment": {"rotation_degrees": 4, "crop_scale": [0.2, 1.0]}})
    assert cfg.image_size == 112 and cfg.augment == AugmentConfig(rotation_degrees=4, crop_scale=(0.2, 1.0))
    with pytest.raises(StageError, match="unknown keys"):
        DataConfig.from_dict({"augment": {"colour": 1}})
    with pytest.raises(StageError, match="unknown keys"):
        DataConfig.from_dict({"size": 1})
    with pytest.raises(StageError, match="normalize"):
        DataConfig.from_dict({"normalize": "imagenet"})


def test_collate_and_reproducible_shuffle(shards, captions):
    ds = dataset(shards, modalities={"frames"}, captions=captions)
    batch = collate([ds[0], ds[1]])
    assert batch["frames"].shape == (2, T, 3, 32, 32) and batch["label"].tolist() == [1, 2]
    assert batch["clip_id"] == ["long", "mid"] and batch["caption"] == ["caption long", ""]
    big = ClipDataset([shards[0]] * 4 + [shards[1]] * 4, "fold1", "train", DataConfig(image_size=8), train=True,
                      modalities={"frames"})

    def order(seed, epoch):
        big.set_epoch(epoch)
        return [i for b in make_loader(big, 3, shuffle=True, drop_last=False, seed=seed) for i in b["index"].tolist()]

    assert order(0, 0) == order(0, 0) and sorted(order(0, 0)) == list(range(len(big)))
    assert order(0, 0) != order(0, 1) or order(0, 0) != order(1, 0)
    cv2.resize(np.zeros((800, 800, 3), np.uint8), (1200, 1200))  # OpenCV's thread pool is running before the fork
    batches = list(make_loader(big, 3, shuffle=False, drop_last=True, seed=0, num_workers=2))
    assert len(batches) == 2 and batches[0]["index"].tolist() == [0, 1, 2]


def test_clip_normalisation_is_open_clips():
    """The loader's constants are OpenAI CLIP's as open_clip has them (the demo towers' pre-training uses those)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    assert (CLIP_MEAN, CLIP_STD) == (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)
