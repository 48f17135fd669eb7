"""Read downloaded weights files without running code from them, and say what a wrong file is.

``torch.load`` runs only with ``weights_only=True``: a pickle that names other Python objects is refused, never
loaded "because the source is trusted". A file that is not what it should be (random bytes, an HTML error page saved
by a failed download, a video renamed ``.pt``, a Git LFS pointer, a truncated archive) gives a :class:`StageError`
naming the file, what it looks like, the expected format and where that file is published.
"""
from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

from stages.common.errors import StageError

SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library refuses larger headers too

# What each kind of weights is and where it is published, for messages printed before any run (no torch import).
WEIGHTS_FORMATS = {
    "clip": ("OpenAI CLIP checkpoint of the configured architecture (TorchScript archive as released, or a state dict)",
             "the openai/CLIP release: `{arch}.pt` (download URLs in clip/clip.py of github.com/openai/CLIP)"),
    "long_clip": ("Long-CLIP state dict (248 text positions)",
                  "Hugging Face BeichenZhang/LongCLIP-B, file longclip-B.pt"),
    "facexformer": ("torch checkpoint whose 'state_dict_backbone' entry holds FaceXFormer's weights",
                    "Hugging Face kartiknarayan/facexformer, file ckpts/model.pt (about 1.1 GB)"),
    "video-llava": ("folder in transformers format (config.json, tokenizer files, safetensors shards)",
                    "Hugging Face LanguageBind/Video-LLaVA-7B-hf (the whole repository)"),
}


def describe_content(path: Path) -> str:
    """What the first bytes of ``path`` look like, in words (for messages about files that do not load)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    start = head.lstrip().lower()
    if not head:
        return "an empty file"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (fetch it with `git lfs pull` or download the file)"
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in start:
        return "an HTML page (a download that saved an error or login page instead of the file?)"
    if head[4:8] == b"ftyp":
        return "an MP4/QuickTime video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "a Matroska/WebM video"
    if head.startswith(b"RIFF"):
        return "a RIFF file (AVI video or WAV audio)"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return "an incomplete zip archive: the file is probably truncated or corrupt"
        return "a zip archive that is not a torch checkpoint (or a damaged one)"
    if head.startswith(b"\x80") and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle that does not read as a torch checkpoint (truncated or corrupt?)"
    if start.startswith((b"{", b"[")):
        return "JSON or other text"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data (not a torch checkpoint)"
    return f"a text file beginning {text[:60].strip()!r}"


def unreadable(path: Path, expected: str, published: str, content: str | None = None) -> StageError:
    """The error for a weights file that is not ``expected``: what it is instead, and where the real one is."""
    content = content or describe_content(path)
    return StageError(
        f"{path}: not a readable weights file: it is {content} ({path.stat().st_size:,} bytes). Expected "
        f"{expected}, as published at {published}. Download it again and put it at this path (nothing is "
        f"downloaded at run time)."
    )


def load_torch_file(path: str | Path, expected: str, published: str, allowed: tuple[type, ...] = ()) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; ``allowed``: harmless classes besides tensors that the
    published file is known to hold. Anything unreadable, or holding other objects, is a :class:`StageError`."""
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        others = foreign_objects(path)
        if others:
            raise StageError(
                f"{path}: holds Python objects besides tensors ({', '.join(others)}); they are not loaded, since "
                f"unpickling them can run any code. Expected {expected}, as published at {published}: use that "
                f"file, or save only its tensors (a state dict) with torch.save."
            ) from None
        raise unreadable(path, expected, published) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise unreadable(path, expected, published) from err


def foreign_objects(path: Path) -> list[str]:
    """Python classes/functions a torch zip checkpoint names besides tensors, sorted (torch returns them in set
    order, which changes from run to run); [] when it is not one."""
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError, EOFError):
        return []


def check_safetensors(path: Path, expected: str, published: str) -> None:
    """Raise :class:`StageError` unless ``path`` starts with a safetensors header (8-byte length + JSON)."""
    with path.open("rb") as handle:
        size_bytes = handle.read(8)
        length = struct.unpack("<Q", size_bytes)[0] if len(size_bytes) == 8 else 0
        header = handle.read(length) if 1 < length <= SAFETENSORS_HEADER_LIMIT else b""
    try:
        if isinstance(json.loads(header), dict):
            return
    except (ValueError, UnicodeDecodeError):
        pass
    raise unreadable(path, expected, published)
