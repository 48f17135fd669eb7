"""Trainable and total parameters per module for every variant, beside the papers' counts (random init)."""
from __future__ import annotations

import torch

from stages.train.models.fineclip import VARIANTS, FineClip, FineClipConfig
from stages.train.models.towers import TowerConfig, build_clip

PAPER_TUNABLE_M = {"base": 13, "star": 19, "dagger": 14, "star-dagger": 20, "dfer-clip": 90}
CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def count(module: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def fineclip_modules(model: FineClip) -> dict[str, int]:
    rows = {f"vision adapters ({name})": count(model.vision.adapters[name]) for name in model.vision.adapters}
    rows["temporal embedding"] = count(model.vision.temporal_embedding)
    rows.update({f"label text adapters ({name})": count(model.label_text.adapters[name]) for name in model.label_text.adapters})
    if model.fine_text is not None:
        rows["fine-grained text adapters"] = count(model.fine_text.adapters)
    return rows


def parameter_table(arch: str = "ViT-B-16", dfer_arch: str = "ViT-B-32", num_frames: int = 16) -> str:
    clip = build_clip(TowerConfig(arch=arch, random_init=True))
    long_clip = build_clip(TowerConfig(arch=arch, random_init=True, context_length=248))
    lines = ["| variant | trainable (M) | paper (M) | total (M) | trainable by module (M) |", "|---|---:|---:|---:|---|"]
    for variant in VARIANTS:
        model = FineClip(clip, CLASSES, FineClipConfig(variant=variant), num_frames,
                         long_clip if "text" in VARIANTS[variant] else None)
        modules = ", ".join(f"{name} {n / 1e6:.2f}" for name, n in fineclip_modules(model).items())
        lines.append(f"| FineCLIPER {variant} ({arch}) | {count(model) / 1e6:.2f} | {PAPER_TUNABLE_M[variant]} | "
                     f"{count(model, False) / 1e6:.1f} | {modules} |")
    from stages.train.models.dfer_clip import DferClip, DferClipConfig, read_descriptors

    dfer_tower = build_clip(TowerConfig(arch=dfer_arch, random_init=True))
    descriptors = read_descriptors("config/prompts/dfer_clip_descriptors.yaml")
    dfer = DferClip(dfer_tower, CLASSES, descriptors, DferClipConfig(), num_frames)
    modules = ", ".join(f"{type(m).__name__} {count(m) / 1e6:.2f}" for m in dfer.trainable_modules())
    lines.append(f"| DFER-CLIP ({dfer_arch}) | {count(dfer) / 1e6:.2f} | {PAPER_TUNABLE_M['dfer-clip']} | "
                 f"{count(dfer, False) / 1e6:.1f} | {modules} |")
    return "\n".join(lines)
