"""The ComfyUI host hooks the nodes use: model folders, progress bar, interrupt, memory.

Every hook imports `comfy` / `folder_paths` when called and degrades when they are absent (the nodes
then run as plain Python, e.g. in this project's tests): folders fall back to `$SD_ADVERB_LORA_HOME`
(default `./outputs/comfyui`), progress goes nowhere, nothing can interrupt.
"""
from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

log = logging.getLogger("sd_adverb_lora")

PACK_FOLDER = "sd_adverb_lora"  # our sub-folder of ComfyUI's output directory (training runs)
NO_CHECKPOINT = "(use model_path)"


def _folder_paths():
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def _model_management():
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm


def fallback_root() -> Path:
    """Where files go when not inside ComfyUI."""
    return Path(os.environ.get("SD_ADVERB_LORA_HOME", "outputs/comfyui")).resolve()


def filenames(kind: str) -> list[str]:
    """ComfyUI's file list for a model folder kind (`checkpoints`, `loras`); [] outside ComfyUI."""
    fp = _folder_paths()
    if fp is None:
        folder = fallback_root() / kind
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return list(fp.get_filename_list(kind))


def model_file(kind: str, name: str) -> Path:
    """The full path of `name` in the model folder `kind`; an error naming the folder when absent."""
    fp = _folder_paths()
    if fp is None:
        path = fallback_root() / kind / name
        if not path.is_file():
            raise FileNotFoundError(f"{name}: not found in {path.parent} (outside ComfyUI, {kind} live there)")
        return path
    return Path(fp.get_full_path_or_raise(kind, name))


def models_dir(kind: str) -> Path:
    """The first (default) folder of a model kind: where trained LoRAs are written (`loras`)."""
    fp = _folder_paths()
    folder = Path(fp.get_folder_paths(kind)[0]) if fp is not None else fallback_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_dir() -> Path:
    """Our folder under ComfyUI's output directory (training runs, checkpoints)."""
    fp = _folder_paths()
    root = Path(fp.get_output_directory()) if fp is not None else fallback_root() / "output"
    return root / PACK_FOLDER


def input_path(text: str) -> Path:
    """A user path: absolute, or relative to ComfyUI's input folder (outside ComfyUI: the working dir)."""
    path = Path(text.strip()).expanduser()
    if path.is_absolute():
        return path
    fp = _folder_paths()
    return (Path(fp.get_input_directory()) if fp is not None else Path.cwd()) / path


def free_loaded_models() -> None:
    """Unload the models ComfyUI keeps on the GPU, before training needs the memory."""
    mm = _model_management()
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache()


def release_memory() -> None:
    """Give the training's memory back after the run (ComfyUI's cache-aware way when inside it)."""
    gc.collect()
    mm = _model_management()
    if mm is not None:
        mm.soft_empty_cache()
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def interrupted() -> bool:
    """True once the user pressed Cancel in ComfyUI (the flag is left set for ComfyUI to see)."""
    mm = _model_management()
    return bool(mm is not None and mm.processing_interrupted())


def raise_interrupt(message: str) -> None:
    """Raise ComfyUI's interrupt (so the queue shows the prompt as interrupted, not failed)."""
    mm = _model_management()
    log.warning(message)
    if mm is not None:
        mm.interrupt_current_processing(False)
        raise mm.InterruptProcessingException()
    raise KeyboardInterrupt(message)


class ProgressCallback:
    """A `trainer.training.train` callback: ComfyUI progress bar + text under the node, Cancel → graceful stop.

    Set-up is reported too, so the bar does not sit at 0 for minutes: "loading model", then a bar over the
    images + captions being encoded ("encoding 12/24"), then "training 3/100, loss 0.1234" each step.
    ComfyUI's progress hook raises `InterruptProcessingException` itself when Cancel was pressed; raised
    inside the training loop that would skip the checkpoint, so the flag is checked first and the hook's
    exception is turned into a stop request (the trainer then saves and returns).
    """

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.node_id = node_id
        self.stop_requested = False
        self.encode_bar = None
        self.bar = self._new_bar(total)

    def _new_bar(self, total: int):
        """A `comfy.utils.ProgressBar` for this node; None outside ComfyUI."""
        try:
            import comfy.utils
        except ImportError:
            return None
        return comfy.utils.ProgressBar(total, node_id=self.node_id) if self.node_id else comfy.utils.ProgressBar(total)

    def on_phase(self, phase: str, done: int, total: int) -> None:
        """Set-up before step 1: its name under the node; while encoding, a bar over the items as well."""
        if phase != "encoding":
            self._send_text(phase)
            return
        if self.encode_bar is None:
            self.encode_bar = self._new_bar(total)
        if self.encode_bar is not None:
            # Cancel here raises ComfyUI's interrupt straight through: nothing is trained yet, nothing to save.
            self.encode_bar.update_absolute(done, total)
        self._send_text(f"encoding {done}/{total}")

    def should_stop(self) -> bool:
        self.stop_requested = self.stop_requested or interrupted()
        return self.stop_requested

    def on_step(self, step: int, total: int, loss, logs) -> None:
        if self.should_stop() or self.bar is None:
            return
        mm = _model_management()
        try:
            self.bar.update_absolute(step, total)
        except Exception as e:  # the hook's InterruptProcessingException: stop at the next check
            if mm is None or not isinstance(e, mm.InterruptProcessingException):
                raise
            mm.interrupt_current_processing(True)
            self.stop_requested = True
            return
        self._send_text(f"training {step}/{total}" + (f", loss {loss:.4f}" if loss is not None else ""))

    def _send_text(self, text: str) -> None:
        """The loss under the node (ComfyUI's progress-text channel; absent in old versions)."""
        try:
            from server import PromptServer
        except ImportError:
            return
        server = getattr(PromptServer, "instance", None)
        if server is not None and self.node_id is not None and hasattr(server, "send_progress_text"):
            server.send_progress_text(text, self.node_id)
