"""Bad-data report for caption loaders: problems are counted with examples and skipped, or raised under `strict`.

A dataset with a few missing images or empty captions should load (with a clear summary), not crash
hundreds of steps into training; `strict=True` turns the first problem into an error instead.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_EXAMPLES = 5
# Kinds whose every item is named in the report (not just examples): each is a file the user has to find.
NAME_EVERY = frozenset({"missing_image", "unreadable_image"})
# Threads decoding images in `keep_readable` (Pillow decodes without holding the GIL).
CHECK_THREADS = 8


class DataError(ValueError):
    """A dataset problem (raised at once under `strict`, or when nothing usable is left)."""


@dataclass
class LoadReport:
    """Counts and examples of skipped items, by kind (``missing_image``, ``empty_caption`` ...)."""

    source: str
    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def problem(self, kind: str, where: str, detail: str) -> None:
        """Record one skipped item; under `strict`, raise `DataError` naming `where`."""
        if self.strict:
            raise DataError(f"{where}: {detail} ({kind}; pass strict=False to skip such items with a summary)")
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES or kind in NAME_EVERY:
            ex.append(f"{where}: {detail}")

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return f"{self.source}: no problems"
        lines = [f"{self.source}: skipped {self.skipped} item(s)"]
        for kind, n in self.counts.most_common():
            lines.append(f"  {kind}: {n}, e.g. " + "; ".join(self.examples.get(kind, [])[:2]))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"skipped": self.skipped, "counts": dict(self.counts), "examples": self.examples}

    def finish(self, n_records: int) -> None:
        """Log the summary; fail when problems left nothing to train on."""
        if self.counts:
            log.warning(self.summary())
        if n_records == 0:
            raise DataError(f"{self.source}: no usable image-caption pairs" + (f"\n{self.summary()}" if self.counts else ""))


def image_problem(path: Path) -> str | None:
    """Why the image at `path` cannot be trained on (missing, not an image, truncated, corrupt), or None.

    The whole file is decoded: the header alone opens for a truncated JPEG, which then fails in the middle
    of training. A JPEG is decoded at 1/8 scale (`draft`), which still reads every byte of it, in a quarter
    less time and a 64th of the memory (bench/image_check.py)."""
    if not Path(path).is_file():
        return f"image file not found: {path}"
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(im.mode, (1, 1))
            im.load()
    except Exception as e:  # PIL raises many types for broken files
        return f"cannot read image {path}: {type(e).__name__}: {e}"
    return None


def keep_readable(items: list, report: LoadReport, check: bool = True) -> list:
    """Of `items` (value, image path, where), the values whose image exists and decodes; the others are reported
    (in order) and skipped. The images are decoded on `CHECK_THREADS` threads. `check=False`: all values."""
    if not check:
        return [value for value, _, _ in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(CHECK_THREADS, os.cpu_count() or 1)) as pool:
        problems = list(pool.map(image_problem, [path for _, path, _ in items]))
    kept = []
    for (value, _, where), problem in zip(items, problems):
        if problem is None:
            kept.append(value)
        else:
            _report_image(report, where, problem)
    return kept


def _report_image(report: LoadReport, where: str, problem: str) -> None:
    report.problem("missing_image" if problem.startswith("image file not found") else "unreadable_image", where, problem)


def clean_caption(text) -> str:
    """A caption on one line with single spaces (COCO captions carry stray newlines and spaces)."""
    return " ".join(str(text).split()) if text is not None else ""


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seeded_subset(items: list, max_samples: int | None, seed: int) -> list:
    """At most `max_samples` items, chosen reproducibly by `seed`, in their original order."""
    if max_samples is None or max_samples >= len(items):
        return list(items)
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    import random

    keep = sorted(random.Random(seed).sample(range(len(items)), max_samples))
    return [items[i] for i in keep]
