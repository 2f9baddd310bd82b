"""Which Stable Diffusion family a model is: `sd1` (SD1.x), `sd2` (SD2.x) or `sdxl`, and the names users give them.

Its own module because both `base.py` (loading) and `single_file.py` (checkpoint layout) need it, and
`base.py` imports `single_file.py`: kept here, neither imports the other back.
"""
from __future__ import annotations

FAMILY_ALIASES = {"sd1": "sd1", "sd15": "sd1", "sd1.5": "sd1", "sd2": "sd2", "sd21": "sd2", "sd2.1": "sd2",
                  "sdxl": "sdxl", "sdxl1.0": "sdxl", "sdxl_base": "sdxl"}


def detect_family(unet_config) -> str:
    """`sdxl` when the UNet takes SDXL's size/pooled-text conditioning, `sd2` when it uses linear projections
    (SD2.x), else `sd1`."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if unet_config.get("use_linear_projection") else "sd1"


def is_sdxl(pipe_or_parts) -> bool:
    """True for an SDXL pipeline (or dict of its components): it has a second text encoder and `text_time` UNet."""
    parts = pipe_or_parts if isinstance(pipe_or_parts, dict) else {
        "unet": getattr(pipe_or_parts, "unet", None), "text_encoder_2": getattr(pipe_or_parts, "text_encoder_2", None)}
    unet = parts.get("unet")
    return unet is not None and unet.config.get("addition_embed_type") == "text_time"
