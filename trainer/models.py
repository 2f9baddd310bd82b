"""Base-model loading: a local diffusers folder, a hub id, or (planned) a single-file checkpoint.

Returns a diffusers `StableDiffusionPipeline`; callers take `.unet`, `.vae`, `.text_encoder`,
`.tokenizer`, `.scheduler` from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BaseModel:
    """A loaded base model and what the rest of the code needs to know about it."""

    pipe: object  # diffusers.StableDiffusionPipeline
    family: str  # "sd1" | "sd2"
    prediction_type: str  # "epsilon" | "v_prediction"
    source: str  # what the user gave (path or hub id)


def detect_family(unet_config) -> str:
    """`sd2` when the UNet uses linear projections (SD2.x), else `sd1`."""
    return "sd2" if unet_config.get("use_linear_projection") else "sd1"


def load_base_model(model_name: str, *, prediction_type: str | None = None, torch_dtype=None) -> BaseModel:
    """Load `model_name` (diffusers folder or hub id) as a pipeline; `prediction_type` overrides the scheduler's."""
    from diffusers import StableDiffusionPipeline

    path = Path(model_name).expanduser()
    if path.exists() and not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"{path}: not a diffusers model folder (no model_index.json)")
    pipe = StableDiffusionPipeline.from_pretrained(
        str(path) if path.exists() else model_name,
        torch_dtype=torch_dtype, safety_checker=None, requires_safety_checker=False,
    )
    pred = prediction_type or pipe.scheduler.config.get("prediction_type", "epsilon")
    if prediction_type:
        pipe.scheduler.register_to_config(prediction_type=prediction_type)
    return BaseModel(pipe=pipe, family=detect_family(pipe.unet.config), prediction_type=pred, source=model_name)
