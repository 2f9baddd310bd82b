"""PEFT LoRA on the UNet: which layers get an adapter, and the PEFT config that says so."""
from __future__ import annotations

# Module-name suffixes, matched by PEFT against `unet.named_modules()`.
TARGET_SETS = {
    # diffusers' train_text_to_image_lora.py default: the attention projections.
    "attention": ("to_q", "to_k", "to_v", "to_out.0"),
    # kohya's networks/lora.py: every Linear/1x1 in a Transformer2DModel.
    "kohya": ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"),
}
# kohya's LoCon layers (with conv_dim): ResNet convs and the down/up-sampler convs.
CONV_TARGETS = ("conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv")


def lora_config(train_cfg):
    """The `peft.LoraConfig` for a `TrainSection` (rank, alpha, dropout, init, target set, conv rank)."""
    from peft import LoraConfig

    targets = list(TARGET_SETS[train_cfg.lora_targets])
    rank_pattern, alpha_pattern = {}, {}
    if train_cfg.lora_conv_rank:
        targets += CONV_TARGETS
        conv_alpha = train_cfg.lora_conv_alpha or train_cfg.lora_conv_rank
        for name in CONV_TARGETS:
            # PEFT matches patterns as `(.*\.)?<pattern>$` against the module's full name.
            rank_pattern[name.replace(".", r"\.")] = train_cfg.lora_conv_rank
            alpha_pattern[name.replace(".", r"\.")] = conv_alpha
    return LoraConfig(
        r=train_cfg.lora_rank,
        lora_alpha=train_cfg.lora_alpha,
        lora_dropout=train_cfg.lora_dropout,
        init_lora_weights="gaussian" if train_cfg.lora_init == "gaussian" else True,
        target_modules=targets,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
    )


def add_lora(unet, train_cfg, adapter_name: str = "default"):
    """Freeze `unet` and add a trainable LoRA adapter in place (diffusers' PEFT integration); returns the config."""
    config = lora_config(train_cfg)
    unet.requires_grad_(False)
    unet.add_adapter(config, adapter_name=adapter_name)
    return config


def lora_state_dict(unet) -> dict:
    """The adapter weights with PEFT's key names (`...to_q.lora_A.weight`), unwrapped from DDP."""
    from peft.utils import get_peft_model_state_dict

    unet = getattr(unet, "module", unet)
    return get_peft_model_state_dict(unet)


def set_lora_state_dict(unet, state: dict) -> None:
    """Load adapter weights saved by `lora_state_dict`; every key must match."""
    from peft.utils import set_peft_model_state_dict

    unet = getattr(unet, "module", unet)
    result = set_peft_model_state_dict(unet, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"LoRA state does not fit this model/config: unexpected keys {unexpected[:5]}...")


def trainable_parameters(unet) -> list:
    return [p for p in unet.parameters() if p.requires_grad]
