"""`ApplyLoRA`: patch ComfyUI's MODEL/CLIP with a LoRA in any format `convert` reads, every key mapped."""
from __future__ import annotations

import logging
from pathlib import Path

from . import host
from .captions import CATEGORY

NO_FILE = "none"
KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")  # all `convert.to_webui_state_dict` writes


class LoraMappingError(ValueError):
    """A LoRA key ComfyUI would ignore ('lora key not loaded'), or a module whose shape does not fit the model."""


class _NotLoadedLog(logging.Handler):
    """Collects ComfyUI's 'lora key not loaded' / 'NOT LOADED' warnings while the patches are built."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("lora key not loaded") or msg.startswith("NOT LOADED"):
            self.lines.append(msg)


def module_names(state_dict: dict) -> dict[str, dict]:
    """kohya module name -> {suffix: tensor}; anything not a kohya LoRA key is an error naming it."""
    modules: dict[str, dict] = {}
    for key, t in state_dict.items():
        suffix = next((s for s in KOHYA_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            raise LoraMappingError(f"LoRA key {key!r} is not a kohya LoRA key (lora_down/lora_up/alpha)")
        modules.setdefault(key[: -len(suffix)], {})[suffix] = t
    return modules


def check_mapping(state_dict: dict, model, clip, source: str) -> int:
    """Every module maps to a weight of `model` (UNet) or `clip` (text encoder) with matching shapes.

    ComfyUI itself only logs unmapped keys and applies the rest; a half-applied LoRA is worse than none.
    Returns the number of modules.
    """
    import comfy.lora
    import comfy.utils

    unet_map = comfy.lora.model_lora_keys_unet(model.model, {}) if model is not None else {}
    clip_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {}) if clip is not None else {}
    modules = module_names(state_dict)
    unmapped, wrong = [], []
    for name, parts in modules.items():
        owner, target = (model.model, unet_map.get(name)) if name in unet_map else (
            (clip.cond_stage_model, clip_map.get(name)) if name in clip_map else (None, None))
        if target is None:
            unmapped.append(name)
            continue
        if isinstance(target, str) and ".lora_up.weight" in parts and ".lora_down.weight" in parts:
            w = comfy.utils.get_attr(owner, target)
            up, down = parts[".lora_up.weight"], parts[".lora_down.weight"]
            if up.shape[0] != w.shape[0] or down[0].numel() != w[0].numel():
                wrong.append(f"{name}: LoRA {tuple(up.shape[:1]) + tuple(down.shape[1:])} vs model {tuple(w.shape)}")
    if unmapped:
        te = [n for n in unmapped if n.startswith("lora_te")]
        hint = ("connect the CLIP input (the LoRA has text-encoder modules)" if te and clip is None else
                "the LoRA is for another model family or layout than the connected model")
        raise LoraMappingError(f"{source}: {len(unmapped)} of {len(modules)} LoRA modules map to no weight of the "
                               f"model ({hint}): " + ", ".join(unmapped[:8]) + (" ..." if len(unmapped) > 8 else ""))
    if wrong:
        raise LoraMappingError(f"{source}: {len(wrong)} LoRA modules do not fit the model's weights (wrong base "
                               "model, e.g. SD2 LoRA on SD1.5): " + "; ".join(wrong[:4]))
    return len(modules)


class ApplyLoRA:
    DESCRIPTION = ("Applies a LoRA to MODEL (and CLIP) through ComfyUI's own LoRA loader, so strengths, stacking "
                   "and unloading work like the core Load LoRA node. Reads kohya/webui, diffusers, PEFT and HCP "
                   "files; any key that would not be applied is an error instead of a log line.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL", "CLIP")
    RETURN_NAMES = ("model", "clip")
    OUTPUT_TOOLTIPS = ("The model with the LoRA patched in.", "The CLIP with the LoRA patched in (unchanged when "
                                                             "the LoRA has no text-encoder part or none is connected).")

    _cache: dict = {}  # (path, size, mtime) -> kohya state dict, like core LoraLoader's loaded_lora

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to patch."}),
                "lora_name": ([NO_FILE] + host.filenames("loras"), {"tooltip": (
                    "A LoRA file from the loras folder (any format convert reads); ignored when the lora "
                    "input is connected.")}),
                "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01, "tooltip": (
                    "How strongly the LoRA changes the diffusion model (negative inverts it).")}),
                "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01, "tooltip": (
                    "How strongly the LoRA changes the text encoder (no effect for UNet-only LoRAs).")}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "The text encoder to patch, if the LoRA has text-encoder modules."}),
                "lora": ("LORA", {"tooltip": "A LoRA from TrainUNetLoRA; takes precedence over lora_name."}),
            },
        }

    @classmethod
    def load_state_dict(cls, path: Path) -> dict:
        """Any LoRA format → kohya keys (what comfy.lora maps), cached per file version."""
        from ..convert import load_any, resolve_lora_path, to_webui_state_dict

        path = resolve_lora_path(path)  # a checkpoint or run folder: key the cache on the LoRA it holds
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in cls._cache:
            cls._cache.clear()  # keep one, like core LoraLoader
            cls._cache[key] = to_webui_state_dict(load_any(path))
        return cls._cache[key]

    def apply(self, model, lora_name, strength_model, strength_clip, clip=None, lora=None):
        if lora is not None:
            path = Path(lora.path)
        elif lora_name != NO_FILE:
            path = host.model_file("loras", lora_name)
        else:
            raise ValueError("ApplyLoRA: connect a LORA or choose a file in lora_name")
        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        import comfy.sd

        state_dict = self.load_state_dict(path)
        check_mapping(state_dict, model, clip, str(path))
        watch = _NotLoadedLog()
        root = logging.getLogger()
        root.addHandler(watch)
        try:
            new_model, new_clip = comfy.sd.load_lora_for_models(model, clip, state_dict, strength_model, strength_clip)
        finally:
            root.removeHandler(watch)
        if watch.lines:  # belt and braces: ComfyUI disagreed with check_mapping
            raise LoraMappingError(f"{path}: ComfyUI did not load every key: " + "; ".join(watch.lines[:8]))
        return (new_model, new_clip if clip is not None else clip)
