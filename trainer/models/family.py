"""Which Stable Diffusion family a model is: `sd1` (SD1.x) or `sd2` (SD2.x), and the names users give them.

Its own module because both `base.py` (loading) and `single_file.py` (checkpoint layout) need it, and
`base.py` imports `single_file.py`: kept here, neither imports the other back.
"""
from __future__ import annotations

FAMILY_ALIASES = {"sd1": "sd1", "sd15": "sd1", "sd1.5": "sd1", "sd2": "sd2", "sd21": "sd2", "sd2.1": "sd2"}


def detect_family(unet_config) -> str:
    """`sd2` when the UNet uses linear projections (SD2.x), else `sd1`."""
    return "sd2" if unet_config.get("use_linear_projection") else "sd1"
