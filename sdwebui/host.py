"""sd-webui's side of the tab, through the fewest of its `modules` names (shared, paths, sd_models), each use
guarded: a name a future sd-webui or Forge moves makes a default, never a failing tab."""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
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


_HASH_SUFFIX = re.compile(r"\s*\[[0-9A-Fa-f]+\]\s*$")  # the " [ab91c7c39b]" sd-webui appends once it has hashed a file


def checkpoint_file(choice: str) -> str | None:
    """The file of the sd-webui checkpoint `choice` names, found the way sd-webui finds one: its alias table
    (`sd_models.checkpoint_aliases`: title, title before or after hashing, name, name without extension, hashes),
    then its closest-title match (`sd_models.get_closet_checkpoint_match`, sd-webui's spelling). None when sd-webui
    knows no such checkpoint.

    Why not the title alone: sd-webui lists a new file as `name.safetensors` and renames it to
    `name.safetensors [ab91c7c39b]` once it has hashed it, so a title taken from the list can go stale."""
    choice = (choice or "").strip()
    if not choice:
        return None
    sd_models = _module("sd_models")
    info = None
    try:
        aliases = getattr(sd_models, "checkpoint_aliases", None)
        info = aliases.get(choice) if isinstance(aliases, dict) else None
        match = getattr(sd_models, "get_closet_checkpoint_match", None)
        if info is None and callable(match):
            info = match(choice)
    except Exception:
        traceback.print_exc()
        info = None
    if getattr(info, "filename", None):
        return str(info.filename)
    # An sd-webui without those names (older, or a fork): its list, by title with or without the hash.
    listed = checkpoints()
    if choice in listed:
        return listed[choice]
    bare = _HASH_SUFFIX.sub("", choice)
    return next((f for title, f in listed.items() if _HASH_SUFFIX.sub("", title) == bare), None)


def is_forge() -> bool:
    """Forge (it has `modules_forge`, and no-op stand-ins for sd-webui's model unload/move functions)."""
    try:
        return importlib.util.find_spec("modules_forge") is not None
    except (ImportError, ValueError):
        return False


def _loaded_model(sd_models, shared):
    """sd-webui's model object if one is loaded, else None. Read from `sd_models.model_data` first: in sd-webui
    1.10 `shared.sd_model` loads a checkpoint when none is loaded, which must not happen just to unload it."""
    data = getattr(sd_models, "model_data", None)
    if data is not None:
        return getattr(data, "sd_model", None)
    try:
        return getattr(shared, "sd_model", None)
    except Exception:  # Forge raises when no model is loaded yet
        return None


def unload_model() -> str:
    """Move sd-webui's model out of VRAM for a training run, as its own "Unload SD checkpoint to RAM" button does
    (`sd_models.unload_model_weights()`); what happened, in words (ends "unloaded for the run" when it was)."""
    if is_forge():
        return ("Forge keeps its model: its sd_models.unload_model_weights does nothing (Forge moves models "
                "itself when it generates)")
    sd_models, shared = _module("sd_models"), _module("shared")
    unload = getattr(sd_models, "unload_model_weights", None)
    if unload is None:
        return "this sd-webui has no sd_models.unload_model_weights: its model stays loaded"
    if _loaded_model(sd_models, shared) is None:
        return "sd-webui has no model loaded: nothing to unload"
    try:
        unload()
    except Exception as e:
        traceback.print_exc()
        return f"could not unload sd-webui's model ({type(e).__name__}: {e}); it stays loaded"
    return "sd-webui's model was unloaded for the run"


def reload_model() -> str:
    """Put sd-webui's model back on its device after a run, as its own "Load SD checkpoint to VRAM from RAM" button
    and /sdapi/v1/reload-checkpoint do (`sd_models.send_model_to_device(shared.sd_model)`); what happened, in words.

    Not `reload_model_weights()`: it returns at once when the selected checkpoint has not changed, which after an
    unload it has not, so the model would stay in RAM."""
    sd_models, shared = _module("sd_models"), _module("shared")
    send = getattr(sd_models, "send_model_to_device", None)
    if send is None:  # an sd-webui older than 1.6 or a fork: the old route, which loads at the next generation
        reload = getattr(sd_models, "reload_model_weights", None)
        if reload is None:
            return "this sd-webui has no sd_models.send_model_to_device: it loads its model at the next generation"
        try:
            reload()
        except Exception as e:
            traceback.print_exc()
            return f"could not reload sd-webui's model ({type(e).__name__}: {e}); it loads at the next generation"
        return "sd-webui was asked to load its model again"
    model = _loaded_model(sd_models, shared)
    if model is None:
        return "sd-webui has no model loaded: it loads one at the next generation"
    try:
        send(model)
    except Exception as e:
        traceback.print_exc()
        return f"could not move sd-webui's model back ({type(e).__name__}: {e}); it loads at the next generation"
    return "sd-webui's model was moved back to its device"


def refresh_lora_list() -> bool:
    """Ask the built-in Lora extension to rescan its folder (its `networks` module; absent outside sd-webui)."""
    try:
        import networks  # type: ignore[import-not-found]  # extensions-builtin/Lora, on sys.path inside sd-webui

        networks.list_available_networks()
        return True
    except Exception:
        return False
