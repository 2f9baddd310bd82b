"""`python -m trainer sample` and `python -m trainer eval-adverbs` (heavy imports stay inside the commands).

The work is done by `trainer.generate.sample` (images with sd-webui parameters) and
`trainer.generate.evaluate` (adverb sensitivity); this module turns arguments into calls and prints.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text
from ..siblings import sibling
from ..generate.evaluate import (CPU_RESOLUTION, DEFAULT_ADVERBS, DEFAULT_CAPTIONS, DEFAULT_TIMESTEPS,
                                 adverb_sensitivity, compare, default_resolution, distinct_prompts, image_distance,
                                 pairs_from_captions, pairs_from_coco, read_prompts_file, reference_pairs,
                                 unet_evaluations,
                                 write_bar_chart)
from ..generate.sample import (SCHEDULERS, SampleSettings, generate, output_paths, pick_device, save_png,
                               webui_parameters)


def register(subparsers) -> None:
    """Add the `sample` and `eval-adverbs` sub-commands."""
    register_sample(subparsers)
    register_eval(subparsers)


def register_sample(subparsers) -> None:
    """Add the `sample` sub-command."""
    p = subparsers.add_parser("sample", help="generate images with a base model + LoRA (PNG with sd-webui parameters)")
    add_model_arguments(p)
    p.add_argument("--lora", default=None, help="LoRA: webui/kohya or diffusers file, PEFT adapter dir, checkpoint-<step>/ or training run folder")
    p.add_argument("--lora_scale", type=float, default=1.0, help="LoRA strength (sd-webui's <lora:name:scale>)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative_prompt", default="")
    p.add_argument("--num_inference_steps", type=int, default=30)
    p.add_argument("--guidance_scale", type=float, default=7.5)
    p.add_argument("--seed", type=int, default=1234, help="image i uses seed + i")
    p.add_argument("--num_images", type=int, default=1)
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--scheduler", default="dpmpp", choices=sorted(SCHEDULERS))
    p.add_argument("--output", default="sample.png", help="out.png (several images: out-00.png, ...) or a folder")
    p.add_argument("--progress", action="store_true", help="show the denoising progress bar")
    p.set_defaults(func=run_sample)


def add_model_arguments(p) -> None:
    """--model_name / --prediction_type / --vae / --device / --dtype, shared by `sample` and `eval-adverbs`."""
    p.add_argument("--model_name", required=True,
                   help="diffusers folder, hub id, or single-file .safetensors/.ckpt SD1.x/SD2.x checkpoint")
    p.add_argument("--prediction_type", choices=("epsilon", "v_prediction"), default=None,
                   help="override the model's (SD2.x 768 single files default to v_prediction)")
    p.add_argument("--vae", default=None, help="a separate VAE (diffusers folder or single file)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="weights dtype (auto: fp16 on CUDA, fp32 elsewhere)")


def run_sample(args) -> int:
    """`python -m trainer sample`: load, apply the LoRA, generate, write PNGs with their parameters."""
    import torch

    from ..models.base import load_base_model
    from ..models.lora_apply import apply_lora, load_lora

    if args.num_images < 1:
        raise SystemExit(f"--num_images {args.num_images}: must be at least 1")
    device = pick_device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype if args.dtype != "auto" else ("fp16" if device.type == "cuda" else "fp32")]
    base = load_base_model(args.model_name, prediction_type=args.prediction_type, torch_dtype=dtype, vae=args.vae)
    pipe = base.pipe
    lora_name = None
    if args.lora:
        lora = load_lora(args.lora)
        apply_lora(pipe, lora, args.lora_scale)
        lora_name = sibling("convert.locate").webui_name(args.lora)  # what the PNG's <lora:NAME:w> must say for sd-webui to find it
    pipe.to(device)
    pipe.set_progress_bar_config(disable=not args.progress)
    s = SampleSettings(
        prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale, seed=args.seed, width=args.width, height=args.height,
        scheduler=args.scheduler, lora_scale=args.lora_scale,
    )
    model = Path(args.model_name).stem if Path(args.model_name).is_file() else Path(args.model_name).name
    paths = output_paths(args.output, args.num_images)
    with torch.inference_mode():
        images = generate(pipe, s, args.num_images)
    for path, (image, seed) in zip(paths, images):
        save_png(image, path, webui_parameters(s, seed, image.width, image.height, model=model, lora_name=lora_name))
        print(f"wrote {path} (seed {seed})")
    return 0


def register_eval(subparsers) -> None:
    """Add the `eval-adverbs` sub-command."""
    p = subparsers.add_parser("eval-adverbs", help="measure how much irrelevant adverbs move the model, base vs LoRA")
    add_model_arguments(p)
    p.add_argument("--lora", default=None, help="LoRA: webui/kohya or diffusers file, PEFT adapter dir, checkpoint-<step>/ or training run folder")
    p.add_argument("--lora_scale", type=float, default=1.0)
    p.add_argument("--prompts", default=None,
                   help=".txt of adverb-free captions (adverbs get inserted) or .jsonl of {plain, with_adverb, adverb}")
    p.add_argument("--coco", default=None, help="COCO captions json: captions with adverbs vs their filtered version")
    p.add_argument("--adverbs", default=None, help=f"comma list to insert (default: {','.join(DEFAULT_ADVERBS)})")
    p.add_argument("--max_pairs", type=int, default=0, help="use at most this many pairs (0: all; --coco: 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", default=",".join(map(str, DEFAULT_TIMESTEPS)))
    p.add_argument("--num_latents", type=int, default=2)
    p.add_argument("--resolution", type=int, default=None,
                   help=f"pixels (default: the model's native size; on CPU at most {CPU_RESOLUTION}, "
                        "as the native 512/768 px take tens of minutes there)")
    p.add_argument("--image_distance", action="store_true", help="also compare generated images in pixel space")
    p.add_argument("--num_inference_steps", type=int, default=20, help="for --image_distance")
    p.add_argument("--output", required=True, help="report folder (report.json, sensitivity.png)")
    p.set_defaults(func=run_eval)


def sensitivity_lines(summary: dict) -> str:
    """The result as read on the console: each model's overall distance with its 95 % CI, the reference change's,
    and the adverbs' distance as a share of the reference's."""
    def value(row, key):
        lo, hi = row[f"{key}_ci"]
        return f"{row[key]:.5f} (95% CI {lo:.5f}-{hi:.5f})"

    s, ref = summary["overall"], summary.get("reference")
    keys = [("base", "base")] + ([("lora", "base + LoRA")] if s.get("lora") is not None else [])
    lines = ["adverb sensitivity (noise-prediction RMS, mean over pairs):"]
    for key, name in keys:
        line = f"  {name}: adverb inserted {value(s, key)}"
        if ref is not None:
            line += f"; reference, a colour/object word swapped {value(ref, key)}"
            line += f"; adverbs move it {s[key] / ref[key]:.0%} as much" if ref[key] else ""
        lines.append(line)
    if s.get("lora") is not None:
        lines.append(f"  LoRA vs base: {s['change']:+.1%} (overlapping CIs: the difference is within the noise)"
                     if s["lora_ci"][0] <= s["base_ci"][1] and s["base_ci"][0] <= s["lora_ci"][1]
                     else f"  LoRA vs base: {s['change']:+.1%}")
    return "\n".join(lines)


def eval_plan(pairs, args, timesteps, resolution: int, device_type: str, models: int) -> str:
    """The line printed before measuring: how many UNet evaluations, at which resolution, on which device."""
    refs = reference_pairs(pairs)
    n_prompts = len(distinct_prompts(pairs + refs))
    per_model = unet_evaluations(pairs + refs, args.num_latents, timesteps)
    which = "base and base + LoRA" if models == 2 else "base only"
    lowered = not args.resolution and device_type == "cpu" and resolution == CPU_RESOLUTION
    why = "" if args.resolution else (f" (CPU default, lower than the model's native size; --resolution to change)"
                                      if lowered else " (the model's native size)")
    line = (f"eval-adverbs: {len(pairs)} pairs + {len(refs)} reference pairs, {n_prompts} prompts x "
            f"{args.num_latents} latents x {len(timesteps)} timesteps = {per_model} UNet evaluations per model, {per_model * models} in all ({which}), "
            f"at {resolution} px{why} on {device_type}")
    if args.image_distance:  # classifier-free guidance: two UNet evaluations per denoising step
        line += (f"; --image_distance: {len(distinct_prompts(pairs)) * args.num_inference_steps * 2 * models} more "
                 f"({args.num_inference_steps} steps x 2 per prompt and model)")
    return line


def run_eval(args) -> int:
    """`python -m trainer eval-adverbs`: base vs base + LoRA, `report.json` + `sensitivity.png`."""
    import torch

    from ..models.base import load_base_model
    from ..models.lora_apply import apply_lora, load_lora

    adverbs = tuple(a.strip() for a in args.adverbs.split(",") if a.strip()) if args.adverbs else DEFAULT_ADVERBS
    if args.prompts and args.coco:
        raise SystemExit("give --prompts or --coco, not both")
    if args.prompts:
        pairs, source = read_prompts_file(args.prompts, adverbs), str(args.prompts)
    elif args.coco:
        pairs, source = pairs_from_coco(args.coco, limit=args.max_pairs or 50), str(args.coco)
    else:
        pairs, source = pairs_from_captions(DEFAULT_CAPTIONS, adverbs), "built-in captions"
    pairs = pairs[: args.max_pairs] if args.max_pairs else pairs
    lora = load_lora(args.lora) if args.lora else None  # read (and fail) before the slow model load

    device = pick_device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype if args.dtype != "auto" else ("fp16" if device.type == "cuda" else "fp32")]
    base = load_base_model(args.model_name, prediction_type=args.prediction_type, torch_dtype=dtype, vae=args.vae)
    pipe = base.pipe
    pipe.set_progress_bar_config(disable=True)
    timesteps = tuple(int(t) for t in args.timesteps.split(","))
    resolution = args.resolution or default_resolution(pipe.unet.config.sample_size * pipe.vae_scale_factor,
                                                       device.type)
    kw = dict(timesteps=timesteps, num_latents=args.num_latents, resolution=resolution, reference=True)
    print(eval_plan(pairs, args, timesteps, resolution, device.type, models=2 if lora is not None else 1))

    def measure(label):
        pipe.to(device)
        out = {"noise_prediction": adverb_sensitivity(pipe, pairs, args.seed, progress=label, **kw)}
        if args.image_distance:
            out["image"] = image_distance(pipe, pairs, args.seed, num_inference_steps=args.num_inference_steps)
        return out

    results = {"base": measure("base")}
    if lora is not None:
        applied = apply_lora(pipe, lora, args.lora_scale)
        results["lora"] = measure("base + LoRA")
        applied.remove()
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for metric in results["base"]:
        b = results["base"][metric]
        summary[metric] = compare(b, results["lora"][metric] if lora is not None else None)
    report = {
        "summary": summary,
        "results": results,
        "settings": {"model_name": args.model_name, "family": base.family, "prediction_type": base.prediction_type,
                     "lora": str(args.lora) if args.lora else None, "lora_scale": args.lora_scale, "seed": args.seed,
                     "timesteps": list(timesteps), "num_latents": args.num_latents, "resolution": resolution,
                     "dtype": str(dtype).removeprefix("torch."), "device": device.type, "prompt_source": source,
                     "num_pairs": len(pairs)},
    }
    write_text(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    chart = write_bar_chart(summary["noise_prediction"], out_dir / "sensitivity.png",
                            f"adverb sensitivity ({len(pairs)} pairs, seed {args.seed})")
    print(sensitivity_lines(summary["noise_prediction"]))
    print(f"wrote {out_dir / 'report.json'} and {chart}")
    return 0
