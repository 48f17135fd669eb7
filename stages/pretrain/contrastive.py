"""Training of a tiny open_clip CLIP on captioned, action-labelled images, written as an open_clip state dict.

Random towers map every image to nearly the same embedding (cosine 0.99+ between clips), so nothing trained on top
of them can tell clips apart. These towers are instead trained like CLIP, image against caption (symmetric
InfoNCE with a learned temperature), and, where the images carry action labels, with a linear read-out of the facial
actions from the image embedding next to it (discarded afterwards). CLIP's loss alone did not teach the tiny
image tower the actions within minutes (README, "Pre-trained demo towers"); the read-out's per-part cross-entropy
does. The file loads through the same weights path as a real CLIP checkpoint (stages/train/models/towers.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from open_clip import tokenize
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP

from stages.common.errors import StageError
from stages.common.io import atomic_path
from stages.train.models.towers import TowerConfig, model_config


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0
    clip_weight: float = 1.0  # CLIP's image-caption loss; 0 skips it (and leaves the text tower as initialised)
    action_weight: float = 0.0  # the action read-out's cross-entropy (needs labels)

    def __post_init__(self) -> None:
        if self.clip_weight < 0 or self.action_weight < 0 or not self.clip_weight + self.action_weight:
            raise StageError(f"pretrain config: clip_weight and action_weight must be >= 0 and one of them > 0 "
                             f"(got {self.clip_weight}, {self.action_weight})")


def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) float with CLIP's mean/std, as the demo's training reads frames."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(OPENAI_DATASET_MEAN)[:, None, None]) / torch.tensor(OPENAI_DATASET_STD)[:, None, None]


def clip_loss(model: CLIP, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy between image embeddings (as encode_image gives them) and captions' tokens;
    pairs with the same caption count as positives of each other. Each distinct caption of the batch is encoded once:
    the text tower costs more than the image tower, and captions repeat."""
    unique, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    text = model.encode_text(unique, normalize=True)[inverse]
    logits = model.logit_scale.exp() * F.normalize(image, dim=-1) @ text.T
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
    targets = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def action_loss(head: torch.nn.Linear, embedding: torch.Tensor, labels: torch.Tensor,
                classes: Sequence[int]) -> torch.Tensor:
    """Mean over face parts of the cross-entropy of the read-out's logits for that part's classes (``classes[j]`` of
    part j, label 0 = no action) against ``labels[:, j]``."""
    logits = head(embedding).split(list(classes), dim=1)
    return sum(F.cross_entropy(part, labels[:, j]) for j, part in enumerate(logits)) / len(classes)


def pretrain(images: np.ndarray, captions: list[str], tower: TowerConfig, cfg: PretrainConfig,
             labels: np.ndarray | None = None, classes: Sequence[int] = ()) -> tuple[CLIP, list[float]]:
    """Train a CLIP of ``tower``'s architecture on (image, caption) pairs and, with ``cfg.action_weight``, a read-out
    of ``labels`` ((N, parts) ints, ``classes[j]`` values for part j) from the image embedding; the model and its
    losses. Images stay uint8 until their batch is drawn: a corpus of thousands of frames would not fit as floats."""
    if cfg.action_weight and (labels is None or len(labels) != len(images)):
        raise ValueError("pretrain: action_weight needs one row of action labels per image")
    torch.manual_seed(cfg.seed)
    model = CLIP(**model_config(tower), quick_gelu=tower.quick_gelu)
    tokens = tokenize(captions, context_length=model.context_length)
    head = torch.nn.Linear(model.visual.output_dim, sum(classes)) if cfg.action_weight else None
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)) if cfg.action_weight else None
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:  # linear warm-up over the first tenth, then cosine decay
            warm = min(1.0, (step + 1) / max(1, cfg.steps // 10))
            group["lr"] = cfg.lr * warm * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        batch = rng.choice(len(images), size=min(cfg.batch_size, len(images)), replace=False)
        image = model.encode_image(to_input(images[batch]))
        loss = cfg.clip_weight * clip_loss(model, image, tokens[batch]) if cfg.clip_weight else torch.zeros(())
        if head is not None:
            loss = loss + cfg.action_weight * action_loss(head, image, targets[batch], classes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def save_state_dict(model: CLIP, path: str | Path) -> None:
    """The open_clip state dict (the format build_clip reads), written atomically."""
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
