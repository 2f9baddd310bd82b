"""Single-file SD1.x / SD2.x / SDXL checkpoints (`.safetensors` / `.ckpt`, the ComfyUI and sd-webui layout).

Loading goes through diffusers' `from_single_file`, offline, with the component configs shipped in
`trainer/assets/sd15`, `trainer/assets/sd21` and `trainer/assets/sdxl` (the public
runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1 and stabilityai/stable-diffusion-xl-base-1.0
configs) and the bundled CLIP tokenizer (SDXL's second tokenizer is the same BPE padding with "!"), so no
hub access is needed. SDXL files use Stability's SGM layout: the UNet as in LDM plus `label_emb`, the text
encoders under `conditioner.embedders.0.transformer.` (CLIP-L) and `conditioner.embedders.1.model.` (OpenCLIP bigG).

Saving (diffusers -> original LDM layout) is written by hand: diffusers ships the LDM -> diffusers
direction only (`loaders/single_file_utils.py`); the reverse table lives in a repo script
(`scripts/convert_diffusers_to_original_stable_diffusion.py`) that no wheel installs. The tables below
follow that script, generalised to the UNet/VAE config so the tiny test models convert too.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from pathlib import Path

from ..assets import ASSETS_DIR, CLIP_TOKENIZER_DIR
from ..atomic import atomic_path
from .family import FAMILY_ALIASES, detect_family

SHIPPED_CONFIGS = {"sd1": ASSETS_DIR / "sd15", "sd2": ASSETS_DIR / "sd21", "sdxl": ASSETS_DIR / "sdxl"}
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."  # SD1: transformers' CLIPTextModel
OPENCLIP_PREFIX = "cond_stage_model.model."  # SD2: open_clip's text tower
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."  # SDXL: CLIP ViT-L (transformers layout)
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."  # SDXL: OpenCLIP bigG (open_clip layout)
SDXL_LABEL_EMB = UNET_PREFIX + "label_emb.0.0.weight"  # the added (pooled text + size) embedding


def is_single_file(path) -> bool:
    """True when `path` is an existing file with a checkpoint suffix."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES


def side_config_dir(path) -> Path:
    """The diffusers config folder that `save_single_file(..., save_config=True)` writes next to `path`."""
    p = Path(path)
    return p.with_name(p.stem + ".config")


# --------------------------------------------------------------------------- reading

def read_checkpoint_shapes(path) -> dict[str, tuple]:
    """Tensor name -> shape, without loading the weights where the format allows it."""
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return {k: tuple(v.shape) for k, v in load_checkpoint_state_dict(p, mmap=True).items() if hasattr(v, "shape")}


def load_checkpoint_state_dict(path, mmap: bool = False) -> dict:
    """The flat state dict of a checkpoint; pickled files only through `torch.load(weights_only=True)`."""
    import torch

    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError:
        if not mmap:
            raise
        sd = torch.load(str(p), map_location="cpu", weights_only=True)  # legacy (non-zip) pickles cannot mmap
    while isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{p}: not a state dict (found {type(sd).__name__})")
    return sd


def detect_checkpoint_family(shapes: dict[str, tuple], source="checkpoint") -> str:
    """`sd1`, `sd2` or `sdxl` from tensor names/shapes: SD2 has the OpenCLIP text tower and linear proj_in;
    SDXL has the `label_emb` added embedding and two text encoders under `conditioner.embedders.`."""
    if SDXL_LABEL_EMB in shapes and any(k.startswith("conditioner.embedders.") for k in shapes):
        if not any(k.startswith(SDXL_OPENCLIP_PREFIX) for k in shapes) or not any(
                k.startswith(SDXL_CLIP_PREFIX) for k in shapes):
            raise ValueError(f"{source}: an SDXL checkpoint without both text encoders (CLIP-L under "
                             f"'{SDXL_CLIP_PREFIX}', OpenCLIP bigG under '{SDXL_OPENCLIP_PREFIX}'); the SDXL refiner "
                             "and UNet-only files are not base models this trainer can load")
        return "sdxl"
    proj_in = shapes.get(UNET_PREFIX + "input_blocks.1.1.proj_in.weight")
    if proj_in is None:
        raise ValueError(
            f"{source}: not an SD1.x/SD2.x/SDXL checkpoint (no '{UNET_PREFIX}input_blocks.1.1.proj_in.weight', "
            f"no '{SDXL_LABEL_EMB}'); SD3, Flux and LoRA files are not base models this trainer can load"
        )
    has_openclip = any(k.startswith(OPENCLIP_PREFIX) for k in shapes)
    has_clip = any(k.startswith(CLIP_PREFIX) for k in shapes)
    if has_openclip or (not has_clip and len(proj_in) == 2):
        return "sd2"
    return "sd1"


def _check_against_config(shapes: dict, config_dir: Path, path) -> None:
    """Fail early, with names, when the checkpoint's widths are not the config's (e.g. a tiny model)."""
    cfg = json.loads((config_dir / "unet" / "config.json").read_text())
    got_width = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight", (None,))[0]
    # The first cross-attention: input_blocks.1 in SD1/SD2, input_blocks.4 in SDXL (its first level has none).
    to_k = sorted((k for k in shapes if re.fullmatch(re.escape(UNET_PREFIX) + r"input_blocks\.\d+\.1\."
                                                    r"transformer_blocks\.0\.attn2\.to_k\.weight", k)),
                  key=lambda k: int(k.split(".")[3]))
    got_ctx = shapes[to_k[0]][1] if to_k else None
    want = (cfg["block_out_channels"][0], cfg["cross_attention_dim"])
    if (got_width, got_ctx) != want:
        raise ValueError(
            f"{path}: UNet width {got_width} / cross-attention {got_ctx} do not match the config in {config_dir} "
            f"({want[0]} / {want[1]}); pass config=<diffusers folder> for a non-standard model, or keep the "
            f"'{side_config_dir(path).name}' folder that save_single_file(save_config=True) writes next to it"
        )


def _sd2_predicts_v(path) -> bool | None:
    """sd-webui's convention: a `<name>.yaml` next to the checkpoint with `parameterization: "v"`."""
    yaml_path = Path(path).with_suffix(".yaml")
    if not yaml_path.is_file():
        return None
    return re.search(r"parameterization:\s*[\"']?v[\"']?\s*$", yaml_path.read_text(), re.M) is not None


V_PROBE_KEY = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


def _sd2_weights_look_v(path) -> bool | None:
    """ComfyUI's test (`supported_models.SD20.model_type`): SD2 768-v checkpoints have a wide last norm bias."""
    import torch

    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            bias = f.get_tensor(V_PROBE_KEY) if V_PROBE_KEY in f.keys() else None
    else:
        bias = load_checkpoint_state_dict(p, mmap=True).get(V_PROBE_KEY)
    if bias is None:
        return None
    return bool(torch.std(bias.float(), unbiased=False) > 0.09)


@contextlib.contextmanager
def heap_frozen():
    """Keep the objects that exist now out of the garbage collector's full collections while the block runs.

    Why: diffusers 0.34 with accelerate < 1.x runs `gc.collect()` once per tensor when it loads a single
    file (accelerate clears the device cache for every device that is not the string "cpu", and diffusers
    passes `torch.device("cpu")`). Each collection walks every object in the process, hundreds of thousands
    in a host that has spaCy and transformers loaded, which made a tiny model's load take minutes. Frozen,
    a collection walks only what the load itself creates. A host that froze its own heap is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _pipeline_components(family: str, config_dir: Path, vae, text_encoder) -> dict:
    """The `from_single_file` keyword arguments besides the weights: the shipped tokenizers where the config
    folder has none, and the caller's VAE / text encoder."""
    from transformers import CLIPTokenizer

    # StableDiffusionXLPipeline has no safety checker
    components = {} if family == "sdxl" else {"safety_checker": None, "feature_extractor": None,
                                              "requires_safety_checker": False}
    if not (config_dir / "tokenizer").is_dir():
        tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
        if family == "sd2":
            tokenizer.pad_token = "!"  # SD2's OpenCLIP pads with id 0 ("!"), SD1 with <|endoftext|>
        components["tokenizer"] = tokenizer
    if family == "sdxl" and not (config_dir / "tokenizer_2").is_dir():
        tokenizer_2 = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
        tokenizer_2.pad_token = "!"  # OpenCLIP bigG pads with id 0, as SD2's OpenCLIP-H
        components["tokenizer_2"] = tokenizer_2
    if vae is not None:
        components["vae"] = vae
    if text_encoder is not None:
        components["text_encoder"] = text_encoder
    return components


def load_single_file(
    path,
    *,
    config=None,
    prediction_type: str | None = None,
    torch_dtype=None,
    vae=None,
    text_encoder=None,
):
    """Load an SD1.x/SD2.x/SDXL single-file checkpoint offline; returns `(pipe, family, prediction_type)`.

    `config`: a diffusers folder whose component configs describe the checkpoint (default: the side
    config written by `save_single_file`, else the shipped SD1.5 / SD2.1 / SDXL config for the detected family).
    `prediction_type`: `epsilon` / `v_prediction`; for SD2 without it, a sd-webui `<name>.yaml` next to the
    file decides, else ComfyUI's weight test (768-v vs 512-base), so all three hosts agree. SDXL: epsilon
    unless the `.yaml` says `v` or the file has ComfyUI's `v_pred` marker key.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if prediction_type not in (None, "epsilon", "v_prediction"):
        raise ValueError(f"prediction_type={prediction_type!r}: use 'epsilon' or 'v_prediction'")
    shapes = read_checkpoint_shapes(path)
    family = detect_checkpoint_family(shapes, source=path)
    if config is not None:
        config_dir = Path(config)
        if not (config_dir / "unet" / "config.json").is_file():
            raise FileNotFoundError(f"config={config_dir}: not a diffusers folder (no unet/config.json)")
    elif side_config_dir(path).is_dir():
        config_dir = side_config_dir(path)
    else:
        config_dir = SHIPPED_CONFIGS[family]
    _check_against_config(shapes, config_dir, path)

    components = _pipeline_components(family, config_dir, vae, text_encoder)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    with heap_frozen():
        pipe = cls.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, torch_dtype=torch_dtype, **components
        )
    if prediction_type is None and family == "sdxl":
        says_v = _sd2_predicts_v(path)
        prediction_type = "v_prediction" if says_v or (says_v is None and "v_pred" in shapes) else \
            pipe.scheduler.config.get("prediction_type", "epsilon")
    if prediction_type is None:
        if config_dir != SHIPPED_CONFIGS.get(family) or family == "sd1":
            prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        else:
            says_v = _sd2_predicts_v(path)
            if says_v is None:
                says_v = _sd2_weights_look_v(path)
            prediction_type = "epsilon" if says_v is False else "v_prediction"
    pipe.scheduler.register_to_config(prediction_type=prediction_type)
    if config_dir == SHIPPED_CONFIGS["sd2"] and prediction_type == "epsilon":
        pipe.unet.register_to_config(sample_size=64)  # SD2.x-base: 512 px
    return pipe, family, prediction_type


# --------------------------------------------------------------------------- writing

def _unet_ldm_prefixes(cfg) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) pairs for the UNet's blocks, from its config."""
    n_blocks = len(cfg["block_out_channels"])
    per = cfg["layers_per_block"]
    down_attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]
    pairs = []
    for b in range(n_blocks):
        for j in range(per):
            pairs.append((f"down_blocks.{b}.resnets.{j}.", f"input_blocks.{b * (per + 1) + j + 1}.0."))
            if down_attn[b]:
                pairs.append((f"down_blocks.{b}.attentions.{j}.", f"input_blocks.{b * (per + 1) + j + 1}.1."))
        if b < n_blocks - 1:
            pairs.append((f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{(b + 1) * (per + 1)}.0.op."))
        for j in range(per + 1):
            pairs.append((f"up_blocks.{b}.resnets.{j}.", f"output_blocks.{b * (per + 1) + j}.0."))
            if up_attn[b]:
                pairs.append((f"up_blocks.{b}.attentions.{j}.", f"output_blocks.{b * (per + 1) + j}.1."))
        if b < n_blocks - 1:
            slot = 2 if up_attn[b] else 1
            pairs.append((f"up_blocks.{b}.upsamplers.0.", f"output_blocks.{b * (per + 1) + per}.{slot}."))
    pairs += [("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
              ("mid_block.resnets.1.", "middle_block.2.")]
    pairs += [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
              ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")]
    if cfg.get("addition_embed_type") == "text_time":  # SDXL's pooled-text + size embedding
        pairs += [("add_embedding.linear_1.", "label_emb.0.0."), ("add_embedding.linear_2.", "label_emb.0.2.")]
    return pairs


UNET_RESNET_PARTS = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
                     ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."),
                     ("conv_shortcut.", "skip_connection.")]


def unet_to_ldm(state_dict: dict, cfg) -> dict:
    """diffusers UNet2DConditionModel state dict -> `model.diffusion_model.*` keys."""
    pairs = sorted(_unet_ldm_prefixes(cfg), key=lambda p: -len(p[0]))
    out = {}
    for key, value in state_dict.items():
        for hf, ldm in pairs:
            if key.startswith(hf):
                rest = key[len(hf):]
                if ".resnets." in hf:
                    for hf_part, ldm_part in UNET_RESNET_PARTS:
                        if rest.startswith(hf_part):
                            rest = ldm_part + rest[len(hf_part):]
                            break
                out[UNET_PREFIX + ldm + rest] = value
                break
        else:
            raise ValueError(f"UNet key {key!r} has no place in the LDM layout (unsupported UNet config)")
    return out


VAE_RESNET_PARTS = [("conv_shortcut.", "nin_shortcut.")]
VAE_ATTN_PARTS = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def vae_to_ldm(state_dict: dict, cfg) -> dict:
    """diffusers AutoencoderKL state dict -> `first_stage_model.*` keys (attention as 1x1 convs)."""
    n = len(cfg["block_out_channels"])
    per = cfg["layers_per_block"]
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for side in ("encoder", "decoder"):
        pairs.append((f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1."))
        for i in range(2):
            pairs.append((f"{side}.mid_block.resnets.{i}.", f"{side}.mid.block_{i + 1}."))
    for i in range(n):
        for j in range(per):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        for j in range(per + 1):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}."))
        if i < n - 1:
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample."))
    pairs.sort(key=lambda p: -len(p[0]))
    out = {}
    for key, value in state_dict.items():
        new = key
        for hf, ldm in pairs:
            if key.startswith(hf):
                rest = key[len(hf):]
                parts = VAE_ATTN_PARTS if ".attentions." in hf else VAE_RESNET_PARTS
                for hf_part, ldm_part in parts:
                    if rest.startswith(hf_part):
                        rest = ldm_part + rest[len(hf_part):]
                        break
                new = ldm + rest
                if ".attentions." in hf and value.ndim == 2:
                    value = value[:, :, None, None]  # LDM's VAE attention is 1x1 convs
                break
        out[VAE_PREFIX + new] = value
    return out


def clip_to_ldm(state_dict: dict, prefix: str = CLIP_PREFIX) -> dict:
    """transformers CLIPTextModel (v4 or v5 key layout) -> SD1's `cond_stage_model.transformer.text_model.*`
    (SDXL's first encoder: `prefix=SDXL_CLIP_PREFIX`)."""
    import torch

    out = {prefix + k.removeprefix("text_model."): v for k, v in state_dict.items()}
    n_pos = out[prefix + "embeddings.position_embedding.weight"].shape[0]
    out.setdefault(prefix + "embeddings.position_ids", torch.arange(n_pos)[None])  # as in SD1.5 files
    return out


def openclip_to_ldm(state_dict: dict, prefix: str = OPENCLIP_PREFIX) -> dict:
    """transformers CLIPTextModel -> SD2's open_clip layout (`cond_stage_model.model.*`, fused in_proj).

    SDXL's second encoder (`CLIPTextModelWithProjection`, `prefix=SDXL_OPENCLIP_PREFIX`) keeps its
    `text_projection`, stored transposed as open_clip multiplies `x @ text_projection`.
    """
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    projection = sd.pop("text_projection.weight", None)
    out = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
    }
    sd.pop("embeddings.position_ids", None)
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat(
                [sd.pop(src + f"self_attn.{p}_proj.{part}") for p in ("q", "k", "v")]
            )
            out[dst + f"attn.out_proj.{part}"] = sd.pop(src + f"self_attn.out_proj.{part}")
            out[dst + f"ln_1.{part}"] = sd.pop(src + f"layer_norm1.{part}")
            out[dst + f"ln_2.{part}"] = sd.pop(src + f"layer_norm2.{part}")
            out[dst + f"mlp.c_fc.{part}"] = sd.pop(src + f"mlp.fc1.{part}")
            out[dst + f"mlp.c_proj.{part}"] = sd.pop(src + f"mlp.fc2.{part}")
    if sd:
        raise ValueError(f"text encoder keys with no place in the open_clip layout: {sorted(sd)[:5]}")
    # The real SD2 files carry a 24th resblock and `text_projection`; SD2 conditions on the penultimate
    # layer and never uses either, and diffusers drops both on load, so they are not written.
    if projection is not None:
        out["text_projection"] = projection.T.contiguous()
    return {prefix + k: v for k, v in out.items()}


def pipeline_to_ldm(pipe, family: str | None = None) -> dict:
    """The whole pipeline's weights in the original single-file layout."""
    family = FAMILY_ALIASES.get(family or detect_family(pipe.unet.config))
    sd = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    sd.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    te = pipe.text_encoder.state_dict()
    if family == "sdxl":
        sd.update(clip_to_ldm(te, SDXL_CLIP_PREFIX))
        sd.update(openclip_to_ldm(pipe.text_encoder_2.state_dict(), SDXL_OPENCLIP_PREFIX))
    else:
        sd.update(openclip_to_ldm(te) if family == "sd2" else clip_to_ldm(te))
    return sd


def save_pipeline_config(pipe, out_dir) -> Path:
    """Write the pipeline's configs and tokenizer (no weights): a `config=` folder for `load_single_file`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_config(out)
    pipe.unet.save_config(out / "unet")
    pipe.vae.save_config(out / "vae")
    pipe.scheduler.save_config(out / "scheduler")
    pipe.text_encoder.config.save_pretrained(out / "text_encoder")
    pipe.tokenizer.save_pretrained(out / "tokenizer")
    if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
        pipe.text_encoder_2.config.save_pretrained(out / "text_encoder_2")
        pipe.tokenizer_2.save_pretrained(out / "tokenizer_2")
    return out


def save_single_file(pipe, path, *, family: str | None = None, save_config: bool = False,
                     dtype=None, metadata: dict | None = None) -> Path:
    """Write `pipe` as an original-layout single-file checkpoint (`.safetensors`, atomically).

    `save_config=True` also writes the pipeline's configs to `<stem>.config/`, which `load_single_file`
    picks up: needed for models whose sizes are not SD1.5's / SD2.1's / SDXL's (the tiny test models).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path}: single files are written as .safetensors only")
    sd = pipeline_to_ldm(pipe, family)
    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", **(metadata or {})})
    if save_config:
        import shutil

        cfg_tmp = side_config_dir(path).with_name(side_config_dir(path).name + ".tmp")
        shutil.rmtree(cfg_tmp, ignore_errors=True)
        save_pipeline_config(pipe, cfg_tmp)
        shutil.rmtree(side_config_dir(path), ignore_errors=True)
        os.replace(cfg_tmp, side_config_dir(path))
    return path


# --------------------------------------------------------------------------- random full-size models

def build_random_pipeline(family: str = "sd15", dtype=None, seed: int = 0, prediction_type: str | None = None):
    """A random-weight pipeline with the shipped real SD1.5 / SD2.1 configs (for size-true tests/benchmarks)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.schedulers import DDIMScheduler, PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    fam = FAMILY_ALIASES.get(family)
    if fam is None:
        raise ValueError(f"unknown family {family!r}: use one of {sorted(FAMILY_ALIASES)}")
    if fam == "sdxl":
        raise ValueError("build_random_pipeline: SDXL is not built at full size (about 14 GB in fp32); "
                         "use trainer.models.tiny.build_tiny_pipeline('sdxl')")
    cfg = SHIPPED_CONFIGS[fam]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder"))
    sched_cls = DDIMScheduler if fam == "sd2" else PNDMScheduler
    scheduler = sched_cls.from_config(sched_cls.load_config(cfg / "scheduler"))
    if prediction_type:
        scheduler.register_to_config(prediction_type=prediction_type)
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    if fam == "sd2":
        tokenizer.pad_token = "!"
    if dtype is not None:
        for model in (unet, vae, text_encoder):
            model.to(dtype)
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
