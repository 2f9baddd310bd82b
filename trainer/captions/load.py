"""`load_captions(source)`: one entry point for every caption source, dispatching on what `source` is.

- a COCO root (has ``annotations/captions_*.json``) -> `load_coco(raw_root=source, split=...)`;
- a COCO annotation ``.json`` file -> `load_coco(annotation_file=source)`;
- a processed set (``.jsonl`` written by `CaptionSet.save`) -> `CaptionSet.load`;
- any other folder -> `load_folder` (imagefolder / captions.json / .txt / saved HF dataset);
- anything else -> a Hugging Face dataset name, through `load_folder`.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from .captionset import CaptionSet


def _accepted(fn, kw: dict) -> dict:
    params = inspect.signature(fn).parameters
    unknown = set(kw) - set(params)
    if unknown:
        raise TypeError(f"{fn.__name__}() does not take {', '.join(sorted(unknown))}")
    return kw


def load_captions(source, **kw) -> CaptionSet:
    """Load captions from a COCO root / annotation file / processed set / folder / dataset name."""
    from .coco import load_coco
    from .folders import load_folder

    p = Path(source)
    if p.is_file() and p.suffix == ".jsonl" and p.name != "metadata.jsonl":
        return CaptionSet.load(p)
    if p.is_file() and p.name == "metadata.jsonl":
        return load_folder(p.parent, **_accepted(load_folder, kw))
    if p.is_file() and p.suffix == ".json":
        return load_coco(annotation_file=p, **_accepted(load_coco, kw))
    if p.is_dir() and (any((p / "annotations").glob("captions_*.json")) or any(p.glob("captions_*.json"))):
        kw.setdefault("split", "train")
        return load_coco(p, **_accepted(load_coco, kw))
    return load_folder(source, **_accepted(load_folder, kw))
