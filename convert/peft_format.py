"""PEFT / diffusers side: read a trainer's `get_peft_model_state_dict`, write PEFT adapter dirs and diffusers files.

PEFT keeps one `r`/`lora_alpha` plus `rank_pattern`/`alpha_pattern` per adapter. Writing exact per-module
patterns (or folding the scale into `lora_B`) is what keeps mixed-alpha LoRAs right; diffusers' own kohya
loader collapses them to the majority alpha.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from . import keymap
from .atomic_write import check_output, replace_dir, save_safetensors, temp_dir_for
from .formats import ADAPTER_METADATA_KEY, DIFFUSERS_WEIGHTS, PEFT_CONFIG, peft_modules
from .lora import LoraFile, LoraModule, factors, resolve_dtype
from .metadata import STALE_KEYS, detect_family

PEFT_COMPONENT_DIRS = {"unet": "", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2"}


def from_peft_state_dict(state_dict, *, rank, alpha, rank_pattern=None, alpha_pattern=None, use_rslora=False,
                         component="unet", metadata=None) -> LoraFile:
    """`peft.get_peft_model_state_dict(model)` + its LoraConfig values -> `LoraFile` (keys may carry `base_model.model.`)."""
    modules = peft_modules(state_dict, rank=rank, alpha=alpha, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern,
                           use_rslora=use_rslora, component=component, source=f"PEFT {component} state dict")
    metadata = dict(metadata or {})
    return LoraFile(modules, metadata, "peft", detect_family(modules, metadata))


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def peft_config(modules: dict[str, LoraModule], component: str) -> dict:
    """LoraConfig kwargs for one component: majority r/lora_alpha, exact per-module patterns for the rest."""
    r = Counter(m.rank for m in modules.values()).most_common(1)[0][0]
    alpha = Counter(m.alpha for m in modules.values()).most_common(1)[0][0]
    # Pattern/target keys are module paths without `text_model.`: PEFT matches them as suffixes
    # (`(.*\.)?(key)$`), so one config fits CLIPTextModel with (transformers 4) and without (5) that level.
    paths = {keymap.model_path(k, text_model_level=False)[1]: m for k, m in modules.items()}
    return dict(
        r=r,
        lora_alpha=_number(alpha),
        rank_pattern={p: m.rank for p, m in paths.items() if m.rank != r},
        alpha_pattern={p: _number(m.alpha) for p, m in paths.items() if m.alpha != alpha},
        target_modules=sorted(paths),
        use_rslora=False,
        use_dora=False,
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=True,
    )


def to_peft_state_dict(lora: LoraFile, component: str = "unet", text_model_level: bool = True, *,
                       fold_alpha: bool = False, dtype=None) -> tuple[dict[str, torch.Tensor], dict]:
    """(`<path>.lora_A/B.weight` state dict, LoraConfig kwargs) for one component, e.g. for
    `inject_adapter_in_model(LoraConfig(**cfg), model)` + `set_peft_model_state_dict(model, sd)`.
    `text_model_level=False` spells text-encoder paths as transformers >= 5 names them."""
    dtype = resolve_dtype(dtype)
    sd: dict[str, torch.Tensor] = {}
    written: dict[str, LoraModule] = {}
    for key, m in lora.modules.items():
        comp, path = keymap.model_path(key, text_model_level)
        if comp != component:
            continue
        down, up, alpha = factors(m, fold=fold_alpha, dtype=dtype)
        sd[f"{path}.lora_A.weight"] = down
        sd[f"{path}.lora_B.weight"] = up
        written[key] = LoraModule(down, up, alpha)
    if not written:
        return {}, {}
    return sd, peft_config(written, component)


def _file_metadata(lora: LoraFile) -> dict[str, str]:
    meta = {k: v for k, v in lora.metadata.items() if k not in STALE_KEYS}
    meta["format"] = "pt"
    return meta


def _components(lora: LoraFile) -> list[str]:
    return [c for c in PEFT_COMPONENT_DIRS if any(k.startswith(c + ".") for k in lora.modules)]


def save_peft(lora: LoraFile, out_dir, *, fold_alpha: bool = False, overwrite: bool = False, dtype=None) -> Path:
    """PEFT adapter dir: the UNet adapter at the top (`adapter_config.json`, `adapter_model.safetensors`),
    each text encoder's adapter in `text_encoder/` (`text_encoder_2/`), text-encoder keys with `text_model.`."""
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite, [lora.source] if lora.source else [])
    tmp = temp_dir_for(out_dir)
    try:
        for component in _components(lora):
            sd, cfg = to_peft_state_dict(lora, component, fold_alpha=fold_alpha, dtype=dtype)
            sub = tmp / PEFT_COMPONENT_DIRS[component]
            sub.mkdir(parents=True, exist_ok=True)
            cfg = dict(cfg, peft_type="LORA", task_type=None, base_model_name_or_path=None, inference_mode=True)
            (sub / PEFT_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True))
            save_safetensors({f"base_model.model.{k}": v for k, v in sd.items()}, sub / "adapter_model.safetensors",
                             _file_metadata(lora))
        replace_dir(tmp, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def to_diffusers_state_dict(lora: LoraFile, *, fold_alpha: bool = False, dtype=None) -> tuple[dict, dict]:
    """(`unet.<path>.lora_A.weight` / `text_encoder.text_model.<path>...` state dict, `lora_adapter_metadata` dict)."""
    tensors, adapter_meta = {}, {}
    for component in _components(lora):
        sd, cfg = to_peft_state_dict(lora, component, fold_alpha=fold_alpha, dtype=dtype)
        tensors.update({f"{component}.{k}": v for k, v in sd.items()})
        adapter_meta.update({f"{component}.{k}": v for k, v in cfg.items()})
    return tensors, adapter_meta


def save_diffusers(lora: LoraFile, path, *, fold_alpha: bool = False, overwrite: bool = False, dtype=None) -> Path:
    """diffusers `pytorch_lora_weights.safetensors` (a dir gets that file name) with `lora_adapter_metadata`,
    loadable by `pipe.load_lora_weights` with every module's exact scale."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / DIFFUSERS_WEIGHTS
    check_output(path, overwrite, [lora.source] if lora.source else [])
    tensors, adapter_meta = to_diffusers_state_dict(lora, fold_alpha=fold_alpha, dtype=dtype)
    meta = _file_metadata(lora)
    meta[ADAPTER_METADATA_KEY] = json.dumps(adapter_meta, indent=2, sort_keys=True)
    save_safetensors(tensors, path, meta)
    return path
