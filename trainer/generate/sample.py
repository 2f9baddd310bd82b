"""Generate images with a base model + LoRA (the seed's `infer.py`), for `python -m trainer sample` (trainer/cli/).

Each image i uses seed `seed + i` (as sd-webui's batch count does) with the noise drawn on the CPU, so an
image is reproducible from its PNG's parameters on any device. PNGs carry sd-webui's `parameters` text
chunk, which its PNG Info tab and ComfyUI's image loader read back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path

# name -> (diffusers class, extra config, sd-webui "Sampler" name, sd-webui "Schedule type")
SCHEDULERS = {
    "dpmpp": ("DPMSolverMultistepScheduler", {}, "DPM++ 2M", None),
    "dpmpp_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M", "Karras"),
    "ddim": ("DDIMScheduler", {}, "DDIM", None),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a", None),
    "euler": ("EulerDiscreteScheduler", {}, "Euler", None),
    "heun": ("HeunDiscreteScheduler", {}, "Heun", None),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS", None),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC", None),
    "ddpm": ("DDPMScheduler", {}, "DDPM", None),
}


@dataclass
class SampleSettings:
    """Everything that decides an image (and goes into its PNG parameters)."""

    prompt: str
    negative_prompt: str = ""
    num_inference_steps: int = 30
    guidance_scale: float = 7.5
    seed: int = 1234
    width: int | None = None
    height: int | None = None
    scheduler: str = "dpmpp"
    lora_scale: float = 1.0
    extra: dict = field(default_factory=dict)  # more "Key: value" fields for the PNG parameters


# What the model defines (its training noise schedule); everything else is the sampler's own default, so
# a scheduler does not inherit settings from whichever scheduler the pipeline held before.
MODEL_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                       "prediction_type", "steps_offset", "set_alpha_to_one", "clip_sample", "rescale_betas_zero_snr")


def make_scheduler(name: str, base_config):
    """A scheduler `name` (see `SCHEDULERS`) built on the model's own noise schedule and prediction type."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"--scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
    cls_name, extra, _, _ = SCHEDULERS[name]
    cls = getattr(diffusers, cls_name)
    config = {k: v for k, v in dict(base_config).items() if k in MODEL_SCHEDULE_KEYS}
    return cls.from_config(config, **extra)


def _quote(text) -> str:
    """sd-webui's `quote`: values holding `,` `:` or newlines are JSON-quoted so PNG Info parses them back."""
    text = str(text)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def webui_parameters(s: SampleSettings, seed: int, width: int, height: int, model: str | None = None,
                     lora_name: str | None = None) -> str:
    """The `parameters` text sd-webui writes: prompt, `Negative prompt:` line, then `Key: value, ...`."""
    prompt = s.prompt
    if lora_name:
        prompt = f"{prompt} <lora:{lora_name}:{s.lora_scale:g}>"  # how sd-webui users write it
    _, _, sampler, schedule = SCHEDULERS[s.scheduler]
    fields = {"Steps": s.num_inference_steps, "Sampler": sampler}
    if schedule:
        fields["Schedule type"] = schedule
    fields.update({"CFG scale": f"{s.guidance_scale:g}", "Seed": seed, "Size": f"{width}x{height}"})
    if model:
        fields["Model"] = model
    fields.update(s.extra)
    lines = [prompt]
    if s.negative_prompt:
        lines.append(f"Negative prompt: {s.negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def save_png(image, path, parameters: str) -> Path:
    """Save `image` with a `parameters` tEXt chunk, atomically."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return Path(path)


def output_paths(output, n: int) -> list[Path]:
    """`out.png` for one image, `out-00.png`, `out-01.png`, ... for several; a folder gets `sample-*.png`."""
    out = Path(output)
    if out.suffix.lower() != ".png":
        out = out / "sample.png"
    if n == 1:
        return [out]
    width = max(2, len(str(n - 1)))
    return [out.with_name(f"{out.stem}-{i:0{width}d}{out.suffix}") for i in range(n)]


def generate(pipe, s: SampleSettings, num_images: int = 1):
    """[(PIL image, seed)] for seeds `s.seed .. s.seed + num_images - 1`, one image at a time."""
    import torch

    pipe.scheduler = make_scheduler(s.scheduler, pipe.scheduler.config)
    out = []
    for i in range(num_images):
        seed = s.seed + i
        generator = torch.Generator("cpu").manual_seed(seed)
        result = pipe(
            s.prompt, negative_prompt=s.negative_prompt or None, num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale, width=s.width, height=s.height, generator=generator,
        )
        out.append((result.images[0], seed))
    return out


def pick_device(name: str = "auto"):
    """`auto` -> cuda, then mps, then cpu."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
