"""Base-model loading: a local diffusers folder, a hub id, or a single-file SD1.x/SD2.x/SDXL checkpoint.

Returns a diffusers `StableDiffusionPipeline` (SD1.x/SD2.x) or `StableDiffusionXLPipeline` (SDXL, which
also has `.text_encoder_2`, `.tokenizer_2`); callers take `.unet`, `.vae`, `.text_encoder`,
`.tokenizer`, `.scheduler` from it. A separate VAE (e.g. an `sd-vae-ft-mse` folder) or text encoder
replaces the model's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .family import detect_family

PREDICTION_TYPES = ("epsilon", "v_prediction")
# The embedded random-weight models (`trainer/models/tiny.py`, seed 0: the same weights every time), so
# `sample` / `eval-adverbs` run on what the demo training run trained.
TINY_MODELS = {"tiny-sd15": "sd15", "tiny-sd2": "sd2", "tiny-sdxl": "sdxl"}


@dataclass
class BaseModel:
    """A loaded base model and what the rest of the code needs to know about it."""

    pipe: object  # diffusers.StableDiffusionPipeline, or StableDiffusionXLPipeline for sdxl
    family: str  # "sd1" | "sd2" | "sdxl"
    prediction_type: str  # "epsilon" | "v_prediction"
    source: str  # what the user gave (path or hub id)


def _resolve_dtype(torch_dtype):
    """Accept a torch dtype or its name (`fp16`, `bf16`, `float32`, ...)."""
    if torch_dtype is None or not isinstance(torch_dtype, str):
        return torch_dtype
    import torch

    names = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32, "no": None}
    if torch_dtype not in names:
        raise ValueError(f"torch_dtype={torch_dtype!r}: use one of {sorted(names)}")
    return names[torch_dtype]


def load_vae(source, torch_dtype=None):
    """An `AutoencoderKL` from a diffusers folder (the VAE folder itself or a pipeline's), hub id, or single file."""
    from diffusers import AutoencoderKL

    from .single_file import SHIPPED_CONFIGS, heap_frozen, is_single_file

    path = Path(source).expanduser()
    if is_single_file(path):
        # Standalone VAE files (vae-ft-mse-840000-ema-pruned) have the LDM VAE keys without a prefix.
        with heap_frozen():
            return AutoencoderKL.from_single_file(
                str(path), config=str(SHIPPED_CONFIGS["sd1"]), subfolder="vae", local_files_only=True,
                torch_dtype=torch_dtype,
            )
    if path.is_dir():
        sub = "vae" if (path / "vae" / "config.json").is_file() else None
        if sub is None and not (path / "config.json").is_file():
            raise FileNotFoundError(f"vae={path}: no config.json (neither a VAE folder nor a pipeline with vae/)")
        return AutoencoderKL.from_pretrained(str(path), subfolder=sub, torch_dtype=torch_dtype)
    return AutoencoderKL.from_pretrained(source, torch_dtype=torch_dtype)


def load_text_encoder(source, torch_dtype=None):
    """A transformers `CLIPTextModel` from a folder (the encoder's own or a pipeline's) or hub id."""
    from transformers import CLIPTextModel

    path = Path(source).expanduser()
    if path.is_dir():
        sub = "text_encoder" if (path / "text_encoder" / "config.json").is_file() else ""
        if not sub and not (path / "config.json").is_file():
            raise FileNotFoundError(f"text_encoder={path}: no config.json (nor text_encoder/config.json)")
        return CLIPTextModel.from_pretrained(str(path), subfolder=sub, **_dtype_kwarg(torch_dtype))
    return CLIPTextModel.from_pretrained(source, **_dtype_kwarg(torch_dtype))


def _dtype_kwarg(torch_dtype) -> dict:
    """transformers renamed `torch_dtype` to `dtype` in 4.56; older releases pass an unknown `dtype` on to the
    model's __init__ and fail, newer ones warn on `torch_dtype`."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch_dtype}


def load_base_model(
    model_name: str,
    *,
    prediction_type: str | None = None,
    torch_dtype=None,
    vae=None,
    text_encoder=None,
    config=None,
) -> BaseModel:
    """Load `model_name` (diffusers folder, hub id, `.safetensors`/`.ckpt` single file, or `tiny-sd15`/`tiny-sd2`/
    `tiny-sdxl`).

    `prediction_type` overrides the scheduler's (`epsilon` / `v_prediction`). `vae` / `text_encoder`:
    a loaded module or a path/hub id replacing the model's own (for SDXL, `text_encoder` is the first, CLIP-L
    encoder). `config`: a diffusers folder describing a single file whose sizes are not SD1.5's / SD2.1's / SDXL's.
    """
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from .single_file import is_single_file, load_single_file

    if prediction_type not in (None, *PREDICTION_TYPES):
        raise ValueError(f"prediction_type={prediction_type!r}: use one of {PREDICTION_TYPES}")
    torch_dtype = _resolve_dtype(torch_dtype)
    if vae is not None and isinstance(vae, (str, Path)):
        vae = load_vae(vae, torch_dtype)
    if text_encoder is not None and isinstance(text_encoder, (str, Path)):
        text_encoder = load_text_encoder(text_encoder, torch_dtype)

    path = Path(str(model_name)).expanduser()
    if str(model_name) in TINY_MODELS and not path.exists():
        from .tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline(TINY_MODELS[str(model_name)])
        for name, module in (("vae", vae), ("text_encoder", text_encoder)):
            if module is not None:
                setattr(pipe, name, module)
        if torch_dtype is not None and torch_dtype != pipe.unet.dtype:  # built in fp32; a no-op cast only warns
            pipe.to(dtype=torch_dtype)
        pred = prediction_type or pipe.scheduler.config.prediction_type
        pipe.scheduler.register_to_config(prediction_type=pred)
        return BaseModel(pipe=pipe, family=detect_family(pipe.unet.config), prediction_type=pred, source=str(model_name))
    if is_single_file(path):
        pipe, family, pred = load_single_file(
            path, config=config, prediction_type=prediction_type, torch_dtype=torch_dtype,
            vae=vae, text_encoder=text_encoder,
        )
        return BaseModel(pipe=pipe, family=family, prediction_type=pred, source=str(model_name))
    if path.is_file():
        raise ValueError(f"{path}: not a model (expected a diffusers folder or a .safetensors/.ckpt checkpoint)")
    if path.exists() and not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"{path}: not a diffusers model folder (no model_index.json)")
    overrides = {k: v for k, v in (("vae", vae), ("text_encoder", text_encoder)) if v is not None}
    source = str(path) if path.exists() else model_name
    # model_index.json names the pipeline class (a hub id: fetched, or read from the local hub cache).
    if DiffusionPipeline.load_config(source).get("_class_name") == "StableDiffusionXLPipeline":
        pipe = StableDiffusionXLPipeline.from_pretrained(source, torch_dtype=torch_dtype, **overrides)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            source, torch_dtype=torch_dtype, safety_checker=None, requires_safety_checker=False, **overrides,
        )
    pred = prediction_type or pipe.scheduler.config.get("prediction_type", "epsilon")
    pipe.scheduler.register_to_config(prediction_type=pred)
    return BaseModel(pipe=pipe, family=detect_family(pipe.unet.config), prediction_type=pred, source=str(model_name))
