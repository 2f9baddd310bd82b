"""Adverb sensitivity: how much does an irrelevant adverb in the prompt move the model?

For each prompt pair (a caption without adverbs, the same caption with one), the UNet predicts the noise
for both prompts on the same noised latents (fixed seed latents, noise and timesteps); the score is the
RMS of the difference between the two predictions, averaged over latents and timesteps. It needs no VAE
and no sampling loop, so it is cheap and exactly repeatable, and it is measured for the base model and for
base + LoRA. Optionally, images generated from the same seed for both prompts are compared in pixel space.
A model that has learnt to ignore irrelevant adverbs scores lower with the LoRA than without.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_path

# Manner adverbs that say nothing a still image could show (degree adverbs like "very" need an adjective
# to attach to, which the verb-based insertion below cannot find; give them with --adverbs and a .jsonl).
DEFAULT_ADVERBS = ("quickly", "slowly", "happily", "quietly", "suddenly", "gently", "carefully", "calmly")
DEFAULT_TIMESTEPS = (100, 300, 500, 700, 900)
# eval-adverbs' default resolution on CPU: SD1.5's native 512 px took over 20 minutes there; 256 px has a quarter
# of the latent pixels (each UNet evaluation ~4x cheaper) and still exercises every block.
CPU_RESOLUTION = 256
# Captions without adverbs, COCO-like, used when neither --prompts nor --coco is given.
DEFAULT_CAPTIONS = (
    "a man riding a horse on a beach",
    "a cat sleeping on a red couch",
    "two children playing with a ball in a park",
    "a woman walking a dog down a city street",
    "a bus driving past tall buildings",
    "a bird sitting on a tree branch",
)


# The reference change: a word that does alter the picture, swapped (a colour first, else an object). Its distance
# is the yardstick an adverb's distance is read against ("0.014" alone says nothing).
COLOUR_SWAPS = {"red": "blue", "blue": "red", "green": "yellow", "yellow": "green", "white": "black",
                "black": "white", "orange": "purple", "purple": "orange", "brown": "gray", "gray": "brown",
                "grey": "brown", "pink": "green"}
OBJECT_SWAPS = {"man": "woman", "woman": "man", "men": "women", "women": "men", "boy": "girl", "girl": "boy",
                "dog": "cat", "cat": "dog", "dogs": "cats", "cats": "dogs", "horse": "cow", "cow": "horse",
                "bus": "train", "train": "bus", "car": "truck", "truck": "car", "bird": "cat", "children": "dogs",
                "child": "dog", "person": "dog", "people": "dogs", "pizza": "cake", "cake": "pizza",
                "bicycle": "motorcycle", "motorcycle": "bicycle", "boat": "car", "plane": "bus", "table": "bed",
                "bed": "table", "couch": "bed", "giraffe": "elephant", "elephant": "giraffe", "zebra": "horse",
                "sheep": "cow", "bear": "dog", "skateboard": "bicycle", "kitchen": "garden", "street": "beach"}
REFERENCE = "reference"  # the `adverb` of a reference pair


@dataclass(frozen=True)
class PromptPair:
    """A prompt without the adverb, the same prompt with it, and the adverb."""

    plain: str
    with_adverb: str
    adverb: str


# --------------------------------------------------------------------------- prompt pairs

def insert_adverb(caption: str, adverb: str) -> str:
    """Insert `adverb` before the caption's first -ing verb ("a dog quickly running"), else at the end."""
    words = caption.strip().rstrip(".").split()
    for i, w in enumerate(words):
        if i > 0 and re.fullmatch(r"[A-Za-z]{3,}ing", w) and w.lower() not in ("something", "nothing", "building",
                                                                                 "ceiling", "clothing", "king"):
            return " ".join(words[:i] + [adverb] + words[i:])
    return " ".join(words + [adverb])


def pairs_from_captions(captions, adverbs=DEFAULT_ADVERBS) -> list[PromptPair]:
    """Every caption with every adverb inserted."""
    return [PromptPair(c.strip(), insert_adverb(c, a), a) for c in captions if c.strip() for a in adverbs]


def read_prompts_file(path, adverbs=DEFAULT_ADVERBS) -> list[PromptPair]:
    """A `.txt` (one adverb-free caption a line) or `.jsonl` (`{"plain", "with_adverb", "adverb"}` a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts {path}: no such file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix.lower() != ".jsonl":
        return pairs_from_captions(lines, adverbs)
    pairs = []
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
            pairs.append(PromptPair(obj["plain"], obj["with_adverb"], obj.get("adverb", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected {{\"plain\": ..., \"with_adverb\": ..., \"adverb\": ...}} ({e})")
    return pairs


def pairs_from_coco(annotations, limit: int = 50, mode: str = "safe") -> list[PromptPair]:
    """COCO captions that hold adverbs: (filtered caption, original caption, removed words) via the adverb filter."""
    from ..captions.adverbs import AdverbFilter

    path = Path(annotations)
    if not path.is_file():
        raise FileNotFoundError(f"--coco {path}: no such file (expected annotations/captions_*.json)")
    try:
        captions = [a["caption"] for a in json.loads(path.read_text(encoding="utf-8"))["annotations"]]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"--coco {path}: not a COCO captions file ({e})")
    pairs = []
    for res in AdverbFilter(mode=mode).filter_texts(captions):
        if res.changed:
            adverb = " ".join(s.text for s in res.removed)
            pairs.append(PromptPair(res.text.strip(), res.original.strip(), adverb.lower()))
            if len(pairs) >= limit:
                break
    if not pairs:
        raise ValueError(f"--coco {path}: no caption with a removable adverb among {len(captions)}")
    return pairs


def swap_content_word(caption: str) -> str | None:
    """The caption with its first colour word swapped (else its first object word); None if it has neither."""
    words = caption.strip().rstrip(".").split()
    for table in (COLOUR_SWAPS, OBJECT_SWAPS):
        for i, w in enumerate(words):
            if w.lower() in table:
                return " ".join(words[:i] + [table[w.lower()]] + words[i + 1:])
    return None


def reference_pairs(prompt_pairs) -> list[PromptPair]:
    """For each distinct adverb-free prompt with a colour or object word: (prompt, that word swapped)."""
    plains = sorted({(p if isinstance(p, PromptPair) else PromptPair(*p)).plain for p in prompt_pairs})
    return [PromptPair(p, swapped, REFERENCE) for p in plains if (swapped := swap_content_word(p))]


def bootstrap_ci(values, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> list[float]:
    """Percentile bootstrap confidence interval of the mean of `values` (pairs resampled with replacement)."""
    import numpy as np

    v = np.asarray(list(values), dtype=np.float64)
    if len(v) < 2:
        return [float(v.mean()), float(v.mean())] if len(v) else [float("nan"), float("nan")]
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_resamples, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def summarize(rows: list[dict]) -> dict:
    """Mean distance overall and per adverb, each with its 95 % bootstrap CI; reference pairs apart, as `reference`."""
    adverb_rows = [r for r in rows if r["adverb"] != REFERENCE]
    ref = [r["distance"] for r in rows if r["adverb"] == REFERENCE]
    per_adverb: dict[str, list[float]] = {}
    for r in adverb_rows:
        per_adverb.setdefault(r["adverb"], []).append(r["distance"])
    dist = [r["distance"] for r in adverb_rows]
    return {
        "overall": sum(dist) / len(dist),
        "overall_ci": bootstrap_ci(dist),
        "per_adverb": {k: sum(v) / len(v) for k, v in sorted(per_adverb.items())},
        "per_adverb_ci": {k: bootstrap_ci(v) for k, v in sorted(per_adverb.items())},
        **({"reference": sum(ref) / len(ref), "reference_ci": bootstrap_ci(ref)} if ref else {}),
    }


# --------------------------------------------------------------------------- measuring

def _components(pipe_or_components) -> dict:
    if isinstance(pipe_or_components, dict):
        parts = pipe_or_components
    else:
        parts = {k: getattr(pipe_or_components, k, None) for k in ("unet", "text_encoder", "tokenizer", "scheduler", "vae",
                                                                   "text_encoder_2", "tokenizer_2")}
    needed = ("unet", "text_encoder", "tokenizer", "scheduler")
    if parts.get("unet") is not None and parts["unet"].config.get("addition_embed_type") == "text_time":
        needed += ("text_encoder_2", "tokenizer_2")  # SDXL
    missing = [k for k in needed if parts.get(k) is None]
    if missing:
        raise ValueError(f"adverb_sensitivity: missing components {missing}")
    return parts


def _conditioning(parts, prompt: str, batch: int, resolution: int, device, dtype) -> dict:
    """The UNet's conditioning for one prompt, repeated `batch` times (SDXL: with square, uncropped size ids)."""
    from ..models.conditioning import prompt_conditioning

    cond = prompt_conditioning(parts, [prompt], resolution=resolution, device=device, dtype=dtype)
    expand = {"encoder_hidden_states": cond["encoder_hidden_states"].expand(batch, -1, -1)}
    if "added_cond_kwargs" in cond:
        expand["added_cond_kwargs"] = {k: v.expand(batch, -1) for k, v in cond["added_cond_kwargs"].items()}
    return expand


def default_resolution(native: int, device_type: str) -> int:
    """The resolution to measure at when none is given: the model's native one, at most `CPU_RESOLUTION` on CPU."""
    return min(native, CPU_RESOLUTION) if device_type == "cpu" else native


def distinct_prompts(prompt_pairs) -> list[str]:
    """The prompts `adverb_sensitivity` runs the UNet on: each pair's two, each once."""
    pairs = [p if isinstance(p, PromptPair) else PromptPair(*p) for p in prompt_pairs]
    return sorted({p for pair in pairs for p in (pair.plain, pair.with_adverb)})


def unet_evaluations(prompt_pairs, num_latents: int, timesteps) -> int:
    """How many UNet evaluations (one sample each) `adverb_sensitivity` does for one model."""
    return len(distinct_prompts(prompt_pairs)) * num_latents * len(tuple(timesteps))


def adverb_sensitivity(
    pipe_or_components,
    prompt_pairs,
    seed: int = 0,
    *,
    timesteps=DEFAULT_TIMESTEPS,
    num_latents: int = 2,
    resolution: int | None = None,
    progress: str | None = None,
    reference: bool = False,
) -> dict:
    """Mean RMS distance between the UNet's noise predictions for each pair's two prompts.

    Same noised latents for every prompt (drawn on the CPU from `seed`, so the numbers do not depend on
    the device), `num_latents` latents x `timesteps`. Returns `{"overall", "per_adverb", "pairs"}`;
    `pairs[i]["distance"]` is the RMS difference and `["relative"]` that divided by the prediction's RMS.
    Works on a pipeline or a dict of `unet`, `text_encoder`, `tokenizer`, `scheduler` (a PEFT-wrapped UNet
    measures base + LoRA as it stands; SDXL also `text_encoder_2`, `tokenizer_2`, and the UNet gets the
    pooled text and the size conditioning of an uncropped square image at `resolution`). The predictions are the conditional ones: under classifier-free
    guidance both prompts share the unconditional branch, so the guided distance is `guidance_scale` times this.
    `progress`: the label of a tqdm bar (UNet evaluations done, with ETA) on stderr; None = no bar.
    `reference`: also measure `reference_pairs` (a colour/object word swapped): `reference`, `reference_ci`.
    Every mean comes with a 95 % bootstrap CI over the pairs (`overall_ci`, `per_adverb_ci`).
    """
    import torch
    from diffusers import DDPMScheduler

    parts = _components(pipe_or_components)
    unet = parts["unet"]
    pairs = [p if isinstance(p, PromptPair) else PromptPair(*p) for p in prompt_pairs]
    if not pairs:
        raise ValueError("adverb_sensitivity: no prompt pairs")
    pairs += reference_pairs(pairs) if reference else []
    size = (resolution // 8) if resolution else unet.config.sample_size
    noise_sched = DDPMScheduler.from_config(parts["scheduler"].config)
    gen = torch.Generator("cpu").manual_seed(seed)
    shape = (num_latents, unet.config.in_channels, size, size)
    latents = torch.randn(shape, generator=gen)
    noise = torch.randn(shape, generator=gen)
    ts = torch.tensor(list(timesteps), dtype=torch.long)
    # Every (latent, timestep) combination, as one batch of noised inputs.
    x0 = latents.repeat_interleave(len(ts), 0)
    eps = noise.repeat_interleave(len(ts), 0)
    t = ts.repeat(num_latents)
    noisy = noise_sched.add_noise(x0, eps, t)
    device, dtype = unet.device, unet.dtype
    noisy, t = noisy.to(device, dtype), t.to(device)

    prompts = distinct_prompts(pairs)
    was_training = unet.training
    unet.eval()
    preds = {}
    from tqdm.auto import tqdm

    with torch.no_grad(), tqdm(total=len(prompts) * noisy.shape[0], desc=progress, unit="UNet eval",
                               disable=progress is None, dynamic_ncols=True) as bar:
        for p in prompts:
            # one prompt at a time: a pair's number must not depend on which other prompts are measured
            cond = _conditioning(parts, p, noisy.shape[0], size * 8, device, dtype)
            preds[p] = unet(noisy, t, **cond).sample.float().cpu()
            bar.update(noisy.shape[0])
    unet.train(was_training)

    rows = []
    for pair in pairs:
        a, b = preds[pair.plain], preds[pair.with_adverb]
        # per (latent, timestep) sample, then averaged: each sample counts the same whatever its scale
        diff = (a - b).flatten(1).pow(2).mean(1).sqrt()
        ref = a.flatten(1).pow(2).mean(1).sqrt()
        rows.append(dict(asdict(pair), distance=float(diff.mean()), relative=float((diff / ref).mean())))
    adverb_rows = [r for r in rows if r["adverb"] != REFERENCE]
    return {
        **summarize(rows),
        "overall_relative": sum(r["relative"] for r in adverb_rows) / len(adverb_rows),
        "pairs": rows,
        "settings": {"seed": seed, "timesteps": [int(x) for x in ts], "num_latents": num_latents,
                     "latent_size": size, "prediction_type": noise_sched.config.prediction_type},
    }


def image_distance(pipe, prompt_pairs, seed: int = 0, *, num_inference_steps: int = 20, guidance_scale: float = 7.5,
                   scheduler: str = "ddim") -> dict:
    """Mean absolute pixel difference (0..1) between images of each pair's prompts from the same seed."""
    import numpy as np

    from .sample import SampleSettings, generate

    pairs = [p if isinstance(p, PromptPair) else PromptPair(*p) for p in prompt_pairs]
    cache, per_adverb, rows = {}, {}, []

    def image(prompt):
        if prompt not in cache:
            s = SampleSettings(prompt=prompt, num_inference_steps=num_inference_steps,
                               guidance_scale=guidance_scale, seed=seed, scheduler=scheduler)
            cache[prompt] = np.asarray(generate(pipe, s, 1)[0][0], dtype=np.float32) / 255.0
        return cache[prompt]

    for pair in pairs:
        d = float(np.abs(image(pair.plain) - image(pair.with_adverb)).mean())
        rows.append({"adverb": pair.adverb, "plain": pair.plain, "with_adverb": pair.with_adverb, "distance": d})
        per_adverb.setdefault(pair.adverb, []).append(d)
    return {
        **summarize(rows),
        "pairs": rows,
        "settings": {"seed": seed, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                     "scheduler": scheduler, "space": "pixel"},
    }


# --------------------------------------------------------------------------- report

def compare(base: dict, lora: dict | None = None) -> dict:
    """Per adverb, overall and for the reference change: base (and LoRA, with its change relative to base;
    negative = less sensitive), each with its 95 % CI."""
    def row(b, b_ci, l=None, l_ci=None):
        out = {"base": b, "base_ci": b_ci}
        if lora is not None:
            out.update(lora=l, lora_ci=l_ci, change=(l - b) / b if b else None)
        return out

    out = {"overall": row(base["overall"], base["overall_ci"], *(
               (lora["overall"], lora["overall_ci"]) if lora is not None else ())),
           "per_adverb": {a: row(base["per_adverb"][a], base["per_adverb_ci"][a], *(
               (lora["per_adverb"][a], lora["per_adverb_ci"][a]) if lora is not None else ()))
               for a in base["per_adverb"]}}
    if "reference" in base:
        out["reference"] = row(base["reference"], base["reference_ci"], *(
            (lora["reference"], lora["reference_ci"]) if lora is not None else ()))
    return out


def write_bar_chart(summary: dict, path, title: str) -> Path:
    """Grouped bars, base vs LoRA, per adverb, overall and the reference change, with 95 % CI error bars.

    The reference (a colour or object word swapped) is also drawn as a dashed line: an adverb's bar far below it
    moves the model little compared with a change the picture should show.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary["per_adverb"]) + ["overall"]
    rows = [summary["per_adverb"][a] for a in labels[:-1]] + [summary["overall"]]
    if "reference" in summary:
        labels.append("reference:\ncolour/object\nswapped")
        rows.append(summary["reference"])
    x = list(range(len(labels)))
    has_lora = any(r.get("lora") is not None for r in rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(labels) + 2), 4.5))
    for key, offset, label, color in (("base", -0.2 if has_lora else 0.0, "base", "#1f77b4"),
                                      ("lora", 0.2, "base + LoRA", "#ff7f0e")):
        if key == "lora" and not has_lora:
            continue
        values = [r[key] for r in rows]
        cis = [r.get(f"{key}_ci") or [v, v] for r, v in zip(rows, values)]
        err = [[max(v - lo, 0) for v, (lo, _) in zip(values, cis)], [max(hi - v, 0) for v, (_, hi) in zip(values, cis)]]
        ax.bar([i + offset for i in x], values, 0.4, yerr=err, capsize=3, label=f"{label} (95% CI)", color=color)
        if "reference" in summary:
            ax.axhline(summary["reference"][key], color=color, linestyle="--", linewidth=1,
                       label=f"{label}: reference change")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("noise-prediction distance (RMS)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)
