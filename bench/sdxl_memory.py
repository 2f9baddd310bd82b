"""Estimate the GPU memory of an SDXL UNet-LoRA training step without a GPU (and without SDXL's weights).

Parameter counts come from the shipped SDXL base 1.0 configs (`trainer/assets/sdxl`); the activations are the
bytes autograd saves for backward in one UNet forward at the given size, counted on PyTorch's meta device
(shapes only) with `saved_tensors_hooks`, each tensor counted once and frozen weights not at all. On meta,
attention runs PyTorch's math SDPA, which keeps each self-attention probability matrix; CUDA's flash /
memory-efficient SDPA (what diffusers uses on a GPU) does not, so those are reported apart and left out.

    python bench/sdxl_memory.py                                  # attention LoRA r4, batch 1, 1024², bf16
    python bench/sdxl_memory.py --targets kohya --rank 16 --gradient-checkpointing --batch 2

The total adds the frozen weights the trainer keeps on the GPU (UNet and both text encoders in bf16, VAE),
the LoRA's fp32 weights + gradients + AdamW moments, the saved activations, and a fixed allowance for the CUDA
context, kernels' workspace and allocator slack (`--overhead-gib`, default 1.5). It is an estimate: measure
with `bench/gpu_check.py`-style runs when a GPU is available.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GiB = 2 ** 30


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def estimate(targets: str = "attention", rank: int = 4, batch: int = 1, size: int = 1024,
             gradient_checkpointing: bool = False, overhead_gib: float = 1.5) -> dict:
    """The parts of the estimate in GiB (and the parameter counts)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from trainer.models.lora import lora_config
    from trainer.models.single_file import SHIPPED_CONFIGS

    cfg = SHIPPED_CONFIGS["sdxl"]
    with init_empty_weights():
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg / "text_encoder_2"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae"))
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet")).to("meta", torch.bfloat16)
    base_params = count(unet)
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(SimpleNamespace(lora_rank=rank, lora_alpha=rank, lora_dropout=0.0,
                                                 lora_init="default", lora_targets=targets, lora_conv_rank=0,
                                                 lora_conv_alpha=0)))
    lora = [p for p in unet.parameters() if p.requires_grad]
    lora_params = sum(p.numel() for p in lora)
    for p in lora:
        p.data = p.data.float()  # the trainer keeps LoRA weights in fp32
    unet.train()

    weights = {id(p) for p in unet.parameters()}
    seen: set[int] = set()
    saved = {"all": 0, "attention_probs": 0}

    def pack(t):
        base = t._base if t._base is not None else t
        if id(base) not in weights and id(base) not in seen:
            seen.add(id(base))
            nbytes = base.numel() * base.element_size()
            saved["all"] += nbytes
            if t.dim() >= 3 and t.shape[-1] == t.shape[-2] and t.shape[-1] >= 1024:
                saved["attention_probs"] += nbytes
        return t

    lat = size // 8
    kw = dict(device="meta", dtype=torch.bfloat16)
    cond = dict(encoder_hidden_states=torch.randn(batch, 77, 2048, **kw),
                added_cond_kwargs={"text_embeds": torch.randn(batch, 1280, **kw), "time_ids": torch.randn(batch, 6, **kw)})

    def forward():
        seen.clear()
        saved.update(all=0, attention_probs=0)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unet(torch.randn(batch, 4, lat, lat, **kw), torch.full((batch,), 500, device="meta"), **cond)
        return (saved["all"] - saved["attention_probs"]) / GiB, saved["attention_probs"] / GiB

    # Without checkpointing: what each block diffusers checkpoints (a resnet, a whole transformer) saves; with
    # it, backward recomputes one block at a time, so the largest is held on top of the blocks' inputs.
    per_block = []

    def before(module, args):
        module._saved_before = saved["all"] - saved["attention_probs"]

    def after(module, args, out):
        per_block.append((saved["all"] - saved["attention_probs"] - module._saved_before) / GiB)

    blocks = [m for m in unet.modules() if type(m).__name__ in ("Transformer2DModel", "ResnetBlock2D")]
    hooks = [h for m in blocks for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    activations, probs = forward()
    for h in hooks:
        h.remove()
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        activations = forward()[0] + max(per_block)
    parts = {
        "unet_bf16": base_params * 2 / GiB,
        "text_encoders_bf16": (count(te1) + count(te2)) * 2 / GiB,
        "vae_fp32": count(vae) * 4 / GiB,  # fp32 under fp16 (force_upcast); half that under bf16
        "lora_fp32_weights_grads_adamw": lora_params * 16 / GiB,
        "activations": activations,
        "overhead": overhead_gib,
    }
    return {"parts": parts, "total_gib": sum(parts.values()), "unet_params": base_params, "lora_params": lora_params,
            "math_sdpa_attention_probs_gib": probs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default="attention", choices=("attention", "kohya"))
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--overhead-gib", type=float, default=1.5)
    a = p.parse_args(argv)
    r = estimate(a.targets, a.rank, a.batch, a.size, a.gradient_checkpointing, a.overhead_gib)
    print(f"SDXL UNet {r['unet_params'] / 1e9:.3f} B params, LoRA ({a.targets}, r{a.rank}) {r['lora_params'] / 1e6:.2f} M; "
          f"batch {a.batch} at {a.size}², gradient checkpointing {'on' if a.gradient_checkpointing else 'off'}")
    for k, v in r["parts"].items():
        print(f"  {k:32s} {v:6.2f} GiB")
    print(f"  {'estimated total':32s} {r['total_gib']:6.2f} GiB   (math-SDPA attention matrices left out: "
          f"{r['math_sdpa_attention_probs_gib']:.2f} GiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
