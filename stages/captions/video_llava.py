"""The paper's caption backend: Video-LLaVA-7B-hf (transformers) from a local folder, 8 frames per clip.

Nothing is ever downloaded: the folder must hold a full ``LanguageBind/Video-LLaVA-7B-hf`` checkpoint, fetched by the
user beforehand. ``label_hint`` decides whether the ground-truth label goes into the prompt ("paper", as FineCLIPER
does) or not ("none", the leakage-safe default; see DESIGN §6).
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from stages.captions.backend import ClipFrames, uniform_indices
from stages.common.errors import StageError
from stages.common.weights_files import check_safetensors, unreadable

CHECKPOINT = "LanguageBind/Video-LLaVA-7B-hf"
LABEL_HINTS = ("none", "paper")
DTYPES = ("auto", "bf16", "fp16", "fp32")
NUM_FRAMES = 8
EXPECTED_FILES = (
    "config.json; model weights (model.safetensors, or model.safetensors.index.json with every shard it lists, "
    "e.g. model-00001-of-00003.safetensors); tokenizer.json or tokenizer.model; tokenizer_config.json; "
    "processor_config.json, preprocessor_config.json or video_preprocessor_config.json"
)
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


def build_question(template: str, label_name: str | None, label_hint: str) -> str:
    """The question for one clip from a prompt template with a ``{label}`` slot.

    ``paper``: fill ``{label}`` with ``label_name``. ``none``: drop every line holding ``{label}`` or asking to use
    the human annotation (the paper's requirement 4), renumber the numbered requirements, and never use the label.
    """
    if label_hint == "paper":
        if "{label}" not in template:
            raise StageError("captions: label_hint 'paper' needs a prompt template with a {label} slot.")
        if not label_name:
            raise StageError("captions: label_hint 'paper' needs a label name for every clip.")
        return template.replace("{label}", label_name).strip()
    if label_hint != "none":
        raise StageError(f"captions: label_hint must be one of {LABEL_HINTS}, got {label_hint!r}.")
    kept, number = [], 0
    for line in template.splitlines():
        if "{label}" in line or re.search(r"human[- ]annotat", line, re.IGNORECASE):
            continue
        item = re.match(r"(\s*)\d+\.\s", line)
        if item:
            number += 1
            line = f"{item.group(1)}{number}. {line[item.end():]}"
        kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def build_prompt(question: str) -> str:
    """Video-LLaVA's single-turn chat format."""
    return f"USER: <video>\n{question} ASSISTANT:"


def check_model_dir(model_dir: str | Path) -> Path:
    """Raise :class:`StageError` unless ``model_dir`` looks like a complete local Video-LLaVA-hf checkpoint whose
    config and weights files are what they should be (not, say, HTML pages saved by a failed download)."""
    folder = Path(model_dir)
    published = f"Hugging Face {CHECKPOINT}"
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    index = folder / "model.safetensors.index.json"
    weights = [folder / "model.safetensors"]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as err:
            raise unreadable(index, "a safetensors index (JSON with a 'weight_map')", published) from err
        missing += [s for s in shards if not (folder / s).is_file()]
        weights = [folder / s for s in shards]
    elif not (folder / "model.safetensors").is_file():
        missing.append("model weights (model.safetensors or model.safetensors.index.json + shards)")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer.json or tokenizer.model")
    if not (folder / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not any((folder / f).is_file() for f in PROCESSOR_FILES):
        missing.append(" or ".join(PROCESSOR_FILES))
    if not folder.is_dir() or missing:
        what = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise StageError(
            f"captions: the Video-LLaVA model folder {folder} {what}. It must hold the {CHECKPOINT} checkpoint "
            f"({EXPECTED_FILES}). Download it beforehand (nothing is fetched at run time), e.g. "
            f"`huggingface-cli download {CHECKPOINT} --local-dir {folder}`."
        )
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise unreadable(folder / "config.json", "the model's transformers config (JSON)", published) from err
    for path in weights:
        check_safetensors(path, f"a safetensors file of the {CHECKPOINT} weights", published)
    return folder


def _device_and_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            dtype = "fp32"
    return device, {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


class VideoLlavaBackend:
    """Greedy, batched captions from Video-LLaVA; one ``describe`` call may hold any number of clips."""

    name = "video-llava"

    def __init__(
        self,
        model_dir: str | Path,
        prompt_template: str,
        label_hint: str = "none",
        dtype: str = "auto",
        load_in_4bit: bool = False,
        max_new_tokens: int = 120,
        batch_size: int = 4,
        device: str = "auto",
    ):
        build_question(prompt_template, "label", label_hint)  # validate the hint and template before loading 14 GB
        if dtype not in DTYPES:
            raise StageError(f"captions: dtype must be one of {DTYPES}, got {dtype!r}.")
        folder = check_model_dir(model_dir)
        self.model_id = folder.resolve().name
        self.prompt_template = prompt_template
        self.label_hint = label_hint
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

        from transformers import VideoLlavaForConditionalGeneration, VideoLlavaProcessor

        self.device, torch_dtype = _device_and_dtype(device, dtype)
        kwargs = {"local_files_only": True, "dtype": torch_dtype}
        if load_in_4bit:
            if importlib.util.find_spec("bitsandbytes") is None:
                raise StageError("captions: load_in_4bit needs the bitsandbytes package (pip install bitsandbytes).")
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
            )
            kwargs["device_map"] = {"": self.device}
        try:
            self.model = VideoLlavaForConditionalGeneration.from_pretrained(folder, **kwargs)
            self.processor = VideoLlavaProcessor.from_pretrained(folder, local_files_only=True)
        except OSError as err:
            raise StageError(f"captions: could not load Video-LLaVA from {folder}: {err}") from err
        if not load_in_4bit:
            self.model.to(self.device)
        self.model.eval()
        self.processor.tokenizer.padding_side = "left"

    def prompt(self, clip: ClipFrames) -> str:
        return build_prompt(build_question(self.prompt_template, clip.label_name, self.label_hint))

    def describe(self, clips: list[ClipFrames]) -> list[str]:
        captions: list[str] = []
        for start in range(0, len(clips), self.batch_size):
            captions += self._generate(clips[start : start + self.batch_size])
        return captions

    def _generate(self, clips: list[ClipFrames]) -> list[str]:
        import torch

        videos = []
        for clip in clips:
            if not clip.frames:
                raise StageError(f"captions: clip {clip.clip_id} has no frames.")
            videos.append(np.stack([clip.frames[i] for i in uniform_indices(len(clip.frames), NUM_FRAMES)]))
        inputs = self.processor(
            text=[self.prompt(clip) for clip in clips], videos=videos, padding=True, return_tensors="pt"
        ).to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]
