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

