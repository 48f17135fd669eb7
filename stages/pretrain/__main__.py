"""CLI: python -m stages.pretrain --config-json '{...}' --tower-json '{...}' --out results/demo/pretrained/clip.pt"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

import torch

from stages.common.config import config_object
from stages.common.errors import StageError, run_cli
from stages.demo.generate import build_scene
from stages.pretrain.contrastive import PretrainConfig, pretrain, save_state_dict
from stages.pretrain.corpus import LOOKS, PART_CLASSES, build_corpus, parse_corpus_config
from stages.train.models.towers import TowerConfig, model_config


def parse_config(raw: dict) -> tuple[dict, PretrainConfig, int]:
    """(corpus section, training settings, torch threads) of the config's ``pretrain`` section."""
    raw = dict(raw)
    corpus, threads = raw.pop("corpus", {}), raw.pop("threads", 1)
    try:
        return corpus, PretrainConfig(**raw), int(threads)
    except TypeError as err:
        raise StageError(f"pretrain config: {err}; known keys are corpus, threads and "
                         f"{sorted(PretrainConfig.__dataclass_fields__)}") from err


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", default="{}", help="the config's `pretrain` section as one JSON object")
    parser.add_argument("--tower-json", required=True, help="the tower to train: arch, arch_config (quick_gelu)")
    parser.add_argument("--out", required=True, help="open_clip state dict, written atomically")
    args = parser.parse_args(argv)
    corpus_raw, cfg, threads = parse_config(config_object(args.config_json))
    corpus_cfg = parse_corpus_config(corpus_raw)
    tower = TowerConfig.from_dict(config_object(args.tower_json, "--tower-json"))
    torch.set_num_threads(threads)
    start = time.perf_counter()
    size = model_config(tower)["vision_cfg"]["image_size"]
    images, captions, labels = build_corpus(build_scene(corpus_cfg.frame_size), corpus_cfg, size)
    print(f"pretrain: corpus of {len(images)} images, {len(set(captions))} distinct captions in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    model, losses = pretrain(images, captions, tower, cfg, labels, PART_CLASSES, LOOKS * corpus_cfg.samples)
    for step in range(0, len(losses), max(1, len(losses) // 20)):
        print(f"step {step}: loss {losses[step]:.4f}")
    print(f"pretrain: final loss {losses[-1]:.4f} after {len(losses)} steps; {time.perf_counter() - start:.1f} s in all")
    save_state_dict(model, args.out)


if __name__ == "__main__":
    run_cli(main)
