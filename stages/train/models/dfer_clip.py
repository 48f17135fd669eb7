"""DFER-CLIP (BMVC 2023), the baseline: fine-tuned CLIP frames + temporal transformer vs learnable prompts.

SPEC §1.5-§1.6. Video: the whole CLIP visual tower (fine-tuned) embeds every frame, a small temporal
transformer pools the frames through its CLS token. Text: class-specific CoOp context vectors (8 per class) in
front of each class descriptor, through the frozen CLIP text tower. Logits = cosine similarity / 0.01.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from open_clip.transformer import text_global_pool
from torch import nn

from stages.common.errors import StageError
from stages.train.models.fineclip import ModelOutput, tokenize
from stages.train.models.towers import Tower

PLACEHOLDER = "X"


@dataclass(frozen=True)
class DferClipConfig:
    """DFER-CLIP's model settings and its per-group learning rates (SPEC §1.5-1.6).

    The rest of its recipe (SGD, momentum, weight decay, epochs, batch, MultiStepLR) is trainer-wide and lives in
    the ``recipes: dfer-clip`` entry of the train section (config/config.yaml).
    """

    n_ctx: int = 8
    temporal_layers: int = 1
    temperature: float = 0.01
    lr_temporal: float = 1e-2
    lr_image: float = 1e-5
    lr_prompt: float = 1e-3

    @classmethod
    def from_dict(cls, raw: dict) -> DferClipConfig:
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise StageError(f"dfer-clip config: unknown keys {unknown}; known keys are {sorted(cls.__dataclass_fields__)}. "
                             "Schedule, momentum and weight decay belong to train.recipes.dfer-clip.")
        return cls(**raw)


def read_descriptors(path: str | Path) -> dict[str, str]:
    """Class name -> descriptor sentence, in file order (config/prompts/dfer_clip_descriptors.yaml)."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise StageError(f"{path}: expected a mapping of class name -> descriptor sentence.")
    return data


class TemporalBlock(nn.Module):
    """Pre-norm transformer block: ``x += MHSA(LN(x))``, ``x += MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.out = nn.Linear(inner, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dim_head)) v
        x = x + self.out(attended.transpose(1, 2).reshape(batch, tokens, -1))
        return x + self.mlp(self.norm_mlp(x))


class TemporalTransformer(nn.Module):
    """(B, T, D) frame embeddings -> (B, D): CLS token after ``depth`` blocks (DFER-CLIP's temporal net)."""

    def __init__(self, dim: int, num_frames: int, depth: int = 1, heads: int = 8, dim_head: int = 64,
                 mlp_dim: int = 1024):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_frames + 1, dim))
        self.blocks = nn.Sequential(*(TemporalBlock(dim, heads, dim_head, mlp_dim) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames + 1 > self.pos_embedding.shape[1]:
            raise ValueError(f"{frames} frames, but the temporal transformer was built for {self.pos_embedding.shape[1] - 1}.")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding[:, :frames + 1]
        return self.blocks(x)[:, 0]


class PromptLearner(nn.Module):
    """Class-specific CoOp context: ``[SOS] ctx_1..ctx_n <descriptor>. [EOT]`` as token embeddings.

    The only parameter is ``ctx`` (n_cls, n_ctx, width); the SOS embedding (``token_prefix``) and the embeddings
    after the placeholders (``token_suffix``) are frozen buffers taken from the CLIP token table at build time.
    """

    def __init__(self, token_embedding: nn.Embedding, texts: list[str], n_ctx: int, context_length: int):
        super().__init__()
        prompts = [" ".join([PLACEHOLDER] * n_ctx) + " " + text for text in texts]
        tokens = tokenize(prompts, context_length)
        placeholder = tokenize([PLACEHOLDER], context_length)[0, 1]
        if not (tokens[:, 1:1 + n_ctx] == placeholder).all():
            raise StageError(f"the tokenizer does not map {PLACEHOLDER!r} x {n_ctx} to {n_ctx} tokens.")
        with torch.no_grad():
            embedded = token_embedding(tokens)
        self.ctx = nn.Parameter(torch.empty(len(texts), n_ctx, embedded.shape[-1]).normal_(std=0.02))
        self.register_buffer("tokens", tokens)  # EOT position = argmax
        self.register_buffer("token_prefix", embedded[:, :1].clone())
        self.register_buffer("token_suffix", embedded[:, 1 + n_ctx:].clone())

    def forward(self) -> torch.Tensor:
        """(n_cls, context_length, width)."""
        return torch.cat([self.token_prefix, self.ctx, self.token_suffix], dim=1)


class PromptTextEncoder(nn.Module):
    """CLIP's text transformer fed token embeddings instead of token ids (frozen in DFER-CLIP)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, width) embeddings and their (N, L) token ids -> (N, embed_dim), pooled at EOT."""
        x = self.transformer(embeddings + self.positional_embedding, attn_mask=self.attn_mask)
        x = text_global_pool(self.ln_final(x), tokens, "argmax")
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


class DferClip(nn.Module):
    """DFER-CLIP: batch dict with ``frames`` (B, T, 3, H, W) -> class logits (B, C)."""

    def __init__(self, clip: Tower, class_names: list[str], descriptors: dict[str, str], config: DferClipConfig,
                 num_frames: int):
        super().__init__()
        missing = [name for name in class_names if name not in descriptors]
        if missing:
            raise StageError(f"no class descriptor for {missing}; the descriptor file has {sorted(descriptors)}.")
        self.config = config
        self.class_names = list(class_names)
        model = clip.model
        self.image_encoder = model.visual
        self.temporal_net = TemporalTransformer(model.visual.output_dim, num_frames, config.temporal_layers)
        self.prompt_learner = PromptLearner(model.token_embedding, [descriptors[c] for c in class_names], config.n_ctx,
                                            model.context_length)
        self.text_encoder = PromptTextEncoder(model)
        self.freeze_pretrained()

    # -- which parameters train -------------------------------------------------------------------------------
    def trainable_modules(self) -> list[nn.Module]:
        """The whole visual tower, the temporal net and the context vectors (the prompt learner's only parameter)."""
        return [self.image_encoder, self.temporal_net, self.prompt_learner]

    def freeze_pretrained(self) -> None:
        """Freeze everything (the text tower) but ``trainable_modules``."""
        self.requires_grad_(False)
        for module in self.trainable_modules():
            module.requires_grad_(True)

    def param_groups(self, lr: float | None = None) -> list[dict]:
        """Parameter groups with DFER-CLIP's per-group rates.

        ``lr`` is accepted for the FineClip interface and ignored: the rates come from DferClipConfig.
        """
        cfg = self.config
        rates = {"image_encoder": cfg.lr_image, "temporal_net": cfg.lr_temporal, "prompt_learner": cfg.lr_prompt}
        return [{"params": list(getattr(self, name).parameters()), "lr": rate, "name": name}
                for name, rate in rates.items()]

    # -- forward ----------------------------------------------------------------------------------------------
    def class_embeddings(self) -> torch.Tensor:
        """(C, E) L2-normalised text features of the learned prompts."""
        return F.normalize(self.text_encoder(self.prompt_learner(), self.prompt_learner.tokens), dim=-1)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, E) L2-normalised."""
        per_frame = self.image_encoder(frames.flatten(0, 1)).view(*frames.shape[:2], -1)
        return F.normalize(self.temporal_net(per_frame), dim=-1)

    def forward(self, batch: dict) -> ModelOutput:
        video = self.encode_video(batch["frames"])
        logits = video @ self.class_embeddings().T / self.config.temperature
        return ModelOutput(logits=logits, modality_logits={}, weights=video.new_zeros(video.shape[0], 0),
                           embeddings={"video": video})

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.logits, labels)
