"""Find the LoRA inside a folder: a PEFT adapter dir, a diffusers dir, a training `checkpoint-<step>/`, a run folder.

The trainer writes `<run>/adapter/` + `<run>/<name>.safetensors` (the final LoRA) and the same pair in each
`<run>/checkpoint-<step>/`; users point at whichever folder they see, so every reader resolves through here.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from .lora import LoraFormatError

PEFT_CONFIG = "adapter_config.json"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
ADAPTER_DIR = "adapter"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # the trainer's checkpoint folder names
# Files a checkpoint holds next to the LoRA that are not a LoRA (training state for resume).
NOT_A_LORA = {"lora_state.safetensors"}


def is_lora_dir(path: Path) -> bool:
    """A folder `load_any` reads as it is: a PEFT adapter (UNet or text-encoder-only) or a diffusers LoRA dir."""
    return ((path / PEFT_CONFIG).is_file() or (path / "text_encoder" / PEFT_CONFIG).is_file()
            or (path / DIFFUSERS_WEIGHTS).is_file())


def _checkpoints(path: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in path.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _lora_in(path: Path) -> Path | None:
    """The LoRA a checkpoint-like folder holds: its `adapter/` (exact fp32 PEFT), else its one webui file."""
    if is_lora_dir(path / ADAPTER_DIR):
        return path / ADAPTER_DIR
    files = sorted(p for p in path.glob("*.safetensors") if p.name not in NOT_A_LORA and not p.name.startswith("."))
    if len(files) > 1:
        raise LoraFormatError(f"{path}: holds several LoRA files ({', '.join(p.name for p in files)}) and no "
                              f"{ADAPTER_DIR}/; give one of them")
    return files[0] if files else None


def resolve_lora_path(path) -> Path:
    """The file or adapter dir to read for `path`: itself when it is one, else the LoRA inside the folder.

    A run folder gives its final LoRA (`<run>/adapter/`), or, when training has not finished, its newest
    checkpoint's; a warning names the one taken when the folder holds checkpoints too.
    """
    path = Path(path)
    if not path.is_dir() or is_lora_dir(path):
        return path
    found = _lora_in(path)
    checkpoints = _checkpoints(path)
    if found is None and checkpoints:
        for ck in reversed(checkpoints):  # newest first; a half-deleted one is skipped
            if (found := _lora_in(ck)) is not None:
                break
    if found is None:
        raise LoraFormatError(
            f"{path}: a directory without {PEFT_CONFIG}, {DIFFUSERS_WEIGHTS}, {ADAPTER_DIR}/ or a checkpoint-<step>/ "
            "holding a LoRA; give a LoRA file, a PEFT adapter dir, a checkpoint folder or a training run folder")
    if checkpoints:
        final = "the final LoRA" if found.parent == path else f"the newest checkpoint's LoRA (no final {ADAPTER_DIR}/ yet)"
        warnings.warn(f"{path}: holds {len(checkpoints)} checkpoints ({', '.join(c.name for c in checkpoints)}); "
                      f"using {final}: {found}", stacklevel=3)
    return found


def webui_name(path) -> str:
    """The name an sd-webui user writes for this LoRA (`<lora:NAME:weight>`): the trainer's own webui file's stem.

    A file gives its stem. A folder (run, checkpoint, PEFT adapter) gives the stem of the webui file the trainer
    wrote beside the adapter (the one whose `ss_output_name` is its own stem, so a converted copy such as
    `checkpoint-2_webui.safetensors` is not taken), else the folder's name (its parent's for `adapter/`).
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_file():
        return path.stem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader that loads the LoRA has said which one it took
        found = resolve_lora_path(path)
    if found.is_file():
        return found.stem
    for candidate in sorted(found.parent.glob("*.safetensors")):
        if candidate.name in NOT_A_LORA or candidate.name.startswith("."):
            continue
        with safe_open(str(candidate), "pt") as f:
            if (f.metadata() or {}).get("ss_output_name") == candidate.stem:
                return candidate.stem
    return found.parent.name if found.name == ADAPTER_DIR else found.name
