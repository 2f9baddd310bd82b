"""The embedded default model: tiny random-weight Stable Diffusion pipelines with the real layouts.

No weights can be downloaded where this project is tested, so the demo and the test-suite build
pipelines from configs. The block structure is SD1.5's (or SD2.x's) exactly — 4 down blocks, 3 with
cross-attention, two layers per block, transformer depth 1 — so every module path, and therefore
every LoRA key, is the real one; only the channel widths are small.

`sdxl`: SDXL base 1.0's layout — 3 down blocks (the first without attention), linear projections, two
text encoders (CLIP-L-like `CLIPTextModel` + bigG-like `CLIPTextModelWithProjection`, hidden states
concatenated), `addition_embed_type="text_time"` (pooled text + 6 size numbers). Transformer depth is
(1, 2, 2) instead of (1, 2, 10): every module path is still one the real model has (so every LoRA key is a
real SDXL key), at a fifth of the attention layers, which keeps the tests fast.
"""
from __future__ import annotations

from pathlib import Path

from ..assets import CLIP_TOKENIZER_DIR

# Channel widths must stay multiples of 32: the UNet and VAE use GroupNorm(32).
TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=2,
    transformer_layers_per_block=1,
    attention_head_dim=8,
    # Set explicitly: UNet2DConditionModel's default (1280) is not SD1's (768); ours is the tiny encoder's width.
    cross_attention_dim=32,
    norm_num_groups=32,
)
TINY_TEXT_ENCODER = dict(
    vocab_size=49408,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=32,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(32, 32, 32, 32),  # 4 blocks: latents are 1/8 of the image, as in SD
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
    scaling_factor=0.18215,
)
# SDXL: down blocks without/with/with attention; widths 32/64/64; text encoders 32 and 64 wide -> context 96;
# the added embedding takes 6 size numbers x 8 channels + the 64-wide pooled text. The two encoders must differ
# in width, as CLIP-L (768) and bigG (1280) do: diffusers' single-file loader tells them apart by it.
TINY_SDXL_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 64),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 2),
    attention_head_dim=(2, 4, 4),
    cross_attention_dim=32 + 64,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 64,
    norm_num_groups=32,
)
SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


TINY_VARIANTS = ("sd15", "sd2", "sdxl")


def build_tiny_pipeline(variant: str = "sd15", seed: int = 0):
    """Build a random-weight pipeline: `StableDiffusionPipeline` with SD1.5 (`sd15`) or SD2.x (`sd2`,
    v-prediction) layout, or `StableDiffusionXLPipeline` with SDXL base layout (`sdxl`, epsilon)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if variant not in TINY_VARIANTS:
        raise ValueError(f"unknown tiny variant {variant!r}: use one of {', '.join(TINY_VARIANTS)}")
    if variant == "sdxl":
        return _build_tiny_sdxl(seed)
    sd2 = variant == "sd2"
    torch.manual_seed(seed)
    unet_cfg = dict(TINY_UNET)
    if sd2:
        # SD2.x: linear proj_in/proj_out, head width 64 in the real model (here: 2 heads per block).
        unet_cfg.update(use_linear_projection=True, attention_head_dim=(2, 4, 4, 4), upcast_attention=True)
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**TINY_VAE)
    te_cfg = dict(TINY_TEXT_ENCODER)
    if sd2:
        te_cfg.update(hidden_act="gelu", pad_token_id=0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    if sd2:
        tokenizer.pad_token = "!"  # SD2's OpenCLIP pads with id 0 ("!"), SD1 with <|endoftext|>
    sched_cfg = dict(SCHEDULER, prediction_type="v_prediction" if sd2 else "epsilon")
    scheduler = DDIMScheduler(**sched_cfg)
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _build_tiny_sdxl(seed: int):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_SDXL_UNET)
    # SDXL's VAE overflows in fp16: its config says so, and the trainer keeps it in fp32 under fp16.
    vae = AutoencoderKL(**dict(TINY_VAE, scaling_factor=0.13025, force_upcast=True))
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER))
    # OpenCLIP bigG: gelu, pads with id 0 ("!"), and a projection whose pooled output conditions the UNet.
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**dict(
        TINY_TEXT_ENCODER, hidden_size=64, intermediate_size=128, projection_dim=64, hidden_act="gelu", pad_token_id=0)))
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    tokenizer_2 = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    tokenizer_2.pad_token = "!"
    # SDXL base's own scheduler config (trainer/assets/sdxl): Euler, "leading" spacing, epsilon.
    schedule = {k: SCHEDULER[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps",
                                          "steps_offset")}
    scheduler = EulerDiscreteScheduler(**schedule, prediction_type="epsilon", timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
    )


def save_tiny_pipeline(out_dir: str | Path, variant: str = "sd15", seed: int = 0) -> Path:
    """Write the tiny pipeline as a diffusers folder (idempotent: an existing complete folder is kept)."""
    out = Path(out_dir)
    if (out / "model_index.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    build_tiny_pipeline(variant, seed).save_pretrained(tmp, safe_serialization=True)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out
