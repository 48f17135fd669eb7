"""Video-LLaVA caption backend: frame sampling, the paper's prompt with and without the label, folder checks, and
batched greedy generation through the real loading path on a tiny random checkpoint built offline."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from stages.captions.backend import ClipFrames, uniform_indices
from stages.captions.video_llava import CHECKPOINT, VideoLlavaBackend, build_prompt, build_question, check_model_dir
from stages.common.errors import StageError
from tests.unit.tiny_video_llava import build_tiny_video_llava

PROMPT_FILE = Path(__file__).resolve().parents[2] / "config" / "prompts" / "fineclip_paper.txt"
TEMPLATE = PROMPT_FILE.read_text(encoding="utf-8")
LABEL_LINE = "For the given video, human-annotation: {label}"


# --- frame sampling -------------------------------------------------------------------------------------------------

def test_uniform_indices_match_docs_formula_and_always_give_eight():
    for n in range(1, 400):
        idx = uniform_indices(n)
        assert len(idx) == 8 and idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)
        np.testing.assert_array_equal(idx, np.arange(0, n, n / 8).astype(int))
    np.testing.assert_array_equal(uniform_indices(3), [0, 0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(uniform_indices(16), [0, 2, 4, 6, 8, 10, 12, 14])
    assert all(len(uniform_indices(n, c)) == c for c in (3, 7, 12) for n in range(1, 200))
    with pytest.raises(ValueError):
        uniform_indices(0)


# --- prompt ---------------------------------------------------------------------------------------------------------

def test_prompt_file_is_the_papers_instruction_block():
    lines = TEMPLATE.strip().splitlines()
    assert lines[0] == "Instruction:" and lines[-1] == LABEL_LINE
    assert TEMPLATE.count("{label}") == 1
    assert "You are a facial expression analyst." in TEMPLATE
    for i, req in enumerate(["Format: [Detailed feature and action analysis].", "Focus on detailed progression",
                             "Role: analyze nuanced facial and action cues.", "Use the human-annotated video.",
                             "Don't include emotional words.", "Max 100 tokens."], start=1):
        assert f"{i}. {req}" in TEMPLATE


def test_build_question_paper_fills_the_label():
    q = build_question(TEMPLATE, "Happy", "paper")
    assert q.endswith("For the given video, human-annotation: Happy")
    assert "{label}" not in q and "4. Use the human-annotated video." in q


def test_build_question_none_never_mentions_a_label():
    q = build_question(TEMPLATE, "Happy", "none")
    assert "Happy" not in q and "{label}" not in q and "human-annot" not in q
    assert q.endswith("5. Max 100 tokens.") and "4. Don't include emotional words." in q
    assert "Instruction:" in q and "Example:" in q
    # the question is the same for every clip, whatever its label
    assert build_question(TEMPLATE, "Sad", "none") == build_question(TEMPLATE, None, "none") == q


@pytest.mark.parametrize(
    "template,label,hint",
    [(TEMPLATE, None, "paper"), ("Describe the face.", "Happy", "paper"), (TEMPLATE, "Happy", "oracle")],
)
def test_build_question_rejects_bad_input(template, label, hint):
    with pytest.raises(StageError):
        build_question(template, label, hint)


def test_build_prompt_uses_video_llava_chat_format():
    assert build_prompt("Q?") == "USER: <video>\nQ? ASSISTANT:"


# --- model folder checks --------------------------------------------------------------------------------------------

def test_missing_folder_lists_expected_files(tmp_path):
    folder = tmp_path / "Video-LLaVA-7B-hf"
    with pytest.raises(StageError) as err:
        VideoLlavaBackend(folder, TEMPLATE)
    msg = str(err.value)
    assert str(folder) in msg and "does not exist" in msg and CHECKPOINT in msg
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer.model",
                 "tokenizer_config.json", "preprocessor_config.json"):
        assert name in msg


def test_folder_without_weights_is_rejected(tmp_path):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(StageError, match=r"lacks model weights"):
        check_model_dir(tmp_path)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(StageError, match=r"lacks model-00002-of-00002\.safetensors"):
        check_model_dir(tmp_path)


# --- generation on a tiny random checkpoint -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_video_llava(tmp_path_factory.mktemp("tiny-video-llava"))


def make_clips(seed=0):
    rng = np.random.default_rng(seed)
    return [
        ClipFrames("c1", [rng.integers(0, 256, (24, 20, 3), dtype=np.uint8) for _ in range(5)], "Happy"),
        ClipFrames("c2", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(16)], "Surprise"),
        ClipFrames("c3", [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(9)], "Sad"),
    ]


@pytest.mark.parametrize("hint", ["none", "paper"])
def test_tiny_checkpoint_generates_one_deterministic_caption_per_clip(tiny_dir, hint):
    backend = VideoLlavaBackend(tiny_dir, TEMPLATE, label_hint=hint, max_new_tokens=4, batch_size=2, device="cpu")
    assert backend.name == "video-llava" and backend.model_id == tiny_dir.name
    assert backend.processor.tokenizer.padding_side == "left"

    clips = make_clips()
    first = backend.describe(clips)  # batches of 2 + 1
    assert len(first) == len(clips) and all(isinstance(text, str) for text in first)
    assert backend.describe(clips) == first  # greedy decoding
    backend.batch_size = 1
    assert backend.describe(clips) == first  # left padding does not change a clip's caption

    for clip in clips:
        prompt = backend.prompt(clip)
        assert prompt.startswith("USER: <video>\n") and prompt.endswith(" ASSISTANT:")
        assert (clip.label_name in prompt) == (hint == "paper")


def test_processor_expands_video_placeholder_to_tiny_token_count(tiny_dir):
    backend = VideoLlavaBackend(tiny_dir, TEMPLATE, device="cpu")
    clips = make_clips()[:2]
    inputs = backend.processor(
        text=[backend.prompt(c) for c in clips],
        videos=[np.stack([c.frames[i] for i in uniform_indices(len(c.frames))]) for c in clips],
        padding=True, return_tensors="pt",
    )
    assert tuple(inputs["pixel_values_videos"].shape) == (2, 8, 3, 16, 16)
    video_id = backend.model.config.video_token_index
    assert (inputs["input_ids"] == video_id).sum(dim=1).tolist() == [8 * (2 * 2 + 1)] * 2


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_4bit_without_bitsandbytes_is_a_clear_error(tiny_dir):
    with pytest.raises(StageError, match="bitsandbytes"):
        VideoLlavaBackend(tiny_dir, TEMPLATE, load_in_4bit=True, device="cpu")
