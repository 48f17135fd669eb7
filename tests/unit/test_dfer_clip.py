"""DFER-CLIP baseline: shapes, prompt learner vs frozen CLIP text tower, what trains, recipe, descriptor file."""
from pathlib import Path

import pytest
import torch

from stages.common.errors import StageError
from stages.train.models.dfer_clip import DferClip, DferClipConfig, TemporalTransformer, read_descriptors
from stages.train.models.fineclip import tokenize
from stages.train.models.towers import TowerConfig, build_clip

DESCRIPTORS = Path(__file__).resolve().parents[2] / "config" / "prompts" / "dfer_clip_descriptors.yaml"
CLASSES_11 = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear",  # SPEC §0.7 / §1.5
              "contempt", "anxiety", "helplessness", "disappointment"]
TINY = TowerConfig(arch="tiny", arch_config={
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}, random_init=True)
FRAMES = 4


@pytest.fixture(scope="module")
def descriptors():
    return read_descriptors(DESCRIPTORS)


def make_model(descriptors, classes=CLASSES_11[:7]) -> DferClip:
    return DferClip(build_clip(TINY, seed=0), classes, descriptors, DferClipConfig(), num_frames=FRAMES)


def batch(size=3):
    torch.manual_seed(1)
    return {"frames": torch.rand(size, FRAMES, 3, 32, 32)}, torch.arange(size) % 7


def test_descriptor_file_has_the_eleven_classes_in_spec_order(descriptors):
    assert list(descriptors) == CLASSES_11
    assert descriptors["happiness"] == "a smiling mouth, raised cheeks, wrinkled eyes, and arched eyebrows."
    assert descriptors["disappointment"] == "a downturned mouth, lowered eyebrows, narrowed eyes, and a sighing face."
    assert all(text.endswith(".") for text in descriptors.values())


def test_config_defaults_and_unknown_keys():
    cfg = DferClipConfig.from_dict({"lr_image": 2e-5})
    assert (cfg.n_ctx, cfg.temporal_layers, cfg.temperature) == (8, 1, 0.01)
    assert (cfg.lr_image, cfg.lr_temporal, cfg.lr_prompt) == (2e-5, 1e-2, 1e-3)
    with pytest.raises(StageError, match="unknown keys"):
        DferClipConfig.from_dict({"n_context": 8})
    with pytest.raises(StageError, match="train.recipes.dfer-clip"):
        DferClipConfig.from_dict({"milestones": [30, 40]})


def test_missing_descriptor_is_an_error(descriptors):
    with pytest.raises(StageError, match="no class descriptor"):
        make_model(descriptors, ["happiness", "boredom"])


def test_output_shapes(descriptors):
    model = make_model(descriptors, CLASSES_11)
    inputs, labels = batch()
    out = model(inputs)
    assert out.logits.shape == (3, 11)
    assert out.weights.shape == (3, 0) and out.modality_logits == {}
    video = out.embeddings["video"]
    assert video.shape == (3, 64)
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(3))
    assert out.logits.abs().max() <= 1 / 0.01 + 1e-3  # cosines / temperature
    assert model.loss(out, labels % 11).ndim == 0
    assert model.prompt_learner().shape == (11, 77, 64)


def test_placeholder_context_reproduces_frozen_encode_text(descriptors):
    tower = build_clip(TINY, seed=0)
    model = DferClip(tower, CLASSES_11, descriptors, DferClipConfig(), num_frames=FRAMES)
    clip, learner = tower.model, model.prompt_learner
    tokens = tokenize(["X X X X X X X X " + descriptors[c] for c in CLASSES_11], 77)
    assert torch.equal(learner.tokens, tokens)
    with torch.no_grad():
        learner.ctx.copy_(clip.token_embedding(tokens)[:, 1:9])  # the placeholders' own embeddings
        ours = model.text_encoder(learner(), learner.tokens)
        reference = clip.encode_text(tokens)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_sgd_step_changes_only_trainable_parameters(descriptors):
    model = make_model(descriptors)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"image_encoder", "temporal_net", "prompt_learner"}
    assert {n for n in trainable if n.startswith("prompt_learner")} == {"prompt_learner.ctx"}
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.0, momentum=0.9, weight_decay=1e-4)
    inputs, labels = batch()
    model.loss(model(inputs), labels).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == trainable  # every trainable tensor moved, nothing else did
    assert "prompt_learner.token_prefix" not in changed and "prompt_learner.token_suffix" not in changed
    assert not any(k.startswith("text_encoder") for k in changed)


def test_param_groups_carry_spec_learning_rates(descriptors):
    model = make_model(descriptors)
    groups = {g["name"]: g for g in model.param_groups(lr=123.0)}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "image_encoder": 1e-5, "temporal_net": 1e-2, "prompt_learner": 1e-3}
    assert groups["prompt_learner"]["params"] == [model.prompt_learner.ctx]
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_temporal_transformer_size_matches_spec():
    net = TemporalTransformer(dim=512, num_frames=16, depth=1)
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - 2.1e6) / 2.1e6 < 0.03
    assert net(torch.randn(2, 16, 512)).shape == (2, 512)
    with pytest.raises(ValueError):
        net(torch.randn(2, 17, 512))
