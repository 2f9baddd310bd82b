"""`LoraRef`: a LoRA on disk and what is known about it — the ComfyUI `LORA` type.

A plain dataclass (no ComfyUI, no torch at import): the training node returns one, `ApplyLoRA` reads
the file it points to. Immutable, because ComfyUI keeps node outputs in its cache by reference.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoraRef:
    """A LoRA file (or PEFT adapter dir) with its format, rank/alpha, base family and training metadata."""

    path: str
    format: str = "webui"  # what `convert.detect_format` calls it: webui, diffusers, peft, hcp, ...
    rank: int = 0  # most common rank over the modules
    alpha: float = 0.0  # most common alpha (scale = alpha / rank)
    family: str | None = None  # "sd1" | "sd2" | "sdxl" | None (unknown)
    base_model: str = ""  # the model it was trained on, when known
    metadata: dict = field(default_factory=dict)  # training metadata (kohya ss_* keys, steps, loss, ...)

    @property
    def name(self) -> str:
        """The file name without extension: what `<lora:NAME:1>` uses in sd-webui."""
        return Path(self.path).stem

    @classmethod
    def from_file(cls, path, **extra) -> "LoraRef":
        """Read `path` with `convert.load_any` (any format it knows) and describe it."""
        from ..siblings import sibling

        lora = sibling("convert").load_any(path)
        rank, alpha = lora.common_rank_alpha()
        meta = dict(lora.metadata)
        base = meta.get("ss_sd_model_name", "")
        return cls(str(path), lora.format, int(rank), float(alpha), lora.family, base, {**meta, **extra})

    def summary(self) -> str:
        """One line for a UI: name, format, rank/alpha, family, steps when known."""
        steps = self.metadata.get("ss_steps")
        parts = [f"{self.name} ({self.format})", f"rank {self.rank}, alpha {self.alpha:g}",
                 f"family {self.family or 'unknown'}"]
        if steps:
            parts.append(f"{steps} steps")
        return ", ".join(parts)

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "format": self.format, "rank": self.rank, "alpha": self.alpha,
                           "family": self.family, "base_model": self.base_model, "metadata": self.metadata},
                          sort_keys=True, default=str)
