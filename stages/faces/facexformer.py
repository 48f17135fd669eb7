"""FaceXFormer (Narayan et al., 2024), re-implemented from SPEC §2.1 so that the published checkpoint loads strictly.

Swin-B features of the four stages -> per-scale linear projection to 256 channels, bilinear resize to 56x56,
concatenation (deepest stage first), 1x1 fusion conv -> a SAM-style two-way transformer decodes 18 task tokens
(landmarks, head pose, attributes, visibility, age, gender, race, 11 parsing-class tokens) against the fused map.

Differences from the official module, none of which changes a weight or an output: the stage outputs are taken by
running ``backbone[0]`` layer by layer (no forward hooks, so the module is stateless and thread safe), the unused
final norm/pool of the backbone is not run, and every head is returned at once (no ``tasks`` filtering).
Module and parameter names follow the official ones, because they are the checkpoint's key names.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import swin_b

from stages.common.errors import StageError
from stages.common.weights_files import load_torch_file

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_LANDMARKS = 68
NUM_PARSING_CLASSES = 11
DIM = 256
STAGE_LAYERS = (1, 3, 5, 7)  # indices in swin_b().features of the four stages' block sequences
STAGE_CHANNELS = (128, 256, 512, 1024)
# (output name, token / head name prefix, output size), in token order.
TASKS = (
    ("landmarks", "landmarks", 2 * NUM_LANDMARKS),
    ("headpose", "pose", 3),
    ("attributes", "attribute", 40),
    ("visibility", "visibility", 29),
    ("age", "age", 8),
    ("gender", "gender", 2),
    ("race", "race", 5),
)
PUBLISHED_AT = "Hugging Face repo kartiknarayan/facexformer, file ckpts/model.pt (about 1.1 GB)"
EXPECTED_FORMAT = (
    "a torch.save'd dict whose 'state_dict_backbone' entry holds the weights of the official FaceXFormer "
    "(torchvision Swin-B backbone, keys backbone.*, linear_c.*, linear_fuse.*, pe_layer.*, face_decoder.*)"
)


class MLP(nn.Module):
    """Linear layers with ReLU in between (none after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class ScaleProjection(nn.Module):
    """One stage's channels -> ``DIM`` (a Linear on NHWC tokens), returned NCHW."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Linear(channels, DIM)

    def forward(self, nhwc: torch.Tensor) -> torch.Tensor:
        return self.proj(nhwc).permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Attention(nn.Module):
    """Multi-head attention whose q/k/v live in ``dim // downsample`` channels."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q_proj(q)), self._split(self.k_proj(k)),
                                             self._split(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Token self-attention, tokens -> image, token MLP, image -> tokens; a LayerNorm after each."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, heads, downsample)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:  # the first block replaces the tokens by their self-attention (no residual)
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = DIM, heads: int = 8, mlp_dim: int = 2048, downsample: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, downsample, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        """image, image_pe (B, C, H, W); tokens (B, N, C) -> (tokens (B, N, C), image tokens (B, HW, C))."""
        keys, key_pe = image.flatten(2).transpose(1, 2), image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys))
        return queries, keys


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of the normalised (x, y) pixel-centre grid: sin and cos of 2*pi*(2p - 1) @ G."""

    def __init__(self, num_feats: int = DIM // 2):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(2 * num_feats, H, W)."""
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(height, device=matrix.device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=matrix.device, dtype=torch.float32) + 0.5) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
        angles = 2 * math.pi * ((2 * grid - 1) @ matrix)
        return torch.cat([angles.sin(), angles.cos()], dim=-1).permute(2, 0, 1)


class FaceDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = TwoWayTransformer()
        for _, prefix, _ in TASKS:
            setattr(self, f"{prefix}_token", nn.Embedding(1, DIM))
        self.mask_tokens = nn.Embedding(NUM_PARSING_CLASSES, DIM)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(DIM, DIM // 4, kernel_size=2, stride=2),
            LayerNorm2d(DIM // 4),
            nn.GELU(),
            nn.ConvTranspose2d(DIM // 4, DIM // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetwork_mlps = MLP(DIM, DIM, DIM // 8)  # one MLP shared by the 11 mask tokens
        for _, prefix, size in TASKS:
            setattr(self, f"{prefix}_prediction_head", MLP(DIM, DIM, size))

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, h, w = image.shape
        weights = [getattr(self, f"{prefix}_token").weight for _, prefix, _ in TASKS] + [self.mask_tokens.weight]
        tokens = torch.cat(weights).unsqueeze(0).expand(b, -1, -1)
        tokens, image_tokens = self.transformer(image, image_pe.unsqueeze(0).expand(b, -1, -1, -1), tokens)
        out = {
            name: getattr(self, f"{prefix}_prediction_head")(tokens[:, i])
            for i, (name, prefix, _) in enumerate(TASKS)
        }
        out["landmarks"] = out["landmarks"].reshape(b, NUM_LANDMARKS, 2)
        upscaled = self.output_upscaling(image_tokens.transpose(1, 2).reshape(b, c, h, w))  # (B, 32, 4h, 4w)
        hyper = self.output_hypernetwork_mlps(tokens[:, len(TASKS):])  # (B, 11, 32)
        out["parsing_logits"] = (hyper @ upscaled.flatten(2)).reshape(b, NUM_PARSING_CLASSES, *upscaled.shape[2:])
        return out


class FaceXFormer(nn.Module):
    """``forward(images)``: (B, 3, 224, 224) ImageNet-normalised RGB -> dict of every head's output:
    ``landmarks`` (B, 68, 2) (x, y) normalised to [-1, 1] over the input (not clamped), ``parsing_logits``
    (B, 11, 224, 224), ``headpose`` (B, 3) pitch/yaw/roll in radians, ``attributes`` (B, 40), ``visibility``
    (B, 29), ``age`` (B, 8), ``gender`` (B, 2), ``race`` (B, 5) logits."""

    def __init__(self):
        super().__init__()
        swin = swin_b(weights=None)  # the checkpoint carries the fine-tuned backbone; nothing is downloaded
        self.backbone = nn.Sequential(*list(swin.children())[:-1])
        self.pe_layer = PositionEmbeddingRandom()
        self.face_decoder = FaceDecoder()
        self.linear_c = nn.ModuleList(ScaleProjection(c) for c in STAGE_CHANNELS)
        self.linear_fuse = nn.Conv2d(DIM * len(STAGE_CHANNELS), DIM, kernel_size=1, bias=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        stages, x = [], images
        for index, layer in enumerate(self.backbone[0]):
            x = layer(x)
            if index in STAGE_LAYERS:
                stages.append(x)  # NHWC
        size = stages[0].shape[1:3]
        scales = [
            F.interpolate(proj(nhwc), size=size, mode="bilinear", align_corners=False)
            for proj, nhwc in zip(self.linear_c, stages)
        ]
        fused = self.linear_fuse(torch.cat(scales[::-1], dim=1))
        return self.face_decoder(fused, self.pe_layer(*size))


def key_table(model: nn.Module) -> list[str]:
    """``"key shape"`` per state_dict entry (shape as ``AxB``), in order: the reference checkpoint layout."""
    return [f"{key} {'x'.join(map(str, value.shape))}" for key, value in model.state_dict().items()]


def load_state(model: FaceXFormer, state: dict, source: str) -> None:
    """Load ``state`` strictly; a StageError names the first missing / unexpected / mis-shaped keys."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(getattr(state[key], 'shape', ()))} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and tuple(getattr(state[key], "shape", ())) != tuple(value.shape)
    ]
    problems = [
        f"{len(keys)} {what}: {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if keys
    ]
    if problems:
        raise StageError(
            f"{source}: not a checkpoint of this FaceXFormer architecture: {'; '.join(problems)}. "
            f"Expected {EXPECTED_FORMAT}, as published at the {PUBLISHED_AT}."
        )
    model.load_state_dict(state, strict=True)


def checkpoint_file(path: str | Path) -> Path:
    """``path`` if it is a file; otherwise a StageError saying what to put there and where to get it."""
    path = Path(path)
    if not path.is_file():
        raise StageError(
            f"{path}: FaceXFormer checkpoint not found. Download it from the {PUBLISHED_AT} and put it at this "
            f"path (or set faces.checkpoint). Expected {EXPECTED_FORMAT}."
        )
    return path


def load_official_checkpoint(model: FaceXFormer, path: str | Path) -> FaceXFormer:
    """Load the official checkpoint file (its ``state_dict_backbone`` entry) into ``model``; returns ``model``."""
    path = checkpoint_file(path)
    # The official file is a training checkpoint: besides tensors it may hold its argparse options.
    checkpoint = load_torch_file(path, EXPECTED_FORMAT, PUBLISHED_AT, allowed=(argparse.Namespace,))
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict_backbone"), dict):
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise StageError(
            f"{path}: no 'state_dict_backbone' entry (found {found}). Expected {EXPECTED_FORMAT}, "
            f"as published at the {PUBLISHED_AT}."
        )
    load_state(model, checkpoint["state_dict_backbone"], str(path))
    return model
