"""Confusion-matrix and training-curve PNGs, rendered with the Agg canvas and written atomically.

The figures use matplotlib's object API (no pyplot state, no display needed) and drop the "Software" PNG tag, so
the same inputs give byte-identical files.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stages.common.errors import StageError
from stages.common.io import atomic_path

CURVE_COLUMNS = ["train_acc", "test_uar", "test_war", "val_uar", "val_war"]


def _save(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


def plot_confusion(confusion, class_names, path: str | os.PathLike, title: str) -> None:
    """Colours = row-normalised (recall per true class); each cell shows its count and row percentage."""
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({n}, {n}) for {n} class names")
    support = counts.sum(axis=1)
    share = np.divide(counts, support[:, None], out=np.zeros(counts.shape), where=support[:, None] > 0)

    fig = Figure(figsize=(2.2 + 0.75 * n, 1.6 + 0.7 * n), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share * 100, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of true class")
    font = 9 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j] * 100:.1f}%", ha="center", va="center", fontsize=font,
                    color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(n), class_names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), [f"{name} (n={s})" for name, s in zip(class_names, support)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def plot_training_curves(train_log_csv: str | os.PathLike, path: str | os.PathLike, title: str,
                         selected_epoch: int | None = None, selection: str = "selected") -> None:
    """Left: training loss; right: train accuracy and test/val UAR and WAR (as logged); dashed line = selected epoch."""
    log_path = Path(train_log_csv)
    try:
        log = pd.read_csv(log_path)
    except FileNotFoundError as err:
        raise StageError(f"{log_path}: file not found; the training stage writes it.") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise StageError(f"{log_path}: not a readable CSV ({err}).") from err
    missing = sorted({"epoch", "train_loss"} - set(log.columns))
    if missing:
        expected = ", ".join(["epoch", "train_loss", *CURVE_COLUMNS])
        raise StageError(f"{log_path}: missing columns {missing}; expected {expected}.")

    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    loss_ax.plot(log["epoch"], log["train_loss"], marker=".", color="tab:red", label="train loss")
    loss_ax.set_ylabel("loss")
    for column in CURVE_COLUMNS:
        if column in log.columns and log[column].notna().any():
            label = column.replace("_", " ").replace("uar", "UAR").replace("war", "WAR")
            score_ax.plot(log["epoch"], log[column], marker=".", label=label)
    score_ax.set_ylabel("accuracy / recall (as logged)")
    for ax in (loss_ax, score_ax):
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", linestyle="--", label=f"{selection} (epoch {selected_epoch})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if log.empty:
            ax.text(0.5, 0.5, "no epochs logged", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
