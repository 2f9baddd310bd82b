"""Base-model family detection and kohya `ss_*` / `modelspec.*` metadata.

sd-webui's Lora page reads `ss_base_model_version` / `ss_v2` to tag the version and `ss_output_name` as
the alias (`network.py: NetworkOnDisk.detect_version`); `ss_network_dim/alpha` are informational only —
the per-module `.alpha` tensors are what loaders scale by.
"""
from __future__ import annotations

import re
from collections import Counter

# ss_base_model_version values written by kohya sd-scripts
VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sd2_v": "sd_v2_v", "sdxl": "sdxl_base_v1-0"}
ARCHITECTURE = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512", "sd2_v": "stable-diffusion-v2-768-v",
                "sdxl": "stable-diffusion-xl-v1-base"}
# Hashes over the source tensors (sd-webui-additional-networks) would be wrong for the converted file.
STALE_KEYS = ("sshs_model_hash", "sshs_legacy_hash", "lora_adapter_metadata", "format")
CROSS_ATTN_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
TE_WIDTH_FAMILY = {768: "sd1", 1024: "sd2"}


def family_from_metadata(metadata: dict[str, str]) -> str | None:
    version = metadata.get("ss_base_model_version", "")
    if version.startswith("sdxl"):
        return "sdxl"
    if version.startswith("sd_v2") or metadata.get("ss_v2") == "True":
        return "sd2"
    if version.startswith("sd_v1") or metadata.get("ss_v2") == "False":
        return "sd1"
    arch = metadata.get("modelspec.architecture", "")
    for family, name in ARCHITECTURE.items():
        if arch.startswith(name):
            return family.removesuffix("_v")
    return None


def detect_family(modules, metadata: dict[str, str]) -> str | None:
    """"sd1" | "sd2" | "sdxl" from metadata, else from names and shapes; None when nothing tells (tiny models)."""
    found = family_from_metadata(metadata)
    if found:
        return found
    keys = list(modules)
    if any(k.startswith("text_encoder_2.") for k in keys) or any(
        re.search(r"\.transformer_blocks\.[1-9]", k) or k.startswith("unet.add_embedding") for k in keys):
        return "sdxl"
    for key, m in modules.items():
        if key.endswith("attn2.to_k") and m.down.shape[1] in CROSS_ATTN_FAMILY:
            return CROSS_ATTN_FAMILY[m.down.shape[1]]
        if key.endswith("self_attn.q_proj") and m.down.shape[1] in TE_WIDTH_FAMILY:
            return TE_WIDTH_FAMILY[m.down.shape[1]]
    if any(".layers.2" in k and re.search(r"layers\.(1[2-9]|2[0-2])\.", k) for k in keys):
        return "sd2"  # CLIP-L has 12 layers, OpenCLIP-H 23
    proj = [m for k, m in modules.items() if k.endswith(".proj_in")]
    if proj:  # SD2 uses linear proj_in/proj_out, SD1 1x1 convs (some SD2 exports are conv-shaped, hence last)
        return "sd2" if proj[0].down.dim() == 2 else "sd1"
    return None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def webui_metadata(lora, output_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The source's metadata (training and caption-filter settings kept), `extra` on top, kohya keys filled in."""
    meta = {k: v for k, v in lora.metadata.items() if k not in STALE_KEYS}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    linear = [m for m in lora.modules.values() if not m.is_conv]
    conv = [m for m in lora.modules.values() if m.is_conv]

    def common(mods):
        return Counter(m.rank for m in mods).most_common(1)[0][0], Counter(m.alpha for m in mods).most_common(1)[0][0]

    if linear:
        dim, alpha = common(linear)
        meta["ss_network_dim"], meta["ss_network_alpha"] = str(dim), _fmt(alpha)
    meta["ss_network_module"] = "networks.lora"
    if conv:
        conv_dim, conv_alpha = common(conv)
        meta["ss_network_args"] = '{"conv_dim": "%d", "conv_alpha": "%s"}' % (conv_dim, _fmt(conv_alpha))
    family = lora.family
    if family:
        vpred = meta.get("ss_v_parameterization") == "True" or meta.get("ss_base_model_version") == "sd_v2_v"
        key = "sd2_v" if family == "sd2" and vpred else family
        if family_from_metadata(meta) != family:  # a source value that contradicts the weights is replaced
            meta.pop("modelspec.architecture", None)
        meta["ss_base_model_version"] = VERSION[key]
        meta["ss_v2"] = str(family == "sd2")
        meta.setdefault("modelspec.architecture", ARCHITECTURE[key] + "/lora")
    meta.setdefault("ss_output_name", output_name)
    meta.setdefault("modelspec.sai_model_spec", "1.0.0")
    meta.setdefault("modelspec.implementation", "https://github.com/Stability-AI/generative-models" if family == "sdxl"
                    else "diffusers")
    meta.setdefault("modelspec.title", output_name)
    return meta
