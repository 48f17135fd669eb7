"""Apply the human review sheet to the refined captions, and report what is still pending."""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from stages.common.errors import StageError
from stages.common.io import read_parquet
from stages.common.schemas import APPROVED_SCHEMA, REFINED_SCHEMA
from stages.review.sheet import (STATUSES, caption_sha, clean_sha, clean_status, needs_review, normalise_caption,
                                 read_sheet, spreadsheet_damage)

MODES = ("required", "auto_approve_unflagged", "off")
NEXT_STEP = ("Open it, set status to approved, rejected or edited (with edited_caption), save as CSV, "
             "and run the same snakemake command again.")


@dataclass
class ReviewSummary:
    mode: str
    counts: Counter = field(default_factory=Counter)  # approved, edited, rejected, pending, auto, unreviewed, empty
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        c = self.counts
        kept = c["approved"] + c["edited"] + c["auto"] + c["unreviewed"]
        return (f"review ({self.mode}): {c['approved']} approved, {c['edited']} edited, {c['rejected']} rejected, "
                f"{c['pending']} pending, {c['auto']} auto, {c['unreviewed']} unreviewed, {c['empty']} empty "
                f"-> {kept} captions")


def _rows(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    more = f", ... ({len(numbers)} rows)" if len(numbers) > 8 else ""
    return "rows " + ", ".join(map(str, numbers[:8])) + more


def _some(values: list[str]) -> str:
    return ", ".join(values[:5]) + (", ..." if len(values) > 5 else "")


def _regenerated(generated: str | None) -> str:
    return str(generated) if generated else "the regenerated sheet results/<dataset>/review/sheet.csv"


def sheet_decisions(sheet_path: str | os.PathLike, shas: dict[str, str], generated: str | None = None
                    ) -> dict[str, tuple[str, str]]:
    """``clip_id -> (status, edited caption)`` from a human sheet, checked against the refined captions' hashes.

    Every problem in the sheet is reported at once, with row numbers as a spreadsheet shows them.
    """
    sheet = read_sheet(sheet_path)
    ids = sheet["clip_id"].str.strip()
    problems: dict[str, list[int]] = defaultdict(list)
    unknown_ids, bad_values, damage, decisions = [], [], [], {}
    for row, clip_id, rec in zip(sheet.index, ids, sheet.to_dict("records")):
        status, edited = clean_status(rec["status"]), normalise_caption(rec["edited_caption"])
        if not clip_id:
            problems["no_id"].append(row)
        elif clip_id not in shas:
            problems["unknown"].append(row)
            unknown_ids.append(clip_id)
        elif status not in STATUSES:
            problems["status"].append(row)
            bad_values.append(repr(rec["status"]))
        elif status == "edited" and not edited:
            problems["no_text"].append(row)
        elif status == "edited" and spreadsheet_damage(edited):
            problems["damaged"].append(row)
            damage.append(spreadsheet_damage(edited))
        elif status != "pending" and clean_sha(rec["caption_sha"]) != shas[clip_id]:
            problems["stale"].append(row)
        else:
            decisions[clip_id] = (status, edited)
    duplicates = ids[(ids != "") & ids.duplicated(keep=False)]

    messages = {
        "no_id": "no clip_id. Fill it in or delete the row.",
        "unknown": f"clip_id not in the refined captions ({_some(unknown_ids)}). Delete those rows, or re-export "
                   "the sheet if the dataset changed.",
        "status": f"unknown status ({_some(bad_values)}). Use pending, approved, rejected or edited.",
        "no_text": "status is edited but edited_caption is empty. Write the corrected caption in edited_caption, "
                   "or set status to approved or rejected.",
        "damaged": f"edited_caption is not a caption a reviewer typed ({_some(damage)}): a spreadsheet ran the text "
                   "as a formula, or will. Retype it so that it does not start with =, +, - or @ (or put an "
                   "apostrophe ' before it), and save again.",
        "stale": f"caption_sha does not match the refined caption: it changed since the sheet was exported. "
                 f"Re-export and review those rows: copy {_regenerated(generated)} (it keeps your other decisions "
                 f"and sets changed rows back to pending) to {sheet_path} and review them again.",
    }
    found = [f"{_rows(rows)}: {messages[kind]}" for kind, rows in problems.items()]
    found += [f"clip_id {clip_id} is on {_rows(list(rows.index))}. Keep one row per clip and delete the others."
              for clip_id, rows in duplicates.groupby(duplicates, sort=False)]
    if found:
        raise StageError(f"{sheet_path}: {len(found)} problem(s), nothing was applied "
                         "(row numbers as a spreadsheet shows them, header = row 1):\n  - " + "\n  - ".join(found))
    return decisions


def _copy_step(sheet, generated) -> str:
    build = "" if generated and Path(generated).exists() else " (make it first: snakemake -j1 <that path>)"
    return f"copy {_regenerated(generated)}{build} to {sheet or 'config/review/<dataset>.csv'}, review it, and run again."


def apply(refined: pa.Table, sheet_path: str | os.PathLike | None, mode: str, generated: str | None = None
          ) -> tuple[pa.Table, ReviewSummary]:
    """Approved captions (APPROVED_SCHEMA) from ``refined`` and the human sheet, under review ``mode``.

    ``required``: every clip needs a decision in the sheet. ``auto_approve_unflagged``: clips without flags are
    approved unless the sheet decides otherwise; flagged ones without a decision are left out. ``off``: every
    non-empty refined caption passes as "unreviewed". Rejected clips and empty captions are left out.
    """
    if mode not in MODES:
        raise StageError(f"review.mode {mode!r} is not one of {', '.join(MODES)}. Fix it in the config.")
    rows = refined.select(["clip_id", "caption_refined", "flags", "label_hint"]).to_pylist()
    shas = {row["clip_id"]: caption_sha(row["caption_refined"]) for row in rows}
    summary = ReviewSummary(mode)
    decisions: dict[str, tuple[str, str]] = {}
    if mode != "off":
        if sheet_path is not None and Path(sheet_path).exists():
            decisions = sheet_decisions(sheet_path, shas, generated)
        elif mode == "required":
            raise StageError(f"review sheet {sheet_path} not found and review.mode is 'required': "
                             + _copy_step(sheet_path, generated))

    out, pending_ids, counts = [], [], summary.counts
    for row in rows:
        clip_id, text = row["clip_id"], normalise_caption(row["caption_refined"])
        status, edited = decisions.get(clip_id, ("pending", ""))
        if mode == "off":
            decision = "unreviewed"
        elif status == "pending" and mode == "auto_approve_unflagged" and not needs_review(row["flags"]):
            decision = "auto_approved"
        else:
            decision = status
        if decision == "pending":
            pending_ids.append(clip_id)
        if decision in ("rejected", "pending"):
            counts[decision] += 1
            continue
        text = edited if decision == "edited" else text
        if not text:
            counts["empty"] += 1
            continue
        counts["auto" if decision == "auto_approved" else decision] += 1
        out.append({"clip_id": clip_id, "caption": text, "caption_sha": shas[clip_id], "decision": decision,
                    "label_hint": row["label_hint"]})

    if pending_ids and mode == "required":
        missing = sum(clip_id not in decisions for clip_id in pending_ids)
        hint = (f" {missing} of them are not in the sheet at all: copy {_regenerated(generated)} there first "
                "(it keeps your decisions)." if missing else "")
        raise StageError(f"{len(pending_ids)} of {len(rows)} rows still pending in {sheet_path}. {NEXT_STEP}{hint} "
                         f"First pending: {_some(pending_ids)}.")
    if pending_ids:
        summary.warnings.append(
            f"{len(pending_ids)} flagged captions have no decision in {sheet_path or 'the review sheet'} and were "
            f"left out ({_some(pending_ids)}). Review them there to include them.")
    if counts["empty"]:
        summary.warnings.append(f"{counts['empty']} captions were left out because their text is empty.")
    return pa.Table.from_pylist(out, schema=APPROVED_SCHEMA), summary


MODE_MEANING = {
    "required": "every caption needs a decision in {sheet}; training waits until none is pending",
    "auto_approve_unflagged": "captions without flags are used without a decision; flagged ones are left out of "
                              "training until {sheet} decides them",
    "off": "no review: every non-empty refined caption is used as it is, and {sheet} is not read",
}


def status(ds: str, results: str = "results", review_dir: str = "config/review",
           mode: str = "auto_approve_unflagged") -> str:
    """The active review mode and what it means, counts per status, flagged pending clips, and the next step."""
    if mode not in MODES:
        raise StageError(f"review.mode {mode!r} is not one of {', '.join(MODES)}. Fix it in the config.")
    refined = read_parquet(Path(results) / ds / "captions" / "refined.parquet", REFINED_SCHEMA)
    generated, sheet = Path(results) / ds / "review" / "sheet.csv", Path(review_dir) / f"{ds}.csv"
    rows = refined.select(["clip_id", "caption_refined", "flags"]).to_pylist()
    flagged_total = sum(needs_review(row["flags"]) for row in rows)
    lines = [f"review mode: {mode}: {MODE_MEANING[mode].format(sheet=sheet)}.",
             f"{ds}: {len(rows)} captions, {flagged_total} flagged."]
    if mode == "off":
        return "\n".join(lines + ["next: nothing to review; set review.mode in the config to review captions."])
    if not sheet.exists():
        left_out = {"required": f"all {len(rows)} captions wait", "auto_approve_unflagged":
                    f"{flagged_total} flagged captions are left out"}[mode]
        return "\n".join(lines + [f"no review sheet {sheet} yet: {left_out}.", f"next: {_copy_step(sheet, generated)}"])
    decisions = sheet_decisions(sheet, {r["clip_id"]: caption_sha(r["caption_refined"]) for r in rows}, str(generated))
    counts = dict.fromkeys(STATUSES, 0)
    pending = []
    for row in sorted(rows, key=lambda r: (not needs_review(r["flags"]), r["clip_id"])):
        state = decisions.get(row["clip_id"], ("pending", ""))[0]
        counts[state] += 1
        if state == "pending":
            pending.append(row)
    flagged = sum(1 for row in pending if needs_review(row["flags"]))
    waiting = flagged if mode == "auto_approve_unflagged" else len(pending)
    lines += [f"in {sheet}: " + ", ".join(f"{n} {s}" for s, n in counts.items()),
              f"{flagged} of the pending rows are flagged; under this mode {waiting} captions wait for a decision."]
    if waiting:
        first = [row["clip_id"] for row in pending if mode == "required" or needs_review(row["flags"])]
        lines += [f"first pending: {_some(first)}",
                  f"next: {waiting} of {len(rows)} rows wait for a decision in {sheet}. {NEXT_STEP}"]
    else:
        lines.append("next: nothing waits for a decision; run snakemake to apply the sheet.")
    return "\n".join(lines)
