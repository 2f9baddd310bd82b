"""Validation during training: images of each prompt as written and without its adverbs (same noise every
time), and optionally the adverb sensitivity (`trainer.generate.evaluate`) of base and base + LoRA."""
from __future__ import annotations

import re
from pathlib import Path


def prompt_variants(prompts: list[str], adverb_mode: str) -> list[tuple[str, str]]:
    """[(label, prompt)]: each prompt, plus its adverb-free version when the filter is on and changes it."""
    out = [(f"p{i}", p) for i, p in enumerate(prompts)]
    if adverb_mode == "none" or not prompts:
        return out
    try:
        from ..captions.adverbs import filter_adverbs
        from ..captions.captionset import CaptionRecord, CaptionSet

        filtered = filter_adverbs(CaptionSet(tuple(CaptionRecord("", p) for p in prompts)), mode=adverb_mode)
    except Exception as e:  # spaCy or its model missing: sample the prompts as written
        print(f"validation: prompts sampled as written only (adverb filter unavailable: {e})")
        return out
    result = []
    for i, (p, rec) in enumerate(zip(prompts, filtered.records)):
        result.append((f"p{i}-with-adverbs", p))
        if rec.caption != p:
            result.append((f"p{i}-without-adverbs", rec.caption))
    return result


def adverb_free_prompts(variants: list[tuple[str, str]]) -> list[str]:
    """The adverb-free version of each prompt from `prompt_variants` (as written when the filter left it alone)."""
    plain = {}
    for label, prompt in variants:  # "p<i>-without-adverbs" comes after "p<i>-with-adverbs": it wins
        plain[label.split("-", 1)[0]] = prompt
    return list(dict.fromkeys(plain.values()))


def adverb_eval(pipe_parts: dict, unet, pairs, *, seed: int, resolution: int, base: bool = False,
                autocast_dtype=None) -> dict[str, float]:
    """`{"eval/adverb_sensitivity": x, "eval/adverb_sensitivity_relative": y}` of the LoRA-wrapped `unet`
    (`base=True`: with its adapters disabled, keys suffixed `_base`). Fixed latents and noise from `seed`."""
    import contextlib

    import torch

    from ..generate.evaluate import adverb_sensitivity

    ctx = torch.autocast(unet.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    trainable = [(p, p.requires_grad) for p in unet.parameters()]
    if base:
        # diffusers' PEFT integration has no disable_adapter() context; PEFT's enable_adapters() also
        # resets requires_grad, so the trainable flags are put back exactly as they were.
        unet.disable_adapters()
    try:
        with ctx:
            result = adverb_sensitivity(dict(pipe_parts, unet=unet), pairs, seed, resolution=resolution)
    finally:
        if base:
            unet.enable_adapters()
            for p, flag in trainable:
                p.requires_grad_(flag)
    suffix = "_base" if base else ""
    return {f"eval/adverb_sensitivity{suffix}": result["overall"],
            f"eval/adverb_sensitivity_relative{suffix}": result["overall_relative"]}


def sample_images(pipe_parts: dict, unet, prompts: list[tuple[str, str]], *, steps: int, guidance_scale: float,
                  seed: int, resolution: int, device, autocast_dtype=None):
    """Sample one image per prompt with a plain diffusers pipeline around the (LoRA-wrapped) UNet."""
    import contextlib

    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **pipe_parts,
    )
    pipe.set_progress_bar_config(disable=True)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    images = []
    with ctx, torch.no_grad():
        for _, prompt in prompts:
            gen = torch.Generator(device=device).manual_seed(seed)  # same noise for every prompt and step
            images.append(pipe(prompt, num_inference_steps=steps, guidance_scale=guidance_scale, height=resolution,
                               width=resolution, generator=gen).images[0])
    return images


def save_images(images, prompts: list[tuple[str, str]], samples_dir: str | Path, step: int) -> list[Path]:
    """Write `samples/step-<step>_<label>.png` plus a prompts.txt naming each label's prompt."""
    samples_dir = Path(samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (label, prompt), im in zip(prompts, images):
        path = samples_dir / f"step-{step:06d}_{re.sub(r'[^A-Za-z0-9_-]', '_', label)}.png"
        im.save(path)
        paths.append(path)
    (samples_dir / "prompts.txt").write_text("".join(f"{label}\t{p}\n" for label, p in prompts), encoding="utf-8")
    return paths
