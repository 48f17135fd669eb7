"""AIM fidelity of the adapted vision tower (SPEC §4.2): temporal embedding before ln_pre, stochastic depth."""
from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from stages.train.models.encoders import AdaptedVisionTower, drop_path_schedule
from stages.train.models.fineclip import FineClipConfig
from stages.train.models.towers import TowerConfig, build_clip

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def vision_tower(frames=4, **options) -> AdaptedVisionTower:
    clip = build_clip(TowerConfig(arch="tiny", arch_config=TINY, random_init=True), seed=0)
    return AdaptedVisionTower(clip.model.visual, {"video": True}, frames, **options)


def block_inputs(tower: AdaptedVisionTower, clips: torch.Tensor) -> list[torch.Tensor]:
    """The token tensor each transformer block receives during one forward pass."""
    seen = []
    run_block = tower._block

    def recording(block, adapters, x, *rest):
        seen.append(x.detach().clone())
        return run_block(block, adapters, x, *rest)

    tower._block = recording
    tower(clips, "video")
    return seen


def test_temporal_embedding_is_added_before_ln_pre():
    tower = vision_tower()
    with torch.no_grad():
        tower.temporal_embedding["video"].normal_(std=1.0)
    clips = torch.rand(2, 4, 3, 32, 32)
    visual = tower.visual
    ln_pre, visual.ln_pre = visual.ln_pre, nn.Identity()
    with torch.no_grad():
        spatial = visual._embeds(clips.flatten(0, 1))  # open_clip's patches + CLS + position, without ln_pre
    visual.ln_pre = ln_pre
    tokens = spatial.shape[1]
    with_time = spatial.view(2, 4, tokens, -1) + tower.temporal_embedding["video"][:, :, None, :]
    expected = ln_pre(with_time.view(8, tokens, -1))
    first_block_input = block_inputs(tower, clips)[0]
    assert torch.allclose(first_block_input, expected, atol=1e-5)


def with_adapters(tower: AdaptedVisionTower, branches: tuple[str, ...]) -> AdaptedVisionTower:
    """Give the named adapter branches non-zero up-projections (fresh adapters add nothing, so nothing to drop)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for block in tower.adapters["video"]:
            for branch in branches:
                getattr(block, branch).up.weight.normal_(std=0.5)
    return tower


def test_drop_path_rate_rises_linearly_from_zero_to_the_configured_rate():
    assert drop_path_schedule(0.2, 12) == pytest.approx([0.2 * k / 11 for k in range(12)])
    assert vision_tower(drop_path_rate=0.2).drop_path_rates == pytest.approx((0.0, 0.1, 0.2))
    assert FineClipConfig().drop_path_rate == 0.2  # AIM's K400 setting
    config = yaml.safe_load(open("config/config.yaml", encoding="utf-8"))
    assert config["train"]["fineclip"]["drop_path_rate"] == 0.2


def test_drop_path_leaves_evaluation_unchanged():
    clips = torch.rand(2, 4, 3, 32, 32)
    plain = with_adapters(vision_tower(drop_path_rate=0.0), ("temporal", "spatial", "mlp")).eval()
    dropping = with_adapters(vision_tower(drop_path_rate=0.5), ("temporal", "spatial", "mlp")).eval()
    with torch.no_grad():
        assert torch.equal(plain(clips, "video"), dropping(clips, "video"))


@pytest.mark.parametrize("branch", ["temporal", "mlp"])
def test_drop_path_acts_in_training_on_the_temporal_and_mlp_adapter_branches(branch):
    clips = torch.rand(2, 4, 3, 32, 32)
    plain = with_adapters(vision_tower(drop_path_rate=0.0), (branch,)).train()
    dropping = with_adapters(vision_tower(drop_path_rate=0.9), (branch,)).train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(plain(clips, "video"), dropping(clips, "video"), atol=1e-4)


def test_drop_path_spares_the_spatial_adapter_and_the_frozen_path():
    clips = torch.rand(2, 4, 3, 32, 32)
    tower = with_adapters(vision_tower(drop_path_rate=0.9), ("spatial",))
    with torch.no_grad():
        evaluated = tower.eval()(clips, "video")
        torch.manual_seed(0)
        trained = tower.train()(clips, "video")
    assert torch.allclose(trained, evaluated, atol=1e-6)
