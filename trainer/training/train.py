"""The training loop: LoRA on the UNet of Stable Diffusion 1.x/2.x/XL, plain diffusion loss, frozen VAE and text
encoder(s). SDXL's UNet also takes the pooled text and the size conditioning (`trainer.models.conditioning`).

Read top to bottom: `train()` is the page to start from: `set_up()` (accelerator, model + LoRA, data
encoded once by `latent_cache`, optimizer, resume), then the loop, where `training_step()` is noise,
timesteps, UNet, MSE against the noise (epsilon) or the velocity (v_prediction), backward and AdamW, and
`log_step()`, `write_checkpoint()` and the `Validator` run as configured; then `finish()` exports the LoRA.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from ..models.lora import add_lora, lora_state_dict, set_lora_state_dict, trainable_parameters
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, resume_changes
from ..models.conditioning import encode_prompts, move_conditioning, text_parts, unet_kwargs
from .dataset import BatchPlan, build_samples, load_image, sample_rng, variant_index
from .latent_cache import build_cache, encode_images
from .metrics import MetricsLogger, plot_loss_curve
from .run_folder import FolderLock, RunFolderError, check_new_run, earlier_results
from .validation import Validator


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


def train(config: TrainConfig, *, caption_set=None, callbacks: list | None = None, resume: str | bool | None = None,
          model=None, progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train a UNet LoRA as `config` says; `resume` = "latest"/True or a checkpoint folder continues exactly.

    The output folder is locked for the run (a second run there refuses). A new run refuses a folder holding an
    earlier run's checkpoints or LoRA unless `overwrite` (which deletes them first). A resume refuses settings the
    checkpoint cannot continue with, and other data than the checkpoint's, before writing anything.

    `callbacks`: objects with optional `on_step(step, total, loss, logs)` (loss = last logged loss),
    `should_stop() -> bool` (checked every step; a stop saves a checkpoint and returns `stopped_early=True`) and
    `on_phase(phase, done, total)` (set-up before step 1: "loading model", then "encoding" done/total items).
    `model`: an already loaded `BaseModel` to train instead of loading `config.model_name` (its UNet gets
    the LoRA adapter in place).
    """
    callbacks = list(callbacks or [])
    run = set_up(config, caption_set=caption_set, model=model, resume=resume, progress=progress, callbacks=callbacks,
                 overwrite=overwrite)
    try:
        return train_loop(run, callbacks)
    finally:
        run.metrics.close()  # again after finish(): harmless; after an error: the files are closed
        run.lock.release()


def train_loop(run: Run, callbacks: list) -> TrainResult:
    """The steps from the run's current state to `train.max_train_steps` (or a stop), then `finish()`."""
    cfg = run.cfg
    state = run.state
    meter = LossMeter(run.device)  # losses stay on the device between logging steps: no per-step host sync
    batches = run.plan.iterate(state.epoch, state.batch)
    run.unet.train()
    with ckpt.GracefulStop() as signals:
        while state.step < cfg.train.max_train_steps:
            grad_norm, epoch = training_step(run, batches, state, meter)
            run.metrics.advance()

            save_now = checkpoint_due(cfg, state.step)
            stop = stop_requested(run, signals, callbacks, state.step, save_now)
            logs = {}
            if log_due(cfg, state.step) or save_now or stop:
                logs = log_step(run, meter, state, epoch, grad_norm)
                if state.stop_reason:  # the loss is not finite
                    break
            notify(callbacks, state, cfg.train.max_train_steps, logs)
            with meter.paused():  # step times exclude checkpointing and sampling
                if save_now or stop:
                    state.last_checkpoint = write_checkpoint(run, state)
                if validation_due(cfg, state.step):
                    run.validate(run.unet, state.step)
            if stop:
                state.stop_reason = stop
                run.metrics.write(f"stopped at step {state.step} ({stop}); checkpoint: {state.last_checkpoint}")
                break
    return finish(run, state)


# --------------------------------------------------------------------------- set-up

@dataclass
class LoopState:
    """Where the loop is: the step, the next batch to read (saved with a checkpoint), and what it logged."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    losses: list[float] = field(default_factory=list)  # the logged losses, one per logged step
    last_checkpoint: Path | None = None
    stop_reason: str = ""

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


@dataclass
class Run:
    """Everything `set_up()` builds and the loop works with."""

    cfg: TrainConfig
    accelerator: object  # accelerate.Accelerator
    out: Path
    weight_dtype: object  # torch.dtype of the frozen weights (the LoRA weights are fp32)
    model: object  # trainer.models.base.BaseModel; model.pipe.unet is the unwrapped UNet
    unet: object  # the LoRA-wrapped UNet as accelerate prepared it (DDP-wrapped with several processes)
    peft_config: object
    noise_scheduler: object  # DDPMScheduler
    caption_set: object
    samples: list  # trainer.training.dataset.Sample, one per training image
    plan: BatchPlan
    cached: object  # CachedData, or None when encoding every step
    params: list
    optimizer: object
    lr_scheduler: object
    noise_gen: object  # torch.Generator for noise and timesteps (per process)
    metrics: MetricsLogger
    validate: Validator
    state: LoopState
    lock: object  # run_folder.FolderLock (held by the main process)
    data_fingerprint: str  # of the samples in order; saved with each checkpoint, compared on resume

    @property
    def device(self):
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes


def set_up(cfg: TrainConfig, *, caption_set=None, model=None, resume=None, progress: bool = True,
           callbacks=(), overwrite: bool = False) -> Run:
    """Accelerator, output folder (locked, checked), model + LoRA, data, optimizer, resumed state, logger and
    validator. Nothing is written into the output folder before every check has passed.

    In this order: the order fixes the random draws (LoRA init, noise generator), which exact resume relies on.
    """
    import torch
    from diffusers.optimization import get_scheduler

    t, out = cfg.train, Path(cfg.logging.output_dir)
    accelerator, weight_dtype = make_accelerator(t.mixed_precision)
    lock = lock_output_dir(out, accelerator)
    try:
        loaded = None
        if resume:
            if overwrite:
                raise RunFolderError("--overwrite starts a new run; it cannot be combined with --resume")
            resume_from, loaded = ckpt.load_resume(out, resume, accelerator.process_index, accelerator.num_processes,
                                                   warn=accelerator.print)
            check_resume(cfg, resume_from, loaded, out, accelerator.print)
        elif accelerator.is_main_process:
            check_new_run(out, overwrite, accelerator.print)

        announce(callbacks, "loading model")
        model = model if model is not None else load_model(cfg)
        peft_config, noise_scheduler = prepare_model(model, t, accelerator, weight_dtype)
        caption_set = caption_set if caption_set is not None else load_caption_set(cfg)
        decorrelated = decorrelation_provenance(caption_set.provenance.get("adverb_filter") or {})
        samples, plan, cached = prepare_data(cfg, caption_set, model.pipe, accelerator, progress,
                                             on_encode=lambda done, total: announce(callbacks, "encoding", done, total))
        fingerprint = data_fingerprint(samples)
        if loaded is not None:
            check_resume_data(loaded, fingerprint, resume_from, len(samples))
        if accelerator.is_main_process:  # every check passed: the run's own files from here on
            out.mkdir(parents=True, exist_ok=True)
            # The decorrelation goes in as a comment, so config.yaml stays a loadable config.
            note = ("# captions decorrelated (trainer.captions.decorrelate): "
                    + json.dumps(decorrelated, sort_keys=True) + "\n") if decorrelated else ""
            write_text(out / "config.yaml", cfg.to_yaml() + note)

        params = trainable_parameters(model.pipe.unet)
        optimizer = _optimizer(params, t, accelerator.print)
        # Stepped once per optimizer step by us (not prepared: accelerate would step it once per process).
        lr_scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.lr_warmup_steps,
                                     num_training_steps=t.max_train_steps)
        unet, optimizer = accelerator.prepare(model.pipe.unet, optimizer)
        noise_gen = torch.Generator(device=accelerator.device).manual_seed(t.seed * 1000 + accelerator.process_index)
        state = LoopState()
        if loaded is not None:
            state = resume_state(resume_from, loaded, accelerator, unet, optimizer, lr_scheduler, noise_gen)

        metrics = MetricsLogger(out, t.max_train_steps, state.step, enabled=accelerator.is_main_process,
                                tensorboard=cfg.logging.tensorboard, progress=progress)
        validate = Validator(cfg, model.pipe, accelerator, metrics, weight_dtype, out / "samples")
    except BaseException:
        lock.release()
        raise
    return Run(cfg, accelerator, out, weight_dtype, model, unet, peft_config, noise_scheduler, caption_set, samples,
               plan, cached, params, optimizer, lr_scheduler, noise_gen, metrics, validate, state, lock, fingerprint)


def lock_output_dir(out: Path, accelerator):
    """The output folder's lock, taken by the main process; every process fails together when it is taken."""
    import torch

    lock = FolderLock(out)
    error = None
    if accelerator.is_main_process:
        try:
            lock.acquire()
        except RunFolderError as e:
            error = e
    if accelerator.num_processes > 1:  # the other processes must not go on to wait at a barrier forever
        failed = accelerator.reduce(torch.tensor(float(error is not None), device=accelerator.device), "max")
        if failed.item() and error is None:
            lock.release()
            error = RunFolderError(f"{out} is in use by another training run (the main process could not lock it)")
    if error is not None:
        raise error
    return lock


def check_resume(cfg: TrainConfig, checkpoint_dir: Path, loaded: dict, out: Path, say) -> None:
    """Refuse a resume the checkpoint cannot honour (before anything is written); say what changes take effect.

    The checkpoint's config is the one saved in it (older checkpoints: its run folder's config.yaml). Resuming
    another folder's checkpoint into `out` starts a branch there: `out` must not hold a run of its own.
    """
    import yaml

    saved = loaded["state"].get("config")
    run_config = checkpoint_dir.parent / "config.yaml"
    if saved is None and run_config.is_file():
        saved = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
    step = loaded["state"]["step"]
    changes = resume_changes(saved or {}, cfg, step, where=f"--resume {checkpoint_dir}")
    other_run = earlier_results(out) if out.resolve() != checkpoint_dir.parent.resolve() else []
    if other_run:
        raise RunFolderError(f"--resume {checkpoint_dir} into {out}: that folder holds another run "
                             f"({'; '.join(other_run)}); resume into the checkpoint's own folder "
                             f"({checkpoint_dir.parent}) or an empty one")
    for change in changes:
        if change.partition(":")[0] != "logging.output_dir":
            say(f"resume: {change} (from step {step} on)")


def data_fingerprint(samples) -> str:
    """A hash of the training samples in order: image file names, captions (and decorrelated variants) and buckets."""
    import hashlib

    h = hashlib.sha256()
    for s in samples:
        variants = list(getattr(s, "variants", ()))  # only when present, so other modes' hashes stay as they were
        record = [Path(s.image_path).name, s.caption, list(s.bucket)] + ([variants] if variants else [])
        h.update(json.dumps(record).encode())
    return f"{len(samples)}:{h.hexdigest()[:16]}"


def check_resume_data(loaded: dict, fingerprint: str, checkpoint_dir: Path, n_samples: int) -> None:
    """A resume continues on the checkpoint's data only: other captions or images are refused (its data position
    and LoRA belong to those). Checkpoints written before fingerprints were saved are not checked."""
    saved = loaded["state"].get("data")
    if saved and saved != fingerprint:
        raise RunFolderError(f"--resume {checkpoint_dir}: the training data differ from the checkpoint's "
                             f"({saved.partition(':')[0]} samples then, {n_samples} now, or other captions/images); "
                             "resume on the same data, or start a new run in another logging.output_dir")


def announce(callbacks, phase: str, done: int = 0, total: int = 0) -> None:
    """Each callback's `on_phase(phase, done, total)`: what set-up is busy with before step 1."""
    for c in callbacks:
        if hasattr(c, "on_phase"):
            c.on_phase(phase, done, total)


def make_accelerator(mixed_precision: str):
    """(accelerate `Accelerator`, dtype of the frozen weights) for `train.mixed_precision` (`auto` resolved here)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # `accelerate launch --cpu` starts several processes only through MPI; started by its torchrun launcher
    # (`--multi_gpu`, or plain torchrun) on a machine without GPUs, tell accelerate to use gloo on CPU.
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    precision, warning = choose_precision(mixed_precision, training_device_type(),
                                          torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # accelerate keeps its state per process; a host that trains again in the same process (ComfyUI) may ask
    # for another precision. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=precision, cpu=multi_cpu)
    if warning:
        accelerator.print(f"warning: {warning}")
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    return accelerator, weight_dtype


def training_device_type() -> str:
    """"cuda", "mps" or "cpu": the device accelerate will train on (`accelerate launch --cpu` forces cpu)."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def choose_precision(requested: str, device_type: str, bf16_supported: bool = False) -> tuple[str, str]:
    """(accelerate's mixed_precision, a warning or "") for `train.mixed_precision` on this device type.

    `auto`: bf16 on CUDA GPUs that support it, else fp16; fp16 on MPS (accelerate needs torch >= 2.5 for its
    autocast there, else fp32); fp32 ("no") on CPU, where PyTorch has few half-precision kernels.
    """
    if requested == "auto":
        if device_type == "cuda":
            return ("bf16" if bf16_supported else "fp16"), ""
        if device_type == "mps":
            import torch

            major_minor = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
            return ("fp16" if major_minor >= (2, 5) else "no"), ""
        return "no", ""
    if requested in ("fp16", "bf16") and device_type == "cpu":
        # Measured on x86 (torch 2.13): a 1024² matmul 70-100x, a 320-channel 3x3 conv ~200x slower than in fp32.
        return requested, (f"train.mixed_precision={requested} on CPU: PyTorch's CPU {requested} kernels are slow, "
                           "expect training to run tens to hundreds of times slower than in fp32; "
                           "use train.mixed_precision=auto (or no) on CPU")
    return requested, ""


def load_model(cfg: TrainConfig):
    """The base model (`trainer.models.base.load_base_model`: folder, hub id, single file, or tiny-sd15/tiny-sd2)."""
    from ..models.base import load_base_model

    return load_base_model(cfg.model_name, prediction_type=cfg.train.prediction_type or None,
                           vae=cfg.vae or None, text_encoder=cfg.text_encoder or None)


def prepare_model(model, t, accelerator, weight_dtype):
    """Freeze the model, move it to the device, add the LoRA to its UNet (in place); (peft_config, noise_scheduler)."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params

    pipe = model.pipe
    unet, vae = pipe.unet, pipe.vae
    # SDXL has a second text encoder (OpenCLIP bigG); frozen like the first.
    encoders = [m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m is not None]
    # Everything frozen; VAE and text encoders in eval mode (half precision under mixed precision).
    for m in (unet, vae, *encoders):
        m.requires_grad_(False)
    for m in (vae, *encoders):
        m.eval()
    # SD's and SDXL's VAEs overflow in fp16 (their configs say force_upcast); an fp16-safe VAE (e.g.
    # sdxl-vae-fp16-fix, force_upcast false) runs in fp16. It runs once per image when caching anyway.
    vae_dtype = torch.float32 if weight_dtype == torch.float16 and vae.config.get("force_upcast") else weight_dtype
    for m, dtype in ((vae, vae_dtype), *((te, weight_dtype) for te in encoders), (unet, weight_dtype)):
        m.to(accelerator.device) if dtype == torch.float32 else m.to(accelerator.device, dtype=dtype)
    torch.manual_seed(t.seed)  # LoRA init (identical on every process)
    peft_config = add_lora(unet, t)
    if weight_dtype != torch.float32:
        cast_training_params(unet, dtype=torch.float32)  # fp32 LoRA weights, half-precision base
    _set_attention(unet, t.enable_xformers, accelerator.print)
    if t.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return peft_config, DDPMScheduler.from_config(pipe.scheduler.config)


def _set_attention(unet, enable_xformers: bool, log) -> None:
    if not enable_xformers:
        return  # diffusers uses PyTorch SDPA by default
    try:
        unet.enable_xformers_memory_efficient_attention()
    except Exception as e:  # not installed, or no GPU kernel for this device
        log(f"warning: train.enable_xformers=true but xformers cannot be used ({e}); using PyTorch SDPA")


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
    from ..captions.decorrelate import process_captions

    return process_captions(captions, ds.adverb_mode, variants=ds.decorrelate_variants,
                            rate=None if ds.decorrelate_rate < 0 else ds.decorrelate_rate, seed=ds.seed,
                            pool=tuple(ds.decorrelate_pool))


def prepare_data(cfg: TrainConfig, caption_set, pipe, accelerator, progress: bool, on_encode=None):
    """Captions -> samples in aspect buckets -> encoded once (`cached`; None when encoded per step).

    `on_encode(done, total)`: progress of the encoding, in images + captions.
    """
    t, ds = cfg.train, cfg.dataset
    rank, world = accelerator.process_index, accelerator.num_processes
    family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd1"
    if family == "sdxl" and ds.resolution < 768:
        accelerator.print(f"warning: dataset.resolution={ds.resolution} with an SDXL model, which was trained at "
                          "1024²; set dataset.resolution=1024 unless this is a test model")
    samples = build_samples(caption_set, ds.resolution, ds.buckets, ds.bucket_step, ds.min_bucket_resolution,
                            ds.max_bucket_resolution, family=family)
    plan = BatchPlan(samples, t.train_batch_size, t.seed, world, rank)
    cached = None
    if ds.cache_latents:
        out = Path(cfg.logging.output_dir)
        cache_dir = Path(ds.cache_dir) if ds.cache_dir else out.parent / ".latent_cache"
        cached = build_cache(samples, cache_dir, pipe.vae, pipe.text_encoder, pipe.tokenizer, crop=ds.crop,
                             flips=ds.random_flip, batch_size=max(t.train_batch_size, 8), rank=rank, world_size=world,
                             wait=accelerator.wait_for_everyone, progress=progress and accelerator.is_main_process,
                             on_progress=on_encode if accelerator.is_main_process else None,
                             text_encoder_2=getattr(pipe, "text_encoder_2", None),
                             tokenizer_2=getattr(pipe, "tokenizer_2", None))
        accelerator.print(f"cache {cache_dir}: encoded {cached.stats['latents_encoded']}/{cached.stats['latents_total']}"
                          f" latents, {cached.stats['text_encoded']}/{cached.stats['text_total']} captions")
    return samples, plan, cached


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


def resume_state(checkpoint_dir: Path, state: dict, accelerator, unet, optimizer, lr_scheduler,
                 noise_gen) -> LoopState:
    """Load a checkpoint (`ckpt.load_checkpoint`'s dict) into the LoRA, optimizer, scheduler and noise generator;
    the loop position it saved.

    The optimizer's and scheduler's saved settings are replaced by this run's: a changed learning rate (or AdamW
    setting) takes effect from the resumed step on, as config.yaml and the LoRA's metadata say.
    """
    set_lora_state_dict(unet, state["lora_state"])
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["scheduler"])
    apply_settings(optimizer, lr_scheduler, settings)
    if state["scaler"] is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    ckpt.restore_rng(state["rng"], noise_gen)
    step, epoch, batch = state["state"]["step"], state["state"]["epoch"], state["state"]["batch"]
    accelerator.print(f"resumed from {checkpoint_dir} at step {step} (epoch {epoch}, batch {batch})")
    return LoopState(step, epoch, batch)


def apply_settings(optimizer, lr_scheduler, settings: list[dict]) -> None:
    """Give the optimizer groups this run's settings back (betas, eps, weight decay, initial lr) and the scheduler
    this run's base learning rates, and set each group's current lr where the schedule puts it at this step."""
    for group, fresh in zip(optimizer.param_groups, settings):
        for key in ("betas", "eps", "weight_decay", "initial_lr"):
            if key in fresh:
                group[key] = fresh[key]
    lr_scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
    lambdas = getattr(lr_scheduler, "lr_lambdas", None)  # diffusers' schedules are LambdaLRs
    if lambdas is None:
        raise ValueError(f"resume: cannot set the learning rate of a {type(lr_scheduler).__name__} schedule")
    for group, base, f in zip(optimizer.param_groups, lr_scheduler.base_lrs, lambdas):
        group["lr"] = base * f(lr_scheduler.last_epoch)
    lr_scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


# --------------------------------------------------------------------------- the step

def training_step(run: Run, batches, state: LoopState, meter: LossMeter):
    """One optimizer step: for each of `gradient_accumulation_steps` micro-batches, noise + timesteps, UNet
    forward, loss and backward (`diffusion_loss`); then gradient clipping, AdamW and LR-scheduler steps.

    Advances `state` (step, and the next batch to read), adds the loss to `meter`; returns (grad_norm, epoch).
    """
    t, accelerator = run.cfg.train, run.accelerator
    ga = t.gradient_accumulation_steps
    for micro in range(ga):
        epoch, b, indices = next(batches)
        # The data position saved with a checkpoint is the next batch to read.
        state.epoch, state.batch = (epoch, b + 1) if b + 1 < run.plan.batches_per_epoch else (epoch + 1, 0)
        latents, emb = fetch_batch(run, epoch, indices)
        # DDP all-reduces gradients only on the last micro-batch of the step.
        sync = contextlib.nullcontext() if micro == ga - 1 else accelerator.no_sync(run.unet)
        with sync:
            loss = diffusion_loss(run.unet, run.noise_scheduler, latents, emb, run.noise_gen,
                                  run.model.prediction_type, t.snr_gamma, t.noise_offset)
            accelerator.backward(loss / ga)
        meter.add(loss.detach() / ga)
    grad_norm = accelerator.clip_grad_norm_(run.params, t.max_grad_norm or math.inf)
    run.optimizer.step()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    meter.end_step()
    return grad_norm, epoch


def fetch_batch(run: Run, epoch: int, indices: list[int]):
    """(latents fp32, conditioning) of one batch on the device: from the cache, or encoded now.

    The conditioning is the text embeddings (SD1/SD2), or the UNet's keyword arguments (SDXL: with the pooled
    text and each image's size conditioning).
    """
    import torch

    t, ds, pipe = run.cfg.train, run.cfg.dataset, run.model.pipe
    flips = [bool(sample_rng(t.seed, epoch, i).random() < 0.5) if ds.random_flip else False for i in indices]
    variants = [variant_index(t.seed, epoch, i, len(run.samples[i].variants)) for i in indices]
    if run.cached is not None:
        latents, emb = run.cached.batch(indices, flips, variants)
    else:  # per-step encoding: random crops differ each epoch
        samples = run.samples
        loaded = [load_image(samples[i].image_path, samples[i].bucket, ds.crop, f, sample_rng(t.seed + 1, epoch, i))
                  for i, f in zip(indices, flips)]
        latents = encode_images(pipe.vae, torch.stack([pixels for pixels, _ in loaded]))
        text = encode_prompts(text_parts(pipe), [samples[i].variants[v] if samples[i].variants else samples[i].caption
                                                 for i, v in zip(indices, variants)])
        emb = text["embedding"] if "pooled" not in text else unet_kwargs(text, torch.stack([ids for _, ids in loaded]))
    return (latents.to(run.device, torch.float32, non_blocking=True), move_conditioning(emb, run.device, run.weight_dtype))


def diffusion_loss(unet, noise_scheduler, latents, embeddings, generator, prediction_type: str,
                   snr_gamma: float = 0.0, noise_offset: float = 0.0):
    """MSE between the UNet's prediction and the target at random timesteps (optionally min-SNR weighted).

    `embeddings`: the text embeddings [B, 77, D], or the UNet's conditioning keyword arguments
    (`encoder_hidden_states`, and for SDXL `added_cond_kwargs` with `text_embeds` and `time_ids`).
    """
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
    cond = embeddings if isinstance(embeddings, dict) else {"encoder_hidden_states": embeddings}
    # Inputs in the frozen weights' dtype (autocast is not on everywhere, e.g. fp16 on CPU); the loss in fp32.
    pred = unet(noisy.to(cond["encoder_hidden_states"].dtype), timesteps, **cond, return_dict=False)[0]
    if not snr_gamma:
        return F.mse_loss(pred.float(), target.float())
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (loss * weights).mean()


def diffusion_target(noise_scheduler, latents, noise, timesteps, prediction_type: str):
    """What the UNet must predict: the noise (epsilon) or the velocity (v_prediction)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type {prediction_type!r} is not supported: use epsilon or v_prediction")


# --------------------------------------------------------------------------- logging, stopping, checkpoints

class LossMeter:
    """The loss summed on the device since the last logged step, the last step's loss, and the steps' wall time."""

    def __init__(self, device):
        import torch

        self.total = torch.zeros((), device=device)  # the steps since the last read
        self.current = torch.zeros((), device=device)  # the step under way (its micro-batches)
        self.last = torch.zeros((), device=device)  # the last finished step
        self.steps = 0
        self.since = time.perf_counter()

    def add(self, loss) -> None:
        """A micro-batch's share of its step's loss."""
        self.total += loss
        self.current += loss

    def end_step(self) -> None:
        """The step's micro-batches are all added."""
        self.last.copy_(self.current)
        self.current.zero_()
        self.steps += 1

    def read(self, accelerator) -> tuple[float, float, float]:
        """(mean loss over the processes and steps since the last read, the last step's loss, seconds per step);
        then start over."""
        mean = (accelerator.reduce(self.total, "mean") / self.steps).item()
        last = accelerator.reduce(self.last, "mean").item()
        now = time.perf_counter()
        step_time = (now - self.since) / self.steps
        self.total.zero_()
        self.steps, self.since = 0, now
        return mean, last, step_time

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside does not count as step time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.since += time.perf_counter() - start


def checkpoint_due(cfg: TrainConfig, step: int) -> bool:
    """Every `logging.save_steps` steps, and at the last step."""
    return bool(cfg.logging.save_steps and step % cfg.logging.save_steps == 0) or step == cfg.train.max_train_steps


def log_due(cfg: TrainConfig, step: int) -> bool:
    """Every `logging.log_steps` steps (and whenever a checkpoint is saved or the run stops)."""
    return step % cfg.logging.log_steps == 0


def validation_due(cfg: TrainConfig, step: int) -> bool:
    """Every `validation.steps` steps, but not at the last: `finish()` validates the final LoRA."""
    return bool(cfg.validation.steps and step % cfg.validation.steps == 0) and step != cfg.train.max_train_steps


def notify(callbacks, state: LoopState, total: int, logs: dict) -> None:
    """Each callback's `on_step(step, total, last logged loss, this step's record or {})`."""
    for c in callbacks:
        if hasattr(c, "on_step"):
            c.on_step(state.step, total, state.last_loss, logs)


def stop_requested(run: Run, signals, callbacks, step: int, save_now: bool) -> str:
    """Why to stop after this step ("" = go on): a signal, or a callback's `should_stop()`.

    Every process must stop at the same step: with several, they agree at logging and saving steps only
    (no per-step sync).
    """
    import torch

    stop = signals.requested or ("callback" if any(getattr(c, "should_stop", lambda: False)() for c in callbacks)
                                 else "")
    if run.world == 1:
        return stop
    if log_due(run.cfg, step) or save_now:
        flag = run.accelerator.reduce(torch.tensor(float(bool(stop)), device=run.device), "max")
        return stop or ("signal" if flag.item() else "")
    return ""


def log_step(run: Run, meter: LossMeter, state: LoopState, epoch: int, grad_norm) -> dict:
    """Log this step (metrics.jsonl, TensorBoard, progress bar) and return its record.

    A non-finite loss is not logged: it sets `state.stop_reason` and says where the last good checkpoint is.
    """
    t = run.cfg.train
    # `loss`: the mean over the steps since the last log (a single step's loss is mostly noise); `loss_step`: this step's.
    loss, loss_step, step_time = meter.read(run.accelerator)
    logs = {"step": state.step, "epoch": epoch, "loss": loss, "loss_step": loss_step,
            "lr": run.lr_scheduler.get_last_lr()[0],
            "step_time": step_time,
            "samples_per_sec": t.train_batch_size * t.gradient_accumulation_steps * run.world / step_time
            if step_time else 0.0,
            "grad_norm": float(grad_norm) if grad_norm is not None else None}
    if not math.isfinite(loss):
        state.stop_reason = "non-finite loss"
        run.metrics.write(f"loss is {loss} at step {state.step}: stopping. The last good checkpoint is "
                          f"{state.last_checkpoint or 'none (no checkpoint was written yet)'}; lower "
                          "train.learning_rate, or use train.mixed_precision=bf16/no.")
        return logs
    state.losses.append(loss)
    run.metrics.log(logs)
    return logs


def write_checkpoint(run: Run, state: LoopState) -> Path:
    """`checkpoint-<step>/`: LoRA, optimizer, scheduler, RNG and data position, plus the exported LoRA files."""
    step = state.step
    return ckpt.save_checkpoint(
        run.out, step, lora_state=lora_state_dict(run.unet), optimizer=run.optimizer, lr_scheduler=run.lr_scheduler,
        rng_state=ckpt.capture_rng(run.noise_gen), position={"epoch": state.epoch, "batch": state.batch},
        export=lambda d: export_lora(run, d, step), limit=run.cfg.logging.checkpoints_total_limit,
        rank=run.rank, is_main=run.is_main, wait=run.accelerator.wait_for_everyone, scaler=run.accelerator.scaler,
        extra={"config": run.cfg.to_dict(), "data": run.data_fingerprint})


def export_lora(run: Run, folder: Path, step: int):
    """The LoRA as a PEFT adapter and a webui .safetensors (with `ss_*` metadata) in `folder`."""
    meta = lora_metadata(run.cfg, run.model, run.caption_set, step, len(run.samples),
                         precision=run.accelerator.mixed_precision)
    return ckpt.export_lora(lora_state_dict(run.unet), run.peft_config, folder, run.cfg.logging.name, meta)


def lora_metadata(cfg: TrainConfig, model, caption_set, step: int, n_images: int,
                  precision: str | None = None) -> dict[str, str]:
    """kohya-style `ss_*` training metadata, plus the caption-filter settings, for the webui file.

    `precision`: the mixed precision actually used (what `auto` resolved to); default `train.mixed_precision`.
    """
    import json

    t = cfg.train
    vpred = model.prediction_type == "v_prediction"
    filt = caption_set.provenance.get("filter") or caption_set.provenance.get("adverb_filter") or {}
    decorrelated = decorrelation_provenance(filt)
    return {
        # The family, which convert cannot tell from a tiny model's shapes; it fills in ss_v2 and ss_network_*.
        "ss_base_model_version": {"sd2": "sd_v2_v" if vpred else "sd_v2", "sdxl": "sdxl_base_v1-0"}.get(
            model.family, "sd_v1"),
        "ss_sd_model_name": str(cfg.model_name), "ss_v_parameterization": str(vpred),
        "ss_resolution": f"({cfg.dataset.resolution}, {cfg.dataset.resolution})",
        "ss_learning_rate": str(t.learning_rate), "ss_unet_lr": str(t.learning_rate), "ss_text_encoder_lr": "0",
        "ss_lr_scheduler": t.lr_scheduler, "ss_lr_warmup_steps": str(t.lr_warmup_steps),
        "ss_max_train_steps": str(t.max_train_steps), "ss_steps": str(step),
        "ss_batch_size_per_device": str(t.train_batch_size),
        "ss_gradient_accumulation_steps": str(t.gradient_accumulation_steps),
        "ss_mixed_precision": precision or t.mixed_precision, "ss_seed": str(t.seed), "ss_num_train_images": str(n_images),
        "ss_min_snr_gamma": str(t.snr_gamma), "ss_noise_offset": str(t.noise_offset),
        "ss_caption_adverb_mode": cfg.dataset.adverb_mode if cfg.dataset.raw_root else str(filt.get("mode", "")),
        "ss_caption_filter": json.dumps({**filt, "decorrelate": decorrelated} if "decorrelate" in filt else filt,
                                        sort_keys=True, default=str),
        # decorrelate mode: what made the adverbs independent of the images (mode, pool, rate, K, seed)
        "ss_caption_decorrelate": json.dumps(decorrelated, sort_keys=True, default=str),
        "ss_caption_source": json.dumps({k: v for k, v in caption_set.provenance.items() if k != "filter"},
                                        sort_keys=True, default=str)[:4000],
        "ss_training_comment": "UNet-only LoRA on adverb-filtered captions (sd-adverb-lora)",
    }


def decorrelation_provenance(filt: dict) -> dict:
    """The decorrelate mode's settings from a caption set's filter provenance ({} for the other modes): mode, K,
    seed, the target and achieved rate and the pool, without the report's examples and counts."""
    d = filt.get("decorrelate") or {}
    keys = ("mode", "variants", "seed", "rate", "rate_target", "rate_source", "rate_achieved", "pool",
            "decorrelate_version")
    return {k: d[k] for k in keys if k in d}


# --------------------------------------------------------------------------- the finish

def finish(run: Run, state: LoopState) -> TrainResult:
    """After the loop: last validation and the final LoRA (unless stopped early), loss plot, the result."""
    cfg, out = run.cfg, run.out
    stopped = bool(state.stop_reason)
    result = TrainResult(out, None, None, state.step, state.losses, stopped, state.stop_reason, state.last_checkpoint,
                         run.metrics.jsonl_path)
    if stopped:
        if state.last_checkpoint is not None:
            result.lora_path = state.last_checkpoint / f"{cfg.logging.name}.safetensors"
            result.peft_dir = state.last_checkpoint / "adapter"
    else:
        run.validate(run.unet, state.step)
        if run.is_main:
            result.lora_path, result.peft_dir = export_lora(run, out, state.step)
            if cfg.logging.save_merged:
                result.merged_dir = save_merged(run.model.pipe, run.accelerator.unwrap_model(run.unet),
                                                out / f"{cfg.logging.name}_merged")
    run.metrics.close()
    if run.is_main:
        result.loss_plot = plot_loss_curve(run.metrics.jsonl_path, out / "loss_curve.png", f"{cfg.logging.name} loss")
    result.samples = run.validate.written
    result.cache_stats = dict(run.cached.stats) if run.cached is not None else {}
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    if state.stop_reason == "non-finite loss":
        raise NonFiniteLossError(f"training stopped at step {state.step}: the loss is not finite; "
                                 f"last good checkpoint: {state.last_checkpoint}")
    return result


def save_merged(pipe, unet, out_dir: Path) -> Path:
    """The base pipeline with the LoRA merged into the UNet, as a diffusers folder (written atomically)."""
    import shutil

    from ..atomic import umask_tree

    unet.fuse_lora()
    unet.unload_lora()
    pipe.unet = unet
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    umask_tree(tmp)  # its safetensors files are 0600
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
