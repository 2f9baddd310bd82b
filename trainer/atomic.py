"""Atomic file output: write a temp file beside the target, then `os.replace` it into place.

A crash or Ctrl-C never leaves half a file under the real name. Standard library only, so the
ComfyUI-facing `CaptionSet` can use it too. (`convert` has its own safetensors writer: it is a leaf
package and must not import `trainer`.)
"""
from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _new_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty file with a fresh name in `folder`, with the permissions the umask gives.

    Not `tempfile.mkstemp`: its file is 0600, and `os.replace` keeps that mode, so outputs would be
    unreadable to a webui/ComfyUI running as another user or in a container.
    """
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{folder}: could not create a temp file {prefix}*{suffix}; remove stale ones")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix, so writers that infer the format from it work);
    on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path.parent, f".{path.name}.", ".tmp" + path.suffix)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 less the umask (Python has no way to read the umask)
    try:
        yield tmp
        # Some writers replace the file with their own 0600 temp file (safetensors >= 0.7 does): give the mode back.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def umask_tree(fresh_dir: str | Path) -> None:
    """Give every file under `fresh_dir` (a temp folder just made with mkdir, to be renamed into place) the mode
    a new file gets under the umask: the folder's mode without the x bits.

    Some writers (safetensors >= 0.7, and so diffusers' save_pretrained) create their files 0600, unreadable
    to a webui/ComfyUI running as another user or in a container.
    """
    mode = stat.S_IMODE(os.stat(fresh_dir).st_mode) & 0o666
    for p in Path(fresh_dir).rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.chmod(p, mode)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
