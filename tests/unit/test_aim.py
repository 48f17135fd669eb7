"""AIM fidelity of the adapted vision tower (SPEC §4.2): temporal embedding before ln_pre."""
from __future__ import annotations

import torch
from torch import nn

from stages.train.models.encoders import AdaptedVisionTower
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

    def recording(block, adapters, x, batch, frames):
        seen.append(x.detach().clone())
        return run_block(block, adapters, x, batch, frames)

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
