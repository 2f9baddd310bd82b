"""One run per output folder: a lock while a run writes there, and no new run over an earlier run's results.

A new run in a folder that holds an earlier run's checkpoints or final LoRA would overwrite its LoRA and config,
and keep-last-N would then prune by step across both runs; two runs at once would mix their checkpoints and logs.
So a run takes the folder's lock first (a second run refuses at once), and a new run (not `--resume`) refuses a
folder with results unless told to overwrite, which removes the earlier run's files first.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from .checkpoint import CHECKPOINT_RE, list_checkpoints

LOCK_NAME = ".trainer.lock"


class RunFolderError(ValueError):
    """The output folder is in use by another run, or holds an earlier run's results."""


class FolderLock:
    """An exclusive OS lock (fcntl.flock / msvcrt.locking) on `<folder>/.trainer.lock`, which holds the owner's pid.

    The OS drops the lock when its process dies, so a lock file left by a killed run is simply taken over.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd = None

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise `RunFolderError` naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_lock(fd):
                os.close(fd)
                raise RunFolderError(f"{self.folder} is in use by another training run ({self._owner()}); wait for "
                                     "it to end, or use another logging.output_dir")
            try:  # the holder before us may have removed the file after we opened it: lock the file that is there
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: no one can take a file that is going away
        finally:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def _owner(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
        except (OSError, ValueError):
            return "its lock file cannot be read"

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def earlier_results(folder: str | Path) -> list[str]:
    """What an earlier run left in `folder` that a new run would overwrite or mix with (empty: nothing).

    Checkpoints and final LoRA files count. Logs of a run that saved neither (it failed or was killed before its
    first checkpoint) do not: a new run replaces them (metrics.jsonl is rewritten, TensorBoard purges old steps).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    checkpoints = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    if checkpoints:
        newest = list_checkpoints(folder)
        found.append(f"{len(checkpoints)} checkpoint folder(s)" + (f", the newest {newest[-1].name}" if newest else ""))
    found += [f"the LoRA {p.name}" for p in sorted(folder.glob("*.safetensors"))]
    if (folder / "adapter").is_dir():
        found.append("the PEFT adapter adapter/")
    return found


RUN_FILES = ("config.yaml", "loss_curve.png", "adapter", "logs", "samples")


def remove_earlier_run(folder: Path, say=print) -> None:
    """Delete the files a run writes (checkpoints, final LoRA, adapter, merged model, logs, samples, config).

    Only those: anything else in the folder (a host's own log, a cache) is left alone.
    """
    removed = []
    for p in sorted(folder.iterdir()):
        name = p.name
        ours = (name in RUN_FILES or CHECKPOINT_RE.match(name) or name.endswith((".safetensors", "_merged"))
                or (name.startswith(".checkpoint-") and name.endswith((".tmp", ".old"))))
        if not ours:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        removed.append(name)
    if removed:
        say(f"overwrite: removed the earlier run's {', '.join(removed)} from {folder}")


def check_new_run(folder: Path, overwrite: bool, say=print) -> None:
    """A new run may use `folder`: refuse one with an earlier run's results, or (`overwrite`) remove them."""
    found = earlier_results(folder)
    if not found:
        return
    if not overwrite:
        raise RunFolderError(
            f"{folder} holds an earlier run ({'; '.join(found)}); a new run there would overwrite it. Continue it "
            "with --resume, choose another logging.output_dir, or pass --overwrite to delete it and start over")
    remove_earlier_run(folder, say)
