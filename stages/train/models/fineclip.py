"""FineCLIPER (ACM MM 2024): PN label descriptors, multi-level encoders and adaptive fusion (Eqs. 1-11).

docs/METHOD.md maps every equation to this file and records the decisions the paper leaves open.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from stages.common.errors import StageError
from stages.train.models.encoders import AdaptedTextTower, AdaptedVisionTower
from stages.train.models.towers import Tower

VARIANTS = {  # variant -> modalities besides the frames
    "base": (),
    "star": ("parsing", "landmarks"),
    "dagger": ("text",),
    "star-dagger": ("parsing", "landmarks", "text"),
}


@dataclass(frozen=True)
class FineClipConfig:
    variant: str = "star-dagger"
    temperature: float = 0.01  # tau of Eq. 1
    adapter_ratio: float = 0.25
    mlp_scale: float = 0.5  # s of Eq. 7
    temporal_adapter: bool = True
    drop_path_rate: float = 0.2  # AIM's stochastic depth on the temporal and MLP adapter branches (last block)
    positive_prompt: str = "A person with an expression of {}."
    negative_prompt: str = "A person with an expression of no {}."
    detach_loss_weights: bool = True  # Eq. 11 weights act as constants in the loss (see docs/METHOD.md)
    checkpoint_blocks: bool = False  # recompute vision blocks in the backward pass: less memory, ~1/3 more compute

    @classmethod
    def from_dict(cls, raw: dict) -> FineClipConfig:
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise StageError(f"model config: unknown keys {unknown}; known keys are {sorted(cls.__dataclass_fields__)}.")
        config = cls(**raw)
        if config.variant not in VARIANTS:
            raise StageError(f"model config: variant must be one of {sorted(VARIANTS)}, got {config.variant!r}.")
        if not 0.0 <= config.drop_path_rate < 1.0:
            raise StageError(f"model config: drop_path_rate must be in [0, 1), got {config.drop_path_rate!r}.")
        return config

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("video",) + VARIANTS[self.variant]


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, C) from the fused representation, divided by tau
    modality_logits: dict[str, torch.Tensor]  # (B, C) per modality
    weights: torch.Tensor  # (B, M) Eq. 9, in FineClipConfig.modalities order
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # L2-normalised (B, E)


def tokenize(texts: list[str], context_length: int) -> torch.Tensor:
    """CLIP BPE ids; overlong texts are cut with the end token kept last (Long-CLIP's truncate=True)."""
    return open_clip.tokenize(texts, context_length=context_length)


def pn_similarity(embedding: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Eq. 8: cos(c_P^i, m) - cos(c_N^i, m) for every class i -> (B, C)."""
    m = F.normalize(embedding, dim=-1)
    return m @ F.normalize(positive, dim=-1).T - m @ F.normalize(negative, dim=-1).T


class FineClip(nn.Module):
    """Frozen CLIP towers + adapters. Inputs: a batch dict from stages.train.data (frames, parsing, landmarks,
    caption); output: class logits from the fused multi-level representation."""

    def __init__(self, clip: Tower, class_names: list[str], config: FineClipConfig, num_frames: int,
                 long_clip: Tower | None = None):
        super().__init__()
        self.config = config
        self.class_names = list(class_names)
        uses_faces = "parsing" in config.modalities
        vision_sets = {"video": config.temporal_adapter, **({"face": False} if uses_faces else {})}
        self.vision = AdaptedVisionTower(clip.model.visual, vision_sets, num_frames, config.adapter_ratio, config.mlp_scale,
                                         config.drop_path_rate, config.checkpoint_blocks)
        self.label_text = AdaptedTextTower(clip.model, ("positive", "negative"), config.adapter_ratio)
        self.fine_text = None
        if "text" in config.modalities:
            if long_clip is None:
                raise StageError(f"variant {config.variant} needs the fine-grained text tower (towers.long_clip).")
            self.fine_text = AdaptedTextTower(long_clip.model, ("fine",), config.adapter_ratio)
        context = self.label_text.context_length
        self.register_buffer("positive_tokens", tokenize([config.positive_prompt.format(c) for c in class_names], context),
                             persistent=False)
        self.register_buffer("negative_tokens", tokenize([config.negative_prompt.format(c) for c in class_names], context),
                             persistent=False)
        self.freeze_pretrained()

    # -- which parameters train -------------------------------------------------------------------------------
    def trainable_modules(self) -> list[nn.Module]:
        """Adapters and temporal embeddings; every pretrained CLIP weight stays frozen."""
        modules = [self.vision.adapters, self.vision.temporal_embedding, self.label_text.adapters]
        if self.fine_text is not None:
            modules.append(self.fine_text.adapters)
        return modules

    def freeze_pretrained(self) -> None:
        self.requires_grad_(False)
        for module in self.trainable_modules():
            module.requires_grad_(True)

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [p for m in self.trainable_modules() for p in m.parameters()], "lr": lr, "name": "adapters"}]

    # -- forward ----------------------------------------------------------------------------------------------
    def class_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2-4: c_P and c_N for every class, through the positive and negative adapter sets (one text-tower pass)."""
        out = self.label_text.forward_sets({"positive": self.positive_tokens, "negative": self.negative_tokens})
        return out["positive"], out["negative"]

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """The embeddings v, p, l, f of the variant's modalities."""
        out = {"video": self.vision(batch["frames"], "video")}
        if "parsing" in self.config.modalities:
            out["parsing"] = self.vision(batch["parsing"], "face")
            out["landmarks"] = self.vision(batch["landmarks"], "face")
        if self.fine_text is not None:
            tokens = tokenize(list(batch["caption"]), self.fine_text.context_length).to(out["video"].device)
            out["text"] = self.fine_text(tokens, "fine")
        return out

    def forward(self, batch: dict) -> ModelOutput:
        positive, negative = self.class_embeddings()
        embeddings = {name: F.normalize(e, dim=-1) for name, e in self.encode(batch).items()}
        names = self.config.modalities
        sims = {name: pn_similarity(embeddings[name], positive, negative) for name in names}  # Eq. 8
        best = torch.stack([sims[name].max(dim=1).values for name in names], dim=1)  # sim_m = max_i sim_{i,m}
        weights = best.softmax(dim=1)  # Eq. 9
        fused = sum(weights[:, k:k + 1] * embeddings[name] for k, name in enumerate(names))  # Eq. 10
        tau = self.config.temperature
        return ModelOutput(
            logits=pn_similarity(fused, positive, negative) / tau,
            modality_logits={name: sims[name] / tau for name in names},
            weights=weights,
            embeddings=embeddings,
        )

    def zero_shot_output(self, batch: dict, class_names: list[str]) -> ModelOutput:
        """Zero-shot classification after contrastive training on captions: the PN prompts of ``class_names`` go
        through the fine-grained text tower, whose space the clip embeddings were aligned with."""
        if self.fine_text is None:
            raise StageError(f"zero-shot needs the fine-grained text tower; variant {self.config.variant} has none.")
        context = self.fine_text.context_length
        device = batch["frames"].device
        prompts = [p.format(c) for p in (self.config.positive_prompt, self.config.negative_prompt) for c in class_names]
        positive, negative = self.fine_text(tokenize(prompts, context).to(device), "fine").chunk(2)
        video = F.normalize(self.vision(batch["frames"], "video"), dim=-1)
        logits = pn_similarity(video, positive, negative) / self.config.temperature
        return ModelOutput(logits=logits, modality_logits={"video": logits}, weights=torch.ones(len(logits), 1, device=device))

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 11: CE of the fused prediction + the modality CEs weighted by w_m, averaged over the batch."""
        weights = output.weights.detach() if self.config.detach_loss_weights else output.weights
        loss = F.cross_entropy(output.logits, labels, reduction="none")
        for k, name in enumerate(self.config.modalities):
            loss = loss + weights[:, k] * F.cross_entropy(output.modality_logits[name], labels, reduction="none")
        return loss.mean()
