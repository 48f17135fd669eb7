"""`python -m stages.weights check`: every configured weights file listed with size, sha256 and whether it loads."""
from __future__ import annotations

import hashlib

import pytest
import torch
import yaml

from stages.common.errors import StageError
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
