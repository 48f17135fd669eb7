"""Check the pretrained weights a configuration needs: python -m stages.weights check [--config config/config.yaml]

Lists every configured weights file or folder (CLIP towers, Long-CLIP, FaceXFormer, Video-LLaVA) with its size,
sha256 and whether it loads, so a missing or truncated download is found before a long run.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.common.config import stage_section
from stages.common.errors import StageError, run_cli


@dataclass
class WeightsItem:
    kind: str  # clip | long_clip | facexformer | video-llava
    path: str
    tower: dict | None = None  # the tower config, for CLIP-like weights


def configured_weights(config: dict, datasets: list[str]) -> list[WeightsItem]:
    """Every distinct weights file/folder the given datasets' configuration refers to."""
    items: dict[tuple, WeightsItem] = {}
    for ds in datasets:
        train = stage_section(config, "train", ds)
        for name, tower in train["towers"].items():
            if tower.get("weights") and not tower.get("random_init"):
                kind = "long_clip" if name == "long_clip" else "clip"
                items[(kind, tower["weights"])] = WeightsItem(kind, tower["weights"], tower)
        faces = stage_section(config, "faces", ds)
        if faces["backend"] == "facexformer":
            items[("facexformer", faces["checkpoint"])] = WeightsItem("facexformer", faces["checkpoint"])
        captions = stage_section(config, "captions", ds)
        if captions["backend"] == "video-llava":
            folder = captions["video_llava"]["model_dir"]
            items[("video-llava", folder)] = WeightsItem("video-llava", folder)
    return list(items.values())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def try_load(item: WeightsItem) -> None:
    """Raise StageError when the item does not load as its kind expects."""
    if item.kind in ("clip", "long_clip"):
        from stages.train.models.towers import TowerConfig, build_clip

        build_clip(TowerConfig.from_dict(item.tower, published=item.kind))
    elif item.kind == "facexformer":
        from stages.faces.facexformer import FaceXFormer, load_official_checkpoint

        load_official_checkpoint(FaceXFormer(), item.path)
    else:
        from stages.captions.video_llava import check_model_dir

        check_model_dir(item.path)


def check(config: dict, datasets: list[str], load: bool = True) -> list[dict]:
    rows = []
    for item in configured_weights(config, datasets):
        path = Path(item.path)
        row = {"kind": item.kind, "path": item.path, "size_mb": None, "sha256": "", "status": "ok"}
        if not path.exists():
            row["status"] = "missing"
        else:
            if path.is_dir():
                row["size_mb"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
                row["sha256"] = "(folder)"
            else:
                row["size_mb"] = path.stat().st_size / 1e6
                row["sha256"] = sha256_of(path)
            if load:
                try:
                    try_load(item)
                except StageError as err:
                    row["status"] = f"does not load: {err}"
        rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.weights", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--datasets", nargs="*", help="datasets to check (default: all in the config)")
    parser.add_argument("--no-load", action="store_true", help="only check presence, size and sha256")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    rows = check(config, args.datasets or list(config["datasets"]), load=not args.no_load)
    if not rows:
        print("no weights configured (every tower is random_init and the offline backends need none)")
    for row in rows:
        size = f"{row['size_mb']:.1f} MB" if row["size_mb"] is not None else "-"
        print(f"{row['kind']:<12} {row['path']:<45} {size:>12}  {row['sha256'][:16] or '-':<16}  {row['status']}")
    if any(row["status"] != "ok" for row in rows):
        print("some weights are missing or broken: see README 'Using a real dataset' for where each comes from",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
