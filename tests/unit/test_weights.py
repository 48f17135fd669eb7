"""`python -m stages.weights check`: every configured weights file listed with size, sha256 and whether it loads."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stages.captions.video_llava import check_model_dir
from stages.common.errors import StageError
from stages.faces.facexformer import FaceXFormer, load_official_checkpoint
from stages.train.models.towers import TowerConfig, build_clip
from stages.train.trainer import pick_device
from stages.weights import check, configured_weights, main, missing_weights_message, stage_weights
from tests.unit.test_models import TINY


def config_for(tmp_path):
    tower = {"arch": "tiny", "arch_config": TINY}
    return {
        "datasets": {"dfew": {"description": "x", "faces": {"backend": "facexformer", "checkpoint": str(tmp_path / "fx.pt")}},
                     "demo": {"description": "y", "train": {"towers": {"clip": {"random_init": True}}}}},
        "train": {"towers": {"clip": {**tower, "weights": str(tmp_path / "clip.pt")},
                             "long_clip": {**tower, "weights": str(tmp_path / "long.pt"), "context_length": 248}}},
        "faces": {"backend": "dlib"},
        "captions": {"backend": "landmark-motion", "video_llava": {"model_dir": str(tmp_path / "llava")}},
    }


def test_lists_each_file_once_with_size_sha_and_load_status(tmp_path):
    torch.save(build_clip(TowerConfig(arch="tiny", arch_config=TINY, random_init=True)).model.state_dict(), tmp_path / "clip.pt")
    data = (tmp_path / "clip.pt").read_bytes()
    (tmp_path / "long.pt").write_bytes(data[: len(data) // 3])  # a truncated download
    config = config_for(tmp_path)
    assert [item.kind for item in configured_weights(config, ["dfew", "demo"])] == ["clip", "long_clip", "facexformer"]
    rows = {row["kind"]: row for row in check(config, ["dfew", "demo"])}
    assert rows["clip"]["status"] == "ok" and rows["clip"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert rows["clip"]["size_mb"] == pytest.approx(len(data) / 1e6)
    assert rows["long_clip"]["status"].startswith("does not load") and "truncated" in rows["long_clip"]["status"]
    assert rows["facexformer"]["status"] == "missing"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_says_so():
    with pytest.raises(StageError, match="no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_the_check_names_every_missing_file_with_its_format_and_source(tmp_path, capsys):
    config = config_for(tmp_path)
    config["datasets"]["dfew"]["captions"] = {"backend": "video-llava"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        main(["check", "--config", str(config_file), "--no-load"])
    err = capsys.readouterr().err
    assert "4 weights file(s) missing" in err
    assert f"{tmp_path / 'long.pt'}: Long-CLIP state dict" in err and "BeichenZhang/LongCLIP-B" in err
    assert f"{tmp_path / 'fx.pt'}: torch checkpoint" in err and "kartiknarayan/facexformer" in err
    assert f"{tmp_path / 'llava'}: folder in transformers format" in err and "LanguageBind/Video-LLaVA-7B-hf" in err


def test_only_the_towers_asked_for_are_required(tmp_path):
    train = {"towers": {"clip": {"weights": str(tmp_path / "b16.pt")}, "dfer_clip": {"weights": str(tmp_path / "b32.pt")},
                        "long_clip": {"weights": str(tmp_path / "long.pt"), "random_init": True}}}
    message = missing_weights_message(stage_weights(train, {"backend": "dlib"}, None, ("clip", "long_clip")))
    assert message.startswith("1 weights file(s) missing") and "b16.pt" in message and "b32.pt" not in message
    (tmp_path / "b16.pt").write_bytes(b"x")
    assert missing_weights_message(stage_weights(train, {"backend": "dlib"}, None, ("clip",))) == ""


# --- garbage instead of weights: a clear error naming the file, what it is, the format and the source ----------------

GARBAGE = {
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "unrecognised binary"),
    "an HTML error page": (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body>"
                           b"</html>\n", "an HTML page"),
    "an mp4 renamed .pt": (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(3000), "MP4"),
}


class Marker:
    """Unpickling this would create a file: the loaders must never do it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def facexformer():
    return FaceXFormer()


def assert_clear(err, path, content, source):
    message = str(err.value)
    assert str(path) in message and content in message and source in message, message
    assert "weights_only" not in message  # never the advice to unpickle arbitrary objects


@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_tower_weights_are_named_with_format_and_source(kind, tmp_path):
    data, content = GARBAGE[kind]
    path = tmp_path / "ViT-B-16.pt"
    path.write_bytes(data)
    with pytest.raises(StageError) as err:
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(path)))
    assert_clear(err, path, content, "openai/CLIP")
    assert "TorchScript archive as released, or a state dict" in str(err.value)
    long_path = tmp_path / "longclip-B.pt"
    long_path.write_bytes(data)
    with pytest.raises(StageError) as err:
        build_clip(TowerConfig.from_dict({"arch": "tiny", "arch_config": TINY, "weights": str(long_path),
                                          "context_length": 248}, published="long_clip"))
    assert_clear(err, long_path, content, "BeichenZhang/LongCLIP-B")


@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_facexformer_checkpoint_is_named_with_format_and_source(kind, tmp_path, facexformer):
    data, content = GARBAGE[kind]
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(StageError) as err:
        load_official_checkpoint(facexformer, path)
    assert_clear(err, path, content, "kartiknarayan/facexformer")
    assert "state_dict_backbone" in str(err.value)


@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_video_llava_weights_are_named_with_format_and_source(kind, tmp_path):
    data, content = GARBAGE[kind]
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(data)
    with pytest.raises(StageError) as err:
        check_model_dir(tmp_path)
    assert_clear(err, tmp_path / "model.safetensors", content, "LanguageBind/Video-LLaVA-7B-hf")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors.index.json").write_bytes(data)
    with pytest.raises(StageError) as err:
        check_model_dir(tmp_path)
    assert_clear(err, tmp_path / "model.safetensors.index.json", content, "LanguageBind/Video-LLaVA-7B-hf")


def test_a_real_safetensors_file_passes_the_header_check(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "model.safetensors")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text("{}")
    assert check_model_dir(tmp_path) == tmp_path
    (tmp_path / "config.json").write_text("<html>Access denied</html>")
    with pytest.raises(StageError, match="config.json: not a readable weights file: it is an HTML page"):
        check_model_dir(tmp_path)


def test_weights_holding_other_objects_are_refused_unpickled(tmp_path, facexformer):
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": {}, "payload": Marker(marker)}, path)
    with pytest.raises(StageError) as err:
        load_official_checkpoint(facexformer, path)
    assert "Python objects besides tensors (builtins.getattr, pathlib.Path, pathlib.PosixPath)" in str(err.value) and "kartiknarayan/facexformer" in str(err.value)
    with pytest.raises(StageError, match="Python objects besides tensors"):
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(path)))
    assert not marker.exists()
