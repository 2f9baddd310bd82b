"""`TrainUNetLoRA`: trains a UNet LoRA in-process with `trainer.training.train`, writes it to ComfyUI's `loras` folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from . import host
from .captions import CATEGORY

PRECISIONS = {"auto": "auto", "fp16": "fp16", "bf16": "bf16", "fp32": "no"}
TARGETS = ("attention", "kohya")  # trainer.training.config CHOICES["train.lora_targets"]
OUR_MARK = "sd-adverb-lora"  # in ss_training_comment of every file the trainer writes


def caption_fingerprint(caption_set) -> str:
    """Hash of the records (image, caption): names the run folder together with the settings."""
    h = hashlib.sha256()
    for r in caption_set.records:
        h.update(f"{r.image_path}\0{r.caption}\n".encode())
    return h.hexdigest()


def build_config(model_name: str, run_dir: Path, s: dict):
    """The `TrainConfig` for the node's settings (validated by `trainer.training.config`, errors name the field)."""
    from ..trainer.training.config import config_from_dict

    return config_from_dict({
        "model_name": model_name,
        "dataset": {"resolution": s["resolution"], "adverb_mode": "none", "seed": s["seed"]},
        "train": {"max_train_steps": s["steps"], "learning_rate": s["learning_rate"],
                  "train_batch_size": s["batch_size"], "gradient_accumulation_steps": s["grad_accumulation"],
                  "lora_rank": s["rank"], "lora_alpha": s["alpha"], "mixed_precision": PRECISIONS[s["precision"]],
                  "lora_targets": s["lora_targets"], "seed": s["seed"]},
        # log every step: the loss shown under the node and in the curve is per step
        "logging": {"output_dir": str(run_dir), "name": s["output_name"], "save_steps": s["save_every"],
                    "log_steps": 1, "tensorboard": False, "checkpoints_total_limit": 3},
    }, where="TrainUNetLoRA")


def check_target(dst: Path) -> None:
    """Refuse to overwrite a LoRA this trainer did not write (checked before training, and again at the end)."""
    if dst.exists():
        from safetensors import safe_open

        try:
            with safe_open(str(dst), framework="pt") as f:
                comment = (f.metadata() or {}).get("ss_training_comment", "")
        except Exception:
            comment = ""
        if OUR_MARK not in comment:
            raise FileExistsError(f"{dst} exists and was not written by this trainer; choose another output_name "
                                  "or move that file away")


def install_lora(src: Path, loras_dir: Path, name: str) -> Path:
    """Copy the trained file to `<loras>/<name>.safetensors` atomically."""
    dst = loras_dir / f"{name}.safetensors"
    check_target(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def loss_image(png: Path | None, losses: list[float]):
    """The loss curve as a ComfyUI IMAGE ([1, H, W, 3] float in 0..1)."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    if png is not None and Path(png).is_file():
        img = Image.open(png).convert("RGB")
    else:  # no plot (nothing logged, e.g. a resumed finished run): a plain polyline, or a blank panel
        img = Image.new("RGB", (512, 256), "white")
        vals = [v for v in losses if v == v]
        if len(vals) > 1:
            lo, hi = min(vals), max(vals)
            span = (hi - lo) or 1.0
            pts = [(8 + i * 496 / (len(vals) - 1), 248 - (v - lo) / span * 240) for i, v in enumerate(vals)]
            ImageDraw.Draw(img).line(pts, fill=(31, 119, 180), width=2)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


class TrainUNetLoRA:
    DESCRIPTION = ("Trains a LoRA on the UNet of a Stable Diffusion 1.x/2.x/XL model (VAE and text encoders frozen, "
                   "plain diffusion loss) on a CAPTION_SET. Frees ComfyUI's loaded models first, shows the loss "
                   "per step, Cancel stops it within a step and keeps a checkpoint. The LoRA is written in "
                   "kohya/sd-webui format to the loras folder (LoraLoader and sd-webui's <lora:name:1> read it).")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    RETURN_TYPES = ("LORA", "LORA_MODEL", "IMAGE", "STRING")
    RETURN_NAMES = ("lora", "lora_model", "loss_curve", "summary")
    OUTPUT_TOOLTIPS = ("The trained LoRA file (path, rank/alpha, base family, training metadata): for ApplyLoRA.",
                       "The LoRA weights in ComfyUI's key format: for the core 'Load LoRA Model' node.",
                       "Loss per step.", "What was trained and where it was written.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "caption_set": ("CAPTION_SET", {"tooltip": "The training captions (from CaptionAdverbFilter)."}),
                "ckpt_name": ([host.NO_CHECKPOINT] + host.filenames("checkpoints"), {"tooltip": (
                    "Base model: an SD1.x/SD2.x/SDXL checkpoint from ComfyUI's checkpoints folder.")}),
                "model_path": ("STRING", {"default": "", "tooltip": (
                    "Instead of ckpt_name: a diffusers model folder or checkpoint file (absolute, or relative "
                    "to the input folder). Used when not empty.")}),
                "steps": ("INT", {"default": 500, "min": 1, "max": 1_000_000, "tooltip": "Optimizer steps."}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-6,
                                            "round": False, "tooltip": "AdamW learning rate (constant)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": "Images per micro-batch."}),
                "grad_accumulation": ("INT", {"default": 1, "min": 1, "max": 1024, "tooltip": (
                    "Micro-batches per optimizer step (effective batch = batch_size × this).")}),
                "rank": ("INT", {"default": 4, "min": 1, "max": 1024, "tooltip": "LoRA rank r."}),
                "alpha": ("FLOAT", {"default": 4.0, "min": 0.01, "max": 4096.0, "step": 0.01, "tooltip": (
                    "LoRA alpha; the update is scaled by alpha / rank (kept exactly in the written file).")}),
                "resolution": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64, "tooltip": (
                    "Training resolution in pixels (aspect buckets of this area); 512 for SD1.5, 768 for SD2.x, "
                    "1024 for SDXL (its own bucket list).")}),
                "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                    "Mixed precision of the frozen weights (LoRA weights stay fp32). auto: bf16 (or fp16) on "
                    "CUDA, fp16 on Apple MPS, fp32 on CPU, where fp16/bf16 run many times slower.")}),
                "train_seed": ("INT", {"default": 42, "min": 0, "max": 2**32 - 1, "tooltip": (
                    "Seed of LoRA init, noise, timesteps and data order.")}),
                "save_every": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "tooltip": (
                    "Write a checkpoint every this many steps (0 = only at the end and on Cancel).")}),
                "output_name": ("STRING", {"default": "adverb_lora", "tooltip": (
                    "File name of the LoRA in the loras folder (<output_name>.safetensors).")}),
            },
            "optional": {
                "lora_targets": (list(TARGETS), {"default": "attention", "tooltip": (
                    "attention = to_q/k/v/out of every attention; kohya = also proj_in/proj_out and "
                    "feed-forward (what kohya's sd-scripts adapts).")}),
                "resume": ("BOOLEAN", {"default": True, "tooltip": (
                    "Continue from the last checkpoint of a cancelled run with the same data and settings.")}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def train(self, caption_set, ckpt_name, model_path, steps, learning_rate, batch_size, grad_accumulation,
              rank, alpha, resolution, precision, train_seed, save_every, output_name, lora_targets="attention",
              resume=True, unique_id=None):
        import torch

        from ..trainer.training.checkpoint import list_checkpoints
        from ..trainer.models.lora_ref import LoraRef
        from ..trainer.models.base import TINY_MODELS
        from ..trainer.training.train import train

        if caption_set is None or not len(caption_set):
            raise ValueError("TrainUNetLoRA: the caption_set is empty; connect LoadCOCOCaptions (→ CaptionAdverbFilter)")
        name = output_name.strip()
        if not name or any(c in name for c in '/\\:*?"<>|') or name.startswith("."):
            raise ValueError(f"TrainUNetLoRA: output_name {output_name!r} must be a plain file name (no folders)")
        if model_path.strip():
            model_name = model_path.strip()
            if model_name not in TINY_MODELS:  # tiny-sd15 / tiny-sd2 / tiny-sdxl: the built-in test models
                local = host.input_path(model_name)
                model_name = str(local) if local.exists() else model_name  # else a hub id (offline: it will say so)
        elif ckpt_name != host.NO_CHECKPOINT:
            model_name = str(host.model_file("checkpoints", ckpt_name))
        else:
            raise ValueError("TrainUNetLoRA: choose a checkpoint in ckpt_name or set model_path")

        settings = dict(steps=steps, learning_rate=learning_rate, batch_size=batch_size,
                        grad_accumulation=grad_accumulation, rank=rank, alpha=alpha, resolution=resolution,
                        precision=precision, seed=train_seed, save_every=save_every, output_name=name,
                        lora_targets=lora_targets)
        key = json.dumps({"model": model_name, "captions": caption_fingerprint(caption_set),
                          **{k: v for k, v in settings.items() if k != "save_every"}}, sort_keys=True)
        run_dir = host.output_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        config = build_config(model_name, run_dir, settings)
        check_target(host.models_dir("loras") / f"{name}.safetensors")
        earlier = list_checkpoints(run_dir) if resume else []
        resume_from = str(earlier[-1]) if earlier else None

        progress = host.ProgressCallback(steps, unique_id)
        host.free_loaded_models()
        t0 = time.perf_counter()
        try:
            # ComfyUI runs nodes under torch.inference_mode(); training needs autograd back.
            with torch.inference_mode(False), torch.enable_grad():
                result = train(config, caption_set=caption_set, callbacks=[progress], resume=resume_from,
                               overwrite=not resume)  # resume off: start over
        finally:
            host.release_memory()
        elapsed = time.perf_counter() - t0

        if result.stopped_early:
            host.raise_interrupt(f"TrainUNetLoRA: cancelled at step {result.final_step}/{steps}; checkpoint kept "
                                 f"in {result.checkpoint_dir} (queue again with resume on to continue)")
        lora_path = install_lora(Path(result.lora_path), host.models_dir("loras"), name)

        from ..convert import load_any, to_webui_state_dict

        lora_file = load_any(lora_path)
        lora_model = to_webui_state_dict(lora_file)  # kohya keys: what comfy.lora maps
        r, a = lora_file.common_rank_alpha()
        final_loss = result.losses[-1] if result.losses else float("nan")
        meta = {**lora_file.metadata, "run_dir": str(run_dir), "final_loss": final_loss,
                "final_step": result.final_step, "resumed_from": resume_from or ""}
        ref = LoraRef(str(lora_path), lora_file.format, int(r), float(a), lora_file.family, model_name, meta)
        summary = (f"trained {result.final_step} steps in {elapsed:.1f} s, final loss {final_loss:.4f}\n"
                   f"LoRA: {lora_path} (kohya/webui, {len(lora_file.modules)} modules, rank {r}, alpha {a:g}, "
                   f"family {lora_file.family})\nsd-webui: copy it to models/Lora and prompt <lora:{name}:1>\n"
                   f"run folder: {run_dir}")
        return (ref, lora_model, loss_image(result.loss_plot, result.losses), summary)
