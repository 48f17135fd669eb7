"""New clips through the pipeline's stages and a trained run's model: class probabilities per clip.

The stage settings come from the workflow's config files (config/config.yaml, then each ``--configfile``, merged as
Snakemake merges them) for the dataset the run trained on; the run's recorded train settings, and the frames, faces,
captions and refine settings its features and captions were made with, must agree with them, so that frames, faces
and captions are made as they were for training. Paths in the config files (prompts,
lexicons, descriptors, weights) are relative to the workflow folder: run from there.
"""
from __future__ import annotations

import json
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from stages.common.config import deep_merge, read_settings, stage_section
from stages.common.datasets import load_dataset_config
from stages.common.errors import StageError
from stages.common.io import read_parquet, write_parquet
from stages.common.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, count_frames
from stages.common.provenance import result_settings, stage_record
from stages.common.schemas import APPROVED_SCHEMA, FACES_SCHEMA, FEATURES_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA

FOLD, SPLIT = "predict", "test"  # the one split of the temporary features table
BASE_CONFIG = "config/config.yaml"
DESCRIPTORS = "config/prompts/dfer_clip_descriptors.yaml"
STAGE_FILES = {"captions": ("prompt",), "refine": ("lexicons",)}  # input files recorded by content (stage_record)


@dataclass
class Clip:
    """One input and what became of it: class probabilities, or the error that stopped it."""

    source: str
    clip_id: str
    probabilities: list[float] | None = None
    caption: str | None = None  # the refined caption the model read (models with text)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run (results/{ds}/{fold}/{model} or results/zeroshot/{src}) and its settings."""

    model_dir: Path
    run_info: dict
    config: object  # stages.train.config.TrainConfig
    class_names: list[str]  # the classes scored: the run's, or those given for a zero-shot model
    stages: dict  # frames / faces / captions / refine sections of the dataset the run trained on
    dataset: object  # stages.common.datasets.DatasetConfig of that dataset (clip ids)


def expand_inputs(paths: Sequence[str]) -> list[str]:
    """Clips to predict: each video file or frame folder as given; a folder holding no images but videos or
    subfolders stands for those (one level). Missing paths stay, to be reported as that clip's error."""
    sources = []
    for path in map(Path, paths):
        entries = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else []
        has_images = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries)
        inner = [p for p in entries if p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS]
        sources += [str(path)] if not path.is_dir() or has_images or not inner else [str(p) for p in inner]
    return sources


def merged_config(configfiles: Sequence[str]) -> dict:
    config = read_settings(BASE_CONFIG) if Path(BASE_CONFIG).is_file() else {}
    for path in configfiles:
        if not Path(path).is_file():
            raise StageError(f"{path}: config file not found.")
        config = deep_merge(config, read_settings(path))
    if "datasets" not in config:
        raise StageError(f"no datasets in {[BASE_CONFIG, *configfiles]}: run from the workflow folder (where "
                         f"{BASE_CONFIG} is) or pass the run's config files with --configfile.")
    return config


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def check_made_with(recorded: dict | None, stages: dict, info_path: Path, dataset: str) -> None:
    """The frames, faces, captions and refine settings (and prompt and lexicon contents) that the run's features and
    captions were made with must be those the config files give now: new clips must be prepared as its training
    clips were. A run trained before runs recorded them (no ``made_with``) is only warned about."""
    if recorded is None:
        warnings.warn(f"{info_path}: no record of the stage settings its features were made with (trained by an "
                      "older version); the frames, faces and captions settings of the config files are used unchecked.")
        return
    differ = []
    for stage in sorted(set(recorded) & set(stages)):
        files = {key: stages[stage][key] for key in STAGE_FILES.get(stage, ()) if key in stages[stage]}
        differ += [f"{stage}.{key}" for key in _differences(stage_record(stage, stages[stage], files)[stage], recorded[stage])]
    if differ:
        raise StageError(f"{info_path}: its features or captions were made with other settings than the config files "
                         f"give for {dataset} ({', '.join(differ[:6])} differ), so new clips would not be prepared as "
                         "its training clips were. Pass the config files of that run with --configfile, or rerun "
                         "snakemake to retrain it with the current settings.")


def load_run(model_dir: str, configfiles: Sequence[str] = (), classes: Sequence[str] | None = None) -> TrainedRun:
    """The run's recorded settings, checked against the config files' settings of its dataset."""
    from stages.train.config import TrainConfig, with_model_recipe

    model_dir = Path(model_dir)
    info_path = model_dir / "run_info.json"
    if not info_path.is_file():
        raise StageError(f"{info_path}: not found. --model takes a trained run's folder, e.g. "
                         "results/demo/fold1/star-dagger or results/zeroshot/demo, after snakemake has built it.")
    run_info = json.loads(info_path.read_text())
    recorded = TrainConfig.from_dict(run_info["train_config"])
    dataset = run_info.get("zero_shot_source") or run_info["dataset"]
    config = merged_config(configfiles)
    if dataset not in config["datasets"]:
        raise StageError(f"{info_path}: trained on dataset {dataset!r}, which the config files do not define; pass "
                         "the run's config files with --configfile.")
    section = with_model_recipe(stage_section(config, "train", dataset), recorded.model)
    if recorded.objective == "contrastive":
        section = {**section, "objective": "contrastive"}
    expected = asdict(TrainConfig.from_dict(section))
    differ = _differences(result_settings("train", expected), result_settings("train", asdict(recorded)))
    if differ:
        raise StageError(f"{info_path}: the run was trained with other train settings than the config files give for "
                         f"{dataset} ({', '.join(differ[:6])} differ), so its frames and faces settings may differ "
                         f"too. Pass the config files of that run with --configfile (e.g. the snakemake command's).")
    if classes and recorded.objective != "contrastive":
        raise StageError(f"{model_dir}: --classes needs a zero-shot (contrastive) model; this one was trained to "
                         f"classify {run_info['class_names']}.")
    stages = {name: stage_section(config, name, dataset) for name in ("frames", "faces", "captions", "refine")}
    check_made_with(run_info.get("made_with"), stages, info_path, dataset)
    entry = config["datasets"][dataset]
    description = load_dataset_config(entry["description"], {k: entry[k] for k in ("root", "shards") if k in entry})
    return TrainedRun(model_dir, run_info, recorded, list(classes or run_info["class_names"]), stages, description)


def clip_ids(sources: Sequence[str], dataset) -> list[str]:
    """The index stage's id of each source (a clip of the dataset gets its own id, so the caption wording, chosen
    per id, is the one its training captions had); a source given twice gets a numbered id the second time."""
    from stages.index.stage import clip_id_for

    ids, seen = [], set()
    for i, source in enumerate(sources):
        clip_id = clip_id_for(dataset, source)
        ids.append(clip_id if clip_id not in seen else f"{clip_id}--{i}")
        seen.add(ids[-1])
    return ids


def index_rows(clips: list[Clip], class_name: str) -> list[dict]:
    """INDEX_SCHEMA rows of the readable clips; a clip whose source cannot be read gets its error."""
    rows = []
    for clip in clips:
        try:
            kind, n_frames, _ = count_frames(clip.source)
        except StageError as err:
            clip.error = str(err)
            continue
        if n_frames < 1:
            clip.error = f"{clip.source}: the video has no frames. Re-encode or re-download it."
            continue
        rows.append({"clip_id": clip.clip_id, "source": clip.source, "source_kind": kind, "n_frames": n_frames,
                     "label": 0, "class_name": class_name, "splits": [{"fold": FOLD, "split": SPLIT}]})
    return rows


class Predictor:
    """A trained run's model and the stage settings that feed it; :meth:`predict` takes clips in chunks."""

    def __init__(self, run: TrainedRun, descriptors: str = DESCRIPTORS, progress: bool = True):
        from stages.faces.backends import FacesConfig, make_backend
        from stages.frames.stage import load_config
        from stages.train.build import modalities_needed
        from stages.train.data import DataConfig
        from stages.train.trainer import fix_threads, load_trained_model, pick_device

        self.run = run
        self.progress = progress  # the stages' own bars (captions, model); faces and frames stay quiet per chunk
        config = run.config
        self.frames_config = load_config(run.stages["frames"])
        self.faces_config = FacesConfig.from_dict(run.stages["faces"])
        self.backend = make_backend(self.faces_config)
        self.data_config = DataConfig.from_dict(config.data)
        self.zero_shot = config.objective == "contrastive"
        self.modalities = {"frames"} if self.zero_shot else modalities_needed(config)
        self.reads_captions = "caption" in self.modalities
        if self.reads_captions and run.stages["captions"].get("label_hint", "none") != "none":
            raise StageError(f"{run.model_dir}: its captions were made with label_hint "
                             f"{run.stages['captions']['label_hint']!r} (the label in the prompt); a new clip has no "
                             "label. Use a model trained on label-free captions (label_hint: none).")
        self.device = pick_device(config.device)
        fix_threads(config.threads)
        # Built with the classes it trained on (as zero-shot evaluation does); zero-shot scores run.class_names.
        self.model = load_trained_model(run.model_dir, config, run.run_info["class_names"],
                                        self.frames_config["num_segments"],
                                        descriptors if not config.is_fineclip else None).to(self.device)

    def predict(self, clips: list[Clip], workdir: Path) -> None:
        """Fill each clip's probabilities (or error) through frames, faces, captions and the model."""
        from stages.faces.cli import NO_FACE, run as faces_run
        from stages.features.stage import build as build_features
        from stages.frames.stage import process_clip

        index = index_rows(clips, self.run.class_names[0])
        by_id = {clip.clip_id: clip for clip in clips}
        frames = []
        for row in index:
            clip = by_id[row["clip_id"]]
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    frames.append(process_clip(row, self.frames_config))
                clip.notes += [str(w.message) for w in caught]
            except StageError as err:
                clip.error = str(err)
        if not frames:
            return
        index = [row for row in index if by_id[row["clip_id"]].error is None]
        paths = {name: workdir / f"{name}.parquet" for name in ("index", "frames", "faces", "features", "captions")}
        write_parquet(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), paths["index"], INDEX_SCHEMA)
        write_parquet(pa.Table.from_pylist(frames, schema=FRAMES_SCHEMA), paths["frames"], FRAMES_SCHEMA)
        faces_run(str(paths["frames"]), self.faces_config, str(paths["faces"]), self.backend, progress=False)
        flags = read_parquet(paths["faces"], FACES_SCHEMA, columns=["clip_id", "clip_flag"]).to_pylist()
        for row in flags:
            if row["clip_flag"] == NO_FACE:
                by_id[row["clip_id"]].error = (
                    f"{by_id[row['clip_id']].source}: no face found in any sampled frame. The models need a visible "
                    "face: use a clip where it is large and frontal enough (about 80 px or more), or crop the "
                    "video to the face.")
        table, _ = build_features(str(paths["frames"]), str(paths["faces"]), str(paths["index"]))
        keep = [by_id[c].error is None for c in table.column("clip_id").to_pylist()]
        table = table.filter(pa.array(keep, pa.bool_()))
        if table.num_rows == 0:
            return
        write_parquet(table, paths["features"], FEATURES_SCHEMA)
        captions = self._captions(paths, table.column("clip_id").to_pylist(), by_id) if self.reads_captions else None
        self._classify(paths["features"], captions, by_id)

    def _captions(self, paths: dict, clip_ids: list[str], by_id: dict) -> Path:
        """Captions of the clips as the caption and refine stages make them (no review: the refined text)."""
        from stages.captions.stage import CaptionsConfig, run as captions_run
        from stages.refine.lexicon import load_lexicon
        from stages.refine.refine import refine

        section = dict(self.run.stages["captions"])
        prompt = section.pop("prompt")
        raw = captions_run(str(paths["faces"]), str(paths["frames"]), str(paths["index"]), prompt,
                           CaptionsConfig.from_dict(section), progress=self.progress)
        lexicon = load_lexicon(self.run.stages["refine"]["lexicons"])
        rows = []
        for row in raw.to_pylist():
            if row["clip_id"] not in clip_ids:
                continue
            text = refine(row["caption"], lexicon).text if row["status"] == "ok" else ""
            by_id[row["clip_id"]].caption = text
            rows.append({"clip_id": row["clip_id"], "caption": text, "caption_sha": "", "decision": "unreviewed",
                         "label_hint": row["label_hint"]})
        write_parquet(pa.Table.from_pylist(rows, schema=APPROVED_SCHEMA), paths["captions"], APPROVED_SCHEMA)
        return paths["captions"]

    def _classify(self, features: Path, captions: Path | None, by_id: dict) -> None:
        from stages.train.data import ClipDataset, make_loader
        from stages.train.trainer import predict

        config = self.run.config
        dataset = ClipDataset([str(features)], FOLD, SPLIT, self.data_config, train=False, seed=config.seed,
                              modalities=self.modalities, captions_path=str(captions) if captions else None)
        loader = make_loader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=False, seed=config.seed)
        amp = config.amp and self.device.type == "cuda"
        rows = predict(self.model, loader, self.device, amp, "model", self.run.class_names if self.zero_shot else None,
                       progress=self.progress)
        for clip_id, logits in zip(rows["clip_id"], rows["logits"]):
            by_id[clip_id].probabilities = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0).tolist()


def predict_sources(sources: Sequence[str], run: TrainedRun, chunk: int = 64, descriptors: str = DESCRIPTORS,
                    progress: bool = True) -> list[Clip]:
    """Every source's result, in the order given; chunks of ``chunk`` clips bound the memory of cached frames."""
    predictor = Predictor(run, descriptors, progress)
    clips = [Clip(source, clip_id) for source, clip_id in zip(sources, clip_ids(sources, run.dataset))]
    bar = tqdm(total=len(clips), desc="predict", unit="clip", file=sys.stderr, disable=not progress, mininterval=1)
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        for start in range(0, len(clips), chunk):
            part = clips[start:start + chunk]
            workdir = Path(tmp) / f"{start:06d}"
            workdir.mkdir()
            predictor.predict(part, workdir)
            bar.update(len(part))
    bar.close()
    return clips


def top_classes(probabilities: Sequence[float], class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]
