"""LoRA conversion between diffusers/PEFT and kohya/sd-webui formats: `python -m convert --help`.

A leaf package: torch and safetensors only (no diffusers, no ComfyUI, no `trainer`).
Every conversion keeps each module's ΔW = (alpha / rank) · up @ down exactly; see `lora.py`.
"""
from .formats import detect_format, load_any
from .inspection import format_report, inspect_lora
from .locate import resolve_lora_path
from .lora import LoraFile, LoraFormatError, LoraModule
from .model_check import check_against_model, fit_to_model
from .peft_format import (
    from_peft_state_dict,
    peft_config,
    save_diffusers,
    save_peft,
    to_diffusers_state_dict,
    to_peft_state_dict,
)
from .verify import VerifyReport, verify
from .webui import save_webui, to_webui_state_dict

__all__ = [
    "LoraFile", "LoraModule", "LoraFormatError", "load_any", "resolve_lora_path", "detect_format", "from_peft_state_dict",
    "to_peft_state_dict", "to_diffusers_state_dict", "peft_config", "save_peft", "save_diffusers", "save_webui",
    "to_webui_state_dict", "check_against_model", "fit_to_model", "verify", "VerifyReport", "inspect_lora",
    "format_report",
]
