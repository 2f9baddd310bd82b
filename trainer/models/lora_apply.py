"""Apply a LoRA (any format `convert` reads) to a loaded pipeline's UNet and text encoder.

The update is merged into the base weights, W <- W + scale * (alpha / r) * up @ down, computed in fp32
(fp64 for an fp64 model) and cast to the model's dtype, which is what sd-webui and ComfyUI do at inference; so an image made
here is the image those hosts make, sampling runs at the base model's speed, and `scale 0` leaves every
weight bit-identical. The touched weights are kept so `AppliedLora.remove()` restores the base exactly.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..siblings import sibling
from .family import detect_family

APPLIED_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")  # text_encoder_2: SDXL's OpenCLIP bigG


def load_lora(path):
    """Read a LoRA file or PEFT adapter dir into convert's `LoraFile` (a clear error names the file)."""
    convert = sibling("convert")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"LoRA {p}: no such file or directory")
    return convert.load_any(p)


def _named_weights(module) -> dict:
    return {name: p for name, p in module.named_parameters() if name.endswith(".weight")}


@dataclass
class AppliedLora:
    """A LoRA merged into a pipeline; `remove()` puts the original weights back."""

    lora: object  # convert.LoraFile
    scale: float
    originals: dict = field(default_factory=dict)  # (component, module path) -> (parameter, original copy)

    def remove(self) -> None:
        """Restore every weight this LoRA changed (bit-exact)."""
        import torch

        with torch.no_grad():
            for param, original in self.originals.values():
                param.copy_(original)
        self.originals.clear()


def check_lora_fits(pipe, lora) -> None:
    """Raise a `ValueError` naming every module/shape of `lora` the pipeline does not have."""
    convert = sibling("convert")
    name = f"LoRA {lora.source}" if lora.source else "LoRA"
    components = sorted({k.partition(".")[0] for k in lora.modules})
    unknown = [c for c in components if c not in APPLIED_COMPONENTS]
    if unknown:
        raise ValueError(
            f"{name}: has modules for {unknown} (family {lora.family or 'unknown'}); "
            "only SD1.x/SD2.x/SDXL LoRAs (unet, text_encoder, text_encoder_2) apply to this model"
        )
    errors = []
    for component in components:
        model = getattr(pipe, component, None)
        if model is None:
            errors.append(f"the pipeline has no {component}")
            continue
        try:
            convert.check_against_model(lora, {n: p.shape for n, p in _named_weights(model).items()}, component)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError(f"{name} does not fit the base model:\n" + "\n".join(errors))


def apply_lora(pipe, lora, scale: float = 1.0, *, text_encoder_scale: float | None = None) -> AppliedLora:
    """Merge `lora` (a `LoraFile` or a path) into `pipe`'s UNet and text encoder with strength `scale`.

    `text_encoder_scale` defaults to `scale` (sd-webui's single strength). Shapes are checked first, so
    nothing is modified when the LoRA is for another base model.
    """
    import torch

    convert = sibling("convert")
    if not hasattr(lora, "modules"):
        lora = load_lora(lora)
    check_lora_fits(pipe, lora)
    family = detect_family(pipe.unet.config)
    if lora.family in ("sd1", "sd2", "sdxl") and lora.family != family:
        warnings.warn(f"LoRA {lora.source}: made for {lora.family}, applied to an {family} model", stacklevel=2)
    te_scale = float(scale if text_encoder_scale is None else text_encoder_scale)
    scales = {"unet": float(scale), "text_encoder": te_scale, "text_encoder_2": te_scale}
    applied = AppliedLora(lora=lora, scale=float(scale))
    with torch.no_grad():
        for component in APPLIED_COMPONENTS:
            model = getattr(pipe, component, None)
            if model is None:
                continue
            weights = _named_weights(model)
            named_shapes = {n: p.shape for n, p in weights.items()}
            fitted = convert.fit_to_model(lora, named_shapes, component)
            text_model_level = any(n.startswith("text_model.") for n in weights)
            for key, module in fitted.modules.items():
                comp, path = convert.keymap.model_path(key, text_model_level)
                if comp != component:
                    continue
                param = weights[path + ".weight"]
                if scales[component] == 0.0:
                    continue  # leave the weights bit-identical
                applied.originals[(component, path)] = (param, param.detach().clone())
                work = torch.promote_types(param.dtype, torch.float32)  # fp32, or fp64 for an fp64 model
                delta = module.delta(work).to(param.device).reshape(param.shape)
                param.copy_((param.to(work) + scales[component] * delta).to(param.dtype))
    return applied


@contextmanager
def lora_applied(pipe, lora, scale: float = 1.0, **kwargs):
    """`with lora_applied(pipe, path, 0.8): ...` — the LoRA is merged inside the block, removed after."""
    applied = apply_lora(pipe, lora, scale, **kwargs)
    try:
        yield applied
    finally:
        applied.remove()
