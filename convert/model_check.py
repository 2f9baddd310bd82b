"""Check a LoRA against a model's weight shapes before applying it, and reshape factors to fit.

A LoRA for another base (SD2's 1024-wide cross-attention on SD1's 768) or with names the model lacks
must fail loudly here; host programs drop such keys or fail deep inside PEFT.
"""
from __future__ import annotations

from . import keymap
from .lora import LoraFile, LoraModule


def _weight_shapes(named_shapes: dict) -> dict[str, tuple]:
    """Accept `{module path: weight shape}` or a state dict's `{path.weight: shape or tensor}`."""
    out = {}
    for name, shape in named_shapes.items():
        shape = tuple(shape.shape) if hasattr(shape, "shape") else tuple(shape)
        if name.endswith(".bias"):
            continue
        out[name.removesuffix(".weight")] = shape
    return out


def _fits(m: LoraModule, shape: tuple) -> bool:
    out_f, in_f = m.up.shape[0], m.down.shape[1]
    if len(shape) not in (2, 4) or shape[0] != out_f or shape[1] != in_f:
        return False
    kernel = tuple(m.down.shape[2:]) or (1, 1)
    return kernel == (tuple(shape[2:]) or (1, 1))  # Linear ⇄ 1x1 conv are interchangeable (SD2 proj_in/out)


def check_against_model(lora: LoraFile, named_shapes: dict, component: str = "unet") -> None:
    """Raise one `ValueError` naming every module of `component` whose factors do not fit the model's weights,
    and every module path the model does not have."""
    shapes = _weight_shapes(named_shapes)
    text_model_level = any(k.startswith("text_model.") for k in shapes)
    missing, wrong = [], []
    for key, m in lora.modules.items():
        comp, path = keymap.model_path(key, text_model_level)
        if comp != component:
            continue
        if path not in shapes:
            missing.append(path)
        elif not _fits(m, shapes[path]):
            kernel = "x".join(map(str, m.down.shape[2:])) or "linear"
            wrong.append(f"{path}: LoRA {m.down.shape[1]}->{m.up.shape[0]} ({kernel}), model weight {shapes[path]}")
    if missing or wrong:
        lines = [f"LoRA does not fit this {component} ({len(wrong)} shape mismatches, {len(missing)} missing modules); "
                 "is it for another base model (SD1 vs SD2 vs SDXL)?"]
        lines += [f"  shape mismatch: {w}" for w in wrong]
        lines += [f"  not in the model: {p}" for p in missing]
        raise ValueError("\n".join(lines))


def fit_to_model(lora: LoraFile, named_shapes: dict, component: str = "unet") -> LoraFile:
    """`check_against_model`, then reshape factors between Linear `[r, in]` and 1x1-conv `[r, in, 1, 1]` to the model's."""
    check_against_model(lora, named_shapes, component)
    shapes = _weight_shapes(named_shapes)
    text_model_level = any(k.startswith("text_model.") for k in shapes)
    modules = {}
    for key, m in lora.modules.items():
        comp, path = keymap.model_path(key, text_model_level)
        if comp == component and len(shapes[path]) != m.down.dim():
            if len(shapes[path]) == 2:
                m = LoraModule(m.down.flatten(1), m.up.flatten(1), m.alpha)
            else:
                m = LoraModule(m.down[:, :, None, None], m.up[:, :, None, None], m.alpha)
        modules[key] = m
    return LoraFile(modules, dict(lora.metadata), lora.format, lora.family, lora.source)
