"""Load MS-COCO caption annotations (`captions_{train,val}{2014,2017}.json`) into a `CaptionSet`.

Layouts found from a `raw_root` and `split`: ``annotations/captions_<split>.json`` (or
``captions_<split>.json``) with images in ``images/<split>/`` or ``<split>/``. `split` may be a
full name (``train2014``) or ``train``/``val`` (the first year present wins).

Caption choice, five captions per image:
- ``all``: every caption is a sample;
- ``first``: the first caption of each image (file order);
- ``random``: all captions are kept, grouped by image; the trainer draws one per image per epoch
  with `pick_caption_per_epoch(caption_set, epoch, seed)` (provenance ``captions: "random"``).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from .captionset import CaptionRecord, CaptionSet
from .load_report import DataError, LoadReport, clean_caption, file_sha256, keep_readable, seeded_subset

CAPTION_CHOICES = ("all", "random", "first")
YEARS = ("2014", "2017")


def find_coco_files(raw_root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) for `split` under `raw_root`; a clear error when absent."""
    root = Path(raw_root)
    splits = [split] if split[-4:].isdigit() else [split + y for y in YEARS]
    tried = []
    for s in splits:
        for ann in (root / "annotations" / f"captions_{s}.json", root / f"captions_{s}.json"):
            tried.append(str(ann))
            if ann.is_file():
                images = next((d for d in (root / "images" / s, root / s) if d.is_dir()), root / "images" / s)
                return ann, images
    raise FileNotFoundError(f"no COCO caption file for split {split!r} under {root}; looked for: " + ", ".join(tried))


def _read_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list) or not isinstance(doc.get("images"), list):
        raise DataError(f"{path}: not a COCO caption file (needs top-level 'images' and 'annotations' lists)")
    return doc


def _bad_id(value) -> str | None:
    """Why `value` cannot be a COCO id (an integer, or a string in some exports), or None when it can."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return None
    return f"must be an integer or a string, got {type(value).__name__} {json.dumps(value)[:60]}"


def _image_files(doc: dict, annotation_file: Path, report: LoadReport) -> dict:
    """image id -> file name, from the `images` list (bad entries reported)."""
    files: dict = {}
    for k, im in enumerate(doc["images"]):
        where = f"{annotation_file}: images[{k}]"
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            report.problem("malformed_entry", where, "image entry needs 'id' and 'file_name'")
        elif _bad_id(im["id"]):
            report.problem("malformed_entry", where, f"field 'id' {_bad_id(im['id'])}")
        elif im["id"] in files:
            report.problem("duplicate_id", where, f"image id {im['id']} listed twice")
        else:
            files[im["id"]] = im["file_name"]
    return files


def _captions_by_image(doc: dict, annotation_file: Path, files: dict, report: LoadReport) -> dict:
    """image id -> [(annotation id, caption)], from the `annotations` list (bad entries reported)."""
    by_image: dict = {}
    seen_ann: set = set()
    for k, ann in enumerate(doc["annotations"]):
        where = f"{annotation_file}: annotations[{k}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            report.problem("malformed_entry", where, "annotation needs 'image_id' and 'caption'")
            continue
        bad = next(((f, _bad_id(ann[f])) for f in ("id", "image_id") if f in ann and _bad_id(ann[f])), None)
        if bad:
            report.problem("malformed_entry", where, f"field '{bad[0]}' {bad[1]}")
            continue
        ann_id = ann.get("id", f"{ann['image_id']}#{k}")
        if ann_id in seen_ann:
            report.problem("duplicate_id", where, f"annotation id {ann_id} listed twice")
            continue
        seen_ann.add(ann_id)
        if ann["image_id"] not in files:
            report.problem("unknown_image", where, f"image_id {ann['image_id']} is not in 'images'")
            continue
        text = clean_caption(ann["caption"])
        if not text:
            report.problem("empty_caption", where, f"empty caption (id {ann_id})")
            continue
        by_image.setdefault(ann["image_id"], []).append((ann_id, text))
    return by_image


def load_coco(raw_root=None, split: str = "train2014", *, annotation_file=None, image_dir=None,
              captions: str = "all", max_samples: int | None = None, seed: int = 0, strict: bool = False,
              check_images: bool = True) -> CaptionSet:
    """Load COCO captions as a `CaptionSet`; bad entries are reported and skipped (errors under `strict`).

    `max_samples` keeps a seeded subset of samples (of images for ``first``/``random``).
    `check_images=False` skips the image existence/readability checks (annotation-only use).
    """
    if captions not in CAPTION_CHOICES:
        raise ValueError(f"captions must be one of {', '.join(CAPTION_CHOICES)}, got {captions!r}")
    if annotation_file is None:
        if raw_root is None:
            raise ValueError("load_coco needs raw_root (with split) or annotation_file")
        annotation_file, found_images = find_coco_files(raw_root, split)
        image_dir = image_dir or found_images
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"{annotation_file}: COCO caption file not found")
    if image_dir is None:  # annotations/captions_<split>.json -> <root>/images/<split>
        s = annotation_file.stem.removeprefix("captions_")
        root = annotation_file.parent.parent if annotation_file.parent.name == "annotations" else annotation_file.parent
        image_dir = next((d for d in (root / "images" / s, root / s) if d.is_dir()), root / "images" / s)
    image_dir = Path(image_dir)
    if check_images and not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: COCO image folder not found (for {annotation_file}); "
                                "pass image_dir=..., or check_images=False to load captions only")

    report = LoadReport(str(annotation_file), strict)
    doc = _read_json(annotation_file)
    files = _image_files(doc, annotation_file, report)
    by_image = _captions_by_image(doc, annotation_file, files, report)
    groups = []
    wanted = [((image_dir / files[i], caps), image_dir / files[i], f"{annotation_file}: image {i}")
              for i, caps in by_image.items()]
    for path, caps in keep_readable(wanted, report, check_images):
        chosen = caps[:1] if captions == "first" else caps
        groups.append([CaptionRecord(str(path), text, source_id=f"coco:{ann_id}") for ann_id, text in chosen])
    if captions == "all":  # a sample is a caption
        records = seeded_subset([r for g in groups for r in g], max_samples, seed)
    else:  # a sample is an image
        records = [r for g in seeded_subset(groups, max_samples, seed) for r in g]
    report.finish(len(records))
    provenance = {
        "loader": "coco", "annotation_file": str(annotation_file.resolve()),
        "annotation_sha256": file_sha256(annotation_file), "image_dir": str(image_dir.resolve()),
        "split": split if raw_root is not None else annotation_file.stem.removeprefix("captions_"),
        "captions": captions, "max_samples": max_samples, "seed": seed, "load_report": report.as_dict(),
    }
    return CaptionSet(tuple(records), provenance)


def group_by_image(caption_set: CaptionSet) -> list[list[CaptionRecord]]:
    """Records grouped by image path, in order of first appearance."""
    groups: dict[str, list[CaptionRecord]] = {}
    for r in caption_set.records:
        groups.setdefault(r.image_path, []).append(r)
    return list(groups.values())


def pick_caption_per_epoch(caption_set: CaptionSet, epoch: int, seed: int = 0) -> list[CaptionRecord]:
    """One record per image for `epoch`: a different, reproducible caption draw each epoch.

    For sets loaded with ``captions="random"`` the trainer calls this at the start of every epoch;
    for other sets (one caption per image already, or ``all``) use the records as they are.
    """
    rng = random.Random(f"{seed}:{epoch}")
    return [g[0] if len(g) == 1 else rng.choice(g) for g in group_by_image(caption_set)]
