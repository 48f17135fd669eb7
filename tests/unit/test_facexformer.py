"""FaceXFormer port: outputs, checkpoint layout and strict loading, landmark mapping, the backend on random weights.

``facexformer_keys.txt`` is the reference checkpoint layout ("key shape" per state_dict entry, in order). It was
generated from the module (names checked against the official source, SPEC §2.1/§2.4); regenerate only on purpose:
    python -c "from stages.faces.facexformer import FaceXFormer, key_table; \\
        print(*key_table(FaceXFormer()), sep='\\n')" > tests/unit/facexformer_keys.txt
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.errors import StageError
from stages.faces.backends import BACKENDS, FacesConfig, make_backend
from stages.faces.facexformer import FaceXFormer, key_table, load_official_checkpoint, load_state
from stages.faces.facexformer_backend import FaceXFormerBackend, landmarks_to_frame, paste_parsing

KEYS_FILE = Path(__file__).with_name("facexformer_keys.txt")


@pytest.fixture(scope="module")
def model() -> FaceXFormer:
    torch.manual_seed(0)
    return FaceXFormer().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def outputs(model, image) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return model(image)


def test_outputs(outputs):
    shapes = {key: tuple(value.shape) for key, value in outputs.items()}
    assert shapes == {
        "landmarks": (1, 68, 2), "parsing_logits": (1, 11, 224, 224), "headpose": (1, 3), "attributes": (1, 40),
        "visibility": (1, 29), "age": (1, 8), "gender": (1, 2), "race": (1, 5),
    }
    assert all(torch.isfinite(value).all() for value in outputs.values())  # the landmark head has no tanh


def test_key_table_is_the_reference_layout(model):
    table = key_table(model)
    assert table == KEYS_FILE.read_text().splitlines()
    assert table[0] == "backbone.0.0.0.weight 128x3x4x4"
    assert "pe_layer.positional_encoding_gaussian_matrix 2x128" in table
    assert "face_decoder.output_hypernetwork_mlps.layers.2.weight 32x256" in table


def test_checkpoint_round_trip(model, image, outputs, tmp_path):
    path = tmp_path / "model.pt"
    state = {f"module.{key}": value for key, value in model.state_dict().items()}  # as saved from DataParallel
    torch.save({"args": argparse.Namespace(lr=1e-4), "state_dict_backbone": state}, path)  # training options too
    del state
    fresh = load_official_checkpoint(FaceXFormer(), path).eval()  # read with weights_only=True
    with torch.inference_mode():
        again = fresh(image)
    assert all(torch.equal(again[key], outputs[key]) for key in outputs)


def test_other_architectures_are_refused(model):
    state = dict(model.state_dict())
    del state["face_decoder.mask_tokens.weight"]
    with pytest.raises(StageError, match=r"1 missing keys: face_decoder\.mask_tokens\.weight.*kartiknarayan/"):
        load_state(model, state, "ckpt")
    state = dict(model.state_dict())
    state["face_decoder.landmarks_prediction_head.layers.2.weight"] = torch.zeros(196, 256)
    state["face_decoder.expression_token.weight"] = torch.zeros(1, 256)
    with pytest.raises(StageError) as err:
        load_state(model, state, "ckpt")
    assert "unexpected keys: face_decoder.expression_token.weight" in str(err.value)
    assert "landmarks_prediction_head.layers.2.weight (196, 256) (expected (136, 256))" in str(err.value)


def test_bad_files_are_refused(model, tmp_path):
    with pytest.raises(StageError, match="not found.*kartiknarayan/facexformer.*ckpts/model.pt"):
        load_official_checkpoint(model, tmp_path / "absent.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"a": torch.zeros(2)}}, wrong)
    with pytest.raises(StageError, match="no 'state_dict_backbone' entry"):
        load_official_checkpoint(model, wrong)
    truncated = tmp_path / "truncated.pt"
    data = wrong.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(StageError, match="incomplete zip archive: the file is probably truncated or corrupt.*kartiknarayan.*Download it again"):
        load_official_checkpoint(model, truncated)


def test_landmarks_map_to_the_crop():
    box = (10, 20, 10 + 112, 20 + 448)  # crop 112 x 448: scale 0.5 in x, 2 in y
    points = landmarks_to_frame(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]), box)
    # crop pixels: ((p + 1) * 224 - 1) / 2 = -0.5, 223.5, 111.5
    np.testing.assert_allclose(points, [[10 - 0.25, 20 - 1.0], [10 + 111.75, 20 + 447.0], [10 + 55.75, 20 + 223.0]])


def test_crop_box_and_paste(model):
    backend = FaceXFormerBackend(model, device="cpu", detector="dlib")
    backend.detect = lambda rgb: ((20.0, 30.0, 60.0, 70.0), 0.7)  # a 40 x 40 box: +10 px on every side
    assert backend.crop_box(np.zeros((100, 200, 3), np.uint8)) == ((10, 20, 70, 80), 0.7)
    backend.detect = lambda rgb: ((-5.0, 0.0, 30.0, 30.0), 0.7)  # clipped to the frame
    assert backend.crop_box(np.zeros((100, 200, 3), np.uint8)) == ((0, 0, 38, 37), 0.7)
    parsing = paste_parsing(np.full((224, 224), 7, np.uint8), (10, 20, 70, 80), 100, 200)
    assert parsing.shape == (100, 200) and (parsing == 7).sum() == 60 * 60 and parsing[20:80, 10:70].min() == 7


def test_backend_on_face_crops(model):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (120, 100, 3), dtype=np.uint8), rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)]
    faces = FaceXFormerBackend(model, device="cpu", batch_size=2, detector="none").analyse(frames)
    assert len(faces) == 2
    for face, frame in zip(faces, frames):
        height, width = frame.shape[:2]
        assert face.found and face.score == 1.0
        assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
        assert (face.landmarks > -0.5 * np.array([width, height])).all()
        assert (face.landmarks < 1.5 * np.array([width, height])).all()
        assert face.parsing.shape == (height, width) and face.parsing.dtype == np.uint8 and face.parsing.max() <= 10


def test_config_and_registry(tmp_path):
    assert "facexformer" in BACKENDS
    config = FacesConfig.from_dict({"backend": "facexformer", "detector": "dlib", "batch_size": 4, "device": "cuda:1"})
    assert (config.detector, config.batch_size, config.device) == ("dlib", 4, "cuda:1")
    for bad in ({"detector": "retinaface"}, {"batch_size": 0}, {"device": "gpu"}, {"checkpoint": ""}):
        with pytest.raises(StageError, match="faces config"):
            FacesConfig.from_dict({"backend": "facexformer", **bad})
    missing = tmp_path / "weights/model.pt"
    with pytest.raises(StageError, match=f"{missing}: FaceXFormer checkpoint not found"):
        make_backend(FacesConfig(backend="facexformer", checkpoint=str(missing)))


@pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is not None, reason="facenet-pytorch is installed")
def test_mtcnn_without_facenet_pytorch(model):
    with pytest.raises(StageError, match="facenet-pytorch"):
        FaceXFormerBackend(model, device="cpu", detector="mtcnn")
