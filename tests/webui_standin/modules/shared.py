"""sd-webui's modules/shared.py: `cmd_opts` (its `lora_dir` comes from the built-in Lora extension's --lora-dir),
the device models run on, and `sd_model`, which in sd-webui 1.10 reads `sd_models.model_data` (and would load a
checkpoint when none is loaded)."""
from types import SimpleNamespace

cmd_opts = SimpleNamespace(lora_dir=None)
device = "cuda"


def __getattr__(name):
    if name == "sd_model":
        from modules import sd_models

        if sd_models.model_data.sd_model is None:
            raise AssertionError("shared.sd_model read with no model loaded: in sd-webui that loads a checkpoint")
        return sd_models.model_data.sd_model
    raise AttributeError(name)
