"""Provenance: only result-relevant settings are tracked, YAML by content, weights by a cached sha256."""
from __future__ import annotations

import os

import pytest

from stages.common.provenance import (Sha256Cache, changed_settings, content_fingerprint, result_settings,
                                      towers_used)

TRAIN = {"model": "base", "epochs": 30, "num_workers": 2, "threads": 2, "fineclip": {"temperature": 0.01},
         "dfer_clip": {"lr": 1e-2},
         "towers": {"clip": {"arch": "ViT-B-16", "weights": "weights/ViT-B-16.pt"},
                    "long_clip": {"arch": "ViT-B-16", "weights": "weights/longclip-B.pt"},
                    "dfer_clip": {"arch": "ViT-B-32", "weights": "weights/ViT-B-32.pt"}}}


def test_train_settings_keep_only_what_the_model_uses():
    assert result_settings("train", TRAIN) == {"model": "base", "epochs": 30, "threads": 2,
                                               "fineclip": {"temperature": 0.01}, "towers": {"clip": {"arch": "ViT-B-16"}}}
    dfer = result_settings("train", {**TRAIN, "model": "dfer-clip"})
    assert set(dfer) == {"model", "epochs", "threads", "dfer_clip", "towers"} and list(dfer["towers"]) == ["dfer_clip"]
    assert list(result_settings("train", {**TRAIN, "model": "star-dagger"})["towers"]) == ["clip", "long_clip"]
    assert TRAIN["num_workers"] == 2 and "weights" in TRAIN["towers"]["clip"]  # the caller's section is untouched


def test_unused_backends_and_performance_knobs_are_left_out():
    captions = {"backend": "landmark-motion", "prompt": "p.yaml", "seed": 0,
                "video_llava": {"batch_size": 4, "dtype": "auto", "model_dir": "weights/llava"}}
    assert result_settings("captions", captions) == {"backend": "landmark-motion", "seed": 0}
    llava = result_settings("captions", {**captions, "backend": "video-llava"})
    assert llava["video_llava"] == {"dtype": "auto"}
    faces = {"backend": "dlib", "upsample": 1, "batch_size": 32, "device": "auto", "detector": "none",
             "checkpoint": "weights/facexformer/model.pt"}
    assert result_settings("faces", faces) == {"backend": "dlib", "upsample": 1}
    assert result_settings("faces", {**faces, "backend": "facexformer"}) == {
        "backend": "facexformer", "device": "auto", "detector": "none"}
    frames = {"size": 224, "face_crop": {"enabled": False, "margin": 0.25}}
    assert result_settings("frames", frames) == {"size": 224, "face_crop": {"enabled": False}}
    assert result_settings("frames", {"face_crop": {"enabled": True, "margin": 0.25}})["face_crop"]["margin"] == 0.25
    # Recomputing blocks in the backward pass (same RNG state) changes memory and time, not the trained weights.
    train = {"model": "base", "epochs": 3, "num_workers": 4, "towers": {},
             "fineclip": {"checkpoint_blocks": True, "drop_path_rate": 0.2}}
    assert result_settings("train", train) == {"model": "base", "epochs": 3, "towers": {},
                                               "fineclip": {"drop_path_rate": 0.2}}


def test_towers_used_match_the_models_built():
    from stages.train.build import build_model
    from stages.train.config import MODELS, TrainConfig
    from tests.unit.test_models import TINY

    tiny = {"arch": "tiny", "arch_config": TINY, "random_init": True}
    for model in MODELS:
        config = TrainConfig.from_dict({"model": model, "towers": {n: tiny for n in ("clip", "long_clip", "dfer_clip")}})
        _, towers = build_model(config, ["happiness", "sadness"], 4, "config/prompts/dfer_clip_descriptors.yaml")
        assert tuple(towers) == towers_used(model), model


def test_yaml_is_fingerprinted_by_content(tmp_path):
    path = tmp_path / "prompt.yaml"
    path.write_text("brows:\n  up: the eyebrows lift\nlips: {press: lips press}\n")
    before = content_fingerprint(path)
    path.write_text("# phrasebook\nlips: {press: lips press}   # reordered\nbrows:\n    up: the eyebrows lift\n")
    assert content_fingerprint(path) == before
    path.write_text("brows:\n  up: the eyebrows go up\nlips: {press: lips press}\n")
    assert content_fingerprint(path) != before
    text = tmp_path / "prompt.txt"
    text.write_text("Describe the face.")
    assert content_fingerprint(text) != content_fingerprint(text.with_name("other.txt")) == "missing"


def test_weights_are_hashed_once_per_content_change(tmp_path, monkeypatch):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"a" * 1000)
    cache = Sha256Cache(tmp_path / "cache" / "sha.json")
    first = cache.fingerprint(weights)
    reads = []
    monkeypatch.setattr("stages.common.provenance.sha256_of_file", lambda p: reads.append(p) or "f" * 64)
    assert cache.fingerprint(weights) == first and reads == []  # unchanged: a stat, no read
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size, new content
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.fingerprint(weights) == "f" * 16 and reads == [weights]
    assert Sha256Cache(tmp_path / "cache" / "sha.json").fingerprint(weights) == "f" * 16 and len(reads) == 1
    assert cache.fingerprint(tmp_path / "absent.pt") == "missing"


def test_weight_folders_are_fingerprinted_by_their_files(tmp_path):
    folder = tmp_path / "llava"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "model.safetensors").write_bytes(b"x" * 10)
    cache = Sha256Cache(tmp_path / "sha.json")
    before = cache.fingerprint(folder)
    (folder / "sub" / "model.safetensors").write_bytes(b"y" * 10)
    assert cache.fingerprint(folder) != before


@pytest.mark.parametrize("old, new, lines", [
    ({"a": 1, "b": {"c": 2}}, {"b": {"c": 3}, "a": 1}, ["b.c: 2 -> 3"]),
    ({"a": 1}, {"a": 1, "d": [1]}, ["d: (absent) -> [1]"]),
    ({"a": 1, "e": "x"}, {"a": 1}, ['e: "x" -> (removed)']),
    ({"a": 1}, {"a": 1}, []),
])
def test_changed_settings_lists_dotted_keys(old, new, lines):
    assert changed_settings(old, new) == lines
