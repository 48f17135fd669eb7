"""The training configuration (config.yaml `train:` section, merged with the dataset's overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from stages.common.config import deep_merge
from stages.common.errors import StageError

MODELS = ("base", "star", "dagger", "star-dagger", "dfer-clip")
CAPTION_MODELS = ("dagger", "star-dagger")  # the only models that read captions (FineCLIPER's text modality)
SELECTIONS = ("last", "best_on_val", "best_on_test")
OBJECTIVES = ("supervised", "contrastive")
SCHEDULES = ("constant", "cosine", "multistep")
SHARED_RECIPE = "shared"


def with_model_recipe(section: dict, model: str | None = None) -> dict:
    """The train section for one model: ``recipes[model]`` (that model's own published recipe) merged over the
    shared keys, as dataset overrides are merged over defaults. ``recipe`` names what was merged (metrics.json).

    A section without ``recipes`` (already resolved) comes back unchanged but for ``model``.
    """
    model = model or section.get("model", TrainConfig.model)
    recipes = section.get("recipes")
    if recipes is None:
        return {**section, "model": model}
    if not isinstance(recipes, dict) or not all(isinstance(r, dict) for r in recipes.values()):
        raise StageError("train config: recipes must map a model name to a mapping of train settings.")
    unknown = sorted(set(recipes) - set(MODELS))
    if unknown:
        raise StageError(f"train config: recipes for unknown models {unknown}; models are {list(MODELS)}.")
    recipe = recipes.get(model, {})
    if "model" in recipe or "recipes" in recipe:
        raise StageError(f"train config: recipes.{model} cannot set `model` or `recipes`.")
    shared = {key: value for key, value in section.items() if key != "recipes"}
    return {**deep_merge(shared, recipe), "model": model, "recipe": model if model in recipes else SHARED_RECIPE}


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
    schedule: str = "constant"  # constant | cosine | multistep (x gamma at each milestone epoch, stepped per epoch)
    milestones: tuple[int, ...] = ()  # multistep: 0-based epochs from which the rate is multiplied by gamma once more
    gamma: float = 0.1
    selection: str = "best_on_test"  # the papers' protocol; recorded in metrics.json
    val_fraction: float = 0.1  # train clips held out when selection is best_on_val
    seed: int = 1
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    num_workers: int = 2
    threads: int = 2  # torch CPU threads, fixed: results on CPU must not depend on the cores Snakemake grants a job
    device: str = "auto"
    gpus: int = 1  # GPUs per training job; more than one runs the job under torchrun (one process per GPU)
    data: dict = field(default_factory=dict)  # stages.train.data.DataConfig
    fineclip: dict = field(default_factory=dict)  # stages.train.models.fineclip.FineClipConfig (variant from model)
    dfer_clip: dict = field(default_factory=dict)  # stages.train.models.dfer_clip.DferClipConfig
    towers: dict = field(default_factory=dict)  # clip / long_clip / dfer_clip: stages.train.models.towers.TowerConfig
    recipe: str = SHARED_RECIPE  # which `recipes` entry was merged over the shared section (with_model_recipe)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """A train section, with ``recipes`` resolved for its model if it still has them."""
        raw = with_model_recipe(raw)
        _check_keys("train", raw, cls)
        config = cls(**{**raw, "milestones": tuple(raw.get("milestones", ()))})
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
        if not (isinstance(config.threads, int) and config.threads >= 1):
            raise StageError(f"train config: threads must be a positive integer, got {config.threads!r}.")
        if config.schedule not in SCHEDULES:
            raise StageError(f"train config: schedule must be one of {SCHEDULES}, got {config.schedule!r}.")
        if config.schedule == "multistep":
            config.check_milestones()
        return config

    def check_milestones(self) -> None:
        """A milestone the run never reaches is a recipe that silently does not apply: refuse it."""
        where = f"train config ({self.recipe} recipe of {self.model})"
        if not self.milestones or list(self.milestones) != sorted(set(self.milestones)):
            raise StageError(f"{where}: schedule multistep needs increasing milestones, got {list(self.milestones)}.")
        unreached = [m for m in self.milestones if not 0 < m < self.epochs]
        if unreached:
            raise StageError(f"{where}: milestones {unreached} never fire in {self.epochs} epochs (epochs count from "
                             "0); lower them with the epochs (e.g. in the dataset's recipes override) or use "
                             "schedule constant.")

    @property
    def is_fineclip(self) -> bool:
        return self.model != "dfer-clip"

    @property
    def reads_captions(self) -> bool:
        return self.model in CAPTION_MODELS
