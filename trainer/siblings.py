"""Import the sibling package `convert` in every layout this code runs in.

From the repo root (`python -m trainer`) `trainer` and `convert` are top-level packages; inside
ComfyUI both are sub-packages of the pack (loaded under a path-like name, repo not on sys.path);
after `pip install` both live under `sd_adverb_lora`. A relative `..convert` import works only in
the last two, an absolute `convert` only in the first, so resolve it from our own package name.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def sibling(name: str) -> ModuleType:
    """Import the package `name` that sits next to `trainer` (e.g. ``sibling("convert")``)."""
    parent = __package__.rpartition(".")[0]  # "" | "sd_adverb_lora" | "<comfy path-like name>"
    return importlib.import_module(f"{parent}.{name}" if parent else name)
