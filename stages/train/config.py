"""The training configuration (config.yaml `train:` section, merged with the dataset's overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from stages.common.errors import StageError

MODELS = ("base", "star", "dagger", "star-dagger", "dfer-clip")
SELECTIONS = ("last", "best_on_val", "best_on_test")
OBJECTIVES = ("supervised", "contrastive")


def _check_keys(name: str, raw: dict, cls) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise StageError(f"{name} config: unknown keys {unknown}; known keys are {sorted(known)}.")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "star-dagger"
    objective: str = "supervised"  # contrastive: clips vs their captions (zero-shot pre-training)
    epochs: int = 30
    batch_size: int = 8
    grad_accum: int = 1  # optimizer step every N batches (effective batch = batch_size * grad_accum)
    optimizer: str = "sgd"  # sgd (the paper) | adamw (AIM's choice; the demo's random towers need it)
    lr: float = 3e-4  # FineCLIPER (SGD); DFER-CLIP uses its own per-group rates (dfer_clip section)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine
    selection: str = "best_on_test"  # the papers' protocol; recorded in metrics.json
    val_fraction: float = 0.1  # train clips held out when selection is best_on_val
    seed: int = 1
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    num_workers: int = 2
    device: str = "auto"
    gpus: int = 1  # GPUs per training job; more than one runs the job under torchrun (one process per GPU)
    data: dict = field(default_factory=dict)  # stages.train.data.DataConfig
    fineclip: dict = field(default_factory=dict)  # stages.train.models.fineclip.FineClipConfig (variant from model)
    dfer_clip: dict = field(default_factory=dict)  # stages.train.models.dfer_clip.DferClipConfig
    towers: dict = field(default_factory=dict)  # clip / long_clip / dfer_clip: stages.train.models.towers.TowerConfig

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        _check_keys("train", raw, cls)
        config = cls(**raw)
        if config.model not in MODELS:
            raise StageError(f"train config: model must be one of {MODELS}, got {config.model!r}.")
        if config.selection not in SELECTIONS:
            raise StageError(f"train config: selection must be one of {SELECTIONS}, got {config.selection!r}.")
        if config.objective not in OBJECTIVES:
            raise StageError(f"train config: objective must be one of {OBJECTIVES}, got {config.objective!r}.")
        if config.objective == "contrastive" and config.model not in ("dagger", "star-dagger"):
            raise StageError("train config: the contrastive objective aligns clips with captions; use model dagger.")
        if config.optimizer not in ("sgd", "adamw"):
            raise StageError(f"train config: optimizer must be sgd or adamw, got {config.optimizer!r}.")
        if config.schedule not in ("constant", "cosine"):
            raise StageError(f"train config: schedule must be constant or cosine, got {config.schedule!r}.")
        return config

    @property
    def is_fineclip(self) -> bool:
        return self.model != "dfer-clip"
