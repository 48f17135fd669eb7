"""Train one model on one fold: per-epoch checkpoints, resume after interruption, logs, selected predictions.

Outputs in ``out_dir``: ``model.pt`` (trainable weights of the selected epoch), ``train_log.csv``,
``predictions.parquet`` (test split, selected epoch), ``run_info.json``; resumable state in
``out_dir/checkpoints/`` (not a Snakemake output, so a failed job does not delete it). A run that completes
removes its checkpoints: resuming is for interrupted runs, and a forced rerun of a finished one trains afresh.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import pickle
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from stages.common.errors import StageError
from stages.common.fingerprint import code_fingerprint
from stages.common.io import atomic_path, canonical_json, read_made_with, write_json, write_parquet
from stages.common.schemas import PREDICTIONS_SCHEMA
from stages.evaluate.metrics import classification_metrics
from stages.train.build import build_model, modalities_needed
from stages.train.config import TrainConfig
from stages.train.data import ClipDataset, DataConfig, make_loader, model_inputs

LOG_COLUMNS = ["epoch", "train_loss", "train_acc", "test_uar", "test_war", "val_uar", "val_war", "lr", "seconds"]


@dataclass
class Split:
    dataset: ClipDataset
    name: str


@dataclass(frozen=True)
class Processes:
    """Where this process stands under torchrun (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """One process per GPU under torchrun (NCCL; gloo on CPU); a plain single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(), pick_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return Processes(rank, world), device


def average_gradients(model: torch.nn.Module, processes: Processes) -> None:
    """Data parallelism without a wrapper: every rank steps with the mean gradient, so weights stay identical
    whatever forward path the objective takes (classification or contrastive)."""
    if processes.world == 1:
        return
    for parameter in model.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= processes.world


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"train config asks for device {name!r} but this machine has no CUDA GPU; use device: auto.")
    return torch.device(name)


def fix_threads(threads: int) -> None:
    """The configured torch CPU thread count, whatever OMP_NUM_THREADS Snakemake sets from the job's cores:
    reductions split over another number of threads round differently."""
    torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: the frozen towers come back from their weight files."""
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t.detach().cpu().clone() for name, t in model.state_dict().items() if name in names}


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def save_torch(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: Path, remedy: str = "Delete it and train again.") -> dict:
    """A file :func:`save_torch` wrote here (tensors and plain Python values), read with ``weights_only=True``:
    no object in it is unpickled, so a replaced or damaged file cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise StageError(f"{path}: not a checkpoint written by this trainer (tensors and plain values only; "
                         f"{type(err).__name__}). {remedy}") from None


def lr_at(config: TrainConfig, base_lr: float, epoch: int) -> float:
    """The rate of a parameter group during 0-based ``epoch``; multistep equals torch's MultiStepLR stepped once
    per epoch (DFER-CLIP's schedule)."""
    if config.schedule == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "multistep":
        return base_lr * config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    return base_lr


def build_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    groups = model.param_groups(config.lr)
    for group in groups:
        group["initial_lr"] = group["lr"]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def recipe_record(config: TrainConfig, optimizer: torch.optim.Optimizer, normalize: str) -> dict:
    """The optimisation recipe the run used, as metrics.json reports it."""
    return {
        "source": config.recipe, "epochs": config.epochs, "batch_size": config.batch_size,
        "grad_accum": config.grad_accum, "optimizer": config.optimizer, "momentum": config.momentum,
        "weight_decay": config.weight_decay, "schedule": config.schedule,
        "milestones": list(config.milestones) if config.schedule == "multistep" else [],
        "gamma": config.gamma if config.schedule == "multistep" else None,
        "learning_rates": {group.get("name", str(k)): group["initial_lr"] for k, group in enumerate(optimizer.param_groups)},
        "input_normalization": normalize,
    }


def contrastive_loss(model, batch: dict) -> torch.Tensor:
    """Symmetric InfoNCE between clip embeddings and their captions' embeddings (zero-shot pre-training)."""
    embeddings = {k: torch.nn.functional.normalize(v, dim=-1) for k, v in model.encode(batch).items()}
    logits = embeddings["video"] @ embeddings["text"].T / model.config.temperature
    targets = torch.arange(len(logits), device=logits.device)
    return (torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def predict(model, loader, device, amp: bool, desc: str, zero_shot_classes: list[str] | None = None,
            progress: bool = True) -> dict:
    """Predictions on a loader; with ``zero_shot_classes`` the PN prompts of those classes are scored against the
    clip embeddings in the caption space (contrastive models)."""
    model.eval()
    rows = {"clip_id": [], "label": [], "prediction": [], "logits": [], "modality_weights": []}
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, file=sys.stderr, disable=not progress):
        batch = model_inputs(batch, loader.dataset.config, device)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            out = model.zero_shot_output(batch, zero_shot_classes) if zero_shot_classes else model(batch)
        rows["clip_id"] += list(batch["clip_id"])
        rows["label"] += batch["label"].tolist()
        rows["prediction"] += out.logits.argmax(dim=1).tolist()
        rows["logits"] += out.logits.float().cpu().tolist()
        rows["modality_weights"] += out.weights.float().cpu().tolist()
    return rows


def split_metrics(rows: dict, n_classes: int) -> dict:
    if not rows["label"]:
        return {"uar": float("nan"), "war": float("nan")}
    return classification_metrics(rows["label"], rows["prediction"], n_classes)


def val_holdout(train: ClipDataset, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified positions of the train split kept for validation (best_on_val)."""
    rng = np.random.default_rng(seed)
    labels = np.array(train.labels)
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        val += members[: max(1, round(fraction * len(members)))].tolist() if len(members) > 1 else []
    keep = sorted(set(range(len(labels))) - set(val))
    return keep, sorted(val)


def run_fingerprint(config: TrainConfig, fold: str, features: list[str], captions: str | None = None) -> str:
    """What a resumable checkpoint must match: the config, the fold, the very feature and caption files (regenerated
    files get new modification times) and the training code. Anything else starts the run afresh."""
    inputs = sorted(features) + ([captions] if captions else [])
    files = [(path, Path(path).stat().st_size, Path(path).stat().st_mtime_ns) for path in inputs]
    code = code_fingerprint(Path(__file__).resolve().parents[2], ("train",))
    return hashlib.sha256(canonical_json({"config": asdict(config), "fold": fold, "features": files,
                                          "code": code}).encode()).hexdigest()[:16]


def resumable_state(checkpoint_path: Path) -> dict | None:
    """The interrupted run's state, or None (no checkpoint, or one that does not read: said, then trained afresh)."""
    if not checkpoint_path.exists():
        return None
    try:
        return load_checkpoint(checkpoint_path, remedy="Starting afresh.")
    except StageError as err:
        print(err, file=sys.stderr)
        return None


def fit(features: list[str], fold: str, config: TrainConfig, out_dir: str | Path, dataset_name: str,
        descriptors_path: str | None = None, stop_after_epoch: int | None = None, captions: str | None = None) -> dict:
    """Train ``config.model`` on ``fold`` of the features cache; resume from ``out_dir/checkpoints`` if present.

    ``captions`` (``captions/approved.parquet``) is read only by models that read captions.

    ``stop_after_epoch`` ends the run early (as an interruption would) after that epoch's checkpoint.
    """
    out_dir = Path(out_dir)
    processes, device = start_processes(config.device)
    fix_threads(config.threads)
    seed_everything(config.seed)
    data_config = DataConfig.from_dict(config.data)
    modalities = modalities_needed(config)
    if config.reads_captions and not captions:
        raise StageError(f"variant {config.model} needs fine-grained captions: pass --captions "
                         "results/{ds}/captions/approved.parquet (or pick variant base/star).")
    captions = captions if config.reads_captions else None
    made_with = read_made_with(*features, *([captions] if captions else []))  # predict checks it (run_info.json)
    sets = {split: ClipDataset(features, fold, split, data_config, train=split == "train", seed=config.seed,
                               modalities=modalities, captions_path=captions) for split in ("train", "test")}
    train_set, test_set = sets["train"], sets["test"]
    if config.reads_captions and not any(train_set.captions):
        raise StageError(f"variant {config.model} needs fine-grained captions, but {captions} has no approved caption "
                         f"for fold {fold}. Run the caption and review stages (or pick variant base/star).")
    val_set = None
    if config.selection == "best_on_val":
        keep, val = val_holdout(train_set, config.val_fraction, config.seed)
        val_set = train_set.subset(val, train=False)
        train_set = train_set.subset(keep, train=True)
    class_names = train_set.class_names
    n_classes = len(class_names)
    model, towers = build_model(config, class_names, train_set.num_frames, descriptors_path)
    model.to(device)
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    amp = config.amp and device.type == "cuda"

    fingerprint = run_fingerprint(config, fold, features, captions)
    checkpoint_path = out_dir / "checkpoints" / "last.pt"
    best_path = out_dir / "checkpoints" / "best.pt"
    start_epoch, log_rows, best = 0, [], {"score": -1.0, "epoch": -1}
    state = resumable_state(checkpoint_path)
    if state:
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["trainable"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, log_rows, best = state["epoch"] + 1, state["log"], state["best"]
            print(f"resuming {out_dir} after epoch {state['epoch'] + 1} of {config.epochs}", file=sys.stderr)
        else:
            print(f"{checkpoint_path}: written for another configuration, features cache or training code; starting afresh", file=sys.stderr)

    loader_args = dict(batch_size=config.batch_size, num_workers=config.num_workers, seed=config.seed)
    test_loader = make_loader(test_set, shuffle=False, drop_last=False, **loader_args)
    val_loader = make_loader(val_set, shuffle=False, drop_last=False, **loader_args) if val_set else None
    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        seed_everything(config.seed * 1000 + epoch)
        train_set.set_epoch(epoch)
        train_loader = make_loader(train_set, shuffle=True, drop_last=len(train_set) > config.batch_size * processes.world,
                                   epoch=epoch, rank=processes.rank, world=processes.world, **loader_args)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, group["initial_lr"], epoch)
        model.train()
        losses, correct, seen = [], 0, 0
        optimizer.zero_grad(set_to_none=True)
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, file=sys.stderr,
                   disable=not processes.main)
        for step, batch in enumerate(bar):
            batch = model_inputs(batch, train_set.config, device)
            with torch.autocast(device.type, enabled=amp):
                if config.objective == "contrastive":
                    loss = contrastive_loss(model, batch)
                else:
                    out = model(batch)
                    loss = model.loss(out, batch["label"])
                    correct += (out.logits.argmax(1) == batch["label"]).sum().item()
            scaler.scale(loss / config.grad_accum).backward()
            if (step + 1) % config.grad_accum == 0 or step + 1 == len(train_loader):
                scaler.unscale_(optimizer)
                average_gradients(model, processes)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            seen += len(batch["label"])
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")

        if not processes.main:  # rank 0 evaluates, logs and writes; the others wait for the next epoch
            torch.distributed.barrier()
            continue
        zero_shot = class_names if config.objective == "contrastive" else None
        test_rows = predict(model, test_loader, device, amp, "test", zero_shot)
        test = split_metrics(test_rows, n_classes)
        val = split_metrics(predict(model, val_loader, device, amp, "val", zero_shot), n_classes) if val_loader else None
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "train_acc": correct / max(seen, 1),
               "test_uar": test["uar"], "test_war": test["war"], "val_uar": val["uar"] if val else "",
               "val_war": val["war"] if val else "", "lr": optimizer.param_groups[0]["lr"],
               "seconds": round(time.time() - started, 2)}
        log_rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), file=sys.stderr)

        score = {"best_on_test": test["war"], "best_on_val": val["war"] if val else -1.0, "last": epoch}[config.selection]
        if config.selection != "last" and (score > best["score"] or best["epoch"] < 0):  # NaN never wins otherwise
            best = {"score": score, "epoch": epoch + 1}
            save_torch({"trainable": trainable_state(model), "predictions": test_rows, "epoch": epoch + 1}, best_path)
        save_torch({"trainable": trainable_state(model), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "epoch": epoch, "log": log_rows, "best": best,
                    "fingerprint": fingerprint, "predictions": test_rows}, checkpoint_path)
        if processes.world > 1:
            torch.distributed.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return {"stopped_after_epoch": epoch + 1}

    if not processes.main:
        return {"rank": processes.rank}

    final = load_checkpoint(best_path if config.selection != "last" else checkpoint_path)
    selected_epoch = final["epoch"] + (1 if config.selection == "last" else 0)
    write_outputs(out_dir, final, log_rows, config, towers, dataset_name, fold, class_names, selected_epoch,
                  train_set.label_hint, recipe_record(config, optimizer, data_config.normalize), made_with)
    shutil.rmtree(checkpoint_path.parent)  # finished: nothing to resume
    return {"selected_epoch": selected_epoch}


def write_outputs(out_dir: Path, final: dict, log_rows: list[dict], config: TrainConfig, towers: dict, dataset: str,
                  fold: str, class_names: list[str], selected_epoch: int, label_hint: str, recipe: dict,
                  made_with: dict) -> None:
    save_torch({"trainable": final["trainable"], "epoch": selected_epoch, "model": config.model}, out_dir / "model.pt")
    with atomic_path(out_dir / "train_log.csv") as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(log_rows)
    write_parquet(pa.Table.from_pydict(final["predictions"], schema=PREDICTIONS_SCHEMA), out_dir / "predictions.parquet",
                  PREDICTIONS_SCHEMA)
    weights = {name: t.fingerprint for name, t in towers.items()}
    weights["trained"] = state_fingerprint(final["trainable"])
    write_json(out_dir / "run_info.json", {
        "dataset": dataset, "fold": fold, "model": config.model, "objective": config.objective,
        "class_names": class_names, "selection": config.selection, "selected_epoch": selected_epoch,
        "epochs": config.epochs, "seed": config.seed, "threads": torch.get_num_threads(), "label_hint": label_hint,
        "random_init": any(t.random_init for t in towers.values()),
        "weight_fingerprints": weights, "recipe": recipe, "train_config": asdict(config),
        "trainable_parameters": sum(t.numel() for t in final["trainable"].values()),
        "made_with": made_with,  # the stage settings behind its features and captions (stages.common.io.read_made_with)
    })


def load_trained_model(model_dir: str | Path, config: TrainConfig, class_names: list[str], num_frames: int,
                       descriptors_path: str | None = None) -> torch.nn.Module:
    """The model a finished run selected: built as ``fit`` built it (towers from their weight files or seeds), with
    ``model_dir/model.pt``'s trained weights. ``class_names`` are those it trained on (zero-shot scores others
    through ``zero_shot_output``)."""
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise StageError(f"{path}: not found. Train the model first (snakemake builds {path}).")
    model, _ = build_model(config, class_names, num_frames, descriptors_path)
    trained = load_checkpoint(path, "Rerun its train rule.")["trainable"]
    # model.pt holds only the trained weights; the frozen ones come from the towers' files, so strict=False, but
    # every trainable weight must come from the file and nothing else may be in it.
    missing, unexpected = model.load_state_dict(trained, strict=False)
    untrained = sorted(set(missing) & {name for name, p in model.named_parameters() if p.requires_grad})
    if untrained or unexpected:
        raise StageError(f"{path}: does not fit the model its run_info.json describes (missing trained weights: "
                         f"{untrained[:5] or 'none'}; unknown: {sorted(unexpected)[:5] or 'none'}). It was written "
                         "by other code or another config: rerun its train rule.")
    return model


def check_class_mapping(mapping: dict, target_classes: list[str], source_classes: list[str], target: str) -> None:
    """Keys: target classes; values: source classes or None (no counterpart); an empty mapping records nothing."""
    unknown_keys = sorted(set(mapping) - set(target_classes))
    unknown_values = sorted({v for v in mapping.values() if v is not None} - set(source_classes))
    if unknown_keys or unknown_values:
        raise StageError(f"class mapping for {target}: {unknown_keys or 'no'} unknown target classes (it has "
                         f"{target_classes}), {unknown_values or 'no'} unknown source classes (the model has "
                         f"{source_classes}).")


def zero_shot_predict(model_dir: str | Path, features: list[str], fold: str, out_dir: str | Path, dataset_name: str,
                      class_mapping: dict | None = None) -> dict:
    """Classify the test split of another dataset with a contrastively trained model and that dataset's classes.

    ``class_mapping`` (target class -> source class or None) is checked against both class lists and recorded.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    run_info = json.loads((model_dir / "run_info.json").read_text())
    config = TrainConfig.from_dict(run_info["train_config"])
    if config.objective != "contrastive":
        raise StageError(f"{model_dir}: zero-shot needs a model trained with objective contrastive, not {config.objective}.")
    device = pick_device(config.device)
    fix_threads(config.threads)
    data_config = DataConfig.from_dict(config.data)
    test_set = ClipDataset(features, fold, "test", data_config, train=False, seed=config.seed, modalities={"frames"})
    if len(test_set) == 0:
        raise StageError(f"{dataset_name}: no test clips in fold {fold}; check zeroshot.eval_fold.")
    check_class_mapping(class_mapping or {}, test_set.class_names, run_info["class_names"], dataset_name)
    model = load_trained_model(model_dir, config, run_info["class_names"], test_set.num_frames)
    model.to(device)
    loader = make_loader(test_set, batch_size=config.batch_size, shuffle=False, drop_last=False,
                         num_workers=config.num_workers, seed=config.seed)
    rows = predict(model, loader, device, config.amp and device.type == "cuda", "zero-shot", test_set.class_names)
    write_parquet(pa.Table.from_pydict(rows, schema=PREDICTIONS_SCHEMA), out_dir / "predictions.parquet", PREDICTIONS_SCHEMA)
    write_json(out_dir / "run_info.json", {  # label_hint stays the source's: its captions trained the model
        **run_info, "dataset": dataset_name, "fold": fold, "class_names": test_set.class_names,
        "zero_shot_source": run_info["dataset"], "class_mapping": class_mapping or {},
    })
    return {"clips": len(test_set)}
