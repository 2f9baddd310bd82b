"""Detect and read every input format into a `LoraFile`.

Formats: PEFT adapter dir, diffusers `pytorch_lora_weights.safetensors` (PEFT keys + `lora_adapter_metadata`),
old diffusers attention-processor keys, kohya/webui (diffusers or LDM spelling, `lora_te1_` on SD1),
HCP-Diffusion. Alpha conventions are resolved here, per module, into alpha = scale · rank.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open

from . import keymap
from .locate import DIFFUSERS_WEIGHTS, PEFT_CONFIG, resolve_lora_path
from .lora import LoraFile, LoraFormatError, LoraModule, alpha_value, check_factors, nonfinite_modules
from .metadata import detect_family

PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
# Keys that only a full model checkpoint has (LDM single file, diffusers UNet/pipeline weights).
CHECKPOINT_MARKERS = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conv_in.weight",
                      "time_embedding.linear_1.weight", "text_model.embeddings.", "embeddings.token_embedding.")
UNSUPPORTED_PARTS = re.compile(r"(\.lora_mid\.|\.hada_|\.lokr_|\.dora_scale$|lora_magnitude_vector|\.oft_|\.diff(_b)?$)")


def _shorten(names, n: int = 8) -> str:
    names = sorted(names)
    more = f" … and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ---------------------------------------------------------------------------------------------- raw reading

def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of one weights file (safetensors, or a pickle through weights_only)."""
    if not path.is_file():
        raise LoraFormatError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise LoraFormatError(f"{path}: the file is empty (0 bytes); the download or export did not finish, redo it")
    if path.suffix in PICKLE_SUFFIXES:
        return _read_pickle(path), {}
    try:
        # Lazy reader: each tensor is read once, straight into its own storage — no whole-file copy.
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError / OSError with a message, no common base class
        if path.suffix != ".safetensors" and _looks_like_zip_or_pickle(path):
            return _read_pickle(path), {}
        raise LoraFormatError(
            f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); it is truncated or corrupt: re-download or re-export it"
        ) from None
    return tensors, metadata


def _looks_like_zip_or_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head in (b"PK", b"\x80\x02", b"\x80\x04", b"\x80\x05")


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LoraFormatError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "convert it to .safetensors with a trusted tool"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("lora"), dict):
        obj = obj["lora"]  # HCP-Diffusion: {'lora': {...}}
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LoraFormatError(f"{path}: holds no flat dict of tensors; it is not a LoRA weights file")
    return obj


# ---------------------------------------------------------------------------------------------- detection

def detect_format(keys, source: str, allow_unknown: bool = False) -> str:
    """Name the layout of a state dict's keys, or raise naming what it looks like instead."""
    keys = list(keys)
    if not keys:
        raise LoraFormatError(f"{source}: holds no tensors; the export failed, redo it")
    bad = sorted({k for k in keys if UNSUPPORTED_PARTS.search(k)})
    if bad:
        raise LoraFormatError(
            f"{source}: holds LyCORIS/DoRA parts this converter cannot express as plain LoRA ({_shorten(bad, 4)}); "
            "merge or re-export it as a plain LoRA/LoCon"
        )
    if any(".___." in k for k in keys):
        return "hcp"
    if all(k.startswith(KOHYA_PREFIXES) for k in keys):
        return "webui"
    if any(k.startswith(KOHYA_PREFIXES) for k in keys):
        if allow_unknown:
            return "webui"
        others = [k for k in keys if not k.startswith(KOHYA_PREFIXES)]
        raise LoraFormatError(
            f"{source}: kohya keys mixed with {len(others)} foreign keys ({_shorten(others, 4)}); "
            "remove them (e.g. bundled embeddings) or pass --allow-unknown to drop them"
        )
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers" if any(k.startswith(("unet.", "text_encoder.", "text_encoder_2.")) for k in keys) else "peft"
    if any(re.search(r"(_lora\.(down|up)\.|\.lora\.(down|up)\.|lora_linear_layer\.|\.processor\.)", k) for k in keys):
        return "diffusers-old"
    if any(k.startswith(CHECKPOINT_MARKERS) or ".diffusion_model." in k for k in keys) or not any("lora" in k for k in keys):
        raise LoraFormatError(
            f"{source}: looks like a full model checkpoint or a non-LoRA file (keys like {_shorten(keys, 3)}), "
            "not a LoRA; give the LoRA file instead"
        )
    raise LoraFormatError(f"{source}: unknown LoRA format (keys like {_shorten(keys, 3)}); supported: PEFT, diffusers, kohya/webui, HCP")


# ---------------------------------------------------------------------------------------------- assembly

class _Parts:
    """Collect down/up/alpha per canonical module and turn them into `LoraModule`s with one alpha rule."""

    def __init__(self, source: str):
        self.source = source
        self.down: dict[str, torch.Tensor] = {}
        self.up: dict[str, torch.Tensor] = {}
        self.alpha: dict[str, float] = {}
        self.unknown: list[str] = []

    def build(self, *, zero_alpha_is_rank: bool, missing_alpha_note: str, allow_unknown: bool) -> dict[str, LoraModule]:
        if self.unknown:
            msg = (f"{self.source}: {len(self.unknown)} keys map to no SD1/SD2/SDXL module: {_shorten(self.unknown)}")
            if not allow_unknown:
                raise LoraFormatError(msg + "; fix the names, or pass --allow-unknown (allow_unknown=True) to drop them")
            warnings.warn(msg + "; dropped (--allow-unknown)", stacklevel=3)
        names = set(self.down) | set(self.up)
        lonely = sorted(n for n in names if (n in self.down) != (n in self.up))
        if lonely:
            raise LoraFormatError(f"{self.source}: modules with only one of down/up: {_shorten(lonely)}; the file is incomplete, re-export it")
        stray = sorted(set(self.alpha) - names)
        if stray:
            raise LoraFormatError(f"{self.source}: alpha without weights for {_shorten(stray)}; the file is incomplete, re-export it")
        modules, missing, zero = {}, [], []
        for name in sorted(names):
            down, up = self.down[name], self.up[name]
            check_factors(name, down, up, self.source)
            rank = down.shape[0]
            alpha = self.alpha.get(name)
            if alpha is None:
                missing.append(name)
                alpha = float(rank)
            elif alpha == 0 and zero_alpha_is_rank:
                zero.append(name)
                alpha = float(rank)
            modules[name] = LoraModule(down=down, up=up, alpha=alpha)
        if missing and missing_alpha_note:
            warnings.warn(f"{self.source}: {len(missing)} modules have no alpha; {missing_alpha_note}", stacklevel=3)
        if zero:
            warnings.warn(
                f"{self.source}: {len(zero)} modules have alpha 0 ({_shorten(zero, 3)}); read as alpha = rank (scale 1), "
                "as kohya sd-scripts does (webui/ComfyUI would switch them off)", stacklevel=3)
        return modules


def _split_part(key: str, suffixes: dict[str, str]) -> tuple[str, str] | None:
    for suffix, part in suffixes.items():
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    return None


KOHYA_SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha",
                  ".lora_A.weight": "down", ".lora_B.weight": "up"}


def read_kohya(sd: dict[str, torch.Tensor], source: str, allow_unknown: bool) -> tuple[dict[str, LoraModule], str]:
    parts = _Parts(source)
    spellings: set[str] = set()
    for key, t in sd.items():
        split = _split_part(key, KOHYA_SUFFIXES)
        hit = keymap.canonical_from_kohya(split[0]) if split else None
        if hit is None:
            parts.unknown.append(key)
            continue
        name, spelling = hit
        spellings.add(spelling)
        _put(parts, name, split[1], t, key)
    if {"te", "te1"} <= spellings:
        raise LoraFormatError(f"{source}: has both lora_te_ and lora_te1_ keys for one text encoder; keep one set")
    modules = parts.build(zero_alpha_is_rank=True, allow_unknown=allow_unknown,
                          missing_alpha_note="read as alpha = rank (scale 1), as every kohya/webui loader does")
    fmt = "webui-ldm" if "ldm" in spellings else "webui"
    return modules, fmt


def _put(parts: _Parts, name: str, part: str, t: torch.Tensor, key: str) -> None:
    if part == "alpha":
        parts.alpha[name] = alpha_value(t, name, parts.source)
    else:
        target = parts.down if part == "down" else parts.up
        if name in target:
            raise LoraFormatError(f"{parts.source}: two tensors for {name} {part} (second: {key}); keep one spelling")
        target[name] = t


HCP_SUFFIXES = {".___.layer.W_down": "down", ".___.layer.W_up": "up", ".___.alpha": "alpha",
                ".___.layer.lora_down.weight": "down", ".___.layer.lora_up.weight": "up"}


def read_hcp(sd: dict[str, torch.Tensor], source: str, allow_unknown: bool) -> dict[str, LoraModule]:
    """HCP-Diffusion: `<path>.___.layer.W_down/W_up`, `<path>.___.alpha` holds the *scale* (alpha/rank already applied)."""
    parts = _Parts(source)
    for key, t in sd.items():
        split = _split_part(key.removeprefix("lora."), HCP_SUFFIXES)
        path = split[0] if split else ""
        if path.startswith(("clip_B.", "clip_bigG.")):
            component, path = ("text_encoder" if path.startswith("clip_B.") else "text_encoder_2"), path.split(".", 1)[1]
        else:
            component = "text_encoder" if _is_te_path(path) else "unet"
        name = keymap.canonical_from_path(component, path.removeprefix("text_encoder.").removeprefix("unet.")) if split else None
        if name is None:
            parts.unknown.append(key)
            continue
        _put(parts, name, split[1], t, key)
    modules = parts.build(zero_alpha_is_rank=False, allow_unknown=allow_unknown,
                          missing_alpha_note="read as scale 1")
    for name, m in modules.items():
        if name in parts.alpha:  # stored value is the scale itself
            m.alpha = parts.alpha[name] * m.rank
    return modules


def _is_te_path(path: str) -> bool:
    return path.startswith(("text_model.", "encoder.layers.", "text_encoder."))


OLD_DIFFUSERS = [  # (regex on the key, replacement) -> `<path>|<part>`
    (re.compile(r"^(.*)\.processor\.to_(q|k|v)_lora\.(down|up)\.weight$"), r"\1.to_\2|\3"),
    (re.compile(r"^(.*)\.processor\.to_out_lora\.(down|up)\.weight$"), r"\1.to_out.0|\2"),
    (re.compile(r"^(.*)\.to_(q|k|v)_lora\.(down|up)\.weight$"), r"\1.to_\2|\3"),
    (re.compile(r"^(.*)\.to_out_lora\.(down|up)\.weight$"), r"\1.to_out.0|\2"),
    (re.compile(r"^(.*)\.lora_linear_layer\.(down|up)\.weight$"), r"\1|\2"),
    (re.compile(r"^(.*)\.lora\.(down|up)\.weight$"), r"\1|\2"),
]
TE_OLD_ATTN = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out.0": "out_proj"}


def _old_diffusers_name(key: str) -> tuple[str, str] | None:
    """Old attn-processor key -> (canonical name, part); alpha keys `<module key>.alpha` or `<...>.down.weight.alpha`."""
    part_override = None
    if key.endswith(".alpha"):
        base = key[: -len(".alpha")]
        base = base if base.endswith(".weight") else base + ".down.weight"
        key, part_override = base, "alpha"
    for pattern, repl in OLD_DIFFUSERS:
        if pattern.match(key):
            path, part = pattern.sub(repl, key).split("|")
            break
    else:
        return None
    component, _, rest = path.partition(".")
    if component not in ("unet", "text_encoder", "text_encoder_2"):
        component, rest = ("text_encoder" if _is_te_path(path) else "unet"), path
    if component != "unet":
        head, _, leaf = rest.rpartition(".self_attn.")
        if head and leaf in TE_OLD_ATTN:
            rest = f"{head}.self_attn.{TE_OLD_ATTN[leaf]}"
    name = keymap.canonical_from_path(component, rest)
    return (name, part_override or part) if name else None


def read_old_diffusers(sd, source: str, allow_unknown: bool) -> dict[str, LoraModule]:
    parts = _Parts(source)
    for key, t in sd.items():
        hit = _old_diffusers_name(key)
        if hit is None:
            parts.unknown.append(key)
            continue
        _put(parts, hit[0], hit[1], t, key)
    return parts.build(zero_alpha_is_rank=True, allow_unknown=allow_unknown,
                       missing_alpha_note="read as alpha = rank (scale 1), as diffusers does")


# ---------------------------------------------------------------------------------------------- PEFT

def pattern_value(patterns: dict, path: str, default):
    """PEFT's `rank_pattern`/`alpha_pattern` lookup (`peft.utils.other.get_pattern_key`): first key that matches the path's tail."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


PEFT_PART = re.compile(r"^(.*)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$")


def peft_modules(state_dict, *, rank, alpha, rank_pattern=None, alpha_pattern=None, use_rslora=False,
                 component="unet", source="state dict", allow_unknown=False, alphas=None) -> dict[str, LoraModule]:
    """PEFT-keyed tensors (`<path>.lora_A.weight`) + LoraConfig values -> canonical modules."""
    parts = _Parts(source)
    paths: dict[str, str] = {}
    for key, t in state_dict.items():
        k = key.removeprefix("base_model.model.")
        comp = component
        for c in ("unet", "text_encoder_2", "text_encoder"):
            if k.startswith(c + "."):
                comp, k = c, k[len(c) + 1:]
                break
        m = PEFT_PART.match(k)
        name = keymap.canonical_from_path(comp, m.group(1)) if m else None
        if name is None:
            parts.unknown.append(key)
            continue
        paths[name] = m.group(1)
        _put(parts, name, "down" if m.group(2) == "A" else "up", t, key)
    modules = parts.build(zero_alpha_is_rank=False, allow_unknown=allow_unknown, missing_alpha_note="")
    for name, mod in modules.items():
        path = paths[name]
        r = pattern_value(rank_pattern, path, rank)
        if r is not None and int(r) != mod.rank:
            raise LoraFormatError(
                f"{source}: the config gives {path} rank {r} but its weights have rank {mod.rank}; "
                "fix r/rank_pattern in the adapter config"
            )
        a = float(alphas[name]) if alphas and name in alphas else float(pattern_value(alpha_pattern, path, alpha))
        # Canonical alpha = scale · rank; PEFT's scale is lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA.
        mod.alpha = a * math.sqrt(mod.rank) if use_rslora else a
    return modules


def read_peft_dir(path: Path, allow_unknown: bool) -> LoraFile:
    """A PEFT adapter dir (UNet at the top, an optional `text_encoder/` adapter next to it, as `save_peft` writes)."""
    modules, metadata, found = {}, {}, False
    subdirs = ((path, None), (path / "text_encoder", "text_encoder"), (path / "text_encoder_2", "text_encoder_2"))
    for sub, default_component in subdirs:
        cfg_file = sub / PEFT_CONFIG
        if not cfg_file.is_file():
            continue
        found = True
        try:
            cfg = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LoraFormatError(f"{cfg_file}: not valid JSON ({e}); restore the adapter config") from None
        if cfg.get("peft_type", "LORA") != "LORA":
            raise LoraFormatError(f"{cfg_file}: peft_type {cfg.get('peft_type')} is not LORA; only LoRA adapters convert")
        weights = next((sub / w for w in PEFT_WEIGHTS if (sub / w).is_file()), None)
        if weights is None:
            raise LoraFormatError(f"{sub}: has {PEFT_CONFIG} but no {' or '.join(PEFT_WEIGHTS)}; copy the weights next to it")
        sd, meta = read_tensors(weights)
        detect_format(sd.keys(), str(weights))
        component = default_component or _guess_component(sd.keys())
        for key in ("r", "lora_alpha"):
            if key not in cfg:
                raise LoraFormatError(f"{cfg_file}: missing '{key}'; it is not a complete LoRA adapter config")
        modules.update(peft_modules(
            sd, rank=cfg["r"], alpha=cfg["lora_alpha"], rank_pattern=cfg.get("rank_pattern"),
            alpha_pattern=cfg.get("alpha_pattern"), use_rslora=cfg.get("use_rslora", False),
            component=component, source=str(weights), allow_unknown=allow_unknown))
        metadata.update({k: v for k, v in meta.items() if k != "format"})
    if not found:
        raise LoraFormatError(f"{path}: a directory without {PEFT_CONFIG} or {DIFFUSERS_WEIGHTS}; give a LoRA file or a PEFT adapter dir")
    return LoraFile(modules, metadata, "peft", detect_family(modules, metadata), str(path))


def _guess_component(keys) -> str:
    te = [k for k in keys if _is_te_path(k.removeprefix("base_model.model."))]
    return "text_encoder" if te and len(te) == len(list(keys)) else "unet"


def read_diffusers(sd, metadata: dict[str, str], source: str, allow_unknown: bool) -> dict[str, LoraModule]:
    """diffusers PEFT-keyed file: per component `lora_adapter_metadata` (`unet.r`, `unet.lora_alpha`, …)."""
    config = {}
    if ADAPTER_METADATA_KEY in metadata:
        try:
            config = json.loads(metadata[ADAPTER_METADATA_KEY])
        except json.JSONDecodeError as e:
            raise LoraFormatError(f"{source}: metadata '{ADAPTER_METADATA_KEY}' is not valid JSON ({e}); re-export the file") from None
    by_comp: dict[str, dict] = defaultdict(dict)
    alpha_keys: dict[str, float] = {}
    for key, t in sd.items():
        if key.endswith(".alpha"):  # some exporters keep kohya-style per-module alphas next to PEFT keys
            comp, _, path = key[: -len(".alpha")].partition(".")
            name = keymap.canonical_from_path(comp, path)
            if name is None:
                raise LoraFormatError(f"{source}: alpha key {key} maps to no module; fix or remove it")
            alpha_keys[name] = alpha_value(t, name, source)
            continue
        comp = key.split(".", 1)[0]
        if comp not in ("unet", "text_encoder", "text_encoder_2"):
            comp = "unet"  # unknown prefix: left to the key check below, which names it
        by_comp[comp][key] = t
    modules = {}
    missing = []
    for comp, part in by_comp.items():
        cfg = {k[len(comp) + 1:]: v for k, v in config.items() if k.startswith(comp + ".")}
        if "r" not in cfg:
            missing.append(comp)
        modules.update(peft_modules(
            part, rank=cfg.get("r"), alpha=cfg.get("lora_alpha"), rank_pattern=cfg.get("rank_pattern"),
            alpha_pattern=cfg.get("alpha_pattern"), use_rslora=cfg.get("use_rslora", False), component=comp,
            source=source, allow_unknown=allow_unknown, alphas=alpha_keys or None) if "r" in cfg else
            _unscaled(part, comp, source, allow_unknown, alpha_keys))
    if missing and not alpha_keys:
        warnings.warn(f"{source}: no '{ADAPTER_METADATA_KEY}' for {', '.join(missing)}; alpha read as rank (scale 1), as diffusers does",
                      stacklevel=2)
    return modules


def _unscaled(sd, comp, source, allow_unknown, alpha_keys):
    modules = peft_modules(sd, rank=None, alpha=0.0, component=comp, source=source, allow_unknown=allow_unknown)
    for name, m in modules.items():
        m.alpha = alpha_keys.get(name, float(m.rank))
    return modules


# ---------------------------------------------------------------------------------------------- entry point

def load_any(path, *, allow_unknown: bool = False, allow_nonfinite: bool = False) -> LoraFile:
    """Detect the format of a LoRA file, PEFT dir, checkpoint or run folder and read it into a `LoraFile` (ΔW per module preserved).

    Weights with NaN/inf are refused (naming the modules) unless `allow_nonfinite`, then only warned about.
    """
    lora = _read_any(resolve_lora_path(path), allow_unknown)  # a checkpoint or run folder -> the LoRA inside it
    bad = nonfinite_modules(lora.modules)
    if bad:
        msg = f"{lora.source}: {len(bad)} of {len(lora.modules)} modules have NaN/inf weights ({_shorten(bad, 4)})"
        if not allow_nonfinite:
            raise LoraFormatError(msg + "; the LoRA is broken (training diverged?): use an earlier checkpoint or "
                                  "retrain, or pass --allow-nonfinite (allow_nonfinite=True) to read it anyway")
        warnings.warn(msg + "; read anyway (--allow-nonfinite)", stacklevel=2)
    return lora


def _read_any(path: Path, allow_unknown: bool) -> LoraFile:
    if path.is_dir():
        if (path / PEFT_CONFIG).is_file() or (path / "text_encoder" / PEFT_CONFIG).is_file():
            return read_peft_dir(path, allow_unknown)
        path = path / DIFFUSERS_WEIGHTS
    sd, metadata = read_tensors(path)
    source = str(path)
    fmt = detect_format(sd.keys(), source, allow_unknown)
    if fmt == "webui":
        modules, fmt = read_kohya(sd, source, allow_unknown)
    elif fmt == "hcp":
        modules = read_hcp(sd, source, allow_unknown)
    elif fmt == "diffusers-old":
        modules = read_old_diffusers(sd, source, allow_unknown)
    elif fmt == "diffusers":
        modules = read_diffusers(sd, metadata, source, allow_unknown)
    else:  # bare PEFT keys in a single file: no config to say otherwise, so scale 1
        modules = _unscaled(sd, _guess_component(sd.keys()), source, allow_unknown, {})
        warnings.warn(f"{source}: PEFT keys without adapter_config.json; alpha read as rank (scale 1)", stacklevel=3)
    if not modules:
        raise LoraFormatError(f"{source}: no LoRA module left to convert; check the file")
    return LoraFile(modules, metadata, fmt, detect_family(modules, metadata), source)
