"""Frozen CLIP towers with adapter sets: the AIM video/image encoder and the adapted text encoders.

One frozen tower can carry several named adapter sets that share its weights: the vision tower has a
``video`` set (frames) and a ``face`` set (parsing and landmark images, shared as the paper says), the CLIP
text tower a ``positive`` and a ``negative`` set (PN descriptors), the Long-CLIP text tower a ``fine`` set.
"""
from __future__ import annotations

from typing import Mapping

import torch
from open_clip.transformer import ResidualAttentionBlock, text_global_pool
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import stochastic_depth

from stages.train.models.adapters import BottleneckAdapter


def _attention(block: ResidualAttentionBlock, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The block's frozen self-attention on batch-first tokens."""
    if not block.attn.batch_first:
        return block.attention(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
    return block.attention(x, attn_mask=attn_mask)


def drop_path_schedule(rate: float, layers: int) -> tuple[float, ...]:
    """AIM's per-block drop-path rates: linear from 0 (first block) to ``rate`` (last block)."""
    return tuple(torch.linspace(0.0, rate, layers).tolist())


class AimBlockAdapters(nn.Module):
    """AIM's adapters for one block: spatial (after attention, with skip), MLP-parallel, optional temporal."""

    def __init__(self, width: int, ratio: float, temporal: bool):
        super().__init__()
        self.spatial = BottleneckAdapter(width, ratio, skip=True)
        self.mlp = BottleneckAdapter(width, ratio, skip=False)
        self.temporal = BottleneckAdapter(width, ratio, skip=False) if temporal else None


class AdaptedVisionTower(nn.Module):
    """CLIP's ViT with AIM-style adapters (SPEC §4.2): images or clips -> one embedding per clip.

    Per block: ``x += drop(T(attn(ln_1(x))))`` over time (reusing the frozen attention), ``x += S(attn(ln_1(x)))``,
    ``x += mlp(ln_2(x)) + drop(s * M(ln_2(x)))``. Frame embeddings (CLS after ln_post and proj) are averaged over time.
    ``drop`` is AIM's stochastic depth, active in training only, its rate rising linearly from 0 in the first block
    to ``drop_path_rate`` in the last.
    """

    def __init__(self, visual: nn.Module, adapter_sets: dict[str, bool], num_frames: int, ratio: float = 0.25,
                 mlp_scale: float = 0.5, drop_path_rate: float = 0.0, checkpoint_blocks: bool = False):
        super().__init__()
        self.visual = visual
        self.checkpoint_blocks = checkpoint_blocks  # recompute each block in the backward pass instead of storing it
        width = visual.conv1.out_channels
        layers = len(visual.transformer.resblocks)
        self.mlp_scale = mlp_scale
        self.drop_path_rates = drop_path_schedule(drop_path_rate, layers)
        self.adapters = nn.ModuleDict({
            name: nn.ModuleList(AimBlockAdapters(width, ratio, temporal) for _ in range(layers))
            for name, temporal in adapter_sets.items()
        })
        # Added after the spatial position embedding and before ln_pre (AIM, SPEC §4.2); zero-init so the
        # tower starts as frozen CLIP.
        self.temporal_embedding = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(1, num_frames, width)) for name, temporal in adapter_sets.items() if temporal
        })

    def forward(self, clips: torch.Tensor, adapter_set: str | None) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, embed_dim); ``adapter_set=None`` runs the frozen tower alone."""
        batch, frames = clips.shape[:2]
        x = self._patch_tokens(clips.flatten(0, 1))  # (B*T, L, D): patches, CLS and spatial position
        if adapter_set in self.temporal_embedding:
            tokens = x.shape[1]
            x = x.view(batch, frames, tokens, -1) + self.temporal_embedding[adapter_set][:, :frames, None, :]
            x = x.view(batch * frames, tokens, -1)
        x = self.visual.ln_pre(self.visual.patch_dropout(x))
        adapters = self.adapters[adapter_set] if adapter_set is not None else [None] * len(self.visual.transformer.resblocks)
        recompute = self.checkpoint_blocks and torch.is_grad_enabled() and adapter_set is not None
        for block, block_adapters, rate in zip(self.visual.transformer.resblocks, adapters, self.drop_path_rates):
            if recompute:  # the RNG state is replayed, so drop-path draws the same in the recomputation
                x = checkpoint(self._block, block, block_adapters, x, batch, frames, rate, use_reentrant=False)
            else:
                x = self._block(block, block_adapters, x, batch, frames, rate)
        pooled, _ = self.visual._pool(x)
        if self.visual.proj is not None:
            pooled = pooled @ self.visual.proj
        return pooled.view(batch, frames, -1).mean(dim=1)

    def _patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """open_clip's ``VisionTransformer._embeds`` up to, not including, patch dropout and ``ln_pre``."""
        visual = self.visual
        x = visual.conv1(images).flatten(2).transpose(1, 2)  # (N, grid**2, D)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)

    def _block(self, block, adapters: AimBlockAdapters | None, x: torch.Tensor, batch: int, frames: int,
               drop_rate: float = 0.0) -> torch.Tensor:
        if adapters is None:
            return block(x)
        if adapters.temporal is not None and frames > 1:
            tokens, width = x.shape[1:]
            xt = x.view(batch, frames, tokens, width).transpose(1, 2).reshape(batch * tokens, frames, width)
            xt = adapters.temporal(_attention(block, block.ln_1(xt)))
            xt = xt.view(batch, tokens, frames, width).transpose(1, 2).reshape(batch * frames, tokens, width)
            x = x + self._drop_path(xt, drop_rate)
        x = x + block.ls_1(adapters.spatial(_attention(block, block.ln_1(x))))
        normed = block.ln_2(x)
        return x + block.ls_2(block.mlp(normed)) + self._drop_path(self.mlp_scale * adapters.mlp(normed), drop_rate)

    def _drop_path(self, branch: torch.Tensor, rate: float) -> torch.Tensor:
        """AIM's DropPath as it acts in AIM's code: AIM's tokens are laid out (L, B*T, D) when timm's DropPath draws
        one keep/drop per leading index, so each token position's branch is dropped for the whole batch at once."""
        return stochastic_depth(branch.transpose(0, 1), rate, "row", self.training).transpose(0, 1)


class AdaptedTextTower(nn.Module):
    """CLIP's text transformer with adapter sets applied to each layer's input (FineCLIPER Eq. 3).

    Pooled at the end-of-text token (the highest token id), then projected (Eq. 4).
    """

    def __init__(self, clip: nn.Module, adapter_sets: tuple[str, ...], ratio: float = 0.25):
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.context_length = clip.context_length
        width = self.transformer.width
        self.adapters = nn.ModuleDict({
            name: nn.ModuleList(BottleneckAdapter(width, ratio, skip=True) for _ in self.transformer.resblocks)
            for name in adapter_sets
        })

    def forward(self, tokens: torch.Tensor, adapter_set: str | None) -> torch.Tensor:
        """(N, context) token ids -> (N, embed_dim)."""
        return self.forward_sets({adapter_set: tokens})[adapter_set]

    def forward_sets(self, tokens: Mapping[str | None, torch.Tensor]) -> dict[str | None, torch.Tensor]:
        """Several adapter sets in one pass: ``{set: (N_set, context) token ids}`` -> ``{set: (N_set, embed_dim)}``.

        The frozen layers run once on all rows (one batch instead of one per set); each set's adapters act on its
        own rows. With the causal mask, the end-of-text token sees only the tokens before it, so the sequence is
        cut after the last end-of-text token of the batch: the padding after it cannot change the output.
        """
        names = list(tokens)
        ids = torch.cat([tokens[name] for name in names])
        if self.attn_mask is not None:
            ids = ids[:, : int(ids.argmax(dim=1).max()) + 1]
        sizes = [len(tokens[name]) for name in names]
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        mask = self.attn_mask[: ids.shape[1], : ids.shape[1]] if self.attn_mask is not None else None
        sets = [self.adapters[name] if name is not None else [None] * len(self.transformer.resblocks) for name in names]
        for layer, block in enumerate(self.transformer.resblocks):
            if any(adapters[layer] is not None for adapters in sets):
                parts = x.split(sizes)
                x = torch.cat([part if adapters[layer] is None else adapters[layer](part)
                               for part, adapters in zip(parts, sets)]) if len(parts) > 1 else sets[0][layer](x)
            x = self._block(block, x, mask)
        x = self.ln_final(x)
        pooled = text_global_pool(x, ids, "argmax")
        pooled = self.text_projection(pooled) if isinstance(self.text_projection, nn.Linear) else pooled @ self.text_projection
        return dict(zip(names, pooled.split(sizes)))

    @staticmethod
    def _block(block, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + block.ls_1(_attention(block, block.ln_1(x), attn_mask=mask))
        return x + block.ls_2(block.mlp(block.ln_2(x)))
