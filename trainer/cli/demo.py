"""`python -m trainer demo`: the whole pipeline on the embedded default, offline, in about a minute on 2 CPU cores.

Sample COCO-format data (captions with adverbs) -> adverb filter -> tiny SD1.5-layout model (or tiny-sd2 /
tiny-sdxl) -> ~50 LoRA steps -> webui LoRA, PEFT adapter, loss plot, sample images (prompt with and without
adverbs) -> summary.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_PROMPTS = ["A very bright red circle quietly resting on the grass."]


@dataclass
class DemoResult:
    """What the demo produced (the `TrainResult` plus the data files)."""

    train: object  # TrainResult
    dataset_root: Path
    captions_path: Path
    n_captions: int
    n_changed: int
    summary: str


TINY_LAYOUTS = {"tiny-sd15": "SD1.5", "tiny-sd2": "SD2.x (v-prediction)", "tiny-sdxl": "SDXL"}
REAL_MODELS = {"tiny-sd15": "SD1.5", "tiny-sd2": "SD2.1", "tiny-sdxl": "SDXL base 1.0"}
# What to train instead, per tiny model: the example config and the usual single-file checkpoint of that family.
REAL_CONFIGS = {"tiny-sd15": "trainer/configs/train_config.yaml", "tiny-sd2": "trainer/configs/sd21_768_v.yaml",
                "tiny-sdxl": "trainer/configs/train_config.yaml"}
REAL_FILES = {"tiny-sd15": "v1-5-pruned-emaonly.safetensors", "tiny-sd2": "v2-1_768-ema-pruned.safetensors",
              "tiny-sdxl": "sd_xl_base_1.0.safetensors"}
REAL_NAME = "my_adverb_lora"


def real_model_command(model: str = "tiny-sd15") -> str:
    """The one command that trains the LoRA the demo stands for, on a real checkpoint of the tiny model's family."""
    extra = " dataset.resolution=1024" if model == "tiny-sdxl" else ""
    return (f"python -m trainer train --config {REAL_CONFIGS[model]} model_name=/path/to/{REAL_FILES[model]} "
            f"dataset.raw_root=/path/to/coco logging.output_dir=outputs/{REAL_NAME} logging.name={REAL_NAME}{extra}")


def tiny_model_note(model: str = "tiny-sd15") -> list[str]:
    """What the demo's LoRA is for (the tiny model only) and the command for a real one: the summary's last lines.

    A LoRA of the tiny model has the layer names of a real one but narrow shapes: sd-webui loads it without a
    visible error and changes nothing (only its DEBUG log shows the shape mismatches)."""
    real = REAL_MODELS[model]
    return [
        f"The demo's LoRA is for the tiny built-in {TINY_LAYOUTS[model]}-layout model (random weights, narrow layers):",
        f"it shows the pipeline works; it does NOT fit a real {real} checkpoint (sd-webui would load it silently and",
        "nothing would change). To train a LoRA for a real checkpoint (a diffusers folder or a .safetensors file):",
        f"  {real_model_command(model)}",
        f"  -> outputs/{REAL_NAME}/{REAL_NAME}.safetensors: copy it into sd-webui's models/Lora and use "
        f"<lora:{REAL_NAME}:1> (or train in sd-webui's Adverb LoRA tab, which puts it there).",
    ]


def demo_overrides(output: Path, steps: int, model: str = "tiny-sd15") -> list[str]:
    """The demo's settings on top of the defaults: tiny model, 64 px, batch 4, small LR warm-up."""
    return [
        f"model_name={model}",
        "dataset.resolution=64", "dataset.random_flip=true", f"dataset.cache_dir={output / 'cache'}",
        f"train.max_train_steps={steps}", "train.train_batch_size=4", "train.learning_rate=1e-3",
        "train.lr_scheduler=cosine", "train.lr_warmup_steps=5",
        f"logging.output_dir={output / 'run'}", "logging.name=demo_adverb_lora",
        f"logging.save_steps={max(1, steps // 2)}", "logging.log_steps=5", "logging.checkpoints_total_limit=2",
        "validation.num_inference_steps=10", "validation.guidance_scale=5.0", "validation.adverb_eval=true",
    ]


def run_demo(output: str | Path = "outputs/demo", steps: int = 50, n_images: int = 24, progress: bool = True,
             quiet: bool = False, model: str = "tiny-sd15") -> DemoResult:
    """Run the demo into `output` on the built-in `model` (tiny-sd15, tiny-sd2 or tiny-sdxl); prints (and
    returns) a summary of where everything is."""
    if model not in TINY_LAYOUTS:
        raise ValueError(f"demo model {model!r}: use one of {', '.join(TINY_LAYOUTS)}")
    from ..captions.adverbs import filter_adverbs
    from ..captions.coco import load_coco
    from ..training.config import config_from_dict
    from ..captions.sample_dataset import make_sample_coco
    from ..training.train import train

    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        # The tiny model's tensors are too small to gain from threads, and OpenMP's spinning threads make it
        # several times slower on a busy 2-core machine.
        torch.set_num_threads(1)
    output = Path(output).resolve()
    say = (lambda *a: None) if quiet else print
    say(f"[1/4] sample dataset: {n_images} generated images, 5 captions each -> {output / 'data'}")
    root = make_sample_coco(output / "data", n_images=n_images)
    captions = load_coco(root, "train2014", captions="all")
    say(f"[2/4] adverb filter (spaCy) on {len(captions)} captions")
    filtered = filter_adverbs(captions, mode="safe")
    captions_path = filtered.save(output / "data" / "captions_train2014.filtered.jsonl")
    changed = [r for r in filtered.records if r.original is not None and r.original != r.caption]
    # Train from the saved set (not the in-memory one) so the run's config.yaml reproduces it and
    # `python -m trainer train --resume <checkpoint>` works on the demo's run too.
    overrides = [*demo_overrides(output, steps, model), f"dataset.processed_root={captions_path}"]
    cfg = config_from_dict({"validation": {"prompts": DEMO_PROMPTS}}, overrides)
    say(f"[3/4] training the tiny {TINY_LAYOUTS[model]}-layout UNet LoRA for {steps} steps")
    result = train(cfg, progress=progress, overwrite=True)  # the demo starts over in its own folder
    say("[4/4] done")

    examples = "\n".join(f"    {r.original!r}\n -> {r.caption!r}" for r in changed[:3])
    records = map(json.loads, Path(result.metrics_path).read_text(encoding="utf-8").splitlines())
    evals = [r for r in records if "eval/adverb_sensitivity" in r]
    sensitivity = (f"  adverb effect   {evals[-1]['eval/adverb_sensitivity']:.4g} with the LoRA vs "
                   f"{evals[-1]['eval/adverb_sensitivity_base']:.4g} base (UNet output change when an adverb is "
                   "inserted; random tiny weights, so the number only shows the code path)") if evals else ""
    lines = [
        "",
        "Demo finished. Where everything is:",
        f"  data            {root} (COCO format)",
        f"  captions        {captions_path} ({len(changed)} of {len(filtered)} captions lost adverbs)",
        f"  webui LoRA      {result.lora_path}   (for the tiny demo model only: see below)",
        f"  PEFT adapter    {result.peft_dir}",
        f"  checkpoints     {result.checkpoint_dir.parent}/checkpoint-*/  (resume: python -m trainer train "
        f"--resume {result.checkpoint_dir})",
        f"  loss curve      {result.loss_plot}",
        f"  metrics         {result.metrics_path}  (TensorBoard: tensorboard --logdir {result.metrics_path.parent})",
        *[f"  sample          {p}" for p in result.samples],
        f"  config          {result.output_dir / 'config.yaml'}",
        f"  loss            first {result.losses[0]:.4f} -> last {result.losses[-1]:.4f} over {result.final_step} steps",
        *([sensitivity] if sensitivity else []),
        "  example captions:",
        examples,
        *tiny_model_note(model),
    ]
    summary = "\n".join(lines)
    say(summary)
    return DemoResult(result, root, captions_path, len(filtered), len(changed), summary)
