"""Does "change the data, not the model" work? A controlled experiment on a CPU, in minutes.

    python bench/effect_experiment.py --out bench/results --jobs 3   # the committed full run (3 seeds per arm,
                                                                     # 200 steps measured at 50 and 200; see the JSON)
    python bench/effect_experiment.py --quick --jobs 2   # the pipeline check CI runs (1 seed, few steps), ~2-3 min
    (default --out: outputs/effect_experiment under the current folder; --jobs N trains N LoRAs at once in helper
    processes, single-threaded each: the same numbers, sooner on a machine with free cores)

1. Data: drawn shapes (a colour, a shape, a background, and a SIZE: small or large) with template captions that
   never name the size ("a red circle resting on the grass"). Two adverbs say nothing about the picture:
   "quickly" is in 80 % of the small shapes' captions and 20 % of the large ones' (so it predicts the size the
   caption does not state: a spurious cue, like many in web captions), "gently" is in half of the captions at
   random (seen as often, correlated with nothing), "slowly" in none.
2. A base model that reacts to "quickly": the tiny SD1.5-layout UNet (trainer/models/tiny.py) pretrained from
   scratch on those captions, its tiny text encoder and VAE frozen; and a no-correlation base, pretrained the same
   way with "quickly" at random: the level the base's reaction is read against.
3. LoRA fine-tunes from that base through the trainer's own `train()` (config dataclass, latent cache, PEFT LoRA,
   webui export), equal steps, on new images captioned with the same habit, in three arms:
   filtered (the method: the pack's adverb filter, mode safe, removes the adverbs), kept (control: the captions
   as they are), random (second control, an oracle: the same adverbs inserted at random, uncorrelated with the
   size), decorrelated (the pack's mode decorrelate on the kept captions: the second method, which does not know
   which adverb is the correlated one). Each run is measured at `early_steps` (its checkpoint; the learning rate
   is constant, so that is the LoRA a run that short ends with) and at its end.
4. Measured with the pack's evaluator (`trainer.generate.evaluate.adverb_sensitivity`, what
   `python -m trainer eval-adverbs` runs): noise-prediction distance when an adverb is inserted, against the
   reference change (a colour word swapped; the shape and background swapped too), for the random-init model,
   both bases and every arm x seed, all on the same fixed latents, noise and timesteps. The LoRA is applied from
   its exported webui file (`apply_lora`), as a user would. Ratios adverb/reference get caption-bootstrap 95 %
   intervals (seeds resampled too for the arms), and arm-vs-base / arm-vs-arm differences paired ones.
5. Report: effect_experiment.json (every number, the command, wall time, load) and effect_experiment.png.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCHEMA = 2  # 2: the decorrelated arm, measured at early_steps and lora_steps (`by_steps`)
TOKENS = 16  # caption length the tiny text encoder reads (see tiny_pipeline)
RESOLUTION = 64  # the tiny UNet's native size (8x8 latents); small and large shapes differ clearly at it
SMALL, LARGE = 20, 44  # shape sides in pixels: the colour covers several latent pixels either way
CORRELATED = "quickly"  # in P_CORRELATED[size] of the captions of that size
P_CORRELATED = {"small": 0.8, "large": 0.2}
UNCORRELATED = "gently"  # in half of all captions, whatever the size
P_UNCORRELATED = 0.5
UNSEEN = "slowly"  # never in any training caption: what a word the model never learnt does
EVAL_ADVERBS = (CORRELATED, UNCORRELATED, UNSEEN)
# Content words, besides the evaluator's own reference (the colour word swapped): the shape and the background
# swapped, measured by the evaluator as pairs of their own; they should keep moving the model after every LoRA.
SHAPE_SWAP, BACKGROUND_SWAP = "swap:shape", "swap:background"
CONTENT_SWAPS = (SHAPE_SWAP, BACKGROUND_SWAP)
VERBS = ("resting", "sitting", "lying")
ARMS = {
    "filtered": "adverbs removed by the pack's filter (mode safe) - the method",
    "kept": "adverbs kept as captioned (correlated with size) - control",
    "random": "the same adverbs inserted at random, uncorrelated with size - second control (an oracle: it knows "
              "which adverb is the correlated one)",
    "decorrelated": "the pack's decorrelate mode on the kept captions: every adverb safe mode would remove redrawn "
                    "from the dataset's own pool, adverbs put in at the dataset's rate, K variants - the second method",
}
# Comparisons of the decorrelated arm (the product, which does not know which adverb is the correlated one).
DECORRELATED_PAIRS = (("decorrelated", "filtered"), ("decorrelated", "random"), ("decorrelated", "kept"))


@dataclass(frozen=True)
class Profile:
    """How big a run is; `full` is the committed result, `quick` checks the pipeline in CI."""

    pretrain_images: int  # images the base is pretrained on
    pretrain_steps: int  # full-UNet AdamW steps
    pretrain_lr: float
    finetune_images: int  # the fine-tune set (new images, same captioning habit)
    lora_steps: int  # per arm and seed, equal for every arm
    early_steps: int  # also measured at this step, from the same run's checkpoint (constant LR: = a run this long)
    lora_lr: float
    lora_rank: int
    pretrain_batch: int
    lora_batch: int
    seeds: tuple  # LoRA seeds per arm
    eval_captions: int  # adverb-free captions the adverbs are inserted into
    num_latents: int  # evaluator latents (x 5 timesteps)


PROFILES = {
    # Sized for ~20 min on 2 shared CPU cores; the pretraining steps were chosen with `pretrain_base(after_step=)`
    # probes: by 240 steps the base reacts to "quickly" clearly more than to "gently" (the gap grew from step 60 on).
    "full": Profile(pretrain_images=640, pretrain_steps=240, pretrain_lr=2e-3, pretrain_batch=32, finetune_images=256,
                    lora_steps=200, early_steps=50, lora_lr=3e-3, lora_rank=8, lora_batch=16, seeds=(0, 1, 2), eval_captions=16,
                    num_latents=2),
    "quick": Profile(pretrain_images=64, pretrain_steps=16, pretrain_lr=2e-3, pretrain_batch=8, finetune_images=32,
                     lora_steps=6, early_steps=3, lora_lr=3e-3, lora_rank=8, lora_batch=8, seeds=(0,), eval_captions=6,
                     num_latents=1),
}


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Scene:
    """One drawn image and what is in it (the caption is built from this)."""

    image_path: str
    colour: str
    shape: str
    background: str
    verb: str
    size: str  # "small" | "large": in the picture, never in the caption


def caption(scene: Scene, correlated: bool, uncorrelated: bool) -> str:
    """The template caption, with the adverbs before the verb ("a red circle quickly and gently resting ...")."""
    adverbs = [a for a, on in ((CORRELATED, correlated), (UNCORRELATED, uncorrelated)) if on]
    words = ["a", scene.colour, scene.shape, *(" and ".join(adverbs).split()), scene.verb, "on", "the",
             scene.background]
    text = " ".join(words)
    return "an" + text[1:] if scene.colour[0] in "aeiou" else text


def draw_scenes(folder: Path, n: int, seed: int) -> list[Scene]:
    """`n` 64x64 PNGs: one shape of the sample dataset's colours/shapes/backgrounds, small or large (half each)."""
    from PIL import Image, ImageDraw

    from trainer.captions.sample_dataset import BACKGROUNDS, COLOURS, SHAPES, _draw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(n):
        colour, shape, background = rng.choice(sorted(COLOURS)), rng.choice(SHAPES), rng.choice(sorted(BACKGROUNDS))
        size = "small" if i % 2 == 0 else "large"
        side = SMALL if size == "small" else LARGE
        cx = RESOLUTION // 2 + rng.randint(-3, 3)
        cy = RESOLUTION // 2 + rng.randint(-3, 3)
        img = Image.new("RGB", (RESOLUTION, RESOLUTION), BACKGROUNDS[background])
        _draw(ImageDraw.Draw(img), shape, (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2),
              COLOURS[colour])
        path = folder / f"scene_{i:05d}.png"
        img.save(path)  # PNG: no JPEG noise around the edges
        scenes.append(Scene(str(path), colour, shape, background, rng.choice(VERBS), size))
    return scenes


def biased_captions(scenes: list[Scene], seed: int, correlated: bool = True):
    """A CaptionSet: "quickly" by size (`correlated`) or at random at the same overall rate, "gently" at random."""
    from trainer.captions.captionset import CaptionRecord, CaptionSet

    rng = random.Random(seed)
    records = []
    for i, s in enumerate(scenes):
        p = P_CORRELATED[s.size] if correlated else sum(P_CORRELATED.values()) / 2
        records.append(CaptionRecord(s.image_path, caption(s, rng.random() < p, rng.random() < P_UNCORRELATED),
                                     source_id=f"scene:{i}"))
    return CaptionSet(tuple(records), {"source": "bench/effect_experiment.py", "correlated": correlated,
                                       "seed": seed})


def cooccurrence(caption_set, scenes: list[Scene]) -> dict:
    """P(small | adverb in caption) and how often each adverb is in a caption, as trained on."""
    out = {"captions": len(scenes)}
    # decorrelate mode: every caption variant counts (each is trained on equally often)
    texts = [(t, s) for r, s in zip(caption_set.records, scenes) for t in (r.variants or (r.caption,))]
    scenes = [s for _, s in texts]
    for adverb in (CORRELATED, UNCORRELATED):
        has = [adverb in t.split() for t, _ in texts]
        small_with = sum(h and s.size == "small" for h, s in zip(has, scenes))
        out[adverb] = {"share_of_captions": sum(has) / len(has),
                       "p_small_given_adverb": small_with / sum(has) if sum(has) else None,
                       "p_small_given_no_adverb": (sum((not h) and s.size == "small" for h, s in zip(has, scenes))
                                                   / (len(has) - sum(has))) if len(has) > sum(has) else None}
    return out


def content_pairs(captions: list[str]):
    """Each caption with its shape swapped and with its background swapped, as evaluator pairs."""
    from trainer.captions.sample_dataset import BACKGROUNDS, SHAPES
    from trainer.generate.evaluate import PromptPair

    backgrounds = sorted(BACKGROUNDS)
    pairs = []
    for c in captions:
        words = c.split()
        shape = next(w for w in words if w in SHAPES)
        other = SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
        pairs.append(PromptPair(c, " ".join(other if w == shape else w for w in words), SHAPE_SWAP))
        bg = words[-1]
        pairs.append(PromptPair(c, " ".join(words[:-1] + [backgrounds[(backgrounds.index(bg) + 1) % 4]]),
                                BACKGROUND_SWAP))
    return pairs


def eval_captions(n: int, seed: int) -> list[str]:
    """`n` distinct adverb-free captions (every colour appears; `swap_content_word` swaps it for the reference)."""
    from trainer.captions.sample_dataset import BACKGROUNDS, COLOURS, SHAPES

    rng = random.Random(10_000 + seed)
    combos = [(c, s, b, v) for c in sorted(COLOURS) for s in SHAPES for b in sorted(BACKGROUNDS) for v in VERBS]
    rng.shuffle(combos)
    return [caption(Scene("", c, s, b, v, "small"), False, False) for c, s, b, v in combos[:n]]


# --------------------------------------------------------------------------- the base model

def tiny_pipeline():
    """The embedded tiny SD1.5-layout pipeline (its own seed-0 random init), reading captions as 16 tokens.

    Our captions have at most 12 tokens; SD pads every caption to 77, and with a random text encoder the 65 padding
    positions mostly dilute the words the UNet's cross-attention has to find, which costs pretraining steps we do
    not have on a CPU. The tokenizer's `model_max_length` is saved with the model, so the latent cache, `train()`
    and the evaluator all read 16 tokens too.
    """
    from trainer.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd15", seed=0)
    pipe.tokenizer.model_max_length = TOKENS
    return pipe


def calibrate_latent_scale(vae, samples, n: int = 64) -> float:
    """Set the VAE's `scaling_factor` so the cached latents have unit variance, as SD's 0.18215 does for SD's VAE.

    The tiny VAE has random weights: with SD's 0.18215 its latents have a standard deviation of ~0.04, so even at
    the smallest timestep the noised input would be almost all noise and the caption would hardly matter to the
    loss. SD's own factor is exactly this calibration (1 / std of the latents) for its VAE. Saved with the base.
    """
    import torch

    from trainer.training.dataset import load_pixels
    from trainer.training.latent_cache import encode_images

    pixels = torch.stack([load_pixels(s.image_path, s.bucket) for s in samples[:n]])
    vae.register_to_config(scaling_factor=1.0)
    std = float(encode_images(vae, pixels).std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return 1.0 / std


def pretrain_base(scenes, caption_set, out_dir: Path, cache_dir: Path, profile: Profile, seed: int, log,
                  after_step=None) -> dict:
    """Train the whole tiny UNet from its random init on `caption_set`; save the pipeline to `out_dir`.

    A plain loop, not `train()`: the trainer trains LoRAs only, by design (full fine-tuning is not a product
    feature, and adding it for this experiment would grow the product for a benchmark). It still uses the
    trainer's pieces: the samples, batch plan and latent cache (`build_samples`, `BatchPlan`, `build_cache`) and
    the exact loss `train()` uses (`diffusion_loss`). `after_step(step, pipe)`: a probe (used to choose the steps).
    """
    import torch
    from diffusers import DDPMScheduler

    from trainer.training.dataset import BatchPlan, build_samples
    from trainer.training.latent_cache import build_cache
    from trainer.training.train import diffusion_loss

    pipe = tiny_pipeline()
    for m in (pipe.vae, pipe.text_encoder):
        m.requires_grad_(False).eval()
    samples = build_samples(caption_set, RESOLUTION, buckets=False)
    calibrate_latent_scale(pipe.vae, samples)
    cached = build_cache(samples, cache_dir, pipe.vae, pipe.text_encoder, pipe.tokenizer, progress=False)
    plan = BatchPlan(samples, profile.pretrain_batch, seed)
    unet = pipe.unet
    unet.train()
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(unet.parameters(), lr=profile.pretrain_lr, weight_decay=1e-2)
    warmup = max(1, profile.pretrain_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    batches = plan.iterate()
    losses, start = [], time.perf_counter()
    for step in range(profile.pretrain_steps):
        epoch, _, indices = next(batches)
        latents, emb = cached.batch(indices)
        loss = diffusion_loss(unet, noise_sched, latents, emb, gen, "epsilon")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if (step + 1) % max(1, profile.pretrain_steps // 10) == 0:
            recent = losses[-max(1, profile.pretrain_steps // 10):]
            log(f"  pretrain step {step + 1}/{profile.pretrain_steps}: loss {sum(recent) / len(recent):.4f} "
                f"({time.perf_counter() - start:.0f} s)")
        if after_step is not None:
            after_step(step + 1, pipe)
    unet.eval()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    window = max(1, len(losses) // 10)
    return {"steps": profile.pretrain_steps, "first_loss": sum(losses[:window]) / window,
            "last_loss": sum(losses[-window:]) / window, "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- the arms

def arm_captions(arm: str, scenes, finetune_set, seed: int):
    """The fine-tune captions of one arm (the images are the same in every arm)."""
    if arm == "kept":
        return finetune_set
    if arm == "filtered":
        from trainer.captions.adverbs import filter_adverbs

        return filter_adverbs(finetune_set, mode="safe", workers=1)
    if arm == "random":  # same draws as the kept captions, "quickly" at the same overall rate but by chance
        return biased_captions(scenes, seed=seed, correlated=False)
    if arm == "decorrelated":  # the product's own mode, defaults (pool and rate from these captions, K variants)
        from trainer.captions.decorrelate import decorrelate_adverbs

        return decorrelate_adverbs(finetune_set, seed=seed, workers=1, cache_dir=False)
    raise ValueError(arm)


def train_lora(base_dir: Path, caption_set, out_dir: Path, cache_dir: Path, profile: Profile, seed: int):
    """One LoRA through the trainer's `train()` with its typed config; returns the `TrainResult`."""
    from trainer.training.config import config_from_dict
    from trainer.training.train import train

    cfg = config_from_dict({}, [
        f"model_name={base_dir}", f"dataset.resolution={RESOLUTION}", "dataset.buckets=false",
        "dataset.adverb_mode=none", f"dataset.cache_dir={cache_dir}",
        f"train.max_train_steps={profile.lora_steps}", f"train.train_batch_size={profile.lora_batch}",
        f"train.learning_rate={profile.lora_lr}", f"train.lora_rank={profile.lora_rank}",
        f"train.lora_alpha={profile.lora_rank}", f"train.seed={seed}", "train.mixed_precision=no",
        f"logging.output_dir={out_dir}", "logging.name=effect_lora", f"logging.save_steps={profile.early_steps}",
        f"logging.log_steps={max(1, profile.lora_steps // 5)}", "logging.tensorboard=false",
        "logging.checkpoints_total_limit=0", "train.lr_scheduler=constant", "train.lr_warmup_steps=0",
    ], where="bench/effect_experiment.py")
    # A rerun with the same --workdir trains every arm again from scratch: its earlier LoRA is not a result.
    return train(cfg, caption_set=caption_set, progress=False, overwrite=True)


def quiet_loading() -> None:
    """Offline, and no progress bars for the many model loads (a helper process starts without the parent's)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def pretrain_job(job: tuple, log=None) -> dict:
    """`pretrain_base` with its arguments in one tuple (a helper process's job, `--jobs`); logs with print."""
    import torch

    scenes, caption_set, out_dir, cache, profile, seed, threads = job
    torch.set_num_threads(threads)
    quiet_loading()
    name = out_dir.name
    return pretrain_base(scenes, caption_set, out_dir, cache, profile, seed,
                         log or (lambda msg: print(f"[{name}] {msg}", flush=True)))


def early_lora(out_dir: Path, profile: Profile) -> Path:
    """The LoRA the run exported at `early_steps` (its checkpoint). With a constant learning rate, no warm-up and
    the batch order a pure function of (seed, epoch), it is the LoRA a run of `early_steps` steps would end with."""
    path = out_dir / f"checkpoint-{profile.early_steps}" / "effect_lora.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run wrote no checkpoint at step {profile.early_steps}")
    return path


def train_and_measure_job(job: dict) -> dict:
    """One arm x seed in a helper process (`--jobs`): train, then measure the early and the final LoRA on the base."""
    import torch

    torch.set_num_threads(job["threads"])
    quiet_loading()
    from trainer.models.base import load_base_model

    base_pipe = load_base_model(str(job["base_dir"])).pipe
    return train_and_measure(job["base_dir"], base_pipe, job["caption_set"], job["out_dir"], job["cache"],
                             job["profile"], job["seed"], job["pairs"], job["eval_seed"])


def train_and_measure(base_dir, base_pipe, caption_set, out_dir: Path, cache, profile: Profile, seed: int, pairs,
                      eval_seed: int) -> dict:
    """Train one LoRA and measure it at `early_steps` (its checkpoint) and at the end, applied to `base_pipe`."""
    from trainer.models.lora_apply import apply_lora

    t0 = time.perf_counter()
    result = train_lora(base_dir, caption_set, out_dir, cache, profile, seed)
    measured = {}
    for label, path in (("early", early_lora(out_dir, profile)), ("final", result.lora_path)):
        applied = apply_lora(base_pipe, path, 1.0)
        measured[label] = measure(base_pipe, pairs, profile, eval_seed)
        applied.remove()
    return {"measured": measured["final"], "measured_early": measured["early"],
            "train_seconds": time.perf_counter() - t0,
            "final_loss": result.losses[-1] if result.losses else None, "steps": result.final_step}


# --------------------------------------------------------------------------- measuring

def measure(pipe, pairs, profile: Profile, seed: int) -> dict:
    """The pack's evaluator on `pipe` as it stands: same latents, noise and timesteps for every model."""
    from trainer.generate.evaluate import adverb_sensitivity

    result = adverb_sensitivity(pipe, pairs, seed, num_latents=profile.num_latents, resolution=RESOLUTION,
                                reference=True)
    # not its "overall": that mean mixes the adverbs with the content swaps measured as pairs here
    return {k: result[k] for k in ("per_adverb", "per_adverb_ci", "reference", "reference_ci", "settings", "pairs")}


def caption_table(result: dict) -> dict:
    """{caption: {adverb or "reference": distance}} from one evaluator result."""
    table: dict[str, dict] = {}
    for row in result["pairs"]:
        table.setdefault(row["plain"], {})[row["adverb"]] = row["distance"]
    return table


def ratio_with_ci(results: list[dict], adverb: str, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Mean distance of `adverb` over mean distance of the reference change, pooled over `results` (seeds).

    The evaluator's `bootstrap_ci` is for a mean; a ratio needs its numerator and denominator resampled together,
    so captions are resampled (the adverb and reference distances of a caption stay paired) and, with several
    seeds, the seeds too (two-level bootstrap: the interval includes the seed-to-seed spread).
    """
    import numpy as np

    tables = [caption_table(r) for r in results]
    captions = sorted(set.intersection(*(set(k for k, v in t.items() if adverb in v and "reference" in v)
                                         for t in tables)))
    num = np.array([[t[c][adverb] for c in captions] for t in tables])  # seeds x captions
    den = np.array([[t[c]["reference"] for c in captions] for t in tables])
    point = float(num.mean() / den.mean())
    rng = np.random.default_rng(seed)
    s_idx = rng.integers(0, len(tables), (n_resamples, len(tables))) if len(tables) > 1 else \
        np.zeros((n_resamples, 1), dtype=int)
    c_idx = rng.integers(0, len(captions), (n_resamples, len(captions)))
    ratios = np.array([num[s][:, c].mean() / den[s][:, c].mean() for s, c in zip(s_idx, c_idx)])
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    per_seed = [float(n.mean() / d.mean()) for n, d in zip(num, den)]
    return {"ratio": point, "ci": [float(lo), float(hi)], "per_seed": per_seed,
            "adverb_distance": float(num.mean()), "reference_distance": float(den.mean()), "captions": len(captions)}


def paired_difference(results_a: list[dict], results_b: list[dict], adverb: str = CORRELATED,
                      n_resamples: int = 2000, seed: int = 0) -> dict:
    """Ratio to the reference of model a minus that of model b, with a paired 95 % bootstrap interval.

    Every model is measured on the same captions, latents, noise and timesteps, and arm runs with the same seed
    share their LoRA init, noise and batch order; so the same resampled captions (and seeds) are used for both
    models, which removes the caption-to-caption spread the per-model intervals carry. `results_b` with one entry
    (the base) is compared with every seed of a.
    """
    import numpy as np

    ta, tb = [caption_table(r) for r in results_a], [caption_table(r) for r in results_b]
    tb = tb * len(ta) if len(tb) == 1 else tb
    captions = sorted(set.intersection(*(set(k for k, v in t.items() if adverb in v and "reference" in v)
                                         for t in ta + tb)))

    def arrays(tables):
        return (np.array([[t[c][adverb] for c in captions] for t in tables]),
                np.array([[t[c]["reference"] for c in captions] for t in tables]))

    (na, da), (nb, db) = arrays(ta), arrays(tb)
    rng = np.random.default_rng(seed)
    k = len(ta)
    s_idx = rng.integers(0, k, (n_resamples, k)) if k > 1 else np.zeros((n_resamples, 1), dtype=int)
    c_idx = rng.integers(0, len(captions), (n_resamples, len(captions)))
    diffs = np.array([na[s][:, c].mean() / da[s][:, c].mean() - nb[s][:, c].mean() / db[s][:, c].mean()
                      for s, c in zip(s_idx, c_idx)])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"difference": float(na.mean() / da.mean() - nb.mean() / db.mean()), "ci": [float(lo), float(hi)]}


def paired_comparisons(base: dict, arm_results: dict) -> dict:
    """The comparisons the experiment is about, each paired: every arm against the base and against the control."""
    out = {f"{arm}_minus_base": paired_difference(arm_results[arm], [base]) for arm in ARMS}
    out["filtered_minus_kept"] = paired_difference(arm_results["filtered"], arm_results["kept"])
    out["random_minus_kept"] = paired_difference(arm_results["random"], arm_results["kept"])
    out["filtered_minus_random"] = paired_difference(arm_results["filtered"], arm_results["random"])
    for a, b in DECORRELATED_PAIRS:
        out[f"{a}_minus_{b}"] = paired_difference(arm_results[a], arm_results[b])
    return out


def unseen_amplified(base: dict, arm_results: dict) -> dict:
    """Per arm: the unseen adverb's ratio minus the base's, paired; amplified when the interval lies above 0."""
    return {arm: paired_difference(arm_results[arm], [base], adverb=UNSEEN) for arm in ARMS}


def summarize_model(results: list[dict]) -> dict:
    """Per eval adverb: the ratio to the reference change with its interval; plus the raw reference distance."""
    import numpy as np

    refs = [r["reference"] for r in results]
    return {"ratio_to_reference": {a: ratio_with_ci(results, a) for a in EVAL_ADVERBS + CONTENT_SWAPS},
            "reference_distance": float(np.mean(refs)), "reference_distance_per_seed": refs,
            "distance": {a: float(np.mean([r["per_adverb"][a] for r in results]))
                         for a in EVAL_ADVERBS + CONTENT_SWAPS}}


def excess(summary: dict) -> float:
    """How far the correlated adverb moves the model beyond the uncorrelated one, in reference units."""
    r = summary["ratio_to_reference"]
    return r[CORRELATED]["ratio"] - r[UNCORRELATED]["ratio"]


def remaining(models: dict) -> dict:
    """Per arm: the share of the base's learnt reaction to the correlated adverb that is left after the LoRA,
    (arm - no-correlation base) / (base - no-correlation base) of the ratio to the reference; 1 = all of it,
    0 = down to the no-correlation level. Per seed too. None when the base learnt no reaction to remove."""
    null = models["no_correlation"]["ratio_to_reference"][CORRELATED]["ratio"]
    learnt = models["base"]["ratio_to_reference"][CORRELATED]["ratio"] - null
    if learnt <= 0:
        return {arm: None for arm in ARMS}
    out = {}
    for arm in ARMS:
        r = models["arms"][arm]["pooled"]["ratio_to_reference"][CORRELATED]
        out[arm] = {"mean": (r["ratio"] - null) / learnt, "per_seed": [(x - null) / learnt for x in r["per_seed"]]}
    return out


def above(a: dict, b: dict) -> bool:
    """`a`'s interval lies wholly above `b`'s."""
    return a["ci"][0] > b["ci"][1]


# --------------------------------------------------------------------------- report

def write_chart(report: dict, path: Path) -> Path:
    """Per model: each eval adverb's distance relative to the reference change (a colour swapped), 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.atomic import atomic_path

    models = [("random init", report["models"]["random_init"]),
              ("base, no\ncorrelation", report["models"]["no_correlation"]), ("base", report["models"]["base"])]
    early, final = report["profile"]["early_steps"], report["profile"]["lora_steps"]
    for arm in ARMS:
        models += [(f"{arm}\n{early} steps", report["models"]["arms"][arm]["pooled_early"]),
                   (f"{arm}\n{final} steps", report["models"]["arms"][arm]["pooled"])]
    colours = {CORRELATED: "#d62728", UNCORRELATED: "#1f77b4", UNSEEN: "#7f7f7f"}
    labels = {CORRELATED: f'"{CORRELATED}" (80/20 with size in pretraining)',
              UNCORRELATED: f'"{UNCORRELATED}" (random in pretraining)', UNSEEN: f'"{UNSEEN}" (never trained on)'}
    fig, ax = plt.subplots(figsize=(15, 5.8))
    width = 0.26
    for k, adverb in enumerate(EVAL_ADVERBS):
        xs = [i + (k - 1) * width for i in range(len(models))]
        vals = [m["ratio_to_reference"][adverb]["ratio"] for _, m in models]
        cis = [m["ratio_to_reference"][adverb]["ci"] for _, m in models]
        err = [[max(v - lo, 0) for v, (lo, _) in zip(vals, cis)], [max(hi - v, 0) for v, (_, hi) in zip(vals, cis)]]
        ax.bar(xs, vals, width, yerr=err, capsize=3, color=colours[adverb], label=labels[adverb])
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="reference: a colour word swapped")
    ax.set_xticks(range(len(models)), [name for name, _ in models], rotation=0, fontsize=8)
    ax.set_ylabel("adverb inserted / colour swapped\n(noise-prediction distance ratio)")
    seeds = len(report["profile"]["seeds"])
    ax.set_title(f"Adverb sensitivity relative to a content word (95% bootstrap CI; LoRA arms: {seeds} seed"
                 f"{'s' if seeds > 1 else ''}, each measured at {early} and {final} steps of one run)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def checks(report: dict) -> dict:
    """Yes/no reading of the numbers (the JSON keeps the numbers; these say what they show)."""
    m = report["models"]
    base = m["base"]["ratio_to_reference"]
    out = {
        # the base learnt the spurious cue: "quickly" moves it more than it moves the same pretraining without
        # the correlation (and more than the equally frequent uncorrelated "gently" moves the base)
        "base_reacts_to_correlated_adverb": above(base[CORRELATED],
                                                  m["no_correlation"]["ratio_to_reference"][CORRELATED]),
        "base_correlated_above_uncorrelated_adverb": above(base[CORRELATED], base[UNCORRELATED]),
        # content words matter more to the base than a word that carries no information: the colour swap moves it
        # more than "gently" does (interval of the ratio below 1)
        "base_colour_above_uncorrelated_adverb": base[UNCORRELATED]["ci"][1] < 1.0,
    }
    for arm in ARMS:
        pooled = m["arms"][arm]["pooled"]
        r = pooled["ratio_to_reference"]
        out[f"{arm}_below_base"] = r[CORRELATED]["ci"][1] < base[CORRELATED]["ci"][0]
        if arm != "kept":
            out[f"{arm}_below_kept"] = r[CORRELATED]["ci"][1] < \
                m["arms"]["kept"]["pooled"]["ratio_to_reference"][CORRELATED]["ci"][0]
        # content words still work: the colour, shape and background swaps each move the model at least 80 % as
        # much as they moved the base
        out[f"{arm}_content_kept"] = pooled["reference_distance"] >= 0.8 * m["base"]["reference_distance"] and all(
            pooled["distance"][k] >= 0.8 * m["base"]["distance"][k] for k in CONTENT_SWAPS)
        # the bar: the colour, shape and background swaps each within 10 % of the base's distance
        out[f"{arm}_content_within_10pct"] = all(
            abs(v / b - 1) <= 0.10 for v, b in content_distances(pooled, m["base"]))
    return out


def content_distances(model: dict, base: dict) -> list[tuple[float, float]]:
    """(model, base) distances of the content changes: the colour swap (reference), the shape and background swaps."""
    return [(model["reference_distance"], base["reference_distance"])] + \
        [(model["distance"][k], base["distance"][k]) for k in CONTENT_SWAPS]


def analyse(models: dict, base: dict, arm_runs: dict) -> dict:
    """Checks, remaining share, excess, paired differences and the unseen adverb for one step count.
    `models`: random_init, no_correlation, base and `arms` (pooled per arm); `arm_runs`: per arm, the runs'
    measurements (seed order)."""
    out = {"checks": checks({"models": models})}
    out["correlated_excess"] = {"base": excess(models["base"]),
                                **{arm: excess(models["arms"][arm]["pooled"]) for arm in ARMS}}
    out["learnt_reaction_remaining"] = remaining(models)
    out["paired"] = paired_comparisons(base, arm_runs)
    out["unseen_minus_base"] = unseen_amplified(base, arm_runs)
    out["checks"].update(paired_checks(out["paired"]))
    out["checks"].update({f"{arm}_unseen_not_amplified": not d["ci"][0] > 0
                          for arm, d in out["unseen_minus_base"].items()})
    left = out["learnt_reaction_remaining"].get("decorrelated")
    out["checks"]["goal_decorrelated_leaves_at_most_half"] = bool(left and left["mean"] <= 0.5)
    return out


def paired_checks(paired: dict) -> dict:
    """Which paired differences in the correlated adverb's ratio have a 95 % interval wholly below (or above) 0."""
    return {f"paired_{name}_below_0": d["ci"][1] < 0 for name, d in paired.items()} | \
        {f"paired_{name}_above_0": d["ci"][0] > 0 for name, d in paired.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and steps, one seed: the CI check")
    parser.add_argument("--out", default="outputs/effect_experiment",
                        help="folder for effect_experiment[_quick].json and .png (default: outputs/effect_experiment "
                             "under the current folder; the committed result: --out bench/results)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="LoRA runs trained at once in helper processes (each single-threaded; same results)")
    parser.add_argument("--workdir", default="", help="images, cache and LoRA runs (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="data, pretraining and evaluation seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the tiny model's ops are too small to split, and on a shared machine "
                             "a descheduled OpenMP worker stalls every op; measured 2-10x slower with 2)")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    from trainer.atomic import write_text
    from trainer.generate.evaluate import pairs_from_captions
    from trainer.models.base import load_base_model
    from trainer.models.lora_apply import apply_lora
    torch.set_num_threads(args.threads)
    quiet_loading()  # the model loads of every arm would each draw bars
    name = "quick" if args.quick else "full"
    profile = PROFILES[name]
    started = time.perf_counter()
    out_dir = Path(args.out)
    stem = "effect_experiment_quick" if args.quick else "effect_experiment"
    own_tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="effect_experiment_")
    work = Path(args.workdir or own_tmp.name)

    def log(msg):
        print(f"[{time.perf_counter() - started:6.0f} s] {msg}", flush=True)

    try:
        cache = work / "cache"
        log(f"profile {name}: drawing {profile.pretrain_images} + {profile.finetune_images} scenes")
        pre_scenes = draw_scenes(work / "pretrain", profile.pretrain_images, args.seed)
        ft_scenes = draw_scenes(work / "finetune", profile.finetune_images, args.seed + 1)
        pre_set = biased_captions(pre_scenes, args.seed)
        null_set = biased_captions(pre_scenes, args.seed, correlated=False)
        ft_set = biased_captions(ft_scenes, args.seed + 1)
        plain = eval_captions(profile.eval_captions, args.seed)
        pairs = pairs_from_captions(plain, EVAL_ADVERBS) + content_pairs(plain)

        log("measuring the random-init model")
        random_init = measure(tiny_pipeline(), pairs, profile, args.seed)
        # The no-correlation level: the same pretraining (images, seed, batches, noise, "gently" draws) with
        # "quickly" in half of the captions whatever the size; only the correlation differs from the base.
        null_dir, base_dir = work / "base_no_correlation", work / "base"
        log(f"pretraining the no-correlation base and the base ({profile.pretrain_steps} steps each, whole UNet"
            f"{', both at once' if args.jobs > 1 else ''})")
        pretrain_jobs = [(pre_scenes, null_set, null_dir, cache, profile, args.seed, args.threads),
                         (pre_scenes, pre_set, base_dir, cache, profile, args.seed, args.threads)]
        if args.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
                pretrain_null, pretrain = list(pool.map(pretrain_job, pretrain_jobs))
        else:
            pretrain_null, pretrain = [pretrain_job(job, log) for job in pretrain_jobs]
        null_base = measure(load_base_model(str(null_dir)).pipe, pairs, profile, args.seed)
        base_pipe = load_base_model(str(base_dir)).pipe
        base = measure(base_pipe, pairs, profile, args.seed)

        arms, arm_data, jobs = {}, {}, []
        for arm in ARMS:
            arm_set = arm_captions(arm, ft_scenes, ft_set, args.seed + 1)
            arm_data[arm] = {"example_captions": [r.caption for r in arm_set.records[:4]],
                             **cooccurrence(arm_set, ft_scenes)}
            if arm == "decorrelated":
                report_d = arm_set.provenance["adverb_filter"]["decorrelate"]
                arm_data[arm]["decorrelate"] = {k: v for k, v in report_d.items() if k != "examples"}
                arm_data[arm]["example_variants"] = [list(r.variants) for r in arm_set.records[:4]]
            jobs += [{"arm": arm, "base_dir": base_dir, "caption_set": arm_set, "out_dir": work / "runs" / f"{arm}-{seed}",
                      "cache": cache, "profile": profile, "seed": seed, "pairs": pairs, "eval_seed": args.seed,
                      "threads": args.threads} for seed in profile.seeds]
        runs: dict = {arm: {} for arm in ARMS}
        log(f"LoRA arms: {len(jobs)} runs of {profile.lora_steps} steps (measured at {profile.early_steps} and "
            f"{profile.lora_steps}), {args.jobs} at a time")
        if args.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(train_and_measure_job, job): job for job in jobs}
                for fut in futures:
                    job = futures[fut]
                    runs[job["arm"]][job["seed"]] = fut.result()
                    log(f"  done: {job['arm']} seed {job['seed']} ({runs[job['arm']][job['seed']]['train_seconds']:.0f} s)")
        else:
            for job in jobs:
                log(f"LoRA arm {job['arm']}, seed {job['seed']}: {profile.lora_steps} steps")
                runs[job["arm"]][job["seed"]] = train_and_measure(
                    base_dir, base_pipe, job["caption_set"], job["out_dir"], cache, profile, job["seed"], pairs,
                    args.seed)
        for arm in ARMS:
            seeds = [runs[arm][s] for s in profile.seeds]
            arms[arm] = {"description": ARMS[arm], "seeds": {str(s): runs[arm][s] for s in profile.seeds},
                         "pooled": summarize_model([r["measured"] for r in seeds]),
                         "pooled_early": summarize_model([r["measured_early"] for r in seeds])}

        report = {
            "schema": SCHEMA,
            "command": "python bench/effect_experiment.py" + (" --quick" if args.quick else "") +
                       (f" --out {args.out}" if Path(args.out).resolve() == (REPO / "bench" / "results").resolve()
                        else "") + (f" --jobs {args.jobs}" if args.jobs != 1 else "") +
                       (f" --seed {args.seed}" if args.seed else "") +
                       (f" --threads {args.threads}" if args.threads != 1 else ""),
            "argv": " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
            "profile": {"name": name, **asdict(profile)},
            "design": {"resolution": RESOLUTION, "shape_sides_px": {"small": SMALL, "large": LARGE},
                       "correlated_adverb": CORRELATED, "p_correlated_by_size": P_CORRELATED,
                       "uncorrelated_adverb": UNCORRELATED, "p_uncorrelated": P_UNCORRELATED,
                       "unseen_adverb": UNSEEN, "eval_pairs": len(pairs),
                       "evaluator": "trainer.generate.evaluate.adverb_sensitivity (python -m trainer eval-adverbs)",
                       "reference": "a colour word swapped (trainer.generate.evaluate.swap_content_word)"},
            "data": {"pretrain": cooccurrence(pre_set, pre_scenes),
                     "pretrain_no_correlation": cooccurrence(null_set, pre_scenes), "arms": arm_data,
                     "eval_captions": sorted({p.plain for p in pairs})},
            "pretrain": {"base": pretrain, "no_correlation": pretrain_null},
            "models": {
                "random_init": {**summarize_model([random_init]), "measured": random_init},
                "no_correlation": {**summarize_model([null_base]), "measured": null_base},
                "base": {**summarize_model([base]), "measured": base},
                "arms": arms,
            },
        }
        common = {k: report["models"][k] for k in ("random_init", "no_correlation", "base")}
        report["by_steps"] = {}
        for steps, pooled_key, measured_key in ((profile.early_steps, "pooled_early", "measured_early"),
                                                (profile.lora_steps, "pooled", "measured")):
            models_at = {**common, "arms": {arm: {"pooled": arms[arm][pooled_key]} for arm in ARMS}}
            report["by_steps"][str(steps)] = {"steps": steps, **analyse(
                models_at, base, {arm: [r[measured_key] for r in arms[arm]["seeds"].values()] for arm in ARMS})}
        # the headline (and the fields the previous schema had): the early step count, as the previous run measured
        headline = report["by_steps"][str(profile.early_steps)]
        for key in ("checks", "correlated_excess", "learnt_reaction_remaining", "paired"):
            report[key] = headline[key]
        report["environment"] = {"wall_seconds": time.perf_counter() - started, "cpu_count": os.cpu_count(),
                                 "torch_threads": args.threads, "load_average_at_end": list(os.getloadavg()),
                                 "torch": torch.__version__, "python": sys.version.split()[0]}
        json_path = out_dir / f"{stem}.json"
        write_text(json_path, json.dumps(report, indent=1))
        chart = write_chart(report, out_dir / f"{stem}.png")
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()

    print_summary(report)
    print(f"wrote {json_path} and {chart} in {report['environment']['wall_seconds']:.0f} s")
    return 0


def print_summary(report: dict) -> None:
    """The result as a small table: each model's adverb/reference ratios and the checks."""
    m = report["models"]
    rows = [("random init", m["random_init"]), ("no-corr. base", m["no_correlation"]), ("base", m["base"])]
    early, final = report["profile"]["early_steps"], report["profile"]["lora_steps"]
    rows += [row for arm in ARMS for row in ((f"{arm} @{early}", m["arms"][arm]["pooled_early"]),
                                             (f"{arm} @{final}", m["arms"][arm]["pooled"]))]
    print(f"{'model':<16}" + "".join(f"{a + ' / ref':>26}" for a in EVAL_ADVERBS) + f"{'ref distance':>14}")
    for label, s in rows:
        cells = "".join(f"{r['ratio']:>9.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
                        for r in (s["ratio_to_reference"][a] for a in EVAL_ADVERBS))
        print(f"{label:<16}{cells}{s['reference_distance']:>14.4f}")
    for steps, at in report["by_steps"].items():
        print(f"at {steps} steps: share of the learnt reaction left: " + ", ".join(
            f"{arm} {v['mean']:.2f}" for arm, v in at["learnt_reaction_remaining"].items() if v))
        print(f"  paired differences in the {CORRELATED!r} / reference ratio (95% CI):")
        for name, d in at["paired"].items():
            print(f"    {name:<28}{d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]")
        print("  checks: " + ", ".join(f"{k}={v}" for k, v in at["checks"].items()))


if __name__ == "__main__":
    raise SystemExit(main())
