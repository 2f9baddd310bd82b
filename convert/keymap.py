"""The one table of LoRA-able module paths: diffusers spelling ⇄ LDM/original-checkpoint spelling ⇄ kohya names.

Built from the fixed SD1.x/SD2.x (and SDXL) block layout, not from a model, so the converter needs no
model and no diffusers import. Kohya names are looked up in this table, never split on `_`: module names
themselves contain underscores (`to_q`, `proj_in`, `ff_net_0_proj`, `self_attn`, `q_proj`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

ATTN_PARTS = [f"{a}.{p}" for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")] + [
    "ff.net.0.proj",
    "ff.net.2",
]
# diffusers ResnetBlock2D child -> LDM ResBlock child
RESNET_PARTS = {
    "conv1": "in_layers.2",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
TE_PARTS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"]
TE_MAX_LAYERS = 32  # SD1 CLIP-L: 12, SD2 OpenCLIP-H: 23, SDXL OpenCLIP-bigG: 32


@dataclass(frozen=True)
class UnetLayout:
    """Which diffusers blocks carry cross-attention transformers, and how deep each transformer is."""

    down_depth: tuple[int, ...]  # transformer depth per down block, 0 = no attention
    up_depth: tuple[int, ...]
    mid_depth: int
    extra: tuple[tuple[str, str], ...] = ()


SD_LAYOUT = UnetLayout(down_depth=(1, 1, 1, 0), up_depth=(0, 1, 1, 1), mid_depth=1)
SDXL_LAYOUT = UnetLayout(
    down_depth=(0, 2, 10),
    up_depth=(10, 2, 0),
    mid_depth=10,
    extra=(("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2")),
)
LAYOUTS = {"sd1": SD_LAYOUT, "sd2": SD_LAYOUT, "sdxl": SDXL_LAYOUT}


def _transformer(prefix: str, ldm: str, depth: int):
    for part in ("proj_in", "proj_out"):
        yield f"{prefix}.{part}", f"{ldm}.{part}"
    for t in range(depth):
        for part in ATTN_PARTS:
            yield f"{prefix}.transformer_blocks.{t}.{part}", f"{ldm}.transformer_blocks.{t}.{part}"


def _resnet(prefix: str, ldm: str):
    for part, ldm_part in RESNET_PARTS.items():
        yield f"{prefix}.{part}", f"{ldm}.{ldm_part}"


def unet_rows(layout: UnetLayout) -> list[tuple[str, str]]:
    """(diffusers path, LDM path) of every Linear/Conv2d a LoRA may adapt, for one UNet layout."""
    rows = [
        ("conv_in", "input_blocks.0.0"),
        ("conv_out", "out.2"),
        ("time_embedding.linear_1", "time_embed.0"),
        ("time_embedding.linear_2", "time_embed.2"),
        *layout.extra,
    ]
    n = len(layout.down_depth)
    for b, depth in enumerate(layout.down_depth):
        for j in range(2):
            ldm = f"input_blocks.{1 + 3 * b + j}"
            rows += _resnet(f"down_blocks.{b}.resnets.{j}", f"{ldm}.0")
            if depth:
                rows += _transformer(f"down_blocks.{b}.attentions.{j}", f"{ldm}.1", depth)
        if b < n - 1:
            rows.append((f"down_blocks.{b}.downsamplers.0.conv", f"input_blocks.{3 + 3 * b}.0.op"))
    rows += _resnet("mid_block.resnets.0", "middle_block.0")
    rows += _transformer("mid_block.attentions.0", "middle_block.1", layout.mid_depth)
    rows += _resnet("mid_block.resnets.1", "middle_block.2")
    for b, depth in enumerate(layout.up_depth):
        for j in range(3):
            ldm = f"output_blocks.{3 * b + j}"
            rows += _resnet(f"up_blocks.{b}.resnets.{j}", f"{ldm}.0")
            if depth:
                rows += _transformer(f"up_blocks.{b}.attentions.{j}", f"{ldm}.1", depth)
        if b < n - 1:
            rows.append((f"up_blocks.{b}.upsamplers.0.conv", f"output_blocks.{3 * b + 2}.{2 if depth else 1}.conv"))
    return rows


def te_paths() -> list[str]:
    """CLIP text-encoder paths in the spelling every LoRA format uses (with `text_model.`)."""
    return [f"text_model.encoder.layers.{i}.{p}" for i in range(TE_MAX_LAYERS) for p in TE_PARTS]


@dataclass(frozen=True)
class KeyTable:
    to_ldm: dict[tuple[str, str], str]  # (family, diffusers path) -> LDM path
    from_kohya: dict[str, tuple[str, str]]  # kohya module name -> (canonical key, spelling)
    unet_paths: frozenset[str]  # diffusers UNet paths of any family
    te_paths: frozenset[str]


@cache
def module_paths() -> tuple[frozenset[str], frozenset[str]]:
    """(diffusers UNet paths of any family, TE paths): all a PEFT/diffusers read needs, so it skips the kohya names."""
    return frozenset(p for layout in LAYOUTS.values() for p, _ in unet_rows(layout)), frozenset(te_paths())


@cache
def table() -> KeyTable:
    """Build the table once; every name maps to exactly one canonical key (checked)."""
    to_ldm: dict[tuple[str, str], str] = {}
    from_kohya: dict[str, tuple[str, str]] = {}

    def add(name: str, key: str, spelling: str) -> None:
        old = from_kohya.setdefault(name, (key, spelling))
        if old[0] != key:  # would make the table ambiguous: a bug in the rows above
            raise AssertionError(f"kohya name {name} maps to both {old[0]} and {key}")

    for family, layout in LAYOUTS.items():
        for path, ldm in unet_rows(layout):
            to_ldm[(family, path)] = ldm
            add("lora_unet_" + path.replace(".", "_"), "unet." + path, "diffusers")
            add("lora_unet_" + ldm.replace(".", "_"), "unet." + path, "ldm")
    tes = te_paths()
    for path in tes:
        flat = path.replace(".", "_")
        add("lora_te_" + flat, "text_encoder." + path, "te")
        add("lora_te1_" + flat, "text_encoder." + path, "te1")
        add("lora_te2_" + flat, "text_encoder_2." + path, "te2")
    return KeyTable(to_ldm, from_kohya, *module_paths())


def canonical_from_kohya(name: str) -> tuple[str, str] | None:
    """`lora_unet_down_blocks_0_..._to_q` -> (`unet.down_blocks.0....to_q`, spelling) or None if unknown."""
    return table().from_kohya.get(name)


def canonical_from_path(component: str, path: str) -> str | None:
    """A module path as a model names it (TE with or without `text_model.`) -> canonical key, or None."""
    unet_paths, te = module_paths()
    if component == "unet":
        return "unet." + path if path in unet_paths else None
    if not path.startswith("text_model."):
        path = "text_model." + path  # transformers >= 5 has no `text_model` level
    return f"{component}.{path}" if path in te else None


def kohya_name(key: str, family: str | None, ldm_names: bool = False) -> str:
    """Canonical key -> kohya module name (`lora_unet_...`, `lora_te_...`; SDXL: LDM UNet names, `lora_te1/2_`)."""
    component, _, path = key.partition(".")
    sdxl = family == "sdxl"
    if component == "unet":
        if ldm_names or sdxl:
            ldm = table().to_ldm.get(("sdxl" if sdxl else "sd1", path))
            if ldm is None:
                raise KeyError(f"{key} has no LDM spelling in the {family or 'sd1'} layout")
            path = ldm
        return "lora_unet_" + path.replace(".", "_")
    prefix = {"text_encoder": "lora_te1_" if sdxl else "lora_te_", "text_encoder_2": "lora_te2_"}[component]
    return prefix + path.replace(".", "_")


def model_path(key: str, text_model_level: bool = True) -> tuple[str, str]:
    """Canonical key -> (component, path inside that component's model)."""
    component, _, path = key.partition(".")
    if component != "unet" and not text_model_level:
        path = path.removeprefix("text_model.")
    return component, path
