"""Atomic output: write next to the target, then `os.replace`, so a crash never leaves half a file."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def check_output(path: Path, overwrite: bool, inputs=()) -> None:
    """Refuse to overwrite an input, or an existing output unless `overwrite`."""
    resolved = path.resolve()
    for src in inputs:
        src = Path(src).resolve()
        if resolved == src or src in resolved.parents or resolved in src.parents:
            raise FileExistsError(f"{path}: is (or holds) the input {src}; choose another output path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass --force (overwrite=True) to replace it")


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors `save_file` into a temp file in the same directory, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Swap a fully written temp dir in for `out_dir` (the old one, if any, is removed only afterwards)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp_dir, out_dir)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def temp_dir_for(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
