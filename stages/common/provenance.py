"""What Snakemake records for a rule, so that exactly the meaningful edits rerun it.

- :func:`result_settings`: the part of a stage's config section that can change its results. Performance knobs
  (``RUN_ONLY_SETTINGS``) and the settings of backends, towers and models a job does not use are left out; the
  stage still receives its whole section on the command line.
- :func:`stage_record`: those settings (and the content of the prompt and lexicon files) as a stage records them
  in its outputs, carried forward to the trained run, which predict checks.
- :func:`content_fingerprint`: a small input file by what the stage reads from it: YAML by its parsed content
  (comments, key order and formatting do not count), other files by their bytes.
- :class:`Sha256Cache`: sha256 of weights files and folders, cached by path, size and modification time, so a
  dry run stats multi-GB files instead of reading them, and a replaced file (new content) is hashed once.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.common.errors import StageError
from stages.common.io import write_text

# Settings that change how fast a stage runs, never what it writes (documented in README "Reruns").
RUN_ONLY_SETTINGS = {
    "faces": ("batch_size",),
    "captions": ("video_llava.batch_size",),
    "train": ("num_workers", "fineclip.checkpoint_blocks"),
}
# Settings that name an input file or folder: the rule tracks the file's content instead of its path.
INPUT_PATH_SETTINGS = {
    "faces": ("checkpoint",),
    "captions": ("prompt", "video_llava.model_dir"),
    "refine": ("lexicons",),
}
FACEXFORMER_ONLY = ("device", "detector")
DLIB_DETECTION = ("upsample", "retry_below", "pad")


def canonical(obj) -> str:
    """Sorted-key JSON: reordering keys in a YAML file must not rerun anything."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _drop(section: dict, dotted: str) -> None:
    *parents, key = dotted.split(".")
    for parent in parents:
        section = section.get(parent)
        if not isinstance(section, dict):
            return
    section.pop(key, None)


def towers_used(model: str) -> tuple[str, ...]:
    """The CLIP towers a model builds (stages/train/build.py): text models add Long-CLIP."""
    if model == "dfer-clip":
        return ("dfer_clip",)
    return ("clip", "long_clip") if "dagger" in model else ("clip",)


def result_settings(stage: str, section: dict) -> dict:
    """``section`` without the settings that cannot change ``stage``'s results for this very job.

    For ``train`` the section must name its model (the rule's ``{model}``): only that model's towers and
    model settings are kept.
    """
    kept = copy.deepcopy(section)
    for dotted in RUN_ONLY_SETTINGS.get(stage, ()) + INPUT_PATH_SETTINGS.get(stage, ()):
        _drop(kept, dotted)
    if stage == "faces":
        if kept.get("backend") == "dlib":
            for key in FACEXFORMER_ONLY:
                kept.pop(key, None)
        elif kept.get("detector") != "dlib":
            for key in DLIB_DETECTION:
                kept.pop(key, None)
    elif stage == "captions" and kept.get("backend") != "video-llava":
        kept.pop("video_llava", None)
    elif stage == "frames" and not kept.get("face_crop", {}).get("enabled", True):
        kept["face_crop"] = {"enabled": False}
    elif stage == "train":
        model = kept["model"]
        kept.pop("dfer_clip" if model != "dfer-clip" else "fineclip", None)
        towers = kept.get("towers", {})
        kept["towers"] = {name: {k: v for k, v in towers[name].items() if k != "weights"}
                          for name in towers_used(model) if name in towers}
    return kept


def stage_record(stage: str, section: dict, files: dict[str, str] | None = None) -> dict:
    """What ``stage`` writes into its outputs' ``made_with``: ``{stage: result settings}``, plus, under the names in
    ``files``, the content fingerprint of each input file (or of each ``*.txt`` in a folder, as the lexicons) that its
    section names by path. A trained run records these, and predict checks the config files against them."""
    record = result_settings(stage, section)
    for name, path in (files or {}).items():
        path = Path(path)
        record[name] = ({p.name: content_fingerprint(p) for p in sorted(path.glob("*.txt"))} if path.is_dir()
                        else content_fingerprint(path))
    return {stage: record}


def content_fingerprint(path: str | Path) -> str:
    """sha256 of what a stage reads from a small input file: parsed YAML as canonical JSON, else the bytes.

    A missing file gives "missing" (Snakemake then reports the missing input itself).
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    data = path.read_bytes()
    if path.suffix in (".yaml", ".yml"):
        try:
            data = canonical(yaml.safe_load(data)).encode()
        except yaml.YAMLError as err:
            raise StageError(f"{path}: not valid YAML ({err}). Fix the file and run again.") from err
    return hashlib.sha256(data).hexdigest()[:16]


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Sha256Cache:
    """sha256 per file, remembered in a JSON file by (size, mtime_ns): a file is read again only once replaced.

    The JSON file maps absolute paths to ``[size, mtime_ns, sha256]``; it is rewritten atomically when an entry
    is added, so concurrent processes at worst hash a file twice.
    """

    store: Path

    def _entries(self) -> dict:
        try:
            return json.loads(self.store.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def file_sha256(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        entries = self._entries()
        size, mtime, sha = entries.get(key, (None, None, None))
        if (size, mtime) == (stat.st_size, stat.st_mtime_ns):
            return sha
        sha = sha256_of_file(path)
        write_text(self.store, json.dumps({**self._entries(), key: [stat.st_size, stat.st_mtime_ns, sha]}, indent=0))
        return sha

    def fingerprint(self, path: str | Path) -> str:
        """sha256 of a weights file, or of a folder's files (relative path + sha256 each); "missing" if absent."""
        path = Path(path)
        if path.is_file():
            return self.file_sha256(path)[:16]
        if not path.is_dir():
            return "missing"
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{self.file_sha256(file)}\n".encode())
        return digest.hexdigest()[:16]


def weights_cache(workdir: str | Path = ".") -> Sha256Cache:
    return Sha256Cache(Path(workdir) / "results" / ".cache" / "weights_sha256.json")


def changed_settings(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two parsed settings, as ``key: old -> new`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                lines.append(f"{name}: {json.dumps(old[key])} -> (removed)")
            elif key not in old:
                lines.append(f"{name}: (absent) -> {json.dumps(new[key])}")
            else:
                lines += changed_settings(old[key], new[key], name)
        return lines
    return [] if old == new else [f"{prefix or '(value)'}: {json.dumps(old)} -> {json.dumps(new)}"]

