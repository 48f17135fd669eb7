"""Build the configured model (a FineCLIPER variant or DFER-CLIP) with its towers."""
from __future__ import annotations

import torch

from stages.common.errors import StageError
from stages.train.config import TrainConfig
from stages.train.models.fineclip import VARIANTS, FineClip, FineClipConfig
from stages.train.models.towers import Tower, TowerConfig, build_clip

def tower(config: TrainConfig, name: str, published: str, seed: int) -> Tower:
    if name not in config.towers:
        raise StageError(f"train config: towers.{name} is missing (architecture and weights file).")
    return build_clip(TowerConfig.from_dict(config.towers[name], published=published), seed=seed)


def build_model(config: TrainConfig, class_names: list[str], num_frames: int,
                descriptors_path: str | None = None) -> tuple[torch.nn.Module, dict[str, Tower]]:
    """The model and the towers it was built from (for random_init flags and weight fingerprints).

    DFER-CLIP reads its class descriptors from ``descriptors_path`` (config/prompts/dfer_clip_descriptors.yaml).
    """
    if config.is_fineclip:
        model_config = FineClipConfig.from_dict({**config.fineclip, "variant": config.model})
        towers = {"clip": tower(config, "clip", "clip", config.seed)}
        if "text" in VARIANTS[config.model]:
            towers["long_clip"] = tower(config, "long_clip", "long_clip", config.seed + 1)
        model = FineClip(towers["clip"], class_names, model_config, num_frames, towers.get("long_clip"))
        return model, towers
    from stages.train.models.dfer_clip import DferClip, DferClipConfig, read_descriptors

    if descriptors_path is None:
        raise StageError("DFER-CLIP needs its class descriptors file (--descriptors).")
    towers = {"dfer_clip": tower(config, "dfer_clip", "clip", config.seed)}
    descriptors = read_descriptors(descriptors_path)
    missing = [c for c in class_names if c not in descriptors]
    if missing:
        raise StageError(f"{descriptors_path}: no descriptor for classes {missing}.")
    model = DferClip(towers["dfer_clip"], class_names, descriptors, DferClipConfig.from_dict(config.dfer_clip), num_frames)
    return model, towers


def modalities_needed(config: TrainConfig) -> set[str]:
    """Which inputs the data pipeline must produce for this model."""
    if not config.is_fineclip:
        return {"frames"}
    extra = {"parsing": {"parsing", "landmarks"}, "landmarks": set(), "text": {"caption"}}
    return {"frames"}.union(*(extra[m] for m in VARIANTS[config.model]))
