"""CLIP's contrastive training of a tiny open_clip CLIP on (image, caption) pairs, written as an open_clip state dict.

Random towers map every image to nearly the same embedding (cosine 0.99+ between clips), so nothing trained on top
of them can tell clips apart. These towers are instead trained like CLIP, image against caption (symmetric
InfoNCE with a learned temperature); the file loads through the same weights path as a real CLIP checkpoint
(stages/train/models/towers.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip import tokenize
from open_clip.model import CLIP

from stages.common.io import atomic_path
from stages.train.data import CLIP_MEAN, CLIP_STD
from stages.train.models.towers import TowerConfig, model_config


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0


def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float with CLIP's mean/std, as the demo's training reads frames."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def clip_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy; pairs with the same caption count as positives of each other. Each distinct
    caption of the batch is encoded once: the text tower costs more than the image tower, and captions repeat."""
    unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    image = model.encode_image(images, normalize=True)
    text = model.encode_text(unique, normalize=True)[inverse]
    logits = model.logit_scale.exp() * image @ text.T
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
    targets = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def pretrain(images: np.ndarray, captions: list[str], tower: TowerConfig, cfg: PretrainConfig) -> tuple[CLIP, list[float]]:
    """Train every weight of a CLIP of ``tower``'s architecture on (image, caption) pairs; the model and its losses.
    Images stay uint8 until their batch is drawn: a corpus of thousands of frames would not fit as floats."""
    torch.manual_seed(cfg.seed)
    model = CLIP(**model_config(tower), quick_gelu=tower.quick_gelu)
    tokens = tokenize(captions, context_length=model.context_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:  # linear warm-up over the first tenth, then cosine decay
            warm = min(1.0, (step + 1) / max(1, cfg.steps // 10))
            group["lr"] = cfg.lr * warm * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        batch = rng.choice(len(images), size=min(cfg.batch_size, len(images)), replace=False)
        loss = clip_loss(model, to_input(images[batch]), tokens[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def save_state_dict(model: CLIP, path: str | Path) -> None:
    """The open_clip state dict (the format build_clip reads), written atomically."""
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
