"""Build open_clip CLIP towers from config and load local weight files (OpenAI CLIP, open_clip, Long-CLIP).

Nothing is downloaded: weights come from a local file named in the config. Random initialisation happens only
when the config says ``random_init: true``, and every output of the run then records it.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from open_clip.model import CLIP

from stages.common.errors import StageError
from stages.common.weights_files import WEIGHTS_FORMATS, load_torch_file, unreadable

LONG_CLIP_KEEP = 20  # positions Long-CLIP copies unchanged from CLIP (SPEC §3.1)
LONG_CLIP_CONTEXT = 4 * 77 - 3 * LONG_CLIP_KEEP  # 248
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

WHERE_PUBLISHED = {
    "clip": "OpenAI CLIP ViT-B/16 (or ViT-B/32) weights, e.g. the `ViT-B-16.pt` file of the openai/CLIP release "
            "(or an open_clip state dict of the same architecture)",
    "long_clip": "Long-CLIP-B `longclip-B.pt` from the BeichenZhang/LongCLIP-B release "
                 "(or a 77-position CLIP file, stretched to 248 positions as Long-CLIP does)",
}


@dataclass(frozen=True)
class TowerConfig:
    """Which CLIP architecture to build and where its weights are.

    ``arch`` names an open_clip config (``ViT-B-16``, ``ViT-B-32``); ``arch_config`` gives one inline instead
    (tiny towers for the demo and tests). ``context_length`` 248 makes a Long-CLIP text tower.
    """

    arch: str = "ViT-B-16"
    arch_config: dict | None = None
    weights: str | None = None
    random_init: bool = False
    quick_gelu: bool = True  # OpenAI weights were trained with QuickGELU
    context_length: int = 77
    published: str = "clip"  # key of WHERE_PUBLISHED, for messages

    @classmethod
    def from_dict(cls, raw: dict, published: str = "clip") -> TowerConfig:
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise StageError(f"tower config: unknown keys {unknown}; known keys are {sorted(cls.__dataclass_fields__)}.")
        return cls(**{"published": published, **raw})


def model_config(cfg: TowerConfig) -> dict:
    """open_clip's model config dict (embed_dim, vision_cfg, text_cfg) with our context length."""
    if cfg.arch_config is not None:
        config = {key: dict(value) if isinstance(value, dict) else value for key, value in cfg.arch_config.items()}
    else:
        from open_clip import get_model_config

        config = get_model_config(cfg.arch)
        if config is None:
            raise StageError(f"unknown CLIP architecture {cfg.arch!r}; use an open_clip name such as ViT-B-16 or "
                             "give arch_config inline.")
        config = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    config["text_cfg"]["context_length"] = cfg.context_length
    return config


def stretch_positional_embedding(table: torch.Tensor, keep: int = LONG_CLIP_KEEP) -> torch.Tensor:
    """Long-CLIP's 77 -> 248 stretch: rows < keep copied, the rest 4x interpolated, 4 rows extrapolated."""
    n, width = table.shape
    head = table[:keep]
    rest = table[keep:]
    weights = torch.arange(4, dtype=table.dtype, device=table.device) / 4  # k/4 for k = 0..3
    inner = (1 - weights)[None, :, None] * rest[:-1, None, :] + weights[None, :, None] * rest[1:, None, :]
    tail = rest[-1] + weights[:, None] * (rest[-1] - rest[-2])
    return torch.cat([head, inner.reshape(-1, width), tail], dim=0)


def read_state_dict(path: Path, published: str = "clip", arch: str = "ViT-B-16") -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: a TorchScript archive (OpenAI release) or a state dict (read with
    ``weights_only=True``); anything else is a StageError naming the expected format and where it is published."""
    if not path.exists():
        raise FileNotFoundError(path)
    what, where = WEIGHTS_FORMATS[published]
    where = where.format(arch=arch)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("constants.pkl") for name in archive.namelist())
        if scripted:
            try:
                return {k: v.float() for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
            except RuntimeError as err:
                raise unreadable(path, what, where) from err
    loaded = load_torch_file(path, what, where)
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict):
        raise StageError(f"{path}: expected a state dict of tensors, found {type(loaded).__name__}.")
    return {k.removeprefix("module."): v.float() for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def adapt_positional_embedding(state: dict[str, torch.Tensor], context_length: int) -> dict[str, torch.Tensor]:
    """Bring the text position table of a weights file to ``context_length`` (Long-CLIP merge or stretch)."""
    state = dict(state)
    if "positional_embedding_res" in state:  # Long-CLIP: rows < 20 from the frozen copy, the rest from _res
        table = state.pop("positional_embedding_res").clone()
        table[:LONG_CLIP_KEEP] = state["positional_embedding"][:LONG_CLIP_KEEP]
        state["positional_embedding"] = table
    table = state.get("positional_embedding")
    if table is not None and table.shape[0] == 77 and context_length == LONG_CLIP_CONTEXT:
        state["positional_embedding"] = stretch_positional_embedding(table)
    return state


def describe_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor], limit: int = 8) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {title}: " + ", ".join(items[:limit]) + more)
    return "; ".join(parts)


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class Tower:
    model: CLIP
    random_init: bool
    fingerprint: str  # sha256 prefix of the weights file, or "random-init:<seed>"


def build_clip(cfg: TowerConfig, seed: int = 0) -> Tower:
    """A CLIP model of the configured architecture with the configured weights (or random, if asked)."""
    if not cfg.random_init and not cfg.weights:
        raise StageError(f"no weights file configured for {cfg.arch}. Set `weights:` to a local copy of "
                         f"{WHERE_PUBLISHED[cfg.published]}, or `random_init: true` for a smoke test.")
    torch.manual_seed(seed)
    model = CLIP(**model_config(cfg), quick_gelu=cfg.quick_gelu)
    if cfg.random_init:
        return Tower(model.eval(), True, f"random-init:{seed}")
    path = Path(cfg.weights)
    try:
        state = read_state_dict(path, cfg.published, cfg.arch)
    except FileNotFoundError as err:
        raise StageError(f"{path}: weights file not found. Expected {WHERE_PUBLISHED[cfg.published]}; put it there "
                         f"or change `weights:` in the config.") from err
    state = adapt_positional_embedding(state, cfg.context_length)
    for key in OPENAI_EXTRA_KEYS:
        state.pop(key, None)
    # Causal masks are rebuilt from the context length; TorchScript archives may carry them as tensors.
    state = {key: value for key, value in state.items() if key.rsplit(".", 1)[-1] != "attn_mask"}
    problem = describe_mismatch(model, state)
    if problem:
        raise StageError(f"{path}: does not fit architecture {cfg.arch} (context {cfg.context_length}): {problem}. "
                         f"Expected {WHERE_PUBLISHED[cfg.published]}.")
    model.load_state_dict(state, strict=True)
    return Tower(model.eval(), False, file_fingerprint(path))
