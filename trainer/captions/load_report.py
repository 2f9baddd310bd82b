"""Bad-data report for caption loaders: problems are counted with examples and skipped, or raised under `strict`.

A dataset with a few missing images or empty captions should load (with a clear summary), not crash
hundreds of steps into training; `strict=True` turns the first problem into an error instead.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_EXAMPLES = 5


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
        if len(ex) < MAX_EXAMPLES:
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


def check_image(path: Path, report: LoadReport, where: str, read: bool = True) -> bool:
    """True when `path` exists and (with `read`) its header opens as an image; otherwise reported."""
    if not path.is_file():
        report.problem("missing_image", where, f"image file not found: {path}")
        return False
    if read:
        try:
            from PIL import Image

            with Image.open(path) as im:  # reads the header only: cheap, catches non-images and empty files
                im.size
        except Exception as e:  # PIL raises many types for broken files
            report.problem("unreadable_image", where, f"cannot read image {path}: {type(e).__name__}: {e}")
            return False
    return True


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
