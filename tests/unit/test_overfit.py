"""Overfit tests: a model memorises a handful of clips through the trainer, so a broken image path shows.

Eight clips of four classes; the class is a dark square in one quadrant of the frame (with per-clip noise and
brightness) and, for the star variants, the same quadrant in the parsing map and the landmarks. Every clip has the
same caption, so the dagger variants can only memorise through their images. The clips are both the train and the
test split of fold1, so the selected predictions are train-set predictions.

Test-only settings, and why: the towers are tiny (one block, 32 px) and pre-trained for a few contrastive steps on
these frames by stages.pretrain.contrastive, then loaded from the state-dict file like a real CLIP checkpoint. Random
towers map every clip to nearly the same embedding (mean cosine > 0.99, checked below), and nothing trained on top
of them memorises. Crops and flips are off (memorising is the point),
and inputs use CLIP's mean/std as the demo does.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from stages.common.io import write_parquet
from stages.common.schemas import APPROVED_SCHEMA
from stages.pretrain.contrastive import PretrainConfig, pretrain, save_state_dict, to_input
from stages.train.config import TrainConfig
from stages.faces.render import render_landmarks, render_parsing
from stages.train.data import transform
from stages.train.models.towers import TowerConfig, build_clip
from stages.train.trainer import fit
from tests.unit.synthetic_features import STORED, clip_row, write_rows

CLASSES = ["happiness", "sadness", "neutral", "anger"]
CLIPS = 8
SIZE = 32
TINY = {"embed_dim": 32, "vision_cfg": {"image_size": SIZE, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
QUADRANTS = [(4, 4), (4, 28), (28, 4), (28, 28)]  # top-left corner of each class's square, stored-frame pixels
DESCRIPTORS = "config/prompts/dfer_clip_descriptors.yaml"


def frame(label: int, clip: int, frame_number: int, informative: bool = True) -> np.ndarray:
    rng = np.random.default_rng([clip if informative else 0, frame_number])  # noise and brightness differ by clip
    if not informative:  # the same frames for every clip: nothing to tell clips (or classes) apart
        clip = 0
    rgb = np.clip(150 + (clip * 7) % 30 - 15 + rng.integers(-10, 11, (STORED, STORED, 3)), 0, 255).astype(np.uint8)
    y, x = QUADRANTS[label if informative else 0]
    rgb[y:y + 16, x:x + 16] = 20
    return rgb


def parsing_map(label: int) -> np.ndarray:
    classes = np.zeros((STORED, STORED), np.uint8)
    y, x = QUADRANTS[label]
    classes[y:y + 16, x:x + 16] = 1  # skin
    return classes


def landmarks(label: int) -> np.ndarray:
    y, x = QUADRANTS[label]
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([x + 8 + 7 * np.cos(angle), y + 8 + 7 * np.sin(angle)], axis=1).astype(np.float32)


def write_clips(folder, informative: bool = True) -> list[str]:
    rows = []
    for i in range(CLIPS):
        label = i % len(CLASSES)
        row = clip_row(f"clip-{i}", 20 + i, [("fold1", "train"), ("fold1", "test")], label=label,
                       image=lambda n, label=label, i=i: frame(label, i, n, informative),
                       parsing=parsing_map(label), landmarks=landmarks(label))
        row["class_name"] = CLASSES[label]
        rows.append(row)
    return [write_rows(folder / "000-of-001.parquet", rows)]


def training_frames(informative: bool = True) -> np.ndarray:
    """Frames as the trainer sees them at test time (resized to SIZE), five per clip."""
    return np.stack([transform(frame(i % len(CLASSES), i, n, informative), None, SIZE)
                     for i in range(CLIPS) for n in range(0, 20, 4)])


def face_images() -> np.ndarray:
    """The parsing and landmark images the star variants see, one of each per class."""
    labels = range(len(CLASSES))
    parsing = [render_parsing(parsing_map(label)) for label in labels]
    dots = [render_landmarks(landmarks(label), STORED, STORED) for label in labels]
    return np.stack([transform(image, None, SIZE) for image in parsing + dots])


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("overfit"))


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    """One caption for every clip: text carries no class."""
    path = tmp_path_factory.mktemp("captions") / "approved.parquet"
    rows = [dict(clip_id=f"clip-{i}", caption="A face looks at the camera.", caption_sha="x",
                 decision="auto_approved", label_hint="none") for i in range(CLIPS)]
    write_parquet(pa.Table.from_pylist(rows, schema=APPROVED_SCHEMA), path)
    return str(path)


@pytest.fixture(scope="module")
def tower_file(tmp_path_factory):
    """A tiny CLIP pre-trained for a few steps on these images, each captioned by its clip's number (not its class)."""
    torch.set_num_threads(1)
    images = np.concatenate([training_frames(), face_images()])
    captions = [f"photo number {i}" for i in range(CLIPS) for _ in range(5)]
    captions += [f"face map {k}" for k in range(len(CLASSES))] + [f"face points {k}" for k in range(len(CLASSES))]
    model, losses = pretrain(images, captions, TowerConfig(arch="tiny", arch_config=TINY),
                             PretrainConfig(steps=80, batch_size=len(images), lr=2e-3))
    assert losses[-1] < losses[0]
    path = tmp_path_factory.mktemp("tower") / "tiny-clip.pt"
    save_state_dict(model, path)
    return str(path)


def config(model: str, towers: dict, epochs: int = 20, lr: float = 1e-3) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": model, "epochs": epochs, "batch_size": CLIPS // 2, "optimizer": "adamw", "lr": lr, "num_workers": 0,
        "threads": 1, "seed": 1,
        "data": {"image_size": SIZE, "normalize": "clip", "augment": {"crop_scale": [1.0, 1.0], "flip": 0.0}},
        "towers": {"clip": towers, "long_clip": {**towers, "context_length": 248}, "dfer_clip": towers},
    })


def train_accuracy(out_dir) -> float:
    predictions = pq.read_table(out_dir / "predictions.parquet").to_pydict()
    return float(np.mean(np.array(predictions["label"]) == np.array(predictions["prediction"])))


def weights_tower(path: str) -> dict:
    return {"arch": "tiny", "arch_config": TINY, "weights": path}


@pytest.mark.parametrize("model", ["base", "star", "dagger", "star-dagger"])
def test_fineclip_memorises_eight_clips_through_its_adapters(model, features, captions, tower_file, tmp_path):
    """Frozen tower, adapters only: with the demo's rate (1e-3) base stalls at 6 of 8 clips; the test-only rate 1e-2
    memorises within 120 steps (star and star-dagger need them: after 60 they stood at 7 of 8)."""
    fit(features, "fold1", config(model, weights_tower(tower_file), epochs=60, lr=1e-2), tmp_path, "overfit",
        captions=captions)
    assert train_accuracy(tmp_path) >= 0.9


def test_dfer_clip_memorises_eight_clips(features, captions, tower_file, tmp_path):
    """DFER-CLIP fine-tunes its image tower, so a pre-trained tower is enough for it to memorise in 40 steps."""
    fit(features, "fold1", config("dfer-clip", weights_tower(tower_file)), tmp_path, "overfit", captions=captions,
        descriptors_path=DESCRIPTORS)
    assert train_accuracy(tmp_path) >= 0.9


def test_dfer_clip_cannot_memorise_clips_that_look_alike(captions, tower_file, tmp_path):
    """The control: the same run with one set of frames for every clip stays near chance, so the test above can fail."""
    fit(write_clips(tmp_path, informative=False), "fold1", config("dfer-clip", weights_tower(tower_file)),
        tmp_path / "out", "overfit", captions=captions, descriptors_path=DESCRIPTORS)
    assert train_accuracy(tmp_path / "out") <= 0.5


def test_random_towers_see_every_clip_alike(tower_file):
    """Why the demo's towers are pre-trained: a random tower's embeddings of different clips are nearly parallel."""
    x = to_input(training_frames()[::5])
    random_tower = build_clip(TowerConfig(arch="tiny", arch_config=TINY, random_init=True)).model
    trained = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=tower_file)).model
    with torch.no_grad():
        cosines = [F.normalize(m.encode_image(x), dim=-1) for m in (random_tower, trained)]
    off_diagonal = ~torch.eye(CLIPS, dtype=torch.bool)
    random_cos, trained_cos = ((c @ c.T)[off_diagonal].mean().item() for c in cosines)
    assert random_cos > 0.98 and trained_cos < 0.8
