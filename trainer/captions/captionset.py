"""`CaptionSet`: image–caption records plus provenance, the type passed between loading, filtering and training.

It is also the ComfyUI `CAPTION_SET` type, so it depends on nothing but the standard library.
Records are immutable; every transformation returns a new set (ComfyUI caches node outputs by reference).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..atomic import atomic_path

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RemovedSpan:
    """A token removed from a caption, with character offsets into the original caption."""

    text: str
    start: int
    end: int
    category: str = ""  # why it was removed: degree, manner, time, stance ... ("" in sets saved before categories)


@dataclass(frozen=True)
class CaptionRecord:
    """One training sample: an image and its (possibly filtered) caption."""

    image_path: str
    caption: str
    original: str | None = None  # caption before filtering; None when never filtered
    removed: tuple[RemovedSpan, ...] = ()
    source_id: str = ""  # e.g. "coco:<annotation id>" or the image file name
    # mode decorrelate: K caption texts drawn for this image, one used per epoch (`caption` is the first)
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaptionSet:
    """A list of `CaptionRecord`s and where they came from (source files, loader and filter settings)."""

    records: tuple[CaptionRecord, ...]
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def with_records(self, records, **provenance_update) -> "CaptionSet":
        """A new set with `records` and the provenance extended by `provenance_update`."""
        return CaptionSet(tuple(records), {**self.provenance, **provenance_update})

    def save(self, path: str | Path) -> Path:
        """Write the set as JSON Lines (first line: header with provenance) atomically."""
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"format": "caption_set", "version": FORMAT_VERSION, "provenance": self.provenance}) + "\n")
            for r in self.records:
                f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CaptionSet":
        """Read a set written by `save`; errors name the file and line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no caption set here (write one with `python -m trainer prepare`)")
        with path.open(encoding="utf-8") as f:
            lines = f.read().splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:1: not a caption set header ({e})") from None
        if header.get("format") != "caption_set":
            raise ValueError(f"{path}:1: not a caption set file (missing header 'format': 'caption_set')")
        records = []
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                d["removed"] = tuple(RemovedSpan(**s) for s in d.get("removed", ()))
                d["variants"] = tuple(d.get("variants", ()))
                records.append(CaptionRecord(**d))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{n}: malformed caption record ({e})") from None
        return cls(tuple(records), header.get("provenance", {}))


__all__ = ["CaptionRecord", "CaptionSet", "RemovedSpan", "replace"]
