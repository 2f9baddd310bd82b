"""LoRA conversion between diffusers/PEFT and kohya/sd-webui formats: `python -m convert --help`.

A leaf package: torch and safetensors only (no diffusers, no ComfyUI, no `trainer`).
"""
