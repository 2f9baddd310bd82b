"""sd-webui / Forge entry point: the "Adverb LoRA" tab (Captions, Train, Convert).

sd-webui runs every scripts/*.py of an extension; ComfyUI and pip installs never import this file. The tab's code
lives in ../sdwebui/, loaded here under a name of its own (the extension folder is not on sys.path, and sd-webui
has a `webui` module of its own). Of sd-webui it uses `modules.script_callbacks` here and, guarded, `shared`,
`paths` and `sd_models` (sdwebui/host.py); the trainer runs in a subprocess, so nothing of torch's training stack,
diffusers, PEFT, accelerate or spaCy is imported into sd-webui's process.
"""
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from modules import script_callbacks

EXT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sd_adverb_lora_webui_tab"  # a name no host uses


def tab_package():
    """The sdwebui/ package, loaded once per process (a UI reload keeps the running training's state)."""
    if PACKAGE not in sys.modules:
        folder = EXT_ROOT / "sdwebui"
        spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[PACKAGE]
            raise
    return sys.modules[PACKAGE]


def on_ui_tabs():
    """sd-webui's tab callback: [(gr.Blocks, title, element id)]. A tab that cannot be built says why instead."""
    import gradio as gr

    try:
        tab_package()
        ui = importlib.import_module(f"{PACKAGE}.layout").build()
    except Exception as e:
        traceback.print_exc()
        with gr.Blocks(analytics_enabled=False) as ui:
            gr.Markdown(f"**The Adverb LoRA tab could not be built:** {type(e).__name__}: {e} "
                        "(details in sd-webui's console).")
    return [(ui, "Adverb LoRA", "adverb_lora")]


script_callbacks.on_ui_tabs(on_ui_tabs)
