"""Training of a tiny open_clip CLIP on captioned, action-labelled images, written as an open_clip state dict.

Random towers map every image to nearly the same embedding (cosine 0.99+ between clips), so nothing trained on top
of them can tell clips apart. These towers are instead trained like CLIP, image against caption (symmetric
InfoNCE with a learned temperature), and, where the images carry action labels, with a linear read-out of the facial
actions from the image embedding next to it (discarded afterwards). CLIP's loss alone did not teach the tiny
image tower the actions within minutes (README, "Pre-trained demo towers"); the read-out's per-part cross-entropy
does. Each image is cut (and a photo brightened) anew per step, as training cuts its frames: a tower that only
saw whole faces told the actions of whole test frames, but not of the training crops the adapters learn from
(README). The file loads through the same weights path as a real CLIP checkpoint (stages/train/models/towers.py).
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
from torchvision.transforms import v2

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
    # Each image of a batch is cut anew with an Inception crop of this area fraction (as training crops its frames);
    # (1, 1) keeps it whole. Frames are also brightened by U(1 - b, 1 + b).
    crop_scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0

    def __post_init__(self) -> None:
        if self.clip_weight < 0 or self.action_weight < 0 or not self.clip_weight + self.action_weight:
            raise StageError(f"pretrain config: clip_weight and action_weight must be >= 0 and one of them > 0 "
                             f"(got {self.clip_weight}, {self.action_weight})")
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))  # JSON gives a list
        lo, hi = self.crop_scale
        if not (0 < lo <= hi <= 1 and 0 <= self.brightness < 1):
            raise StageError(f"pretrain config: need 0 < crop_scale[0] <= crop_scale[1] <= 1 and 0 <= brightness < 1 "
                             f"(got {self.crop_scale}, {self.brightness})")


def unit_floats(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> (N, 3, S, S) floats in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) floats in [0, 1] with CLIP's mean/std, as the demo's training reads frames."""
    return (x - torch.tensor(OPENAI_DATASET_MEAN)[:, None, None]) / torch.tensor(OPENAI_DATASET_STD)[:, None, None]


def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> the tower's (N, 3, S, S) float input."""
    return normalize(unit_floats(images))


def augment(images: np.ndarray, nearest: np.ndarray, photo: np.ndarray, cfg: PretrainConfig) -> torch.Tensor:
    """(N, 3, S, S) floats in [0, 1]: each (S, S, 3) uint8 image cut by its own Inception crop of ``cfg.crop_scale``
    (torchvision's draw) and resized back by one batched ``grid_sample`` (nearest-neighbour where ``nearest``:
    parsing colours stay palette colours), photos (``photo``) brightened by U(1 - b, 1 + b). Draws from torch's
    global generator. One batched resampling: a resize per image, or affine_grid, cost more than the step's tower."""
    x = unit_floats(images)
    side = x.shape[-1]
    boxes = torch.tensor([v2.RandomResizedCrop.get_params(image, list(cfg.crop_scale), [3 / 4, 4 / 3]) for image in x],
                         dtype=torch.float32)  # (N, 4): top, left, height, width in pixels
    top, left, height, width = boxes.T[..., None] / side
    centres = (torch.arange(side) + 0.5) / side  # output pixel centres in [0, 1]
    columns, rows = (left + width * centres) * 2 - 1, (top + height * centres) * 2 - 1  # (N, S) in grid_sample's [-1, 1]
    grid = torch.stack(torch.broadcast_tensors(columns[:, None, :], rows[:, :, None]), dim=-1)  # separable: no affine_grid
    out = torch.empty_like(x)
    for mode, chosen in (("nearest", torch.from_numpy(nearest)), ("bilinear", ~torch.from_numpy(nearest))):
        out[chosen] = F.grid_sample(x[chosen], grid[chosen], mode=mode, padding_mode="border", align_corners=False)
    if cfg.brightness:
        factor = 1 + (torch.rand(len(x)) * 2 - 1) * cfg.brightness
        out = torch.where(torch.from_numpy(photo)[:, None, None, None], (out * factor[:, None, None, None]).clamp(0, 1), out)
    return out


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
             labels: np.ndarray | None = None, classes: Sequence[int] = (),
             looks: Sequence[str] | None = None) -> tuple[CLIP, list[float]]:
    """Train a CLIP of ``tower``'s architecture on (image, caption) pairs and, with ``cfg.action_weight``, a read-out
    of ``labels`` ((N, parts) ints, ``classes[j]`` values for part j) from the image embedding; the model and its
    losses. ``looks`` names each image's look ("frame", "parsing", "landmarks"; all frames without it) for the
    augmentation. Images stay uint8 until their batch is drawn: a corpus of thousands of frames would not fit as
    floats."""
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
    looks = np.asarray(looks if looks is not None else ["frame"] * len(images))
    augmented = cfg.crop_scale != (1.0, 1.0) or cfg.brightness
    losses = []
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:  # linear warm-up over the first tenth, then cosine decay
            warm = min(1.0, (step + 1) / max(1, cfg.steps // 10))
            group["lr"] = cfg.lr * warm * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
        batch = rng.choice(len(images), size=min(cfg.batch_size, len(images)), replace=False)
        if augmented:
            pixels = normalize(augment(images[batch], looks[batch] == "parsing", looks[batch] == "frame", cfg))
        else:
            pixels = to_input(images[batch])
        image = model.encode_image(pixels)
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
