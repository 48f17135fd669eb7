"""The paper's setting on a real dataset layout: the whole DAG plans against a tiny fake DFEW tree, and the
SLURM profile plans the same DAG."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch

from tests.unit.tiny_video_llava import build_tiny_video_llava
from tests.workflow.conftest import copy_workflow, planned_jobs, snakemake

AUTHORS_PREFIX = "/data/EECS-IoannisLab/datasets/DFEW"
TINY = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 16, "head_width": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def fake_dfew(root, clips=10):
    """DFEW's layout: DFEW_Frame_Face/<5-digit id>/<frames>.jpg and DFER-CLIP's five folds of lists."""
    for i in range(1, clips + 1):
        folder = root / "DFEW_Frame_Face" / f"{i:05d}"
        folder.mkdir(parents=True)
        for k in range(1, 6):
            cv2.imwrite(str(folder / f"{k:05d}.jpg"), np.full((16, 16, 3), 20 * k, np.uint8))
    (root / "annotation").mkdir()
    for fold in range(1, 6):
        test = {i for i in range(1, clips + 1) if i % 5 == fold % 5}
        for split, ids in (("train", set(range(1, clips + 1)) - test), ("test", test)):
            lines = [f"{AUTHORS_PREFIX}/DFEW_Frame_Face/{i:05d} 5 {i % 7}" for i in sorted(ids)]
            (root / "annotation" / f"DFEW_set_{fold}_{split}.txt").write_text("\n".join(lines) + "\n")


def fake_weights(folder):
    """Weights in the official formats, with random values (tiny shapes: the plan only needs the files)."""
    from open_clip.model import CLIP

    folder.mkdir()
    clip = CLIP(**TINY).state_dict()
    torch.save(clip, folder / "ViT-B-16.pt")
    torch.save(clip, folder / "ViT-B-32.pt")
    long_clip = dict(clip, positional_embedding=torch.randn(248, 16), positional_embedding_res=torch.randn(248, 16))
    torch.save(long_clip, folder / "longclip-B.pt")
    (folder / "facexformer").mkdir()
    torch.save({"state_dict_backbone": {"linear_fuse.weight": torch.randn(256, 1024, 1, 1)}}, folder / "facexformer/model.pt")
    build_tiny_video_llava(folder / "Video-LLaVA-7B-hf")


@pytest.fixture(scope="module")
def workflow_with_dfew(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("dfew"))
    fake_dfew(workdir / "data" / "DFEW")
    fake_weights(workdir / "weights")
    return workdir


def expected_plan(shards=16):
    return {"index": 1, "frames": shards, "faces": shards, "captions": shards, "refine": 1, "review_sheet": 1,
            "apply_review": 1, "features": shards, "train": 1, "evaluate": 1, "fold_metrics": 1}


def test_the_papers_reproduction_plans_from_the_literal_command(workflow_with_dfew):
    assert planned_jobs(workflow_with_dfew, "results/dfew/fold1/metrics.json", configfile=None) == expected_plan()


def test_all_folds_plan_for_the_summary(workflow_with_dfew):
    plan = planned_jobs(workflow_with_dfew, "results/dfew/summary.md", configfile=None)
    assert plan["train"] == 5 and plan["evaluate"] == 5 and plan["summary"] == 1


def test_the_slurm_profile_plans_the_same_dag(workflow_with_dfew):
    plan = planned_jobs(workflow_with_dfew, "--profile", "workflow/profiles/slurm", "results/dfew/fold1/metrics.json",
                        configfile=None)
    assert plan == expected_plan()


def test_missing_weights_are_all_named_at_once_before_any_job(tmp_path):
    """Without weights/ the literal command names every file its target needs in one message, each with its format
    and source, instead of one MissingInputException per rule and run; the baseline's ViT-B-32 is not needed."""
    workdir = copy_workflow(tmp_path / "noweights")
    fake_dfew(workdir / "data" / "DFEW")
    from tests.workflow.conftest import snakemake

    proc = snakemake(workdir, "-n", "results/dfew/fold1/metrics.json", check=False, configfile=None)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "4 weights file(s) missing" in text
    for path, source in (("weights/ViT-B-16.pt", "openai/CLIP"), ("weights/longclip-B.pt", "BeichenZhang/LongCLIP-B"),
                         ("weights/facexformer/model.pt", "kartiknarayan/facexformer"),
                         ("weights/Video-LLaVA-7B-hf", "LanguageBind/Video-LLaVA-7B-hf")):
        line = next(line for line in text.splitlines() if line.strip().startswith(f"- {path}:"))
        assert source in line
    assert "ViT-B-32" not in text and "MissingInputException" not in text


def test_the_train_rule_gives_dfer_clip_its_published_recipe(workflow_with_dfew):
    targets = [f"results/dfew/fold1/{model}/model.pt" for model in ("dfer-clip", "star-dagger")]
    proc = snakemake(workflow_with_dfew, "-n", "-p", *targets, configfile=None)
    configs = {model: json.loads(text) for text, model in
               re.findall(r"--config-json '(\{.*?\})' --out-dir results/dfew/fold1/([\w-]+)", proc.stdout)}
    dfer, fine = configs["dfer-clip"], configs["star-dagger"]
    assert (dfer["epochs"], dfer["batch_size"], dfer["schedule"], dfer["milestones"], dfer["recipe"]) == (
        50, 48, "multistep", [30, 40], "dfer-clip")
    assert (fine["epochs"], fine["batch_size"], fine["schedule"], fine["recipe"]) == (30, 8, "constant", "shared")
    assert "recipes" not in dfer and "recipes" not in fine  # one model's recipe does not rerun the others
