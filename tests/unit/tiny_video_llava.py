"""Build a tiny random-weight Video-LLaVA checkpoint folder offline (tests only, no download).

The folder has the same layout as ``LanguageBind/Video-LLaVA-7B-hf`` (config, safetensors weights, tokenizer files,
processor configs), so it loads through exactly the code path a real checkpoint uses. The tokenizer is a BPE model
built from open_clip's bundled CLIP vocabulary (first ``merges`` merges), with Llama-style ``<unk> <s> </s> <pad>``
and the ``<image>``/``<video>`` placeholders as added special tokens. Vision tower: 16 px images, 8 px patches, so
one 8-frame clip expands to 8 x (2 x 2 + 1) = 40 video tokens.
"""
from __future__ import annotations

import gzip
from pathlib import Path

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
IMAGE_SIZE = 16
PATCH_SIZE = 8


def clip_bpe_tokenizer(merges: int = 2000):
    """A ``TokenizersBackend`` (PreTrainedTokenizerFast) over the first ``merges`` CLIP BPE merges."""
    import open_clip
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab_file = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : merges + 1]  # line 0 is a version header
    pairs = [tuple(line.split()) for line in lines]

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = SPECIALS + alphabet + [c + "</w>" for c in alphabet] + ["".join(p) for p in pairs]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}

    tok = Tokenizer(models.BPE(vocab, pairs, unk_token="<unk>", end_of_word_suffix="</w>"))
    # CLIP-style: split words (spaces dropped), map bytes to printable characters, mark word ends with </w>.
    words = Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+""")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(words, behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.Sequence([
        decoders.Replace("</w>", " "), decoders.ByteLevel(), decoders.Strip(" ", 0, 1)
    ])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", SPECIALS.index("<s>"))])
    tok.add_special_tokens(SPECIALS + ["<image>", "<video>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def build_tiny_video_llava(folder: str | Path, seed: int = 0, merges: int = 2000) -> Path:
    """Write a tiny random Video-LLaVA checkpoint (model + processor) into ``folder`` and return it."""
    import torch
    from transformers import (
        VideoLlavaConfig,
        VideoLlavaForConditionalGeneration,
        VideoLlavaImageProcessor,
        VideoLlavaProcessor,
        VideoLlavaVideoProcessor,
    )

    folder = Path(folder)
    tokenizer = clip_bpe_tokenizer(merges)
    size, crop = {"shortest_edge": IMAGE_SIZE}, {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(size=size, crop_size=crop),
        video_processor=VideoLlavaVideoProcessor(size=size, crop_size=crop),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "</s>", "<image>", "<video>")}
    config = VideoLlavaConfig(
        text_config={
            "model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 37, "hidden_act": "gelu",
            "max_position_embeddings": 512, "pad_token_id": ids["<pad>"], "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
        },
        vision_config={
            "model_type": "clip_vision_model", "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE, "num_channels": 3,
            "hidden_size": 32, "projection_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 37,
        },
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        video_seq_length=8 * ((IMAGE_SIZE // PATCH_SIZE) ** 2 + 1),
    )
    torch.manual_seed(seed)
    model = VideoLlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
