"""CLI of the evaluation stage.

  python -m stages.evaluate fold --predictions P --run-info R --train-log L \
      --out-metrics M.json --out-confusion C.png --out-curves T.png
  python -m stages.evaluate summary --metrics M.json [M.json ...] --out-json S.json --out-md S.md
  python -m stages.evaluate table --metrics M.json [M.json ...] --out-md T.md

``fold`` scores one run's test predictions (metrics as fractions in [0, 1]); ``summary`` and ``table`` print
percentages: per fold with mean ± sample std (ddof=1) per dataset and model, and the mean per model beside the
published numbers (stages/evaluate/reference.py).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.compute as pc

from stages.common.errors import StageError, run_cli
from stages.common.io import read_parquet, write_json, write_text
from stages.common.schemas import PREDICTIONS_SCHEMA
from stages.evaluate.metrics import classification_metrics
from stages.evaluate.plots import plot_confusion, plot_training_curves
from stages.evaluate.reference import PAPER_FOLDS, PAPER_RESULTS

RUN_INFO_KEYS = ("dataset", "fold", "model", "class_names")
METRICS_KEYS = ("dataset", "fold", "model", "uar", "war")
SELECTION_NOTE = ("Selection: `best_on_test` = epoch with the best test accuracy (the published protocol, "
                  "optimistic); `best_on_val` = best validation accuracy; `last` = final epoch.")


def read_json_object(path: str, required: Sequence[str]) -> dict:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StageError(f"{path}: file not found; run the stage that writes it first.") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StageError(f"{path}: not valid JSON ({err}).") from err
    if not isinstance(obj, dict):
        raise StageError(f"{path}: expected a JSON object.")
    missing = [key for key in required if key not in obj]
    if missing:
        raise StageError(f"{path}: missing keys {missing}.")
    return obj


# ---------------------------------------------------------------------------------------------------- fold


def _check_rows(path: str, clip_ids: list[str], bad: np.ndarray, what: str) -> None:
    if bad.any():
        first = clip_ids[int(np.flatnonzero(bad)[0])]
        raise StageError(f"{path}: {what} in {int(bad.sum())} of {len(bad)} rows (first: clip_id {first}). "
                         "Delete it and rerun the training stage.")


def evaluate_fold(predictions: str, run_info: str, train_log: str, out_metrics: str, out_confusion: str,
                  out_curves: str) -> dict:
    info = read_json_object(run_info, RUN_INFO_KEYS)
    class_names = info["class_names"]
    if not (isinstance(class_names, list) and class_names and all(isinstance(c, str) for c in class_names)
            and len(set(class_names)) == len(class_names)):
        raise StageError(f"{run_info}: class_names must be a non-empty list of distinct strings.")
    n_classes = len(class_names)

    table = read_parquet(predictions, PREDICTIONS_SCHEMA, columns=["clip_id", "label", "prediction", "logits"])
    if table.num_rows == 0:
        raise StageError(f"{predictions}: no predictions; the test split of {info['dataset']}/{info['fold']} "
                         "is empty or the training stage failed.")
    for column in ("clip_id", "label", "prediction"):
        if table[column].null_count:
            raise StageError(f"{predictions}: {table[column].null_count} rows without a {column}.")
    clip_ids = table["clip_id"].to_pylist()
    repeated = np.ones(len(clip_ids), dtype=bool)
    repeated[np.unique(clip_ids, return_index=True)[1]] = False
    _check_rows(predictions, clip_ids, repeated, "a clip_id seen before")
    labels = table["label"].to_numpy().astype(np.int64)
    preds = table["prediction"].to_numpy().astype(np.int64)
    logit_lengths = pc.fill_null(pc.list_value_length(table["logits"]), -1).to_numpy()
    limits = f"outside 0..{n_classes - 1} ({n_classes} class_names in {run_info})"
    _check_rows(predictions, clip_ids, (labels < 0) | (labels >= n_classes), f"label {limits}")
    _check_rows(predictions, clip_ids, (preds < 0) | (preds >= n_classes), f"prediction {limits}")
    _check_rows(predictions, clip_ids, logit_lengths != n_classes,
                f"logits length differs from the {n_classes} class_names in {run_info}")

    scores = classification_metrics(labels, preds, n_classes)
    present = sum(r is not None for r in scores["per_class_recall"])
    metrics = {**info, **scores, "class_names": class_names, "chance_uar": 1.0 / present,
               "per_class_recall": dict(zip(class_names, scores["per_class_recall"]))}
    name = f"{info['model']} · {info['dataset']}/{info['fold']}"
    selection = info.get("selection", "selected")
    plot_training_curves(train_log, out_curves, name, info.get("selected_epoch"), selection)
    plot_confusion(scores["confusion"], class_names, out_confusion,
                   f"{name} ({selection}): UAR {scores['uar'] * 100:.2f}%, WAR {scores['war'] * 100:.2f}%")
    write_json(out_metrics, metrics)
    return metrics


# ---------------------------------------------------------------------------------------------- summaries


def load_metrics(paths: Sequence[str]) -> list[dict]:
    runs, seen = [], {}
    for path in paths:
        run = read_json_object(path, METRICS_KEYS)
        key = (run["dataset"], run["fold"], run["model"])
        if key in seen:
            raise StageError(f"{path}: {'/'.join(key)} is also given as {seen[key]}; pass each fold once.")
        seen[key] = path
        runs.append(run)
    return runs


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); the std of a single value is 0."""
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return float(values.mean()), float(std)


def summarise(runs: list[dict]) -> dict:
    """Group runs by (dataset, model) in the order given; folds in natural order; scores in percent."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["model"]), []).append(run)
    out = []
    for (dataset, model), members in groups.items():
        folds = [{"fold": r["fold"], "selection": r.get("selection"), "selected_epoch": r.get("selected_epoch"),
                  "n": r.get("n"), "uar_pct": 100 * r["uar"], "war_pct": 100 * r["war"]}
                 for r in sorted(members, key=lambda r: _natural(r["fold"]))]
        uar_mean, uar_std = mean_std([f["uar_pct"] for f in folds])
        war_mean, war_std = mean_std([f["war_pct"] for f in folds])
        out.append({"dataset": dataset, "model": model, "n_folds": len(folds),
                    "selection": sorted({_cell(f["selection"]) for f in folds}), "folds": folds,
                    "uar_pct_mean": uar_mean, "uar_pct_std": uar_std, "war_pct_mean": war_mean, "war_pct_std": war_std})
    return {"groups": out, "warnings": warnings_for(runs)}


def warnings_for(runs: list[dict]) -> list[str]:
    def names(flagged):
        return ", ".join(f"{r['model']} {r['dataset']}/{r['fold']}" for r in flagged)

    warnings = []
    random_init = [r for r in runs if r.get("random_init")]
    if random_init:
        warnings.append(f"random-initialised towers: not comparable to published numbers ({names(random_init)}).")
    hinted = [r for r in runs if r.get("label_hint") == "paper"]
    if hinted:
        warnings.append(f'captions saw the labels (label_hint "paper": {names(hinted)}).')
    return warnings


def _cell(value) -> str:
    return "–" if value is None else str(value)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _warning_lines(warnings: list[str]) -> list[str]:
    return [f"> **Warning:** {w}" for w in warnings] + ([""] if warnings else [])


def summary_markdown(summary: dict) -> str:
    datasets = ", ".join(dict.fromkeys(g["dataset"] for g in summary["groups"]))
    lines = [f"## UAR / WAR per fold: {datasets}", "", *_warning_lines(summary["warnings"]),
             "| dataset | model | fold | selection | epoch | clips | UAR (%) | WAR (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        for f in g["folds"]:
            lines.append(f"| {g['dataset']} | {g['model']} | {f['fold']} | {_cell(f['selection'])} "
                         f"| {_cell(f['selected_epoch'])} | {_cell(f['n'])} "
                         f"| {f['uar_pct']:.2f} | {f['war_pct']:.2f} |")
        folds = f"{g['n_folds']} fold{'s' if g['n_folds'] > 1 else ''}"
        lines.append(f"| {g['dataset']} | {g['model']} | **mean ± std ({folds})** | | | "
                     f"| **{_pm(g['uar_pct_mean'], g['uar_pct_std'])}** "
                     f"| **{_pm(g['war_pct_mean'], g['war_pct_std'])}** |")
    lines += ["", f"Std: sample standard deviation over folds (ddof=1; 0 for one fold). {SELECTION_NOTE}", ""]
    return "\n".join(lines)


def table_markdown(summary: dict) -> str:
    lines = ["## UAR / WAR per model", "", *_warning_lines(summary["warnings"]),
             "| dataset | model | folds | selection | UAR (%) | WAR (%) | paper UAR / WAR (%) |",
             "|---|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        paper = PAPER_RESULTS.get(g["model"], {}).get(g["dataset"])
        folds = str(g["n_folds"])
        if paper and g["n_folds"] != PAPER_FOLDS[g["dataset"]]:
            folds += f" of {PAPER_FOLDS[g['dataset']]}"
        lines.append(f"| {g['dataset']} | {g['model']} | {folds} | {', '.join(g['selection'])} "
                     f"| {_pm(g['uar_pct_mean'], g['uar_pct_std'])} | {_pm(g['war_pct_mean'], g['war_pct_std'])} "
                     f"| {f'{paper[0]:.2f} / {paper[1]:.2f}' if paper else '–'} |")
    lines += ["", "Ours: mean ± sample std over the folds given. Paper: FineCLIPER Tab. 1 (CLIP ViT-B/16; DFER-CLIP "
              "ViT-B/32), 5-fold mean on DFEW and MAFW, official split on FERV39k, best-on-test selection. Variants: "
              "base = FineCLIPER, star = FineCLIPER\\* (+ parsing, landmarks), dagger = FineCLIPER† (+ fine-grained "
              f"text), star-dagger = FineCLIPER\\*† (all). {SELECTION_NOTE}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("fold", help="metrics.json, confusion and training-curve plots of one run")
    for flag in ("--predictions", "--run-info", "--train-log", "--out-metrics", "--out-confusion", "--out-curves"):
        p.add_argument(flag, required=True)
    p = commands.add_parser("summary", help="per-fold table with mean ± std, as JSON and Markdown")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    p = commands.add_parser("table", help="one row per model beside the published numbers (Markdown)")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out-md", required=True)
    args = parser.parse_args(argv)

    if args.command == "fold":
        evaluate_fold(args.predictions, args.run_info, args.train_log, args.out_metrics, args.out_confusion,
                      args.out_curves)
        return
    summary = summarise(load_metrics(args.metrics))
    if args.command == "summary":
        write_json(args.out_json, summary)
        write_text(args.out_md, summary_markdown(summary))
    else:
        write_text(args.out_md, table_markdown(summary))


if __name__ == "__main__":
    run_cli(main)
