"""sd-webui's side of the tab, through the fewest of its `modules` names (shared, paths, sd_models), each use
guarded: a name a future sd-webui or Forge moves makes a default, never a failing tab."""
from __future__ import annotations

import importlib
import os
import traceback
from pathlib import Path


def _module(name: str):
    """`modules.<name>`, or None outside sd-webui (or where it no longer exists)."""
    try:
        return importlib.import_module(f"modules.{name}")
    except Exception:  # not just ImportError: a host module may fail while importing
        return None


def _models_path() -> Path:
    paths = _module("paths")
    models = getattr(paths, "models_path", None)
    if models:
        return Path(models)
    return Path(getattr(paths, "script_path", None) or os.getcwd()) / "models"


def lora_dir() -> Path:
    """sd-webui's Lora folder: `--lora-dir` (cmd_opts.lora_dir), else `models/Lora`."""
    shared = _module("shared")
    configured = getattr(getattr(shared, "cmd_opts", None), "lora_dir", None)
    return Path(configured) if configured else _models_path() / "Lora"


def data_dir() -> Path:
    """sd-webui's data folder (`--data-dir`), where the tab keeps its runs and caption sets."""
    paths = _module("paths")
    return Path(getattr(paths, "data_path", None) or getattr(paths, "script_path", None) or os.getcwd())


def checkpoints() -> dict[str, str]:
    """{title shown in sd-webui's checkpoint list: file path}."""
    sd_models = _module("sd_models")
    try:
        items = dict(getattr(sd_models, "checkpoints_list", None) or {})
    except Exception:
        return {}
    return {str(title): str(info.filename) for title, info in items.items() if getattr(info, "filename", None)}


def unload_model() -> str:
    """Free sd-webui's model from VRAM for a training run; what happened, in words."""
    sd_models = _module("sd_models")
    unload = getattr(sd_models, "unload_model_weights", None)
    if unload is None:
        return "this sd-webui has no sd_models.unload_model_weights: its model stays loaded"
    try:
        unload()
    except Exception as e:
        traceback.print_exc()
        return f"could not unload sd-webui's model ({type(e).__name__}: {e}); it stays loaded"
    return "sd-webui's model was unloaded for the run"


def reload_model() -> str:
    """Load sd-webui's selected model again after a run (the pair sd-webui's settings buttons use); in words."""
    sd_models = _module("sd_models")
    reload = getattr(sd_models, "reload_model_weights", None)
    if reload is None:
        return "this sd-webui has no sd_models.reload_model_weights: it loads its model at the next generation"
    try:
        reload()
    except Exception as e:
        traceback.print_exc()
        return f"could not reload sd-webui's model ({type(e).__name__}: {e}); it loads at the next generation"
    return "sd-webui was asked to load its model again (Forge loads it at the next generation)"


def refresh_lora_list() -> bool:
    """Ask the built-in Lora extension to rescan its folder (its `networks` module; absent outside sd-webui)."""
    try:
        import networks  # type: ignore[import-not-found]  # extensions-builtin/Lora, on sys.path inside sd-webui

        networks.list_available_networks()
        return True
    except Exception:
        return False
