"""The closing message of a Snakemake run: where the results of the targets it built are, and what lies beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

MAX_LISTED = 12

# What a user finds next to a target, by the target's file name.
BESIDE = {
    "metrics.json": "confusion.png beside it",
    "summary.md": "summary.json beside it",
    "models.md": "one metrics.json per model in the folders beside it",
    "sheet.csv": "copy it to config/review/<dataset>.csv to review",
}


def describe(path: str) -> str:
    """``path`` with a note on its neighbours; a model folder's metrics.json also has training curves."""
    name = Path(path).name
    note = BESIDE.get(name, "")
    if name == "metrics.json" and (Path(path).parent / "training_curves.png").exists():
        note = "confusion.png and training_curves.png beside it"
    elif name == "metrics.json" and Path(path).parent.name.startswith("fold"):
        note += "; training_curves.png in the model's folder"
    return f"  {path}  ({note})" if note else f"  {path}"


def final_outputs_message(targets: Iterable[str]) -> str:
    """"Done. Main results:" with the targets that exist (the run made or kept them); "" when none does."""
    existing = sorted({str(path) for path in targets if Path(path).exists()})
    if not existing:
        return ""
    lines = [describe(path) for path in existing[:MAX_LISTED]]
    if len(existing) > MAX_LISTED:
        lines.append(f"  ... and {len(existing) - MAX_LISTED} more")
    return "\nDone. Main results:\n" + "\n".join(lines)
