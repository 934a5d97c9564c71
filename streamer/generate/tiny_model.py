"""A tiny Stable Diffusion 1.x checkpoint with random weights, built offline.

Tests and smoke runs need a model that loads through exactly the same code as the real 4 GB
checkpoint (``from_pretrained`` on a diffusers folder, or ``from_single_file``) but builds in a
second and runs a 512x512 frame in well under a second on a CPU. So this is the real
architecture scaled down: a UNet with cross-attention, a KL autoencoder with SD's 8x
downsampling (a 512x512 image is a 4x64x64 latent, as in SD), and a CLIP text encoder with the
real 49408-token vocabulary and 77-token context. Its tokenizer is the real CLIP BPE, built from
the vocabulary file that ``open_clip_torch`` ships, so prompts tokenise exactly as they do for
the real checkpoint. The output is noise-like: the model is for plumbing, not for music.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import re
from pathlib import Path

#: Tokens of CLIP's BPE vocabulary that are learnt merges (49408 = 2 * 256 bytes + merges + 2).
CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_TOKENS = 77
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"

#: File name of the single-file (original Stable Diffusion layout) export inside the model folder.
SINGLE_FILE_NAME = "tiny-sd.safetensors"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Sizes of a Stable Diffusion 1.x model: the real one or the tiny one for tests."""

    unet_channels: tuple[int, ...]
    unet_layers_per_block: int
    unet_down_blocks: tuple[str, ...]
    unet_up_blocks: tuple[str, ...]
    unet_attention_heads: int
    vae_channels: tuple[int, ...]
    vae_layers_per_block: int
    text_hidden_size: int
    text_intermediate_size: int
    text_layers: int
    text_heads: int
    norm_groups: int
    #: Channels of the VAE latent (SD: 4) and whether the VAE's lowest level has self-attention
    #: (SD: yes; at a 64x64 latent it is a 4096-token attention, costly on a CPU).
    latent_channels: int = 4
    vae_mid_attention: bool = True


#: Stable Diffusion 1.5 (and so Riffusion): UNet ~860M parameters, VAE ~84M, CLIP ViT-L/14 text
#: encoder ~123M. With random weights it runs exactly as fast as the real checkpoint.
SD15 = Architecture(
    unet_channels=(320, 640, 1280, 1280),
    unet_layers_per_block=2,
    unet_down_blocks=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    unet_up_blocks=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    unet_attention_heads=8,
    vae_channels=(128, 256, 512, 512),
    vae_layers_per_block=2,
    text_hidden_size=768,
    text_intermediate_size=3072,
    text_layers=12,
    text_heads=12,
    norm_groups=32,
)

#: The tiny model: two UNet levels with cross-attention on the 32x32 one only (attention on a
#: 64x64 latent would dominate the cost), four autoencoder levels to keep SD's 8x latent.
TINY = Architecture(
    unet_channels=(32, 64),
    unet_layers_per_block=1,
    unet_down_blocks=("DownBlock2D", "CrossAttnDownBlock2D"),
    unet_up_blocks=("CrossAttnUpBlock2D", "UpBlock2D"),
    unet_attention_heads=1,
    vae_channels=(8, 16, 32, 32),
    vae_layers_per_block=1,
    text_hidden_size=32,
    text_intermediate_size=64,
    text_layers=2,
    text_heads=4,
    norm_groups=8,
)

ARCHITECTURES = {"tiny": TINY, "sd15": SD15}


def build_tiny_model(directory: str | Path, architecture: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight model as a diffusers folder (plus its single-file export).

    The folder has the layout of ``riffusion/riffusion-model-v1`` (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/), so anything that loads a real checkpoint loads it.
    Weights come from a fixed seed: two builds are identical. ``architecture="sd15"`` writes the
    full-size architecture (about 2 GB in fp16) for end-to-end speed tests without the real
    weights; its single-file export is skipped.
    """
    import torch

    unet, vae, text_encoder = random_components(ARCHITECTURES[architecture], seed)
    # The full size is halved to fp16 (about 2 GB); loading casts to the run's type.
    dtype = torch.float16 if architecture == "sd15" else None
    pipeline = write_model_folder(directory, unet, vae, text_encoder, dtype)
    if architecture == "tiny":
        write_single_file(pipeline, Path(directory) / SINGLE_FILE_NAME)
    return Path(directory)


def build_tiny_lora(model_dir: str | Path, directory: str | Path) -> Path:
    """A random LoRA for a model's UNet (seeded), saved in diffusers' LoRA format as LCM-LoRA is;
    returns its .safetensors file. Fused, it changes every attention projection's weights."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    torch.manual_seed(0)
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    StableDiffusionPipeline.save_lora_weights(
        directory, unet_lora_layers=get_peft_model_state_dict(unet)
    )
    return Path(directory) / "pytorch_lora_weights.safetensors"


def write_model_folder(directory: str | Path, unet, vae, text_encoder, dtype=None):
    """Save the three parts, CLIP's tokenizer and SD 1.x's scheduler as a diffusers folder.

    The layout is ``riffusion/riffusion-model-v1``'s (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/), in safetensors. ``dtype`` (e.g. torch.float16)
    casts the parts in place before saving; None keeps theirs. Returns the pipeline object.
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = directory / "tokenizer"
    write_clip_tokenizer(tokenizer_dir)
    if dtype is not None:
        for part in (unet, vae, text_encoder):
            # torch's own cast: diffusers' override warns about fp32-only modules these lack.
            torch.nn.Module.to(part, dtype=dtype)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        unet=unet,
        scheduler=sd1_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)
    return pipeline


def random_components(
    architecture: Architecture,
    seed: int = 0,
    unet: bool = True,
    vae: bool = True,
    text_encoder: bool = True,
):
    """UNet, VAE and CLIP text encoder of ``architecture`` with random (seeded) weights.

    A part not asked for is None (the benchmark initialises the big ones its own, faster way).
    """
    import torch

    torch.manual_seed(seed)
    return (
        _unet(architecture) if unet else None,
        _vae(architecture) if vae else None,
        _text_encoder(architecture) if text_encoder else None,
    )


def _unet(a: Architecture):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=a.latent_channels,
        out_channels=a.latent_channels,
        block_out_channels=a.unet_channels,
        layers_per_block=a.unet_layers_per_block,
        down_block_types=a.unet_down_blocks,
        up_block_types=a.unet_up_blocks,
        cross_attention_dim=a.text_hidden_size,
        attention_head_dim=a.unet_attention_heads,  # diffusers' name; it is the number of heads
        norm_num_groups=a.norm_groups,
    )


def _vae(a: Architecture):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=a.latent_channels,
        block_out_channels=a.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(a.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(a.vae_channels),
        layers_per_block=a.vae_layers_per_block,
        norm_num_groups=a.norm_groups,
        mid_block_add_attention=a.vae_mid_attention,
        sample_size=512,
        scaling_factor=0.18215,
    )


def _text_encoder(a: Architecture):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=a.text_hidden_size,
            intermediate_size=a.text_intermediate_size,
            num_hidden_layers=a.text_layers,
            num_attention_heads=a.text_heads,
            max_position_embeddings=CLIP_CONTEXT_TOKENS,
            projection_dim=a.text_hidden_size,
            hidden_act="quick_gelu",
            # SD 1.x's CLIP-L ends prompts with token 49407 (<|endoftext|>), also its padding.
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )


def sd1_scheduler():
    """Stable Diffusion 1.x's noise schedule (as in the real checkpoint's scheduler config)."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        algorithm_type="dpmsolver++",
        solver_order=2,
    )


# --- CLIP tokenizer ---------------------------------------------------------------------------


def clip_bpe_path() -> Path:
    """The CLIP BPE merges file that ``open_clip_torch`` ships (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the CLIP vocabulary bpe_simple_vocab_16e6.txt.gz was not found: install open_clip_torch "
        "(pip install open_clip_torch), which ships it"
    )


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in vocabulary order.

    Printable Latin-1 bytes stand for themselves and come first; the other bytes follow, mapped
    in order to code points from 256 upwards, so that BPE never sees whitespace or control
    characters. The order is the one OpenAI's vocabulary lists them in ('a' is token 64).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [byte for byte in range(256) if byte not in set(printable)]
    return [chr(byte) for byte in printable] + [chr(256 + n) for n in range(len(others))]


def write_clip_tokenizer(directory: str | Path) -> Path:
    """Write CLIP's tokenizer (vocab.json, merges.txt, configs) as in SD 1.x's ``tokenizer/``.

    The vocabulary is OpenAI's construction: the 256 byte symbols, the same with the end-of-word
    marker ``</w>``, one token per merge (the first 49152 - 256 - 2 merges of the file), then the
    start and end tokens.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(clip_bpe_path(), "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = lines[1 : CLIP_VOCAB_SIZE - 256 * 2 - 2 + 1]
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges] + [START_OF_TEXT, END_OF_TEXT]
    if len(tokens) != CLIP_VOCAB_SIZE or len(set(tokens)) != CLIP_VOCAB_SIZE:
        raise ValueError(f"the CLIP vocabulary has {len(set(tokens))} distinct tokens, not 49408")
    (directory / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    special = {
        "bos_token": START_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "pad_token": END_OF_TEXT,
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CLIP_CONTEXT_TOKENS,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return directory


# --- single-file export -----------------------------------------------------------------------


def write_single_file(pipeline, path: str | Path) -> Path:
    """Save the pipeline's weights as one original-layout (CompVis) Stable Diffusion checkpoint.

    Community checkpoints come as one ``.safetensors``/``.ckpt`` file in the original layout
    (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``);
    diffusers converts such a file on load. Writing the tiny model in that layout lets the
    single-file loading path be tested end to end: a file that loads back into the same
    weights proves the path, since diffusers' own converter does the reading.
    """
    from safetensors.torch import save_file

    state = {}
    unet_config = pipeline.unet.config
    for name, tensor in pipeline.unet.state_dict().items():
        state["model.diffusion_model." + _original_unet_key(name, unet_config)] = tensor
    for name, tensor in pipeline.vae.state_dict().items():
        original = _original_vae_key(name, len(pipeline.vae.config.block_out_channels))
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", original):
            tensor = tensor[:, :, None, None]  # the original stores these as 1x1 convolutions
        state["first_stage_model." + original] = tensor
    for name, tensor in pipeline.text_encoder.state_dict().items():
        # transformers 5 flattened CLIPTextModel; original checkpoints keep the ``text_model``.
        name = name if name.startswith("text_model.") else "text_model." + name
        state["cond_stage_model.transformer." + name] = tensor
    path = Path(path)
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _original_resnet(rest: str) -> str:
    layer, _, tail = rest.partition(".")
    return f"{_RESNET_NAMES[layer]}.{tail}"


def _original_unet_key(name: str, config) -> str:
    """The original (CompVis ``openaimodel``) name of a diffusers UNet parameter."""
    per_level = config.layers_per_block + 1  # resnets per down level, plus its downsampler
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for prefix, original in fixed.items():
        if name.startswith(prefix + "."):
            return original + name[len(prefix) :]
    match = re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)", name)
    if match:
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "downsamplers":
            return f"input_blocks.{(level + 1) * per_level}.0.op.{rest.removeprefix('conv.')}"
        block = 1 + level * per_level + index
        if kind == "resnets":
            return f"input_blocks.{block}.0.{_original_resnet(rest)}"
        return f"input_blocks.{block}.1.{rest}"
    match = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if match:
        kind, index, rest = match[1], int(match[2]), match[3]
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * index}.{_original_resnet(rest)}"
    match = re.match(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)", name)
    if match:
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "resnets":
            return f"output_blocks.{level * per_level + index}.0.{_original_resnet(rest)}"
        if kind == "attentions":
            return f"output_blocks.{level * per_level + index}.1.{rest}"
        has_attention = "CrossAttn" in config.up_block_types[level]
        block = level * per_level + per_level - 1
        return f"output_blocks.{block}.{2 if has_attention else 1}.{rest}"
    raise KeyError(f"no original Stable Diffusion name for UNet parameter {name}")


def _original_vae_key(name: str, levels: int) -> str:
    """The original (CompVis ``ldm`` autoencoder) name of a diffusers AutoencoderKL parameter."""
    if name.startswith(("quant_conv.", "post_quant_conv.")):
        return name
    part, _, rest = name.partition(".")
    for diffusers_name, original in (("conv_norm_out", "norm_out"),):
        rest = rest.replace(diffusers_name, original)
    rest = rest.replace("conv_shortcut", "nin_shortcut")
    match = re.match(
        r"(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.*)", rest
    )
    if match:
        direction, level, kind, index, tail = match[1], int(match[2]), match[3], match[4], match[5]
        # The decoder's levels are numbered from the bottom in the original layout.
        original_level = level if direction == "down" else levels - 1 - level
        if kind == "resnets":
            return f"{part}.{direction}.{original_level}.block.{index}.{tail}"
        sampler = "downsample" if kind == "downsamplers" else "upsample"
        return f"{part}.{direction}.{original_level}.{sampler}.{tail}"
    match = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", rest)
    if match:
        kind, index, tail = match[1], int(match[2]), match[3]
        if kind == "resnets":
            return f"{part}.mid.block_{index + 1}.{tail}"
        attention = {
            "group_norm": "norm",
            "to_q": "q",
            "to_k": "k",
            "to_v": "v",
            "to_out.0": "proj_out",
        }
        layer, _, leaf = tail.rpartition(".")
        return f"{part}.mid.attn_1.{attention[layer]}.{leaf}"
    return f"{part}.{rest}"
