"""A tiny Stable Diffusion pipeline made from configs with random weights, for offline tests.

UNet, VAE and CLIP text encoder are a few thousand parameters each; the CLIP
tokenizer is built from a byte-level vocabulary and an empty merges file
written here. ``save_pretrained`` writes a directory that ``GENLINE_DIFFUSERS_MODEL``
can name, exactly like a downloaded model. A 32x32 image takes a few ms per step.
"""
from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map of bytes to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def tokenizer(directory: Path):
    """A CLIPTokenizer whose vocabulary is every byte, alone and word-final, and no merges."""
    from transformers import CLIPTokenizer
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = list(_bytes_to_unicode().values())
    for suffix in ("", "</w>"):
        for char in chars:
            vocab.setdefault(char + suffix, len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"), model_max_length=77)


def build(directory: Path, *, nan_vae: bool = False, seed: int = 0) -> Path:
    """Write a tiny StableDiffusionPipeline to ``directory``; ``nan_vae`` poisons its decoder with NaN."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tok = tokenizer(directory.parent / f"{directory.name}-tokenizer-src")
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tok), max_position_embeddings=77))
    if nan_vae:
        with torch.no_grad():
            vae.post_quant_conv.weight.fill_(float("nan"))
    scheduler = DDIMScheduler(clip_sample=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory)
    return directory
