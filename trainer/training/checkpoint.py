"""Checkpoints: atomic `checkpoint-<step>/` folders, keep-last-N, exact resume, and graceful SIGINT/SIGTERM.

A checkpoint holds what a user needs (the PEFT adapter and the webui LoRA, written by `convert`) and what
an exact resume needs: the LoRA weights as trained (fp32, PEFT key names), the optimizer and LR-scheduler
state, every process's RNG states and the data position (epoch, batch).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (damaged, truncated, empty, missing): the message names the file."""


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (an OSError, or a library's wrapped I/O error) means the disk is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(error)
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


def disk_full_error(path: Path, what: str) -> OSError:
    """An OSError(ENOSPC) that says what could not be written where, and how much room is left."""
    try:
        free = f"{shutil.disk_usage(next(p for p in (path, *path.parents) if p.exists())).free / 2**20:.1f} MiB free"
    except (OSError, StopIteration):
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"no space left on device writing {what} ({free} on that disk); "
                                 "free some space and run again", str(path))


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


def load_resume(output_dir: str | Path, resume: str | bool, rank: int = 0, world_size: int = 1,
                warn=print) -> tuple[Path, dict]:
    """(checkpoint folder, `load_checkpoint` of it) for `resume` (see `resolve_resume`), falling back to the
    previous intact checkpoint when the newest one is damaged.

    `latest` (or a run folder): a damaged newest checkpoint is skipped with a warning naming the file, and the
    previous intact one is used. An explicit checkpoint folder that is damaged is an error naming the file and the
    previous intact checkpoint to resume from instead (the user asked for that one: no silent substitute).
    """
    path = resolve_resume(output_dir, resume)
    explicit = not (resume is True or resume in ("latest", "last")) and (Path(resume) / "trainer_state.json").is_file()
    earlier = [p for p in list_checkpoints(path.parent) if step_of(p) < step_of(path)]
    try:
        return path, load_checkpoint(path, rank, world_size)
    except CheckpointError as e:
        first_error = e
    for previous in reversed(earlier):
        try:
            loaded = load_checkpoint(previous, rank, world_size)
        except CheckpointError as e:
            if not explicit:
                warn(f"warning: {e}; trying an earlier checkpoint")
            continue
        if explicit:
            raise CheckpointError(f"{first_error}. The previous intact checkpoint is {previous}: resume from it "
                                  f"with --resume {previous}") from None
        warn(f"warning: {first_error}; resuming from the previous intact checkpoint {previous} instead")
        return previous, loaded
    raise CheckpointError(f"{first_error}; no earlier intact checkpoint in {path.parent} to resume from "
                          "(start a new run in another logging.output_dir)") from None


def step_of(checkpoint_dir: Path) -> int:
    """The step of a `checkpoint-<step>` folder (-1 for another name)."""
    m = CHECKPOINT_RE.match(Path(checkpoint_dir).name)
    return int(m.group(1)) if m else -1


def save_checkpoint(output_dir: str | Path, step: int, *, lora_state: dict, optimizer, lr_scheduler, rng_state: dict,
                    position: dict, export=None, limit: int = 0, rank: int = 0, is_main: bool = True,
                    wait=lambda: None, scaler=None, extra: dict | None = None) -> Path:
    """Write `checkpoint-<step>/` atomically (a temp folder renamed into place) and prune to the last `limit`.

    Every process calls this (each saves its own RNG state); `wait` is the processes' barrier.
    `export(dir)` writes the user-facing LoRA files into the folder. `scaler`: fp16's gradient scaler, whose
    scale decides which steps are skipped, so an exact resume needs it too. `extra`: more entries for
    trainer_state.json (the run's config and data fingerprint, which a resume checks against).

    A full disk (or any other error) removes the half-written temp folder, so it does not keep the disk full;
    a full disk is raised as OSError(ENOSPC) naming the file.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".checkpoint-{step}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    wait()
    try:
        _write_checkpoint_files(tmp, step, rank, is_main, wait, lora_state=lora_state, optimizer=optimizer,
                                lr_scheduler=lr_scheduler, rng_state=rng_state, position=position, export=export,
                                scaler=scaler, extra=extra or {})
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full_error(tmp, f"checkpoint-{step} into {output_dir} (the half-written {tmp.name} was "
                                       "removed)") from e
        raise
    if is_main:
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


def _write_checkpoint_files(tmp: Path, step: int, rank: int, is_main: bool, wait, *, lora_state, optimizer,
                            lr_scheduler, rng_state, position, export, scaler, extra) -> None:
    """The files of one checkpoint, into its temp folder. Through Python file objects, so a full disk is an
    OSError(ENOSPC) (torch.save to a path turns it into an unnamed RuntimeError)."""
    import torch
    from safetensors.torch import save

    from ..atomic import umask_tree

    def torch_file(obj, name):
        with open(tmp / name, "wb") as f:
            torch.save(obj, f)

    torch_file(rng_state, f"rng_state_{rank}.pt")
    wait()
    if not is_main:
        return
    (tmp / "lora_state.safetensors").write_bytes(
        save({k: v.detach().float().cpu().contiguous() for k, v in lora_state.items()}))
    torch_file(optimizer.state_dict(), "optimizer.pt")
    torch_file(lr_scheduler.state_dict(), "scheduler.pt")
    if scaler is not None:
        torch_file(scaler.state_dict(), "scaler.pt")
    if export is not None:
        export(tmp)
    # Last: its presence marks the checkpoint complete (`list_checkpoints`).
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **position, **extra}, indent=1, default=str),
                                            encoding="utf-8")
    umask_tree(tmp)  # safetensors writes 0600


def load_checkpoint(path: str | Path, rank: int = 0, world_size: int = 1) -> dict:
    """Read a checkpoint: `lora_state`, `optimizer`, `scheduler`, `scaler` (None without fp16), `rng` (this
    process's), `state` (step, position)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    state = _read(path / "trainer_state.json", lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not isinstance(state, dict) or not all(isinstance(state.get(k), int) for k in ("step", "epoch", "batch")):
        raise CheckpointError(f"{path / 'trainer_state.json'}: damaged checkpoint file (no step/epoch/batch numbers)")
    saved_world = len(list(path.glob("rng_state_*.pt")))
    if saved_world != world_size:
        raise ValueError(f"{path}: written by {saved_world} process(es), resumed with {world_size}; an exact resume "
                         f"needs the same number (use accelerate launch --num_processes {saved_world})")

    def tensors(p):
        return torch.load(p, weights_only=True, map_location="cpu")

    # Every process's RNG file is read, so all processes agree on whether the checkpoint is intact.
    rngs = [_read(path / f"rng_state_{r}.pt", tensors) for r in range(saved_world)]
    return {
        "state": state,
        "lora_state": _read(path / "lora_state.safetensors", load_file),
        "optimizer": _read(path / "optimizer.pt", tensors),
        "scheduler": _read(path / "scheduler.pt", tensors),
        "rng": rngs[rank],
        "scaler": _read(path / "scaler.pt", tensors) if (path / "scaler.pt").is_file() else None,
    }


def _read(path: Path, reader):
    """`reader(path)`, with any failure turned into a `CheckpointError` naming the file."""
    try:
        return reader(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the checkpoint (damaged checkpoint)") from None
    except Exception as e:
        # torch's unpickling errors advise weights_only=False: never right for a file of ours that fails to load.
        lines = [ln for ln in str(e).splitlines() if ln.strip() and "weights_only" not in ln]
        reason = (lines[0] if lines else type(e).__name__)[:200]
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path}: damaged checkpoint file ({size} bytes; {type(e).__name__}: {reason})") from None


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
