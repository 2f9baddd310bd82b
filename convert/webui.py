"""kohya / sd-webui / ComfyUI output: `lora_unet_*`, `lora_te_*`, `.lora_down/.lora_up.weight`, float32 `.alpha`.

Written by hand rather than with diffusers' `convert_state_dict_to_kohya`, which writes alpha = rank
(silently rescaling any LoRA trained with lora_alpha != r) and `lora_te1_` for SD1 (not read by sd-scripts).
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import keymap
from .atomic_write import check_output, save_safetensors
from .lora import LoraFile, LoraFormatError, factors, resolve_dtype
from .metadata import webui_metadata


def to_webui_state_dict(lora: LoraFile, ldm_names: bool = False, dtype=None) -> dict[str, torch.Tensor]:
    """In-memory kohya keys; alpha = scale · rank as a float32 0-dim tensor (never 0, never rounded to fp16)."""
    dtype = resolve_dtype(dtype)
    out: dict[str, torch.Tensor] = {}
    for key, m in lora.modules.items():
        try:
            name = keymap.kohya_name(key, lora.family, ldm_names)
        except KeyError as e:
            raise LoraFormatError(f"{lora.source or 'LoRA'}: {e.args[0]}; write it without --ldm-names") from None
        down, up, alpha = factors(m, fold=False, dtype=dtype)
        if alpha == 0:  # a zero alpha means "off" to webui/ComfyUI but "scale 1" to kohya: keep ΔW = 0 unambiguous
            up, alpha = torch.zeros_like(up), float(m.rank)
        out[f"{name}.lora_down.weight"] = down
        out[f"{name}.lora_up.weight"] = up
        out[f"{name}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return out


def save_webui(lora: LoraFile, path, *, metadata: dict[str, str] | None = None, ldm_names: bool = False,
               dtype=None, overwrite: bool = False) -> Path:
    """Write a kohya/webui `.safetensors` atomically, with `ss_*` + `modelspec.*` metadata (source and `metadata` kept)."""
    path = Path(path)
    check_output(path, overwrite, [lora.source] if lora.source else [])
    tensors = to_webui_state_dict(lora, ldm_names=ldm_names, dtype=dtype)
    save_safetensors(tensors, path, webui_metadata(lora, path.stem, metadata))
    return path
