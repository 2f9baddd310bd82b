"""Checkpoints: atomic `checkpoint-<step>/` folders, keep-last-N, exact resume, and graceful SIGINT/SIGTERM.

A checkpoint holds what a user needs (the PEFT adapter and the webui LoRA, written by `convert`) and what
an exact resume needs: the LoRA weights as trained (fp32, PEFT key names), the optimizer and LR-scheduler
state, every process's RNG states and the data position (epoch, batch).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def export_lora(lora_state: dict, peft_config, out_dir: str | Path, name: str, metadata: dict[str, str]):
    """Write `<out_dir>/<name>.safetensors` (kohya/webui, ss_* metadata) and `<out_dir>/adapter/` (PEFT).

    The one place that calls `convert`, so its API can change in one spot. Returns (webui_path, peft_dir).
    """
    from ..siblings import sibling

    convert = sibling("convert")
    lora = convert.from_peft_state_dict(
        {k: v.detach().float().cpu() for k, v in lora_state.items()},
        rank=peft_config.r, alpha=peft_config.lora_alpha,
        rank_pattern=dict(peft_config.rank_pattern or {}), alpha_pattern=dict(peft_config.alpha_pattern or {}),
        use_rslora=bool(peft_config.use_rslora), component="unet", metadata=metadata,
    )
    out_dir = Path(out_dir)
    webui_path = out_dir / f"{name}.safetensors"
    convert.save_webui(lora, webui_path, metadata={k: str(v) for k, v in metadata.items()}, overwrite=True)
    peft_dir = out_dir / "adapter"
    convert.save_peft(lora, peft_dir, overwrite=True)
    return webui_path, peft_dir


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first (half-written `.tmp` folders are ignored)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state.json").is_file()]


def resolve_resume(output_dir: str | Path, resume: str | bool) -> Path:
    """The checkpoint to resume from: `latest`/True = the newest in `output_dir`, else the given folder.

    The given folder may also be a run's output folder: its newest checkpoint (what the sd-webui tab passes).
    """
    if resume is True or resume in ("latest", "last"):
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume: no checkpoint-<step>/ folder in {output_dir} to resume from "
                                    "(check logging.output_dir, or start without --resume)")
        return found[-1]
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        found = list_checkpoints(path)
        if found:
            return found[-1]
        raise FileNotFoundError(f"--resume {path}: neither a checkpoint folder (no trainer_state.json) nor a run "
                                "folder holding checkpoint-<step>/ folders")
    return path


def save_checkpoint(output_dir: str | Path, step: int, *, lora_state: dict, optimizer, lr_scheduler, rng_state: dict,
                    position: dict, export=None, limit: int = 0, rank: int = 0, is_main: bool = True,
                    wait=lambda: None, scaler=None) -> Path:
    """Write `checkpoint-<step>/` atomically (a temp folder renamed into place) and prune to the last `limit`.

    Every process calls this (each saves its own RNG state); `wait` is the processes' barrier.
    `export(dir)` writes the user-facing LoRA files into the folder. `scaler`: fp16's gradient scaler, whose
    scale decides which steps are skipped, so an exact resume needs it too.
    """
    import torch
    from safetensors.torch import save_file

    from ..atomic import umask_tree

    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".checkpoint-{step}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    wait()
    torch.save(rng_state, tmp / f"rng_state_{rank}.pt")
    wait()
    if is_main:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in lora_state.items()}, tmp / "lora_state.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), tmp / "scheduler.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        if export is not None:
            export(tmp)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **position}, indent=1), encoding="utf-8")
        umask_tree(tmp)  # safetensors writes 0600
        if final.exists():  # re-saving the same step (e.g. stop requested right after a save)
            old = output_dir / f".checkpoint-{step}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if limit:
            for old in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    wait()
    return final


def load_checkpoint(path: str | Path, rank: int = 0, world_size: int = 1) -> dict:
    """Read a checkpoint: `lora_state`, `optimizer`, `scheduler`, `scaler` (None without fp16), `rng` (this
    process's), `state` (step, position)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved_world = len(list(path.glob("rng_state_*.pt")))
    if saved_world != world_size:
        raise ValueError(f"{path}: written by {saved_world} process(es), resumed with {world_size}; an exact resume "
                         f"needs the same number (use accelerate launch --num_processes {saved_world})")
    return {
        "state": state,
        "lora_state": load_file(path / "lora_state.safetensors"),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"),
        "scheduler": torch.load(path / "scheduler.pt", weights_only=True, map_location="cpu"),
        "rng": torch.load(path / f"rng_state_{rank}.pt", weights_only=True, map_location="cpu"),
        "scaler": (torch.load(path / "scaler.pt", weights_only=True, map_location="cpu")
                   if (path / "scaler.pt").is_file() else None),
    }


def capture_rng(noise_generator) -> dict:
    """The RNG states a resumed run must restore (global torch/CUDA for LoRA dropout, and the noise generator)."""
    import torch

    state = {"torch": torch.get_rng_state(), "noise": noise_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, noise_generator) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    noise_generator.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GracefulStop:
    """While active, SIGINT/SIGTERM only set `requested` so the loop can save a checkpoint and exit.

    A second SIGINT falls through to the previous handler (Ctrl-C twice forces the stop). Signals can only
    be handled in the main thread; elsewhere (e.g. inside ComfyUI's worker) this does nothing.
    """

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        return False
