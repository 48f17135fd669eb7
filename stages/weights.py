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
from stages.common.weights_files import WEIGHTS_FORMATS


@dataclass
class WeightsItem:
    kind: str  # clip | long_clip | facexformer | video-llava
    path: str
    tower: dict | None = None  # the tower config, for CLIP-like weights


TOWER_KINDS = {"clip": "clip", "long_clip": "long_clip", "dfer_clip": "clip"}


def made_by_workflow(path: str) -> bool:
    """Weights under results/ are an output of this workflow (the demo's pre-trained towers), never a download."""
    return Path(path).parts[:1] == ("results",)


def stage_weights(train: dict | None, faces: dict | None, captions: dict | None,
                  towers: tuple[str, ...] = tuple(TOWER_KINDS)) -> list[WeightsItem]:
    """The weights named by these stage sections (None: the stage is not needed): ``towers`` of the train
    section that are not random-initialised or made by the workflow, FaceXFormer's checkpoint and the Video-LLaVA
    folder when in use."""
    items = []
    for name in towers if train else ():
        tower = train["towers"].get(name) or {}
        if tower.get("weights") and not tower.get("random_init") and not made_by_workflow(tower["weights"]):
            items.append(WeightsItem(TOWER_KINDS[name], tower["weights"], tower))
    if faces and faces["backend"] == "facexformer":
        items.append(WeightsItem("facexformer", faces["checkpoint"]))
    if captions and captions["backend"] == "video-llava":
        items.append(WeightsItem("video-llava", captions["video_llava"]["model_dir"]))
    return items


def configured_weights(config: dict, datasets: list[str]) -> list[WeightsItem]:
    """Every distinct weights file/folder the given datasets' configuration refers to."""
    items: dict[tuple, WeightsItem] = {}
    for ds in datasets:
        sections = [stage_section(config, stage, ds) for stage in ("train", "faces", "captions")]
        for item in stage_weights(*sections):
            items.setdefault((item.kind, item.path), item)
    return list(items.values())


def describe_weights(item: WeightsItem) -> str:
    """``path: format; published as ...`` for one weights file or folder."""
    what, where = WEIGHTS_FORMATS[item.kind]
    arch = (item.tower or {}).get("arch", "ViT-B-16")
    return f"{item.path}: {what}; published as {where.format(arch=arch)}"


def missing_weights_message(items: list[WeightsItem]) -> str:
    """One message naming every missing file of ``items`` with its format and source; "" when none is missing."""
    missing = list({item.path: item for item in items if not Path(item.path).exists()}.values())
    if not missing:
        return ""
    lines = "\n".join(f"  - {describe_weights(item)}" for item in missing)
    return (f"{len(missing)} weights file(s) missing (nothing is downloaded at run time; put each at the path shown, "
            f"or change the path in the config):\n{lines}\n"
            "Then `python -m stages.weights check` verifies that each one loads.")


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
    datasets = args.datasets or list(config["datasets"])
    rows = check(config, datasets, load=not args.no_load)
    if not rows:
        print("no weights configured (every tower is random_init and the offline backends need none)")
    for row in rows:
        size = f"{row['size_mb']:.1f} MB" if row["size_mb"] is not None else "-"
        print(f"{row['kind']:<12} {row['path']:<45} {size:>12}  {row['sha256'][:16] or '-':<16}  {row['status']}")
    message = missing_weights_message(configured_weights(config, datasets))
    if message:
        print(message, file=sys.stderr)
    if any(row["status"] not in ("ok", "missing") for row in rows):
        print("some weights do not load: see the README section 'Reproducing the paper on DFEW, FERV39k and MAFW' "
              "(Weights) for the expected files", file=sys.stderr)
    if any(row["status"] != "ok" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
