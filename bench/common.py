"""Pieces shared by the training benchmarks (bench/train_bench.py, bench/gpu_check.py).

Import with the repo root on sys.path (`from bench.common import ...`): the pipelines (tiny, or SD1.5's real
architecture with random weights), a generated caption set, a step clock for `train()` callbacks, and the bare
floor loop that our training step is measured against.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def build_pipeline(case: str):
    """`tiny`: the embedded tiny SD1.5 pipeline; `sd15`: SD1.5's real architecture (the configs shipped in
    trainer/assets/sd15) with random weights. No downloads either way."""
    if case == "tiny":
        from trainer.models.tiny import build_tiny_pipeline

        return build_tiny_pipeline("sd15")
    if case == "sd15":
        from trainer.models.single_file import build_random_pipeline

        return build_random_pipeline("sd15")
    raise ValueError(f"unknown case {case!r}: use tiny or sd15")


def sample_captions(workdir: Path, n_images: int):
    """A CaptionSet over `n_images` generated images (trainer/captions/sample_dataset.py), one caption each."""
    from trainer.captions.captionset import CaptionRecord, CaptionSet
    from trainer.captions.sample_dataset import make_sample_coco

    root = make_sample_coco(Path(workdir) / "data", n_images=n_images)
    images = sorted((root / "images" / "train2014").glob("*.jpg"))
    return CaptionSet(tuple(CaptionRecord(str(p), f"a drawn scene number {i}") for i, p in enumerate(images)))


def _sync(device) -> None:
    import torch

    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


class StepClock:
    """A `train()` callback that records the wall time of each step after the first (it starts at step 1's
    end). `device`: on CUDA it synchronises before reading the clock, so a time is the GPU's, not the launch's."""

    def __init__(self, device=None, on_first=None):
        self.times: list[float] = []
        self.last = None
        self.device = device
        self.on_first = on_first  # called once, at step 1's end (e.g. to reset the peak-memory counter)

    def on_step(self, step, total, loss, logs):
        _sync(self.device)
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        elif self.on_first is not None:
            self.on_first()
        self.last = now


def floor_loop(pipe, train_cfg, *, batch: int, resolution: int, steps: int, device="cpu",
               mixed_precision: str = "no", on_first=None) -> list[float]:
    """The bare floor: noise, UNet forward + backward, gradient clipping and AdamW on pre-made latents and
    embeddings, with the same LoRA and, under fp16/bf16, the same half-precision frozen weights, fp32 LoRA,
    autocast and (fp16 on CUDA) gradient scaler as `train()`. Returns the wall time of each step after the
    first (as `StepClock` does); `on_first` is called at step 1's end."""
    import torch
    from diffusers import DDPMScheduler

    from trainer.models.lora import add_lora, trainable_parameters
    from trainer.training.train import diffusion_loss

    device = torch.device(device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    unet = pipe.unet
    unet.requires_grad_(False)
    unet.to(device) if dtype == torch.float32 else unet.to(device, dtype=dtype)
    torch.manual_seed(train_cfg.seed)
    add_lora(unet, train_cfg)
    for p in trainable_parameters(unet):
        p.data = p.data.float()
    if train_cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = trainable_parameters(unet)
    opt = torch.optim.AdamW(params, lr=train_cfg.learning_rate, weight_decay=train_cfg.adam_weight_decay)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 and device.type == "cuda" else None
    autocast = dtype != torch.float32 and (device.type == "cuda" or dtype == torch.bfloat16)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(batch, 4, resolution // 8, resolution // 8, generator=gen, device=device)
    emb = torch.randn(batch, 77, pipe.text_encoder.config.hidden_size, generator=gen, device=device).to(dtype)
    clock = StepClock(device, on_first)
    for step in range(steps):
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = diffusion_loss(unet, sched, latents, emb, gen, "epsilon")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, train_cfg.max_grad_norm)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, train_cfg.max_grad_norm)
            opt.step()
        opt.zero_grad(set_to_none=True)
        clock.on_step(step + 1, steps, None, {})
    return clock.times
