"""Validation images during training: each prompt as written and without its adverbs, same noise every time."""
from __future__ import annotations

import re
from pathlib import Path


def prompt_variants(prompts: list[str], adverb_mode: str) -> list[tuple[str, str]]:
    """[(label, prompt)]: each prompt, plus its adverb-free version when the filter is on and changes it."""
    out = [(f"p{i}", p) for i, p in enumerate(prompts)]
    if adverb_mode == "none" or not prompts:
        return out
    try:
        from .adverbs import filter_adverbs
        from .captionset import CaptionRecord, CaptionSet

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
