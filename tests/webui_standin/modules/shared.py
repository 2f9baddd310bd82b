"""sd-webui's modules/shared.py: `cmd_opts` (its `lora_dir` comes from the built-in Lora extension's --lora-dir)."""
from types import SimpleNamespace

cmd_opts = SimpleNamespace(lora_dir=None)
