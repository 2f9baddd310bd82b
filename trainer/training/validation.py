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
    """Sample one image per prompt with a plain diffusers pipeline around the (LoRA-wrapped) UNet
    (`StableDiffusionXLPipeline` when `pipe_parts` has a second text encoder)."""
    import contextlib

    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if pipe_parts.get("text_encoder_2") is not None:
        pipe = StableDiffusionXLPipeline(unet=unet, **pipe_parts)
    else:
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


class Validator:
    """Validation at a training step: sample the prompts (with and without adverbs) into `samples/` and
    TensorBoard, and, when `validation.adverb_eval` is on, log the adverb sensitivity of base + LoRA (and of
    the base model, measured once and repeated as a reference line).

    Only the main process samples; every process waits for it. The training RNG is left as it was, so a
    resumed run continues exactly.
    """

    def __init__(self, cfg, pipe, accelerator, metrics, weight_dtype, samples_dir: Path):
        v = cfg.validation
        self.settings, self.resolution = v, cfg.dataset.resolution
        self.accelerator, self.metrics, self.samples_dir = accelerator, metrics, Path(samples_dir)
        self.weight_dtype = weight_dtype
        self.prompts = prompt_variants(v.prompts, cfg.dataset.adverb_mode) if accelerator.is_main_process else []
        self.eval_pairs = []
        if self.prompts and v.adverb_eval:
            from ..generate.evaluate import pairs_from_captions

            self.eval_pairs = pairs_from_captions(adverb_free_prompts(self.prompts), v.eval_adverbs)
        self.base_eval: dict[str, float] = {}
        self.pipe_parts = dict(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                               scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config))
        if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
            self.pipe_parts.update(text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)
        self.written: list[Path] = []  # every sample image written, in order

    def __call__(self, unet, step: int) -> None:
        """Validate the (accelerate-prepared) LoRA-wrapped `unet` at `step`."""
        if self.prompts and self.accelerator.is_main_process:
            import torch

            v = self.settings
            rng = torch.get_rng_state()  # sampling must not shift the training RNG (exact resume)
            net = self.accelerator.unwrap_model(unet)
            net.eval()
            autocast_dtype = self.weight_dtype if self.weight_dtype != torch.float32 else None
            images = sample_images(self.pipe_parts, net, self.prompts, steps=v.num_inference_steps,
                                   guidance_scale=v.guidance_scale, seed=v.seed, resolution=self.resolution,
                                   device=self.accelerator.device, autocast_dtype=autocast_dtype)
            if self.eval_pairs:
                measure = dict(seed=v.seed, resolution=self.resolution, autocast_dtype=autocast_dtype)
                if not self.base_eval:
                    self.base_eval.update(adverb_eval(self.pipe_parts, net, self.eval_pairs, base=True, **measure))
                self.metrics.log_eval({"step": step, **adverb_eval(self.pipe_parts, net, self.eval_pairs, **measure),
                                       **self.base_eval})
            net.train()
            torch.set_rng_state(rng)
            self.written.extend(save_images(images, self.prompts, self.samples_dir, step))
            self.metrics.log_images("samples", images, step)
        self.accelerator.wait_for_everyone()
