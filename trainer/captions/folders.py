"""Load image folders and Hugging Face datasets into a `CaptionSet`.

Folder layouts (checked in this order):
- Hugging Face ``imagefolder``: ``metadata.jsonl`` lines ``{"file_name": ..., "<caption_column>": ...}``
  (at the root or in split sub-folders);
- ``captions.json``: ``{"<image stem or file name>": "caption", ...}``;
- a folder saved with ``datasets``' ``save_to_disk`` (needs the ``datasets`` package);
- images with same-name ``.txt`` captions (``cat.jpg`` + ``cat.txt``), searched recursively.
Anything else is taken as a Hugging Face dataset name (needs ``datasets``, and the hub when online).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .captionset import CaptionRecord, CaptionSet
from .load_report import (
    IMAGE_SUFFIXES, DataError, LoadReport, clean_caption, keep_readable, seeded_subset,
)


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _from_metadata(root: Path, caption_column: str, report: LoadReport, check_images: bool) -> list:
    out, seen = [], set()
    for meta in sorted(root.rglob("metadata.jsonl")):
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{meta}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                report.problem("malformed_json", where, f"not a JSON object ({e.msg})")
                continue
            if not isinstance(row, dict) or "file_name" not in row or caption_column not in row:
                report.problem("malformed_entry", where, f"needs 'file_name' and {caption_column!r}"
                               + (f" (has {', '.join(row)})" if isinstance(row, dict) else ""))
                continue
            path = meta.parent / row["file_name"]
            if path in seen:
                report.problem("duplicate_id", where, f"{row['file_name']} listed twice")
                continue
            seen.add(path)
            text = clean_caption(row[caption_column])
            if not text:
                report.problem("empty_caption", where, f"empty caption for {row['file_name']}")
            else:
                out.append((CaptionRecord(str(path), text, source_id=str(path.relative_to(root))), path, where))
    return keep_readable(out, report, check_images)


def _from_captions_json(root: Path, report: LoadReport, check_images: bool) -> list:
    cj = root / "captions.json"
    try:
        mapping = json.loads(cj.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{cj}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(mapping, dict):
        raise DataError(f"{cj}: expected an object {{image stem or file name: caption}}")
    images = {}
    for p in _images_under(root):
        rel = p.relative_to(root)
        for key in (str(rel), rel.name, str(rel.with_suffix("")), p.stem):
            images.setdefault(key, p)
    out, used = [], set()
    for key, caption in mapping.items():
        where = f"{cj}: {key!r}"
        path = images.get(key)
        if path is None:
            report.problem("missing_image", where, f"no image named {key!r} under {root}")
            continue
        if path in used:
            report.problem("duplicate_id", where, f"{path.name} has more than one caption key")
            continue
        used.add(path)
        text = clean_caption(caption) if isinstance(caption, str) else ""
        if not text:
            report.problem("empty_caption", where, "empty or non-string caption")
        else:
            out.append((CaptionRecord(str(path), text, source_id=str(path.relative_to(root))), path, where))
    for p in sorted(set(images.values()) - used):
        report.problem("missing_caption", str(p), f"no entry in {cj.name}")
    return keep_readable(out, report, check_images)


def _from_txt(root: Path, report: LoadReport, check_images: bool) -> list:
    out = []
    for p in _images_under(root):
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            report.problem("missing_caption", str(p), f"no caption file {txt.name}")
            continue
        try:
            text = clean_caption(txt.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            report.problem("unreadable_caption", str(txt), f"not UTF-8 text ({e.reason})")
            continue
        if not text:
            report.problem("empty_caption", str(txt), "empty caption file")
        else:
            out.append((CaptionRecord(str(p), text, source_id=str(p.relative_to(root))), p, str(p)))
    return keep_readable(out, report, check_images)


def _is_saved_dataset(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


def _from_hf_dataset(source: str, image_column: str, caption_column: str, report: LoadReport,
                     split: str, image_cache: Path | None) -> list:
    """Rows of a `datasets` dataset (saved to disk, or by hub name); in-memory images are written out once."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{source!r} is not an image folder here, and loading it as a Hugging Face dataset needs "
                        "the optional `datasets` package: pip install datasets") from None
    ds = datasets.load_from_disk(source) if Path(source).is_dir() else datasets.load_dataset(source)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{source}: no split {split!r} (has {', '.join(ds)})")
        ds = ds[split]
    for col in (image_column, caption_column):
        if col not in ds.column_names:
            raise DataError(f"{source}: no column {col!r} (columns: {', '.join(ds.column_names)}); "
                            "pass image_column=/caption_column=")
    if isinstance(ds.features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))  # paths/bytes, not decoded pixels
    cache = image_cache or _default_dataset_cache(source, ds)
    out = []
    for k, row in enumerate(ds):
        where = f"{source}[{k}]"
        text = clean_caption(row[caption_column])
        if not text:
            report.problem("empty_caption", where, "empty caption")
            continue
        img = row[image_column]
        path = None
        if isinstance(img, str):
            path = Path(img)
        elif isinstance(img, dict) and img.get("path") and Path(img["path"]).is_file():
            path = Path(img["path"])
        elif isinstance(img, dict) and img.get("bytes"):
            # Training reads images by path, so in-memory images are written once next to the cache.
            path = cache / f"{k:08d}{Path(img.get('path') or 'x.png').suffix or '.png'}"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_bytes(img["bytes"])
                os.replace(tmp, path)
        if path is None:
            report.problem("missing_image", where, f"column {image_column!r} has no image")
        else:
            out.append((CaptionRecord(str(path), text, source_id=f"{source}:{k}"), path, where))
    return keep_readable(out, report)


def _default_dataset_cache(source: str, ds) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(source))[-80:]
    return Path(base) / "sd_adverb_lora" / "datasets" / f"{name}-{getattr(ds, '_fingerprint', 'x')}"


def load_folder(path, *, max_samples: int | None = None, seed: int = 0, strict: bool = False,
                image_column: str = "image", caption_column: str = "text", split: str = "train",
                check_images: bool = True, image_cache=None) -> CaptionSet:
    """Load an image folder (``.txt`` / ``captions.json`` / ``metadata.jsonl``) or a HF dataset.

    Bad items are reported and skipped (errors under `strict`); `max_samples` keeps a seeded subset.
    """
    root = Path(path)
    report = LoadReport(str(path), strict)
    if root.is_dir() and any(root.rglob("metadata.jsonl")):
        layout, records = "imagefolder", _from_metadata(root, caption_column, report, check_images)
    elif root.is_dir() and (root / "captions.json").is_file():
        layout, records = "captions_json", _from_captions_json(root, report, check_images)
    elif root.is_dir() and _is_saved_dataset(root):
        layout, records = "hf_saved", _from_hf_dataset(str(root), image_column, caption_column, report, split,
                                                       Path(image_cache) if image_cache else None)
    elif root.is_dir():
        layout, records = "txt", _from_txt(root, report, check_images)
    elif root.exists():
        raise DataError(f"{root}: expected a folder of images (or a dataset name), got a file")
    elif root.is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") > 1:
        raise FileNotFoundError(f"{path}: no such folder (and not a Hugging Face dataset name like 'owner/name')")
    else:
        layout, records = "hf_hub", _from_hf_dataset(str(path), image_column, caption_column, report, split,
                                                     Path(image_cache) if image_cache else None)
    records = seeded_subset(records, max_samples, seed)
    report.finish(len(records))
    provenance = {
        "loader": "folder", "layout": layout, "source": str(root.resolve()) if root.exists() else str(path),
        "image_column": image_column, "caption_column": caption_column, "max_samples": max_samples,
        "seed": seed, "load_report": report.as_dict(),
    }
    return CaptionSet(tuple(records), provenance)
