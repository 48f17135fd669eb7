"""The demo towers' pre-training corpus and CLI: captions name actions only, the looks match the loader's renderings,
the corpus shares no frame with the demo clips, and the CLI writes a state dict that loads as a CLIP checkpoint."""
import hashlib
import json

import numpy as np
import pytest
import torch

from stages.common.errors import StageError
from stages.demo.expressions import CLASSES
from stages.demo.generate import ClipSpec, build_scene, synthesize_clip
from stages.faces.render import PALETTE
from stages.pretrain.__main__ import main as pretrain_main
from stages.pretrain.corpus import ACTIONS, RELAXED, CorpusConfig, build_corpus, parse_corpus_config
from stages.train.models.towers import TowerConfig, build_clip

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def scene():
    return build_scene(192)


@pytest.fixture(scope="module")
def corpus(scene):
    return build_corpus(scene, CorpusConfig(samples=40), 64)


def test_captions_name_actions_never_classes(corpus):
    _, captions = corpus
    phrases = {phrase for part in ACTIONS.values() for phrase, _ in part.values()}
    for text in captions[::3]:
        assert text == RELAXED or all(p in phrases for p in text.split(", ")), text
        assert not any(name in text for name in CLASSES)
    assert len(set(captions[::3])) > 10  # combinations vary


def test_each_sample_comes_as_frame_parsing_and_landmarks(corpus):
    images, captions = corpus
    assert images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    frame, parsing, dots = images[:3]
    assert frame.std() > 20  # a photo
    assert set(map(tuple, parsing.reshape(-1, 3))) <= set(map(tuple, PALETTE))  # palette colours only
    assert set(np.unique(dots)) <= {0, 255} and 0 < (dots > 0).mean() < 0.2  # white dots on black
    assert captions[1] == f"face map: {captions[0]}" and captions[2] == f"face points: {captions[0]}"


def test_the_corpus_is_deterministic_and_its_seed_matters(scene, corpus):
    again, _ = build_corpus(scene, CorpusConfig(samples=40), 64)
    other, _ = build_corpus(scene, CorpusConfig(samples=40, seed=2), 64)
    assert np.array_equal(again, corpus[0]) and not np.array_equal(other[::3], corpus[0][::3])


def test_no_corpus_frame_is_a_demo_frame(scene):
    """Seed 0 of the demo and of the corpus still draw different streams (the corpus seeds start with a tag)."""
    images, _ = build_corpus(scene, CorpusConfig(samples=20, seed=0), 112)
    demo = [synthesize_clip(scene, ClipSpec(f"c{label}", label, CLASSES[label], 6, False, (0, label, 0)))[0] for label in range(7)]
    digest = lambda image: hashlib.sha256(image.tobytes()).hexdigest()  # noqa: E731
    assert not {digest(f) for clip in demo for f in clip} & {digest(image) for image in images}


def test_bad_corpus_settings_are_named():
    with pytest.raises(StageError, match="unknown keys"):
        parse_corpus_config({"sample": 3})
    with pytest.raises(StageError, match="max_actions"):
        parse_corpus_config({"max_actions": 9})


def test_the_cli_writes_a_checkpoint_the_towers_load(tmp_path, capsys):
    out = tmp_path / "clip.pt"
    pretrain_main(["--config-json", json.dumps({"corpus": {"samples": 12}, "steps": 3, "batch_size": 8, "threads": 1}),
                   "--tower-json", json.dumps({"arch": "tiny", "arch_config": TINY}), "--out", str(out)])
    assert "corpus of 36 images" in capsys.readouterr().out
    for context_length in (77, 248):  # the clip and the Long-CLIP tower load the same file
        tower = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(out), context_length=context_length))
        assert not tower.random_init
    assert all(torch.isfinite(v).all() for v in torch.load(out, weights_only=True).values())
