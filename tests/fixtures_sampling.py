"""Fixtures for the model-loading, sampling and evaluation tests (tiny single files, LoRAs in every format)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sd15_single_file(tiny_sd15_dir, tmp_path_factory) -> Path:
    """The tiny SD1.5 pipeline as an LDM-layout `.safetensors`, with its `<stem>.config/` side folder."""
    from trainer.models.base import load_base_model
    from trainer.models.single_file import save_single_file

    pipe = load_base_model(str(tiny_sd15_dir)).pipe
    return save_single_file(pipe, tmp_path_factory.mktemp("single") / "tiny-sd15.safetensors", save_config=True)


@pytest.fixture(scope="session")
def tiny_sd2_single_file(tiny_sd2_dir, tmp_path_factory) -> Path:
    """The tiny SD2 (v-prediction, open_clip layout) pipeline as a single file with side config."""
    from trainer.models.base import load_base_model
    from trainer.models.single_file import save_single_file

    pipe = load_base_model(str(tiny_sd2_dir)).pipe
    return save_single_file(pipe, tmp_path_factory.mktemp("single") / "tiny-sd2.safetensors", save_config=True)


def make_peft_lora(pipe, rank: int = 4, alpha: float = 8.0, seed: int = 0, text_encoder: bool = True):
    """A LoRA made with PEFT itself on the tiny UNet (+ text encoder), with random non-zero lora_B, as a LoraFile."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    from trainer.siblings import sibling

    convert = sibling("convert")
    torch.manual_seed(seed)
    modules = {}
    parts = [("unet", pipe.unet, ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "ff.net.2"])]
    if text_encoder:
        parts.append(("text_encoder", pipe.text_encoder, ["q_proj", "v_proj", "fc1"]))
    for component, model, targets in parts:
        model = __import__("copy").deepcopy(model)
        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
        inject_adapter_in_model(cfg, model)
        sd = get_peft_model_state_dict(model)
        sd = {k: (torch.randn_like(v) * 0.5 if "lora_B" in k else v) for k, v in sd.items()}
        if component == "text_encoder":  # every external format spells the text encoder with `text_model.`
            sd = {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in sd.items()}
        lora = convert.from_peft_state_dict(sd, rank=rank, alpha=alpha, component=component)
        modules.update(lora.modules)
    return convert.LoraFile(modules, {}, "peft", "sd1")


@pytest.fixture(scope="session")
def tiny_lora_files(tiny_sd15_dir, tmp_path_factory) -> dict[str, Path]:
    """One LoRA for the tiny SD1.5 model in the three formats: PEFT dir, diffusers file, webui file."""
    from trainer.models.base import load_base_model
    from trainer.siblings import sibling

    convert = sibling("convert")
    lora = make_peft_lora(load_base_model(str(tiny_sd15_dir)).pipe)
    root = tmp_path_factory.mktemp("loras")
    return {
        "peft": convert.save_peft(lora, root / "peft"),
        "diffusers": convert.save_diffusers(lora, root / "pytorch_lora_weights.safetensors"),
        "webui": convert.save_webui(lora, root / "tiny_webui.safetensors"),
    }


@pytest.fixture(scope="session")
def tiny_sd2_lora_file(tmp_path_factory) -> Path:
    """A webui LoRA for an SD2-style tiny UNet whose text width differs (48 vs 32), as SD2's 1024 vs SD1's 768."""
    from types import SimpleNamespace

    from diffusers import UNet2DConditionModel

    from trainer.siblings import sibling
    from trainer.models.tiny import TINY_UNET

    convert = sibling("convert")
    unet = UNet2DConditionModel(**dict(TINY_UNET, cross_attention_dim=48, use_linear_projection=True))
    lora = make_peft_lora(SimpleNamespace(unet=unet), text_encoder=False)
    lora.family = "sd2"
    return convert.save_webui(lora, tmp_path_factory.mktemp("loras2") / "sd2_wide.safetensors")


