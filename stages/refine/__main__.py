"""CLI: python -m stages.refine --raw RAW.parquet [RAW ...] --index results/{ds}/index.parquet
    --lexicon-dir config/lexicons --config-json '{}' --out results/{ds}/captions/refined.parquet
    --report results/{ds}/captions/refinement_report.json [--counterfactual CAPTIONS.parquet]
    [--frames results/{ds}/frames/*.parquet]

Refines every raw caption, flags what may still leak the label, and writes a JSON and a Markdown report.
Counterfactual captions (label_hint "paper": the clip captioned with another label) come from the raw tables'
counterfactual_caption column or from --counterfactual.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

import pyarrow as pa
from tqdm import tqdm

from stages.common.config import config_object
from stages.common.errors import StageError, run_cli
from stages.common.io import read_made_with, read_parquet, write_json, write_parquet, write_text
from stages.common.provenance import stage_record
from stages.common.schemas import CAPTIONS_RAW_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA, REFINED_SCHEMA
from stages.refine.leakage import counterfactual_agreement, lexicon_flags, text_classifier
from stages.refine.lexicon import load_lexicon
from stages.refine.refine import Refinement, count_tokens, refine

DEFAULTS = {"max_tokens_warn": 77, "max_tokens_long": 248, "counterfactual_threshold": 0.5, "classifier_folds": 5,
            "seed": 0}
COUNTERFACTUAL_SCHEMA = pa.schema([("clip_id", pa.string()), ("caption", pa.string())])


def parse_config(text: str) -> dict:
    given = config_object(text)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise StageError(f"--config-json: unknown keys {unknown}; known keys are {sorted(DEFAULTS)}.")
    cfg = {**DEFAULTS, **given}
    if not 0 < cfg["max_tokens_warn"] < cfg["max_tokens_long"]:
        raise StageError("refine config: need 0 < max_tokens_warn < max_tokens_long.")
    if not 0.0 <= cfg["counterfactual_threshold"] <= 1.0:
        raise StageError("refine config: counterfactual_threshold must lie in [0, 1].")
    if int(cfg["classifier_folds"]) < 2:
        raise StageError("refine config: classifier_folds must be at least 2.")
    return cfg


def _unique_rows(table: pa.Table, path: str) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for row in table.to_pylist():
        if row["clip_id"] in rows:
            raise StageError(f"{path}: clip_id {row['clip_id']} appears twice; rerun the stage that wrote it.")
        rows[row["clip_id"]] = row
    return rows


def _histogram(values: list[int], edges: list[int]) -> list[dict]:
    bins, low = [], 0
    for high in edges:
        bins.append({"bin": f"{low + 1}-{high}", "count": sum(low < v <= high for v in values)})
        low = high
    bins.append({"bin": f">{low}", "count": sum(v > low for v in values)})
    return bins


def face_crops(frames_paths: Sequence[str]) -> dict[str, dict]:
    """``clip_id -> {crop_flag, crop_filled_fraction}`` of the frames shards (the face track of each clip)."""
    crops = {}
    for path in frames_paths:
        table = read_parquet(path, FRAMES_SCHEMA, columns=["clip_id", "crop_flag", "crop_filled_fraction"])
        crops.update((row["clip_id"], row) for row in table.to_pylist())
    return crops


def run(raw_paths: Sequence[str], index_path: str, lexicon_dir: str, cfg: dict, out: str, report: str,
        counterfactual_path: str | None = None, frames_paths: Sequence[str] = (), made_with: dict | None = None) -> dict:
    lexicon = load_lexicon(lexicon_dir)
    crops = face_crops(frames_paths)
    raw: dict[str, dict] = {}
    for path in raw_paths:
        for clip_id, row in _unique_rows(read_parquet(path, CAPTIONS_RAW_SCHEMA), path).items():
            if clip_id in raw:
                raise StageError(f"{path}: clip_id {clip_id} is also in another raw shard; rerun the caption stage.")
            raw[clip_id] = row
    index = read_parquet(index_path, INDEX_SCHEMA, columns=["clip_id", "class_name"])
    class_of = dict(zip(index["clip_id"].to_pylist(), index["class_name"].to_pylist()))
    other = {}
    if counterfactual_path:
        other = _unique_rows(read_parquet(counterfactual_path, COUNTERFACTUAL_SCHEMA), counterfactual_path)

    warn, long = int(cfg["max_tokens_warn"]), int(cfg["max_tokens_long"])
    rows, agreements = [], []
    count_tokens("")  # load the CLIP tokenizer before the progress bar starts
    for clip_id in tqdm(sorted(raw), desc="refine", unit="caption"):
        row = raw[clip_id]
        caption = row["caption"] or ""
        result = refine(caption, lexicon) if row["status"] == "ok" and caption.strip() else Refinement("", ())
        flags = [] if result.text else ["empty"]
        flags += lexicon_flags(result.text, lexicon)
        n_tokens = count_tokens(result.text)
        # Over 77 tokens is normal for fine-grained text (Long-CLIP reads 248): informational, never blocks approval.
        flags += [f"info:over_{warn}_tokens"] * (n_tokens > warn) + [f"over_{long}_tokens"] * (n_tokens > long)
        crop = crops.get(clip_id, {})
        flags += [crop["crop_flag"]] if crop.get("crop_flag") else []  # face_filled | no_face: the crop may miss the face
        # the --counterfactual file wins over the raw table's own counterfactual_caption
        other_caption = (other.get(clip_id) or {}).get("caption") or row.get("counterfactual_caption") or ""
        if result.text and row["label_hint"] == "paper" and other_caption.strip():
            agreement = counterfactual_agreement(result.text, refine(other_caption, lexicon).text, lexicon.stopwords)
            agreements.append(agreement)
            if agreement < cfg["counterfactual_threshold"]:
                flags.append("counterfactual")
        rows.append({"clip_id": clip_id, "caption_raw": caption, "caption_refined": result.text,
                     "removed": [{"text": r.text, "reason": r.reason} for r in result.removed], "flags": flags,
                     "n_tokens": n_tokens, "label_hint": row["label_hint"] or "",
                     "face_filled_fraction": crop.get("crop_filled_fraction")})

    classifier = text_classifier([r["caption_refined"] for r in rows], [class_of.get(r["clip_id"]) for r in rows],
                                 folds=int(cfg["classifier_folds"]), seed=int(cfg["seed"]), stopwords=lexicon.stopwords)
    for row, score in zip(rows, classifier.scores):
        row["leakage_score"] = float(score)
    write_parquet(pa.Table.from_pylist(rows, schema=REFINED_SCHEMA), out, REFINED_SCHEMA, made_with)

    summary = build_report(rows, classifier.summary(), agreements, cfg, counterfactual_path is not None,
                           sum(r["clip_id"] not in class_of for r in rows))
    write_json(report, summary)
    write_text(Path(report).with_suffix(".md"), report_markdown(summary))
    return summary


def build_report(rows: list[dict], classifier: dict, agreements: list[float], cfg: dict, counterfactual_given: bool,
                 not_in_index: int) -> dict:
    reasons = Counter(r["reason"] for row in rows for r in row["removed"])
    kinds: Counter = Counter()
    for reason, n in reasons.items():
        kinds[reason.split(" '")[0]] += n  # "emotion word 'sad'" -> "emotion word"
    warn, long = int(cfg["max_tokens_warn"]), int(cfg["max_tokens_long"])
    tokens = [row["n_tokens"] for row in rows]
    return {
        "rows": len(rows),
        "not_in_index": not_in_index,
        "label_hint": dict(Counter(row["label_hint"] for row in rows)),
        "removed_spans": {
            "total": sum(reasons.values()),
            "by_kind": dict(kinds.most_common()),
            "top_reasons": dict(reasons.most_common(20)),
        },
        "flags": dict(Counter(flag for row in rows for flag in row["flags"]).most_common()),
        "rows_flagged": sum(bool(row["flags"]) for row in rows),
        "tokens": {"max_tokens_warn": warn, "max_tokens_long": long,
                   "mean": sum(tokens) / len(tokens) if tokens else None, "max": max(tokens, default=None),
                   "histogram": _histogram(tokens, sorted({32, 64, warn, 128, 192, long}))},
        "text_classifier": classifier,
        "leakage_score_mean": sum(row["leakage_score"] for row in rows) / len(rows) if rows else None,
        "counterfactual": {"given": counterfactual_given, "compared": len(agreements),
                           "flagged": sum(a < cfg["counterfactual_threshold"] for a in agreements),
                           "mean_agreement": sum(agreements) / len(agreements) if agreements else None,
                           "threshold": cfg["counterfactual_threshold"]},
        "config": cfg,
    }


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def report_markdown(summary: dict) -> str:
    clf, cf, tok = summary["text_classifier"], summary["counterfactual"], summary["tokens"]
    lines = [
        "# Caption refinement report", "",
        f"- captions: {summary['rows']} (label_hint: {summary['label_hint']}); not in the index: "
        f"{summary['not_in_index']}",
        f"- flagged rows: {summary['rows_flagged']}; removed spans: {summary['removed_spans']['total']}",
        f"- CLIP tokens: mean {_fmt(tok['mean'])}, max {_fmt(tok['max'])}", "",
        "## Removed spans by kind", "", "| kind | count |", "|---|---|",
        *[f"| {kind} | {n} |" for kind, n in summary["removed_spans"]["by_kind"].items()], "",
        "## Flags", "", "| flag | rows |", "|---|---|",
        *[f"| {flag} | {n} |" for flag, n in summary["flags"].items()], "",
        "## Token lengths", "", "| tokens | captions |", "|---|---|",
        *[f"| {b['bin']} | {b['count']} |" for b in tok["histogram"]], "",
        "## Text-only classifier (information, not a test)", "",
        "TF-IDF + logistic regression on the refined captions alone, stratified cross-validation. "
        "leakage_score per row: (p(true label) - prior) / (1 - prior), clipped to [0, 1].", "",
        *([f"- {clf['folds']} folds, {clf['n']} captions, {clf['classes']} classes",
           f"- accuracy {_fmt(clf['accuracy'])} (chance: most frequent class {_fmt(clf['chance_accuracy'])})",
           f"- UAR {_fmt(clf['uar'])} (chance {_fmt(clf['chance_uar'])})",
           f"- mean leakage_score {_fmt(summary['leakage_score_mean'])}"] if clf["status"] == "ok"
          else [f"- {clf['status']}"]), "",
        "## Counterfactual check (label_hint: paper)", "",
        f"- counterfactual captions given: {cf['given']}; compared: {cf['compared']}; flagged (agreement < "
        f"{cf['threshold']}): {cf['flagged']}; mean agreement {_fmt(cf['mean_agreement'])}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.refine", description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--raw", nargs="+", required=True, help="results/{ds}/captions/raw/{shard}.parquet files")
    parser.add_argument("--index", required=True, help="results/{ds}/index.parquet (labels for the leakage check)")
    parser.add_argument("--lexicon-dir", default="config/lexicons", help="folder with the lexicon .txt files")
    parser.add_argument("--config-json", default="{}", help=f"refine config as JSON; defaults {DEFAULTS}")
    parser.add_argument("--out", required=True, help="results/{ds}/captions/refined.parquet")
    parser.add_argument("--report", required=True, help="JSON report; a Markdown copy goes next to it (.md)")
    parser.add_argument("--frames", nargs="*", default=[], help="results/{ds}/frames/{shard}.parquet files: clips "
                        "whose face crop was flagged (frames.face_crop.max_filled_fraction) are flagged here too")
    parser.add_argument("--counterfactual", help="Parquet (clip_id, caption) generated with a different label; "
                        "replaces the raw tables' counterfactual_caption for the clips it lists")
    args = parser.parse_args(argv)
    made_with = {**read_made_with(*args.raw),
                 **stage_record("refine", config_object(args.config_json), {"lexicons": args.lexicon_dir})}
    summary = run(args.raw, args.index, args.lexicon_dir, parse_config(args.config_json), args.out, args.report,
                  args.counterfactual, args.frames, made_with)
    clf = summary["text_classifier"]
    print(f"refine: {summary['rows']} captions, {summary['rows_flagged']} flagged, "
          f"{summary['removed_spans']['total']} spans removed; text-only classifier {clf['status']} "
          f"(UAR {_fmt(clf['uar'])}, chance {_fmt(clf['chance_uar'])}) -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
