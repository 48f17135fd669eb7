"""Per-model training recipes: DFER-CLIP trains with its published recipe, merged like every other setting."""
from __future__ import annotations

import pytest
import torch
import yaml

from stages.common.config import stage_section
from stages.common.errors import StageError
from stages.train.config import TrainConfig, with_model_recipe
from stages.train.models.dfer_clip import DferClipConfig
from stages.train.trainer import lr_at


@pytest.fixture(scope="module")
def pipeline_config():
    with open("config/config.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def train_config(pipeline_config, dataset, model) -> TrainConfig:
    """What the train rule passes for results/{dataset}/{fold}/{model} (rules/common.smk model_train_config)."""
    return TrainConfig.from_dict(with_model_recipe(stage_section(pipeline_config, "train", dataset), model))


@pytest.mark.parametrize("dataset", ["dfew", "ferv39k", "mafw"])
def test_dfer_clip_trains_with_its_published_recipe_on_the_real_datasets(pipeline_config, dataset):
    config = train_config(pipeline_config, dataset, "dfer-clip")
    assert config.recipe == "dfer-clip"
    assert (config.epochs, config.batch_size, config.optimizer, config.momentum, config.weight_decay) == (
        50, 48, "sgd", 0.9, 1e-4)
    assert (config.schedule, config.milestones, config.gamma) == ("multistep", (30, 40), 0.1)
    rates = DferClipConfig.from_dict(config.dfer_clip)
    assert (rates.lr_image, rates.lr_temporal, rates.lr_prompt) == (1e-5, 1e-2, 1e-3)


def test_fineclip_keeps_the_shared_section(pipeline_config):
    config = train_config(pipeline_config, "dfew", "star-dagger")
    assert config.recipe == "shared"
    assert (config.epochs, config.batch_size, config.optimizer, config.lr, config.schedule) == (
        30, 8, "sgd", 3e-4, "constant")


def test_the_demo_shortens_the_recipe_through_the_same_mechanism(pipeline_config):
    config = train_config(pipeline_config, "demo", "dfer-clip")
    assert (config.epochs, config.batch_size, config.milestones) == (12, 8, (7, 10))
    assert (config.optimizer, config.schedule, config.gamma) == ("sgd", "multistep", 0.1)  # the rest stays DFER-CLIP's
    assert train_config(pipeline_config, "demo", "base").optimizer == "adamw"  # other models keep the demo's section


def test_a_recipe_merges_deeply_over_the_shared_section():
    section = {"model": "dfer-clip", "epochs": 30, "data": {"image_size": 224, "normalize": "clip"},
               "recipes": {"dfer-clip": {"epochs": 50, "data": {"normalize": "none"}}}}
    merged = with_model_recipe(section)
    assert merged["epochs"] == 50 and merged["data"] == {"image_size": 224, "normalize": "none"}
    assert "recipes" not in merged and merged["recipe"] == "dfer-clip"
    assert with_model_recipe(merged) == merged  # an already resolved section stays as it is
    assert TrainConfig.from_dict(section).epochs == 50  # the CLI resolves a full section too


def test_bad_recipes_are_refused():
    with pytest.raises(StageError, match="unknown models"):
        with_model_recipe({"recipes": {"dfer_clip": {"epochs": 50}}}, "dfer-clip")
    with pytest.raises(StageError, match="cannot set `model`"):
        with_model_recipe({"recipes": {"base": {"model": "star"}}}, "base")


def test_milestones_that_never_fire_are_refused():
    """The silent failure this replaces: DFER-CLIP's milestones 30 and 40 in a 30-epoch run."""
    with pytest.raises(StageError, match=r"milestones \[30, 40\] never fire in 30 epochs"):
        TrainConfig.from_dict({"model": "dfer-clip", "epochs": 30, "schedule": "multistep", "milestones": [30, 40]})
    with pytest.raises(StageError, match="increasing milestones"):
        TrainConfig.from_dict({"model": "dfer-clip", "epochs": 50, "schedule": "multistep", "milestones": []})


def test_multistep_schedule_equals_torch_multisteplr_stepped_per_epoch(pipeline_config):
    config = train_config(pipeline_config, "dfew", "dfer-clip")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
    for epoch in range(config.epochs):
        assert lr_at(config, 1e-2, epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()
    assert [lr_at(config, 1e-2, e) for e in (29, 30, 39, 40, 49)] == pytest.approx([1e-2, 1e-3, 1e-3, 1e-4, 1e-4])
