"""The demo towers' pre-training corpus and CLI: captions name actions only, labels name the same actions, the looks
match the loader's renderings, the corpus shares no frame with the demo clips, the action read-out teaches the image
tower, and the CLI writes a state dict that loads as a CLIP checkpoint."""
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from stages.common.errors import StageError
from stages.demo.expressions import CLASSES
from stages.demo.generate import ClipSpec, build_scene, synthesize_clip
from stages.faces.render import PALETTE
from stages.pretrain.__main__ import main as pretrain_main
from stages.pretrain.contrastive import PretrainConfig, augment, pretrain, to_input
from stages.pretrain.corpus import ACTIONS, PART_CLASSES, RELAXED, CorpusConfig, build_corpus, parse_corpus_config
from stages.train.models.towers import TowerConfig, build_clip, model_config

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def scene():
    return build_scene(192)


@pytest.fixture(scope="module")
def corpus(scene):
    return build_corpus(scene, CorpusConfig(samples=40), 64)


def test_captions_name_actions_never_classes(corpus):
    _, captions, _ = corpus
    phrases = {phrase for part in ACTIONS.values() for phrase, _ in part.values()}
    for text in captions[::3]:
        assert text == RELAXED or all(p in phrases for p in text.split(", ")), text
        assert not any(name in text for name in CLASSES)
    assert len(set(captions[::3])) > 10  # combinations vary


def test_labels_name_the_captions_actions(corpus):
    _, captions, labels = corpus
    assert labels.shape == (120, len(ACTIONS)) and np.array_equal(labels[0::3], labels[1::3])
    assert (labels < np.array(PART_CLASSES)).all() and (labels > 0).any(axis=0).all()
    for text, row in zip(captions[::3], labels[::3]):
        named = [list(actions.values())[k - 1][0] for actions, k in zip(ACTIONS.values(), row) if k]
        assert text == (", ".join(named) or RELAXED)


def test_each_sample_comes_as_frame_parsing_and_landmarks(corpus):
    images, captions, _ = corpus
    assert images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    frame, parsing, dots = images[:3]
    assert frame.std() > 20  # a photo
    assert set(map(tuple, parsing.reshape(-1, 3))) <= set(map(tuple, PALETTE))  # palette colours only
    assert set(np.unique(dots)) <= {0, 255} and 0 < (dots > 0).mean() < 0.2  # white dots on black
    assert captions[1] == f"face map: {captions[0]}" and captions[2] == f"face points: {captions[0]}"


def test_the_corpus_is_deterministic_and_its_seed_matters(scene, corpus):
    again, _, _ = build_corpus(scene, CorpusConfig(samples=40), 64)
    other, _, _ = build_corpus(scene, CorpusConfig(samples=40, seed=2), 64)
    assert np.array_equal(again, corpus[0]) and not np.array_equal(other[::3], corpus[0][::3])


def test_no_corpus_frame_is_a_demo_frame(scene):
    """Seed 0 of the demo and of the corpus still draw different streams (the corpus seeds start with a tag)."""
    images, _, _ = build_corpus(scene, CorpusConfig(samples=20, seed=0), 112)
    demo = [synthesize_clip(scene, ClipSpec(f"c{label}", label, CLASSES[label], 6, False, (0, label, 0)))[0] for label in range(7)]
    digest = lambda image: hashlib.sha256(image.tobytes()).hexdigest()  # noqa: E731
    assert not {digest(f) for clip in demo for f in clip} & {digest(image) for image in images}


def squares(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy grey 32 px images with a dark square in the left or the right half; the half is the label."""
    rng = np.random.default_rng(0)
    images = rng.integers(120, 180, (count, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(count) % 2
    for image, label in zip(images, labels):
        image[8:24, 2 + 16 * label:14 + 16 * label] = 20
    return images, labels[:, None]


def test_the_action_read_out_teaches_the_image_tower_and_leaves_the_text_tower(tmp_path):
    """Every caption is the same, so only the read-out can tell the halves apart: CLIP's loss alone leaves the image
    embeddings of the two halves nearly parallel, as a random tower's; the read-out alone spreads them."""
    torch.set_num_threads(1)
    images, labels = squares(32)
    tower = TowerConfig(arch="tiny", arch_config=TINY)
    cosines = {}
    for clip_weight, action_weight in ((1.0, 0.0), (0.0, 1.0)):
        cfg = PretrainConfig(steps=40, batch_size=16, lr=1e-3, clip_weight=clip_weight, action_weight=action_weight)
        model, losses = pretrain(images, ["a face"] * len(images), tower, cfg, labels, [2])
        with torch.no_grad():
            embedding = F.normalize(model.encode_image(to_input(images)), dim=-1)
        cosines[action_weight] = (embedding[labels[:, 0] == 0].mean(0) @ embedding[labels[:, 0] == 1].mean(0)).item()
    assert cosines[0.0] > 0.95 and cosines[1.0] < 0.5, cosines
    torch.manual_seed(0)
    fresh = CLIP(**model_config(tower), quick_gelu=tower.quick_gelu)
    assert torch.equal(fresh.token_embedding.weight, model.token_embedding.weight)  # clip_weight 0: text untouched


def test_the_action_read_out_needs_labels_and_some_loss_is_needed():
    images, _ = squares(4)
    with pytest.raises(ValueError, match="action labels"):
        pretrain(images, ["a face"] * 4, TowerConfig(arch="tiny", arch_config=TINY), PretrainConfig(action_weight=1.0))
    with pytest.raises(StageError, match="clip_weight"):
        PretrainConfig(clip_weight=0.0)


CUT = PretrainConfig(action_weight=1.0, crop_scale=(0.3, 0.6))


def test_augment_cuts_where_torchvision_draws_its_crop():
    """A horizontal and a vertical ramp: the batched resampling of each image equals torchvision's resized crop of
    the box drawn for it (within the half pixel where it reads past the box's edge instead of clamping)."""
    ramp = np.linspace(0, 255, 64)
    image = np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)), np.full((64, 64), 128.0)], -1)
    images = np.repeat(image.round().astype(np.uint8)[None], 6, axis=0)
    torch.manual_seed(3)
    out = augment(images, np.zeros(6, bool), np.zeros(6, bool), CUT)
    torch.manual_seed(3)
    source = torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255
    boxes = [v2.RandomResizedCrop.get_params(source, list(CUT.crop_scale), [3 / 4, 4 / 3]) for _ in range(6)]
    assert len(set(boxes)) == 6  # each image is cut anew
    for cut, box in zip(out, boxes):
        expected = TF.resized_crop(source, *box, [64, 64], antialias=False)
        assert (cut - expected).abs().max() < 3 / 64, box


def test_augment_keeps_parsing_colours_and_brightens_photos_only(corpus):
    images, _, _ = corpus
    nearest, photo = np.arange(len(images)) % 3 == 1, np.arange(len(images)) % 3 == 0
    out = augment(images, nearest, photo, CUT)
    colours = set(map(tuple, (out[nearest] * 255).round().int().permute(0, 2, 3, 1).reshape(-1, 3).tolist()))
    assert colours <= set(map(tuple, PALETTE.tolist()))
    whole = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    bright = augment(images, nearest, photo, PretrainConfig(action_weight=1.0, brightness=0.5))
    assert torch.allclose(bright[~photo], whole[~photo], atol=1e-5)  # maps are not brightened, whole crops are whole
    factor = bright[photo].sum((1, 2, 3)) / whole[photo].sum((1, 2, 3))
    assert (factor - 1).abs().max() > 0.1 and factor.min() > 0.45 and factor.max() < 1.5


def test_bad_corpus_settings_are_named():
    with pytest.raises(StageError, match="unknown keys"):
        parse_corpus_config({"sample": 3})
    with pytest.raises(StageError, match="max_actions"):
        parse_corpus_config({"max_actions": 9})
    with pytest.raises(StageError, match="crop_scale"):
        PretrainConfig(action_weight=1.0, crop_scale=(0.0, 1.0))
    with pytest.raises(StageError, match="brightness"):
        PretrainConfig(action_weight=1.0, brightness=1.5)


def test_the_cli_writes_a_checkpoint_the_towers_load(tmp_path, capsys):
    out = tmp_path / "clip.pt"
    pretrain_main(["--config-json", json.dumps({"corpus": {"samples": 12}, "steps": 3, "batch_size": 8, "threads": 1}),
                   "--tower-json", json.dumps({"arch": "tiny", "arch_config": TINY}), "--out", str(out)])
    assert "corpus of 36 images" in capsys.readouterr().out
    for context_length in (77, 248):  # the clip and the Long-CLIP tower load the same file
        tower = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(out), context_length=context_length))
        assert not tower.random_init
    assert all(torch.isfinite(v).all() for v in torch.load(out, weights_only=True).values())
