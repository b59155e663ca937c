"""Build a tiny Stable Diffusion pipeline with random weights, for the predictor tests.

Runs in the torch venv (``.cache/diffusers-venv``, see ``requirements.txt`` beside
this script), never in the main one::

    .cache/diffusers-venv/bin/python tests/diffusers/build_tiny.py CACHE_ROOT

prints the pipeline's directory, ``CACHE_ROOT/tiny-sd-<hash>``, where ``<hash>`` is
this script's own SHA-256: a changed script builds a new pipeline, an unchanged one
reuses the saved one. Nothing is downloaded: the UNet, VAE and CLIP text model are
built from configs (seeded random weights), the tokenizer from a vocabulary this
script writes, and the whole is saved with ``save_pretrained`` (~4 MB).

The UNet has 4 input channels, so inpainting runs diffusers' "legacy" 4-channel path
of ``StableDiffusionInpaintPipeline`` (it repaints the latents under the white mask
and puts the input's noised latents back under the black mask at every step), which
``AutoPipelineForInpainting.from_pipe`` builds from the same components. A 9-channel
inpainting UNet is what real inpainting checkpoints use; the predictor serves both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import string
import sys
import tempfile
from pathlib import Path

# Nothing here may reach a hub; set before diffusers/transformers are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SEED = 1234
#: CLIP's special tokens (the text model's bos/eos/pad ids point at these).
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    # CLIP's byte-level BPE maps printable ASCII to itself and marks a word's last
    # symbol with "</w>": every printable character, alone and word-final, covers
    # any ASCII prompt; a few merges make common words single tokens.
    symbols = [c for c in string.printable if c.isprintable() and not c.isspace()]
    tokens = [BOS, EOS] + symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in ("a", "the", "of", "lighthouse", "sky", "night"):
        if len(word) < 2:
            continue
        current = word[0]
        for index, char in enumerate(word[1:], start=1):
            piece = char + "</w>" if index == len(word) - 1 else char
            merges.append((current, piece))
            current += piece
            if current not in tokens:
                tokens.append(current)
    return {token: index for index, token in enumerate(tokens)}, merges


def build(target: Path) -> None:
    """Build the pipeline and save it into ``target`` (which must not exist)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = _vocabulary()
    # transformers 5 silently ignores vocab_file/merges_file here: pass the data.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    # Four blocks keep the VAE's scale factor at 8, as in real SD checkpoints.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(target)


def main() -> None:
    """Build (or reuse) the pipeline under ``argv[1]`` and print its directory."""
    if len(sys.argv) != 2:
        sys.exit("usage: build_tiny.py CACHE_ROOT")
    root = Path(sys.argv[1])
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    target = root / f"tiny-sd-{digest}"
    if not (target / "model_index.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: a build that dies half-way never
        # leaves a directory that looks complete.
        scratch = Path(tempfile.mkdtemp(prefix=".tiny-sd-", dir=root))
        try:
            build(scratch / "pipeline")
            shutil.rmtree(target, ignore_errors=True)
            (scratch / "pipeline").rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(target)


if __name__ == "__main__":
    main()
