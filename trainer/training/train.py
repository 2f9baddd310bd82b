"""The training loop: LoRA on the UNet of Stable Diffusion 1.x/2.x, plain diffusion loss, frozen VAE and text encoder.

Read top to bottom: `train()` loads the model and captions, adds the LoRA, encodes the data once
(`latent_cache`), then runs the loop — noise, timesteps, UNet, MSE against the noise (epsilon) or the
velocity (v_prediction), AdamW — logging, checkpointing and sampling as configured.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from .config import ConfigError, TrainConfig

@dataclass
class TrainResult:
    """Where a run's outputs are and how it ended."""

    output_dir: Path
    lora_path: Path | None  # webui .safetensors (the last checkpoint's when stopped early)
    peft_dir: Path | None
    final_step: int
    losses: list[float]  # the logged losses, one per logged step
    stopped_early: bool
    stop_reason: str = ""  # "", "callback", "SIGINT", "SIGTERM" or "non-finite loss"
    checkpoint_dir: Path | None = None
    metrics_path: Path | None = None
    loss_plot: Path | None = None
    samples: list[Path] = field(default_factory=list)
    cache_stats: dict = field(default_factory=dict)
    merged_dir: Path | None = None


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def load_model(cfg: TrainConfig):
    """The base model (`trainer.models.base.load_base_model`: folder, hub id, single file, or tiny-sd15/tiny-sd2)."""
    from ..models.base import load_base_model

    return load_base_model(cfg.model_name, prediction_type=cfg.train.prediction_type or None,
                           vae=cfg.vae or None, text_encoder=cfg.text_encoder or None)


def load_caption_set(cfg: TrainConfig):
    """The training captions: a processed set (`dataset.processed_root`) or raw COCO filtered on the fly."""
    ds = cfg.dataset
    if ds.processed_root:
        from ..captions.captionset import CaptionSet

        path = Path(ds.processed_root)
        if path.is_dir():  # `prepare` writes <processed_root>/<split>_<mode>/captions.jsonl
            named = path / f"{ds.split}_{ds.adverb_mode}" / "captions.jsonl"
            found = [named] if named.is_file() else sorted([*path.glob("*.jsonl"), *path.glob("*/captions.jsonl")])
            if len(found) != 1:
                listed = ", ".join(str(p.relative_to(path)) for p in found) or "none"
                raise ConfigError(f"dataset.processed_root={path}: no {named.relative_to(path)} and not exactly one "
                                  f"caption set here ({listed}); point at the .jsonl file itself")
            path = found[0]
        return CaptionSet.load(path)
    if not ds.raw_root:
        raise ConfigError("config: no training data; set dataset.raw_root (COCO) or dataset.processed_root")
    from ..captions.coco import load_coco

    captions = load_coco(ds.raw_root, ds.split, captions=ds.captions, max_samples=ds.max_samples or None, seed=ds.seed)
    if ds.adverb_mode != "none":
        from ..captions.adverbs import filter_adverbs

        captions = filter_adverbs(captions, mode=ds.adverb_mode)
    return captions


def diffusion_target(noise_scheduler, latents, noise, timesteps, prediction_type: str):
    """What the UNet must predict: the noise (epsilon) or the velocity (v_prediction)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type {prediction_type!r} is not supported: use epsilon or v_prediction")


def diffusion_loss(unet, noise_scheduler, latents, embeddings, generator, prediction_type: str,
                   snr_gamma: float = 0.0, noise_offset: float = 0.0):
    """MSE between the UNet's prediction and the target at random timesteps (optionally min-SNR weighted)."""
    import torch
    import torch.nn.functional as F

    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((b, latents.shape[1], 1, 1), generator=generator, device=latents.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b,), generator=generator,
                              device=latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = diffusion_target(noise_scheduler, latents, noise, timesteps, prediction_type)
    # Inputs in the frozen weights' dtype (autocast is not on everywhere, e.g. fp16 on CPU); the loss in fp32.
    pred = unet(noisy.to(embeddings.dtype), timesteps, embeddings, return_dict=False)[0]
    if not snr_gamma:
        return F.mse_loss(pred.float(), target.float())
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (loss * weights).mean()


def _set_attention(unet, enable_xformers: bool, log) -> None:
    if not enable_xformers:
        return  # diffusers uses PyTorch SDPA by default
    try:
        unet.enable_xformers_memory_efficient_attention()
    except Exception as e:  # not installed, or no GPU kernel for this device
        log(f"warning: train.enable_xformers=true but xformers cannot be used ({e}); using PyTorch SDPA")


def _optimizer(params, t, log):
    import torch

    kwargs = dict(lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), weight_decay=t.adam_weight_decay,
                  eps=t.adam_epsilon)
    if t.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, **kwargs)
        except ImportError:
            log("warning: train.use_8bit_adam=true but bitsandbytes is not installed; using torch AdamW")
    return torch.optim.AdamW(params, **kwargs)


def lora_metadata(cfg: TrainConfig, model, caption_set, step: int, n_images: int) -> dict[str, str]:
    """kohya-style `ss_*` training metadata, plus the caption-filter settings, for the webui file."""
    import json

    t = cfg.train
    vpred = model.prediction_type == "v_prediction"
    filt = caption_set.provenance.get("filter") or caption_set.provenance.get("adverb_filter") or {}
    return {
        # The family, which convert cannot tell from a tiny model's shapes; it fills in ss_v2 and ss_network_*.
        "ss_base_model_version": {"sd2": "sd_v2_v" if vpred else "sd_v2"}.get(model.family, "sd_v1"),
        "ss_sd_model_name": str(cfg.model_name), "ss_v_parameterization": str(vpred),
        "ss_resolution": f"({cfg.dataset.resolution}, {cfg.dataset.resolution})",
        "ss_learning_rate": str(t.learning_rate), "ss_unet_lr": str(t.learning_rate), "ss_text_encoder_lr": "0",
        "ss_lr_scheduler": t.lr_scheduler, "ss_lr_warmup_steps": str(t.lr_warmup_steps),
        "ss_max_train_steps": str(t.max_train_steps), "ss_steps": str(step),
        "ss_batch_size_per_device": str(t.train_batch_size),
        "ss_gradient_accumulation_steps": str(t.gradient_accumulation_steps),
        "ss_mixed_precision": t.mixed_precision, "ss_seed": str(t.seed), "ss_num_train_images": str(n_images),
        "ss_min_snr_gamma": str(t.snr_gamma), "ss_noise_offset": str(t.noise_offset),
        "ss_caption_adverb_mode": cfg.dataset.adverb_mode if cfg.dataset.raw_root else str(filt.get("mode", "")),
        "ss_caption_filter": json.dumps(filt, sort_keys=True, default=str),
        "ss_caption_source": json.dumps({k: v for k, v in caption_set.provenance.items() if k != "filter"},
                                        sort_keys=True, default=str)[:4000],
        "ss_training_comment": "UNet-only LoRA on adverb-filtered captions (sd-adverb-lora)",
    }


def train(config: TrainConfig, *, caption_set=None, callbacks: list | None = None, resume: str | bool | None = None,
          model=None, progress: bool = True) -> TrainResult:
    """Train a UNet LoRA as `config` says; `resume` = "latest"/True or a checkpoint folder continues exactly.

    `callbacks`: objects with optional `on_step(step, total, loss, logs)` (loss = last logged loss) and
    `should_stop() -> bool` (checked every step; a stop saves a checkpoint and returns `stopped_early=True`).
    `model`: an already loaded `BaseModel` to train instead of loading `config.model_name` (its UNet gets
    the LoRA adapter in place).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params

    from . import checkpoint as ckpt
    from .dataset import BatchPlan, build_samples, load_pixels, sample_rng
    from .latent_cache import build_cache, encode_captions, encode_images
    from ..models.lora import add_lora, lora_state_dict, set_lora_state_dict, trainable_parameters
    from .metrics import MetricsLogger, plot_loss_curve
    from .validation import adverb_eval, adverb_free_prompts, prompt_variants, sample_images, save_images

    cfg, t, ds = config, config.train, config.dataset
    callbacks = list(callbacks or [])
    out = Path(cfg.logging.output_dir)
    # `accelerate launch --cpu` starts several processes only through MPI; started by its torchrun launcher
    # (`--multi_gpu`, or plain torchrun) on a machine without GPUs, tell accelerate to use gloo on CPU.
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # accelerate keeps its state per process; a host that trains again in the same process (ComfyUI) may ask
    # for another precision. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=t.mixed_precision, cpu=multi_cpu)
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(t.mixed_precision, torch.float32)
    resume_from = ckpt.resolve_resume(out, resume) if resume else None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", cfg.to_yaml())

    # Model: everything frozen; VAE and text encoder in eval mode (half precision under mixed precision).
    model = model if model is not None else load_model(cfg)
    pipe = model.pipe
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    vae.eval(), text_encoder.eval()
    # SD's VAE overflows in fp16 (its config says force_upcast); it runs once per image when caching anyway.
    vae_dtype = torch.float32 if weight_dtype == torch.float16 and vae.config.get("force_upcast") else weight_dtype
    for m, dtype in ((vae, vae_dtype), (text_encoder, weight_dtype), (unet, weight_dtype)):
        m.to(device) if dtype == torch.float32 else m.to(device, dtype=dtype)
    torch.manual_seed(t.seed)  # LoRA init (identical on every process)
    peft_config = add_lora(unet, t)
    if weight_dtype != torch.float32:
        cast_training_params(unet, dtype=torch.float32)  # fp32 LoRA weights, half-precision base
    _set_attention(unet, t.enable_xformers, accelerator.print)
    if t.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction_type = model.prediction_type

    # Data: captions -> samples in aspect buckets -> encoded once (or per step when uncached).
    caption_set = caption_set if caption_set is not None else load_caption_set(cfg)
    samples = build_samples(caption_set, ds.resolution, ds.buckets, ds.bucket_step, ds.min_bucket_resolution,
                            ds.max_bucket_resolution)
    plan = BatchPlan(samples, t.train_batch_size, t.seed, world, rank)
    cached = None
    if ds.cache_latents:
        cache_dir = Path(ds.cache_dir) if ds.cache_dir else out.parent / ".latent_cache"
        cached = build_cache(samples, cache_dir, vae, text_encoder, tokenizer, crop=ds.crop, flips=ds.random_flip,
                             batch_size=max(t.train_batch_size, 8), rank=rank, world_size=world,
                             wait=accelerator.wait_for_everyone, progress=progress and is_main)
        accelerator.print(f"cache {cache_dir}: encoded {cached.stats['latents_encoded']}/{cached.stats['latents_total']}"
                          f" latents, {cached.stats['text_encoded']}/{cached.stats['text_total']} captions")

    def fetch(epoch: int, indices: list[int]):
        """(latents fp32, text embeddings) of one batch on the device."""
        flips = [bool(sample_rng(t.seed, epoch, i).random() < 0.5) if ds.random_flip else False for i in indices]
        if cached is not None:
            latents, emb = cached.batch(indices, flips)
        else:  # per-step encoding: random crops differ each epoch
            pixels = torch.stack([load_pixels(samples[i].image_path, samples[i].bucket, ds.crop, f,
                                              sample_rng(t.seed + 1, epoch, i)) for i, f in zip(indices, flips)])
            latents = encode_images(vae, pixels)
            emb = encode_captions(text_encoder, tokenizer, [samples[i].caption for i in indices])
        return latents.to(device, torch.float32, non_blocking=True), emb.to(device, weight_dtype, non_blocking=True)

    params = trainable_parameters(unet)
    optimizer = _optimizer(params, t, accelerator.print)
    # Stepped once per optimizer step by us (not prepared: accelerate would step it once per process).
    lr_scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.lr_warmup_steps,
                                 num_training_steps=t.max_train_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    noise_gen = torch.Generator(device=device).manual_seed(t.seed * 1000 + rank)

    step, epoch, batch = 0, 0, 0
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, rank, world)
        set_lora_state_dict(unet, state["lora_state"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rng(state["rng"], noise_gen)
        step, epoch, batch = state["state"]["step"], state["state"]["epoch"], state["state"]["batch"]
        accelerator.print(f"resumed from {resume_from} at step {step} (epoch {epoch}, batch {batch})")

    metrics = MetricsLogger(out, t.max_train_steps, step, enabled=is_main, tensorboard=cfg.logging.tensorboard,
                            progress=progress)
    prompts = prompt_variants(cfg.validation.prompts, ds.adverb_mode) if is_main else []
    samples_written: list[Path] = []
    eval_pairs = []
    if prompts and cfg.validation.adverb_eval:
        from ..generate.evaluate import pairs_from_captions

        eval_pairs = pairs_from_captions(adverb_free_prompts(prompts), cfg.validation.eval_adverbs)
    base_eval: dict[str, float] = {}  # the base model's numbers, measured once and repeated as a reference line
    pipe_parts = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                      scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config))

    def validate(at_step: int) -> None:
        if prompts and is_main:
            rng = torch.get_rng_state()  # sampling must not shift the training RNG (exact resume)
            net = accelerator.unwrap_model(unet)
            net.eval()
            autocast_dtype = weight_dtype if weight_dtype != torch.float32 else None
            images = sample_images(pipe_parts, net, prompts, steps=cfg.validation.num_inference_steps,
                                   guidance_scale=cfg.validation.guidance_scale, seed=cfg.validation.seed,
                                   resolution=ds.resolution, device=device, autocast_dtype=autocast_dtype)
            if eval_pairs:
                measure = dict(seed=cfg.validation.seed, resolution=ds.resolution, autocast_dtype=autocast_dtype)
                if not base_eval:
                    base_eval.update(adverb_eval(pipe_parts, net, eval_pairs, base=True, **measure))
                metrics.log_eval({"step": at_step, **adverb_eval(pipe_parts, net, eval_pairs, **measure), **base_eval})
            net.train()
            torch.set_rng_state(rng)
            samples_written.extend(save_images(images, prompts, out / "samples", at_step))
            metrics.log_images("samples", images, at_step)
        accelerator.wait_for_everyone()

    def export(folder: Path, at_step: int):
        state = lora_state_dict(unet)
        meta = lora_metadata(cfg, model, caption_set, at_step, len(samples))
        return ckpt.export_lora(state, peft_config, folder, cfg.logging.name, meta)

    def save(at_step: int) -> Path:
        return ckpt.save_checkpoint(
            out, at_step, lora_state=lora_state_dict(unet), optimizer=optimizer, lr_scheduler=lr_scheduler,
            rng_state=ckpt.capture_rng(noise_gen), position={"epoch": epoch, "batch": batch},
            export=lambda d: export(d, at_step), limit=cfg.logging.checkpoints_total_limit,
            rank=rank, is_main=is_main, wait=accelerator.wait_for_everyone)

    # The loop. Losses stay on the device between logging steps: no per-step host sync.
    losses: list[float] = []
    last_loss = None
    stop_reason = ""
    last_ckpt = None
    running = torch.zeros((), device=device)
    since_log, t_log = 0, time.perf_counter()
    grad_norm = torch.zeros((), device=device)
    max_norm = t.max_grad_norm or math.inf
    ga = t.gradient_accumulation_steps
    data = plan.iterate(epoch, batch)
    unet.train()
    with ckpt.GracefulStop() as signals:
        while step < t.max_train_steps:
            for micro in range(ga):
                cur_epoch, b, indices = next(data)
                # The data position saved with a checkpoint is the next batch to read.
                epoch, batch = (cur_epoch, b + 1) if b + 1 < plan.batches_per_epoch else (cur_epoch + 1, 0)
                latents, emb = fetch(cur_epoch, indices)
                # DDP all-reduces gradients only on the last micro-batch of the step.
                sync = contextlib.nullcontext() if micro == ga - 1 else accelerator.no_sync(unet)
                with sync:
                    loss = diffusion_loss(unet, noise_scheduler, latents, emb, noise_gen, prediction_type,
                                          t.snr_gamma, t.noise_offset)
                    accelerator.backward(loss / ga)
                running += loss.detach() / ga
            grad_norm = accelerator.clip_grad_norm_(params, max_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            since_log += 1
            metrics.advance()

            stop = signals.requested or ("callback" if any(getattr(c, "should_stop", lambda: False)()
                                                           for c in callbacks) else "")
            save_now = (cfg.logging.save_steps and step % cfg.logging.save_steps == 0) or step == t.max_train_steps
            if world > 1:  # every process must stop at the same step: agree at logging steps only (no per-step sync)
                if step % cfg.logging.log_steps == 0 or save_now:
                    flag = accelerator.reduce(torch.tensor(float(bool(stop)), device=device), "max")
                    stop = stop or ("signal" if flag.item() else "")
                else:
                    stop = ""
            logs = {}
            if step % cfg.logging.log_steps == 0 or save_now or stop:
                mean_loss = (accelerator.reduce(running, "mean") / since_log).item()
                now = time.perf_counter()
                step_time = (now - t_log) / since_log
                logs = {"step": step, "epoch": cur_epoch, "loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0],
                        "step_time": step_time,
                        "samples_per_sec": t.train_batch_size * ga * world / step_time if step_time else 0.0,
                        "grad_norm": float(grad_norm) if grad_norm is not None else None}
                running.zero_()
                since_log, t_log = 0, now
                if not math.isfinite(mean_loss):
                    stop_reason = "non-finite loss"
                    metrics.write(f"loss is {mean_loss} at step {step}: stopping. The last good checkpoint is "
                                  f"{last_ckpt or 'none (no checkpoint was written yet)'}; lower train.learning_rate, "
                                  "or use train.mixed_precision=bf16/no.")
                    break
                losses.append(mean_loss)
                last_loss = mean_loss
                metrics.log(logs)
            for c in callbacks:
                if hasattr(c, "on_step"):
                    c.on_step(step, t.max_train_steps, last_loss, logs)
            paused = time.perf_counter()
            if save_now or stop:
                last_ckpt = save(step)
            if cfg.validation.steps and step % cfg.validation.steps == 0 and step != t.max_train_steps:
                validate(step)
            t_log += time.perf_counter() - paused  # step times exclude checkpointing and sampling
            if stop:
                stop_reason = stop
                metrics.write(f"stopped at step {step} ({stop}); checkpoint: {last_ckpt}")
                break

    stopped = bool(stop_reason)
    result = TrainResult(out, None, None, step, losses, stopped, stop_reason, last_ckpt, metrics.jsonl_path)
    if stopped:
        if last_ckpt is not None:
            result.lora_path, result.peft_dir = last_ckpt / f"{cfg.logging.name}.safetensors", last_ckpt / "adapter"
    else:
        validate(step)
        if is_main:
            result.lora_path, result.peft_dir = export(out, step)
            if cfg.logging.save_merged:
                result.merged_dir = save_merged(pipe, accelerator.unwrap_model(unet), out / f"{cfg.logging.name}_merged")
    metrics.close()
    if is_main:
        result.loss_plot = plot_loss_curve(metrics.jsonl_path, out / "loss_curve.png", f"{cfg.logging.name} loss")
    result.samples = samples_written
    result.cache_stats = dict(cached.stats) if cached is not None else {}
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if stop_reason == "non-finite loss":
        raise NonFiniteLossError(f"training stopped at step {step}: the loss is not finite; "
                                 f"last good checkpoint: {last_ckpt}")
    return result


def save_merged(pipe, unet, out_dir: Path) -> Path:
    """The base pipeline with the LoRA merged into the UNet, as a diffusers folder (written atomically)."""
    import shutil

    unet.fuse_lora()
    unet.unload_lora()
    pipe.unet = unet
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
