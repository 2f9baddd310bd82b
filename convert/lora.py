"""The canonical in-memory LoRA every format is read into and written from.

A module's weight update is ΔW = (alpha / rank) · up @ down (conv factors flattened, the result
reshaped to the base weight's shape), rank = down.shape[0]. Every format stores the same product
with its own alpha convention; the readers turn that convention into this one, the writers back.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


class LoraFormatError(ValueError):
    """A LoRA file or state dict that cannot be read or written; the message names the file and the fix."""


@dataclass
class LoraModule:
    """One adapted layer: `down` [r, in(, kh, kw)], `up` [out, r(, 1, 1)], scale = alpha / r."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def is_conv(self) -> bool:
        return self.down.dim() == 4 and tuple(self.down.shape[2:]) != (1, 1)

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """ΔW in `dtype` (fp32 unless asked), shaped [out, in] or [out, in, kh, kw] (the shape `down` implies)."""
        up = self.up.to(dtype).reshape(self.up.shape[0], -1)
        down = self.down.to(dtype).reshape(self.rank, -1)
        return (self.scale * (up @ down)).reshape((self.up.shape[0], *self.down.shape[1:]))


@dataclass
class LoraFile:
    """Modules keyed by canonical path (`unet.<diffusers path>`, `text_encoder.text_model.<path>`)."""

    modules: dict[str, LoraModule]
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = "canonical"
    family: str | None = None  # "sd1" | "sd2" | "sdxl" | None (unknown)
    source: str | None = None  # the file/dir it was read from; writers refuse to overwrite it

    def component(self, name: str) -> dict[str, LoraModule]:
        """The modules of one component, keyed by path without the component prefix."""
        prefix = name + "."
        return {k[len(prefix):]: m for k, m in self.modules.items() if k.startswith(prefix)}

    def common_rank_alpha(self) -> tuple[int, float]:
        """The most common (rank, alpha) — what kohya's `ss_network_dim/alpha` and PEFT's `r/lora_alpha` show."""
        if not self.modules:
            return 0, 0.0
        ranks = Counter(m.rank for m in self.modules.values())
        alphas = Counter(m.alpha for m in self.modules.values())
        return ranks.most_common(1)[0][0], alphas.most_common(1)[0][0]


def check_factors(name: str, down: torch.Tensor, up: torch.Tensor, source: str) -> None:
    """Raise a `LoraFormatError` when `down`/`up` cannot be the two factors of one LoRA layer."""
    fix = "the file is damaged or not a plain LoRA; re-export it"
    if down.dim() not in (2, 4) or up.dim() not in (2, 4):
        raise LoraFormatError(
            f"{source}: module {name}: factors must be 2-D or 4-D, got down {tuple(down.shape)}, up {tuple(up.shape)}; {fix}"
        )
    if down.dim() != up.dim():  # a layer is linear (2-D factors) or conv (4-D): one of each makes no ΔW a loader takes
        raise LoraFormatError(
            f"{source}: module {name}: down {tuple(down.shape)} is {down.dim()}-D but up {tuple(up.shape)} is "
            f"{up.dim()}-D; both factors of a layer are 2-D (linear) or both 4-D (conv); {fix}"
        )
    if up.shape[1] != down.shape[0] or (up.dim() == 4 and tuple(up.shape[2:]) != (1, 1)):
        raise LoraFormatError(
            f"{source}: module {name}: up {tuple(up.shape)} does not fit down {tuple(down.shape)} "
            f"(need up [out, {down.shape[0]}] or [out, {down.shape[0]}, 1, 1]); {fix}"
        )


def nonfinite_modules(modules: dict[str, LoraModule]) -> list[str]:
    """Names of the modules whose down or up holds NaN or ±inf."""
    bad = []
    for name, m in modules.items():
        for t in (m.down, m.up):
            # A finite fp32 sum means every entry is finite (NaN/inf propagate); only a non-finite sum (or an
            # overflowing one) needs the element-wise check. Keeps a 150 MB LoRA's check to one pass, no copies.
            if not torch.isfinite(torch.sum(t, dtype=torch.float32)) and not torch.isfinite(t).all():
                bad.append(name)
                break
    return sorted(bad)


def alpha_value(t: torch.Tensor, name: str, source: str) -> float:
    """A stored alpha as a float: 0-dim or one-element tensors of any dtype (kohya saves fp16/bf16/int64)."""
    if t.numel() != 1:
        raise LoraFormatError(f"{source}: {name}.alpha has shape {tuple(t.shape)}, expected a scalar; re-export the file")
    value = float(t.reshape(-1)[0].float().item()) if t.dtype.is_floating_point else float(t.reshape(-1)[0].item())
    if not math.isfinite(value):
        raise LoraFormatError(f"{source}: {name}.alpha is {value}; the file is damaged, re-export it")
    return value


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_dtype(dtype) -> torch.dtype | None:
    """None | torch.dtype | "fp16"/"bf16"/"fp32" -> torch.dtype or None (keep the source dtype)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def factors(m: LoraModule, *, fold: bool, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(down, up, alpha) to write: copied as is, or with the scale folded into `up` (computed in fp32, alpha = rank)."""
    down, up, alpha = m.down, m.up, m.alpha
    if fold and alpha != m.rank:
        up = (up.float() * m.scale).to(dtype or up.dtype)
        alpha = float(m.rank)
    if dtype is not None:
        down, up = down.to(dtype), up.to(dtype)
    return down, up, alpha
