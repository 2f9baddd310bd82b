"""Typed training configuration: dataclasses loaded from YAML, with `dotted.key=value` overrides.

Every option has a default and a one-line doc (`python -m trainer train --list-options` prints them).
Unknown keys, wrong types and bad choices are errors that name the key, the file and the fix.
"""
from __future__ import annotations

import difflib
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what to do."""


def opt(default, doc: str):
    """A config field with its default and one-line doc."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class DatasetConfig:
    raw_root: str = opt("", "raw COCO root (images/<split>/, annotations/captions_<split>.json); or set processed_root")
    split: str = opt("train2014", "COCO split under raw_root, e.g. train2014 or val2017")
    captions: str = opt("all", "captions per COCO image: all (one sample per caption), random or first")
    max_samples: int = opt(0, "use at most this many images (0 = all)")
    adverb_mode: str = opt("safe", "adverb filter on raw captions: none, safe, all or intensifiers (see trainer.captions.adverbs), or decorrelate (trainer.captions.decorrelate)")
    decorrelate_variants: int = opt(4, "adverb_mode decorrelate: caption variants per image (all cached; one per epoch)")
    decorrelate_rate: float = opt(-1.0, "adverb_mode decorrelate: share of captions given adverbs (-1: the dataset's own)")
    decorrelate_pool: list = opt([], "adverb_mode decorrelate: adverbs to draw from (empty: the dataset's own, by frequency)")
    processed_root: str = opt("", "a processed caption set from `python -m trainer prepare`: its folder (reads <split>_<adverb_mode>/captions.jsonl) or the .jsonl")
    resolution: int = opt(512, "training resolution in pixels (bucket area is resolution²; SDXL: use 1024)")
    crop: str = opt("center", "center or random crop to the bucket size (random needs cache_latents: false)")
    random_flip: bool = opt(False, "random horizontal flips (with cached latents both orientations are cached)")
    buckets: bool = opt(True, "aspect-ratio bucketing: batches of images resized to the bucket nearest their aspect")
    bucket_step: int = opt(64, "bucket sides are multiples of this many pixels (64 keeps SD UNet latents divisible by 8)")
    min_bucket_resolution: int = opt(256, "smallest bucket side in pixels (capped at resolution; SD1/SD2 only)")
    max_bucket_resolution: int = opt(1024, "largest bucket side in pixels (SD1/SD2 only: SDXL uses its own list, "
                                           "the SDXL report's 1024² buckets scaled to resolution²)")
    cache_latents: bool = opt(True, "encode latents and text embeddings once before step 1 and cache them on disk")
    cache_dir: str = opt("", "where the latent/text cache lives (default: <output_dir>/../.latent_cache)")
    seed: int = opt(0, "seed for caption choice (captions: random)")


@dataclass
class TrainSection:
    max_train_steps: int = opt(100, "optimizer steps to train for")
    learning_rate: float = opt(1e-4, "peak learning rate of AdamW")
    lr_scheduler: str = opt("constant", "diffusers scheduler: constant, constant_with_warmup, linear, cosine, ...")
    lr_warmup_steps: int = opt(0, "learning-rate warm-up steps")
    train_batch_size: int = opt(1, "samples per process per micro-batch")
    gradient_accumulation_steps: int = opt(1, "micro-batches accumulated per optimizer step")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = no clipping; the norm is still logged)")
    mixed_precision: str = opt("auto", "auto (bf16/fp16 on CUDA, fp16 on MPS, no on CPU), no, fp16 or bf16 (LoRA parameters stay fp32; frozen VAE/TE/UNet weights in half)")
    enable_xformers: bool = opt(False, "use xformers attention when installed (warns and uses PyTorch SDPA otherwise)")
    gradient_checkpointing: bool = opt(False, "recompute UNet activations in backward to save memory")
    use_8bit_adam: bool = opt(False, "bitsandbytes 8-bit AdamW when installed (warns and uses torch AdamW otherwise)")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.999, "AdamW beta2")
    adam_weight_decay: float = opt(1e-2, "AdamW weight decay")
    adam_epsilon: float = opt(1e-8, "AdamW epsilon")
    lora_rank: int = opt(4, "LoRA rank r")
    lora_alpha: float = opt(4.0, "LoRA alpha (scale = alpha / rank)")
    lora_dropout: float = opt(0.0, "dropout on the LoRA branch")
    lora_init: str = opt("default", "LoRA init: default (Kaiming A, zero B) or gaussian")
    lora_targets: str = opt("attention", "attention (to_q,to_k,to_v,to_out.0) or kohya (+ proj_in, proj_out, ff)")
    lora_conv_rank: int = opt(0, "rank of LoRA on ResNet convs (conv1/conv2/shortcut/up/down samplers); 0 = off")
    lora_conv_alpha: float = opt(0.0, "alpha of the conv LoRA (0 = same as lora_conv_rank)")
    prediction_type: str = opt("", "override the base model's prediction type: epsilon or v_prediction ('' = from its scheduler)")
    snr_gamma: float = opt(0.0, "min-SNR loss weighting gamma (0 = off; 5 is the paper's value)")
    noise_offset: float = opt(0.0, "noise offset (0 = off; 0.05–0.1 helps very dark/bright images)")
    seed: int = opt(42, "seed for LoRA init, noise, timesteps and data order")


@dataclass
class LoggingConfig:
    output_dir: str = opt("outputs/adverb-lora", "where the run writes checkpoints, the final LoRA, logs and samples")
    name: str = opt("adverb_lora", "file name of the final LoRA: <output_dir>/<name>.safetensors")
    save_steps: int = opt(50, "write checkpoint-<step>/ every this many steps (0 = only at the end)")
    checkpoints_total_limit: int = opt(3, "keep the last N checkpoints (0 = keep all)")
    log_steps: int = opt(10, "read the loss back and log metrics every this many steps")
    tensorboard: bool = opt(True, "write TensorBoard events under logs/")
    save_merged: bool = opt(False, "also write the base model with the LoRA merged in, as a diffusers folder")


@dataclass
class ValidationConfig:
    prompts: list = opt([], "prompts sampled during training (each also without its adverbs when the filter is on)")
    steps: int = opt(0, "sample every this many steps (0 = only at the end, when prompts are set)")
    num_inference_steps: int = opt(20, "denoising steps per validation image")
    guidance_scale: float = opt(7.5, "classifier-free guidance scale for validation images")
    seed: int = opt(0, "seed of the validation noise (same for every step, to compare)")
    adverb_eval: bool = opt(False, "at each validation also log eval/adverb_sensitivity (LoRA and base) of the "
                                   "adverb-free prompts with eval_adverbs inserted")
    eval_adverbs: list = opt(["quickly", "slowly", "happily"], "adverbs that adverb_eval inserts into the prompts (manner adverbs read naturally before the verb)")


@dataclass
class TrainConfig:
    model_name: str = opt("tiny-sd15", "base model (SD1.x, SD2.x or SDXL): diffusers folder, hub id, single-file "
                                       ".safetensors/.ckpt, or tiny-sd15/tiny-sd2/tiny-sdxl")
    vae: str = opt("", "optional separate VAE (diffusers folder or file), e.g. sd-vae-ft-mse or sdxl-vae-fp16-fix")
    text_encoder: str = opt("", "optional separate text encoder (diffusers folder; SDXL: the first, CLIP-L one)")
    dataset: DatasetConfig = field(default_factory=DatasetConfig, metadata={"doc": "training data"})
    train: TrainSection = field(default_factory=TrainSection, metadata={"doc": "optimisation and LoRA"})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"doc": "outputs and logging"})
    validation: ValidationConfig = field(default_factory=ValidationConfig, metadata={"doc": "validation images"})

    def to_dict(self) -> dict:
        """The config as plain nested dicts (what `config.yaml` holds)."""
        return asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


CHOICES = {
    "dataset.captions": ("all", "random", "first"),
    "dataset.crop": ("center", "random"),
    "dataset.adverb_mode": ("none", "safe", "all", "intensifiers", "decorrelate"),
    "train.mixed_precision": ("auto", "no", "fp16", "bf16"),
    "train.lora_init": ("default", "gaussian"),
    "train.lora_targets": ("attention", "kohya"),
    "train.prediction_type": ("", "epsilon", "v_prediction"),
    "train.lr_scheduler": (
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "piecewise_constant", "cosine_with_min_lr", "warmup_stable_decay",
    ),
}
POSITIVE = ("dataset.decorrelate_variants", "dataset.resolution", "dataset.bucket_step", "train.max_train_steps", "train.train_batch_size",
            "train.gradient_accumulation_steps", "train.lora_rank", "logging.log_steps")
NON_NEGATIVE = ("dataset.max_samples", "train.lr_warmup_steps", "train.max_grad_norm", "train.lora_dropout",
                "train.lora_conv_rank", "train.snr_gamma", "train.noise_offset", "logging.save_steps",
                "logging.checkpoints_total_limit", "validation.steps", "validation.num_inference_steps")


def option_docs(cls=TrainConfig, prefix: str = "") -> dict[str, tuple[object, str]]:
    """Every dotted key with (default, doc)."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = prefix + f.name
        if is_dataclass(hints[f.name]):
            out.update(option_docs(hints[f.name], key + "."))
        else:
            default = f.default if f.default is not MISSING else f.default_factory()
            out[key] = (default, f.metadata.get("doc", ""))
    return out


def _closest(key: str, valid) -> str:
    valid = list(valid)
    leaf = {k.rpartition(".")[2]: k for k in valid}
    hit = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hit = hit or [leaf[m] for m in difflib.get_close_matches(key.rpartition(".")[2], list(leaf), n=1, cutoff=0.6)]
    return f" (did you mean {hit[0]!r}?)" if hit else ""


# YAML 1.1 (PyYAML, and accelerate's own config files) reads these words as booleans; a string-choice key
# given one of them means the word, e.g. `mixed_precision: no`.
YAML11_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def _yaml11_word(key: str, value: bool):
    """The choice of `key` that YAML read as the boolean `value`, or None."""
    return next((c for c in CHOICES.get(key, ()) if c.lower() in YAML11_WORDS[value]), None)


def _coerce(key: str, value, typ, where: str):
    """Check/convert one leaf value to the field's type."""
    if isinstance(value, dict):
        sub = ", ".join(f"{key}.{k}" for k in value)
        raise ConfigError(f"{where}: {key} is an option, not a section (no such key: {sub})")
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if value is None:
            return ""
        if isinstance(value, bool) and (word := _yaml11_word(key, value)) is not None:
            return word
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif typ is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
    name = getattr(typ, "__name__", str(typ))
    hint = ""
    if typ is str and isinstance(value, bool):
        hint = "; YAML reads yes/no/on/off/true/false as booleans: quote the word (e.g. key: \"no\")"
        if key in CHOICES:
            hint += f", and choose one of {', '.join(map(repr, CHOICES[key]))}"
    raise ConfigError(f"{where}: {key} must be {name}, got {value!r} ({type(value).__name__}){hint}")


def _build(cls, data: dict, prefix: str, where: str, origins: dict | None = None):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        valid = [*option_docs(), "dataset", "train", "logging", "validation"]
        msgs = [f"unknown key {prefix + str(k)!r}{_closest(prefix + str(k), valid)}" for k in unknown]
        where = _origin(origins, prefix + str(unknown[0]), where)
        raise ConfigError(f"{where}: " + "; ".join(msgs) + " — `python -m trainer train --list-options` lists them all")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        key = prefix + name
        if is_dataclass(typ):
            kwargs[name] = _build(typ, value if value is not None else {}, key + ".", where, origins)
        else:
            kwargs[name] = _coerce(key, value, typ, _origin(origins, key, where))
    return cls(**kwargs)


def _origin(origins: dict | None, key: str, where: str) -> str:
    """Where `key`'s value came from: the command-line override that set it, else the config file."""
    return (origins or {}).get(key, where)


def parse_override(text: str) -> tuple[list[str], object]:
    """`a.b=value` -> (["a", "b"], value parsed as YAML)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: write it as dotted.key=value, e.g. train.learning_rate=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def validate(cfg: TrainConfig, where: str = "config", origins: dict | None = None) -> TrainConfig:
    """Check choices, ranges and combinations; raise `ConfigError` naming the key (and the override that set it)."""
    flat = {k: v for k, v in _flatten(cfg.to_dict()).items()}
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{_origin(origins, key, where)}: {key} is {flat[key]!r}; "
                              f"choose one of {', '.join(map(repr, choices))}")
    for key in POSITIVE:
        if flat[key] <= 0:
            raise ConfigError(f"{_origin(origins, key, where)}: {key} must be > 0, got {flat[key]!r}")
    for key in NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"{_origin(origins, key, where)}: {key} must be >= 0, got {flat[key]!r}")
    if not cfg.train.learning_rate > 0:
        raise ConfigError(f"{where}: train.learning_rate must be > 0, got {cfg.train.learning_rate!r}")
    if cfg.dataset.raw_root and cfg.dataset.processed_root:
        raise ConfigError(f"{where}: set dataset.raw_root or dataset.processed_root, not both")
    if cfg.dataset.crop == "random" and cfg.dataset.cache_latents:
        raise ConfigError(f"{where}: dataset.crop=random changes the pixels every epoch, so latents cannot be cached; "
                          "set dataset.cache_latents=false (or dataset.crop=center)")
    rate = cfg.dataset.decorrelate_rate
    if rate != -1.0 and not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{where}: dataset.decorrelate_rate must be a share between 0 and 1, or -1 for the "
                          f"dataset's own, got {rate!r}")
    if cfg.dataset.bucket_step % 8:
        raise ConfigError(f"{where}: dataset.bucket_step must be a multiple of 8 (the VAE downsamples by 8), "
                          f"got {cfg.dataset.bucket_step}")
    if cfg.dataset.resolution % 8:
        raise ConfigError(f"{where}: dataset.resolution must be a multiple of 8, got {cfg.dataset.resolution}")
    if not cfg.model_name:
        raise ConfigError(f"{where}: model_name is empty; give a diffusers folder, hub id, checkpoint file or tiny-sd15")
    if cfg.validation.adverb_eval and not cfg.validation.prompts:
        raise ConfigError(f"{where}: validation.adverb_eval=true needs validation.prompts (the captions it inserts "
                          "adverbs into); set some, or validation.adverb_eval=false")
    if cfg.validation.adverb_eval and not all(a.strip() for a in cfg.validation.eval_adverbs or [""]):
        raise ConfigError(f"{where}: validation.eval_adverbs must be a non-empty list of adverbs, got "
                          f"{cfg.validation.eval_adverbs!r}")
    if not cfg.logging.name or "/" in cfg.logging.name or "\\" in cfg.logging.name:
        raise ConfigError(f"{where}: logging.name must be a plain file name, got {cfg.logging.name!r}")
    return cfg


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


# What a resume cannot honour: the checkpoint's LoRA, optimizer state, schedule and data position depend on these.
RESUME_FIXED = {
    "model_name": "the LoRA was trained on that base model", "vae": "the latents were encoded with that VAE",
    "text_encoder": "the captions were encoded with that text encoder",
    "train.prediction_type": "the LoRA was trained to that prediction type",
    **dict.fromkeys(("train.lora_rank", "train.lora_alpha", "train.lora_targets", "train.lora_conv_rank",
                     "train.lora_conv_alpha", "train.lora_init"), "the checkpoint's LoRA has that shape"),
    **dict.fromkeys(("train.lr_scheduler", "train.lr_warmup_steps"), "the learning-rate schedule is part of the "
                    "checkpoint (change train.learning_rate instead, or start a new run)"),
    **dict.fromkeys(("train.train_batch_size", "train.gradient_accumulation_steps", "train.seed"),
                    "the data order and the position the checkpoint saved depend on it"),
    "train.use_8bit_adam": "the optimizer state is of the other optimizer",
    **dict.fromkeys(("dataset.split", "dataset.captions", "dataset.max_samples", "dataset.adverb_mode",
                     "dataset.resolution", "dataset.crop", "dataset.random_flip", "dataset.buckets",
                     "dataset.bucket_step", "dataset.min_bucket_resolution", "dataset.max_bucket_resolution",
                     "dataset.seed", "dataset.decorrelate_variants", "dataset.decorrelate_rate",
                     "dataset.decorrelate_pool"), "it changes the training data"),
    "logging.name": "the run's LoRA files carry that name",
}
# Schedules whose learning rate does not depend on train.max_train_steps (others are recomputed when it changes).
STEP_FREE_SCHEDULES = ("constant", "constant_with_warmup")


def resume_changes(saved: dict, cfg: TrainConfig, step: int, where: str = "--resume") -> list[str]:
    """The settings that differ from the checkpoint's config (`saved`, nested dicts), as "key: old -> new".

    Raises `ConfigError` listing every change a resume cannot honour (`RESUME_FIXED`, fewer steps than the
    checkpoint's). A decaying schedule with more (or fewer) steps is recomputed over the new total from the
    resumed step on, and said so. Data paths (`dataset.raw_root`,
    `dataset.processed_root`) may change: the data themselves are compared by their fingerprint.
    Every other setting takes effect from the resumed step on (the learning rate and AdamW's settings included).
    """
    old, new = _flatten(saved or {}), _flatten(cfg.to_dict())
    changed = {k: (old[k], v) for k, v in new.items() if k in old and old[k] != v}
    refused = [f"{k}: {a!r} -> {b!r} ({RESUME_FIXED[k]})" for k, (a, b) in changed.items() if k in RESUME_FIXED]
    if cfg.train.max_train_steps < step:
        refused.append(f"train.max_train_steps: {cfg.train.max_train_steps} is below the checkpoint's step {step}")
    if refused:
        raise ConfigError(f"{where}: the checkpoint cannot continue with these changes: " + "; ".join(refused)
                          + ". Resume with the run's own settings, or start a new run in another logging.output_dir")
    notes = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()]
    if "train.max_train_steps" in changed and cfg.train.lr_scheduler not in STEP_FREE_SCHEDULES:
        a, b = changed["train.max_train_steps"]
        notes.append(f"train.lr_scheduler: the {cfg.train.lr_scheduler} schedule now runs over {b} steps instead of "
                     f"{a}, so the learning rate from step {step} on follows the {b}-step curve")
    return notes


def config_from_dict(data: dict | None, overrides: list[str] | tuple = (), where: str = "config") -> TrainConfig:
    """Build a validated `TrainConfig` from nested dicts plus `dotted.key=value` overrides."""
    import copy

    data = copy.deepcopy(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(data).__name__}")
    origins = {}
    for text in overrides:
        path, value = parse_override(text)
        origins[".".join(path)] = f"override {text!r}"
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return validate(_build(TrainConfig, data, "", where, origins), where, origins)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> TrainConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply `dotted.key=value` overrides."""
    import yaml

    data = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (examples ship in trainer/configs/)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
    return config_from_dict(data, overrides, where)


def example_config_path(name: str = "train_config.yaml") -> Path:
    """Path of a shipped example config in `trainer/configs/`."""
    return Path(__file__).parent.parent / "configs" / name
