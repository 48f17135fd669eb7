"""Model properties: frozen towers stay CLIP, Long-CLIP stretch, PN fusion, weight loading errors, variants."""
from __future__ import annotations

import pytest
import torch

from stages.common.errors import StageError
from stages.train.models.fineclip import FineClip, FineClipConfig, pn_similarity
from stages.train.models.towers import (TowerConfig, adapt_positional_embedding, build_clip,
                                        stretch_positional_embedding)

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
CLASSES = ["happiness", "sadness", "neutral"]


def tower(context_length=77, seed=0, **extra):
    return build_clip(TowerConfig(arch="tiny", arch_config=TINY, random_init=True, context_length=context_length,
                                  **extra), seed=seed)


def model(variant="star-dagger", frames=4, **config):
    return FineClip(tower(), CLASSES, FineClipConfig(variant=variant, **config), frames,
                    tower(248, seed=1) if "dagger" in variant else None)


def batch(size=2, frames=4):
    torch.manual_seed(0)
    return {"frames": torch.rand(size, frames, 3, 32, 32), "parsing": torch.rand(size, frames, 3, 32, 32),
            "landmarks": torch.rand(size, frames, 3, 32, 32), "caption": ["the brows lift", "the jaw drops"][:size],
            "label": torch.tensor([0, 2][:size])}


def test_zero_init_adapters_leave_the_frozen_towers_unchanged():
    clip = tower()
    fine = FineClip(clip, CLASSES, FineClipConfig(variant="star"), 4)
    b = batch()
    frozen_video = clip.model.encode_image(b["frames"].flatten(0, 1)).view(2, 4, -1).mean(1)
    assert torch.allclose(fine.vision(b["frames"], "video"), frozen_video, atol=1e-5)  # temporal adapter included
    assert torch.allclose(fine.vision(b["parsing"], "face"), clip.model.encode_image(b["parsing"].flatten(0, 1)).view(2, 4, -1).mean(1), atol=1e-5)
    for polarity, tokens in (("positive", fine.positive_tokens), ("negative", fine.negative_tokens)):
        assert torch.allclose(fine.label_text(tokens, polarity), clip.model.encode_text(tokens), atol=1e-5)


def test_only_trainable_parameters_change_after_a_step():
    fine = model()
    before = {k: v.clone() for k, v in fine.state_dict().items()}
    trainable = {name for name, p in fine.named_parameters() if p.requires_grad}
    assert trainable and all("adapters" in n or "temporal_embedding" in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in fine.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # the first step moves only the zero-init up-projections; the second reaches the rest
        optimizer.zero_grad()
        fine.loss(fine(batch()), batch()["label"]).backward()
        optimizer.step()
    after = fine.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed <= trainable
    assert any(".up." in k for k in changed) and any(".down." in k for k in changed)


def test_adaptive_weights_sum_to_one_and_follow_eq_9():
    fine = model()
    out = fine(batch())
    assert out.weights.shape == (2, 4)
    assert torch.allclose(out.weights.sum(1), torch.ones(2))
    positive, negative = fine.class_embeddings()
    best = torch.stack([pn_similarity(out.embeddings[m], positive, negative).max(1).values
                        for m in fine.config.modalities], 1)
    assert torch.allclose(out.weights, best.softmax(1), atol=1e-6)


def test_pn_similarity_is_positive_minus_negative_cosine():
    v, p, n = torch.randn(3, 8), torch.randn(4, 8), torch.randn(4, 8)
    cos = torch.nn.functional.cosine_similarity
    expected = torch.stack([cos(v, p[i:i + 1]) - cos(v, n[i:i + 1]) for i in range(4)], 1)
    assert torch.allclose(pn_similarity(v, p, n), expected, atol=1e-6)


def test_loss_is_eq_11():
    fine = model("dagger")
    b = batch()
    out = fine(b)
    ce = torch.nn.functional.cross_entropy
    expected = ce(out.logits, b["label"]) + sum(
        (out.weights[:, k] * ce(out.modality_logits[m], b["label"], reduction="none")).mean()
        for k, m in enumerate(fine.config.modalities))
    assert torch.allclose(fine.loss(out, b["label"]), expected, atol=1e-5)


def test_variants_use_their_modalities():
    assert model("base").config.modalities == ("video",)
    assert model("star").config.modalities == ("video", "parsing", "landmarks")
    assert model("dagger").config.modalities == ("video", "text")
    with pytest.raises(StageError, match="fine-grained text tower"):
        FineClip(tower(), CLASSES, FineClipConfig(variant="dagger"), 4, None)
    with pytest.raises(StageError, match="variant must be one of"):
        FineClipConfig.from_dict({"variant": "turbo"})


def test_long_clip_stretch_matches_spec_3_1():
    table = torch.randn(77, 6)
    new = stretch_positional_embedding(table)
    assert new.shape == (248, 6)
    assert torch.equal(new[:20], table[:20])
    for j in range(56):
        for k in range(4):
            assert torch.allclose(new[20 + 4 * j + k], ((4 - k) * table[20 + j] + k * table[21 + j]) / 4, atol=1e-6)
    for k in range(4):
        assert torch.allclose(new[244 + k], table[76] + k * (table[76] - table[75]) / 4, atol=1e-6)


def test_long_clip_file_merges_frozen_and_trainable_tables():
    frozen, trained = torch.randn(248, 4), torch.randn(248, 4)
    merged = adapt_positional_embedding({"positional_embedding": frozen, "positional_embedding_res": trained}, 248)
    assert "positional_embedding_res" not in merged
    assert torch.equal(merged["positional_embedding"][:20], frozen[:20])
    assert torch.equal(merged["positional_embedding"][20:], trained[20:])


def test_weights_load_from_an_openai_style_file_and_a_long_clip_file(tmp_path):
    source = tower(seed=3).model
    state = {k: v for k, v in source.state_dict().items()}
    state.update({"input_resolution": torch.tensor(32), "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)})
    torch.save(state, tmp_path / "clip.pt")
    loaded = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "clip.pt")))
    assert not loaded.random_init and len(loaded.fingerprint) == 16
    assert torch.equal(loaded.model.visual.conv1.weight, source.visual.conv1.weight)
    # the same 77-position file stretched into a 248-position text tower
    long = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "clip.pt"), context_length=248))
    assert torch.equal(long.model.positional_embedding, stretch_positional_embedding(source.positional_embedding))
    # a Long-CLIP-format file
    long_state = dict(state)
    long_state["positional_embedding"] = torch.randn(248, 32)
    long_state["positional_embedding_res"] = torch.randn(248, 32)
    torch.save(long_state, tmp_path / "longclip-B.pt")
    long = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "longclip-B.pt"), context_length=248))
    assert torch.equal(long.model.positional_embedding[20:], long_state["positional_embedding_res"][20:])


def test_weights_load_from_a_torchscript_archive_like_the_openai_release(tmp_path):
    source = tower(seed=4).model
    archive = torch.jit.trace_module(source, {"encode_image": torch.rand(1, 3, 32, 32)}, check_trace=False)
    archive.save(str(tmp_path / "ViT-B-16.pt"))
    loaded = build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "ViT-B-16.pt")))
    assert torch.equal(loaded.model.visual.conv1.weight, source.visual.conv1.weight)
    assert torch.equal(loaded.model.token_embedding.weight, source.token_embedding.weight)


def test_wrong_architecture_names_the_mismatching_keys(tmp_path):
    other = dict(TINY, vision_cfg=dict(TINY["vision_cfg"], layers=3))
    torch.save(build_clip(TowerConfig(arch="x", arch_config=other, random_init=True)).model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(StageError) as err:
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "w.pt")))
    assert "unexpected keys" in str(err.value) and "visual.transformer.resblocks.2" in str(err.value)
    state = tower().model.state_dict()
    del state["visual.proj"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(StageError, match="missing keys: visual.proj"):
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "missing.pt")))


def test_truncated_or_absent_weights_say_what_to_do(tmp_path):
    torch.save(tower().model.state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(StageError, match="truncated"):
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "cut.pt")))
    with pytest.raises(StageError, match="not found.*ViT-B/16"):
        build_clip(TowerConfig(arch="tiny", arch_config=TINY, weights=str(tmp_path / "nope.pt")))
    with pytest.raises(StageError, match="random_init: true"):
        build_clip(TowerConfig(arch="tiny", arch_config=TINY))


def full_context_text(text, tokens: torch.Tensor, adapter_set: str) -> torch.Tensor:
    """The text tower as it ran before the batched, cut-short pass: one set at a time over the whole context."""
    x = text.token_embedding(tokens) + text.positional_embedding[: tokens.shape[1]]
    mask = text.attn_mask[: tokens.shape[1], : tokens.shape[1]]
    for block, adapter in zip(text.transformer.resblocks, text.adapters[adapter_set]):
        x = text._block(block, adapter(x), mask)
    pooled = text.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(dim=1)]
    return pooled @ text.text_projection


def busy_adapters(fine: FineClip) -> FineClip:
    """Non-zero up-projections, so every adapter (and the text cut) changes the outputs."""
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in fine.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    return fine


@pytest.mark.parametrize("checkpoint_blocks", [False, True])
def test_fast_paths_give_the_old_logits_and_gradients(checkpoint_blocks):
    """PN prompts as one cut-short text pass (and optional block checkpointing) = the per-set full-context passes."""
    fast = busy_adapters(model(checkpoint_blocks=checkpoint_blocks)).train()
    old = busy_adapters(model()).train()
    old.class_embeddings = lambda: (full_context_text(old.label_text, old.positive_tokens, "positive"),
                                    full_context_text(old.label_text, old.negative_tokens, "negative"))
    old_fine = old.fine_text.forward
    old.fine_text.forward = lambda tokens, adapter_set: full_context_text(old.fine_text, tokens, adapter_set)
    assert fast.positive_tokens.shape[1] == 77 and int(fast.positive_tokens.argmax(1).max()) < 20  # the cut is real
    results = []
    for fine in (fast, old):
        torch.manual_seed(11)  # drop-path draws
        out = fine(batch())
        fine.loss(out, batch()["label"]).backward()
        grads = {n: p.grad for n, p in fine.named_parameters() if p.requires_grad and p.grad is not None}
        results.append((out.logits.detach(), grads))
    (logits, grads), (old_logits, old_grads) = results
    assert torch.allclose(logits, old_logits, atol=1e-4, rtol=1e-4)
    assert grads.keys() == old_grads.keys() and any("label_text" in n for n in grads) and any("fine_text" in n for n in grads)
    for name in grads:  # float32 rounding, amplified by 1 / tau = 100: relative to the gradient's scale
        scale = old_grads[name].abs().max()
        assert (grads[name] - old_grads[name]).abs().max() <= 1e-3 * scale, (name, scale)
    old.fine_text.forward = old_fine
