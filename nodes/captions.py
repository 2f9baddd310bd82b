"""Caption nodes: `LoadCOCOCaptions` (COCO json → CAPTION_SET) and `CaptionAdverbFilter`."""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path

from . import host

CATEGORY = "sd-adverb-lora"
SPLITS = ("train2014", "val2014", "train2017", "val2017", "train", "val")
CAPTION_CHOICES = ("all", "random", "first")  # trainer.captions.coco.CAPTION_CHOICES (not imported: it would load the loader)
# trainer.captions.decorrelate.MODES (importing the filter would import spaCy)
FILTER_MODES = ("safe", "all", "intensifiers", "decorrelate")
ADVERB_CATEGORIES = "degree, manner, time, stance, spatial, appearance, focus, other"  # adverb_lexicon.CATEGORIES

_sha_cache: dict[tuple, str] = {}


def _file_sha256(path: Path) -> str:
    """Content hash, remembered per (path, size, mtime) so a re-queue does not re-read big files."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        from ..trainer.captions.load_report import file_sha256

        _sha_cache[key] = file_sha256(path)
    return _sha_cache[key]


def _coco_files(path: str, split: str) -> tuple[Path, Path | None]:
    """(annotation file, image folder or None = let the loader find it) for the node's `path` input."""
    p = host.input_path(path)
    if p.is_file():
        return p, None
    if p.is_dir():
        from ..trainer.captions.coco import find_coco_files

        return find_coco_files(p, split)
    raise FileNotFoundError(f"{p}: no such COCO folder or caption file (a path relative to ComfyUI's input "
                            "folder, or absolute; a folder needs annotations/captions_<split>.json)")


def _folder_fingerprint(folder: Path | None) -> str:
    """Names, sizes and mtimes of a folder's files: changes when an image is added, replaced or removed."""
    if folder is None or not folder.is_dir():
        return "-"
    h = hashlib.sha256()
    with os.scandir(folder) as it:
        for e in sorted(it, key=lambda e: e.name):
            st = e.stat()
            h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _words(text: str) -> list[str]:
    """A keep/remove list typed as commas or lines."""
    return [w.strip() for w in re.split(r"[,\n]", text or "") if w.strip()]


class LoadCOCOCaptions:
    DESCRIPTION = ("Loads MS-COCO image captions (captions_<split>.json + images) as a CAPTION_SET for "
                   "training. Re-runs only when the caption file or the image folder changes.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("CAPTION_SET", "STRING")
    RETURN_NAMES = ("caption_set", "summary")
    OUTPUT_TOOLTIPS = ("The image-caption records and where they came from.", "What was loaded and skipped.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": ("STRING", {"default": "coco", "tooltip": (
                "COCO root folder (annotations/captions_<split>.json and images/<split>/) or a captions_*.json "
                "file; relative to ComfyUI's input folder, or absolute.")}),
            "split": (list(SPLITS), {"default": "train2014", "tooltip": (
                "Which split to read from a root folder (train/val pick the first year present); ignored "
                "when path is a .json file.")}),
            "captions": (list(CAPTION_CHOICES), {"default": "all", "tooltip": (
                "COCO has 5 captions per image: all = one sample per caption, first = the first caption "
                "only, random = one caption per image drawn anew each epoch.")}),
            "max_samples": ("INT", {"default": 0, "min": 0, "max": 10_000_000, "tooltip": (
                "Use at most this many samples (images for first/random), a seeded subset; 0 = all.")}),
            # not named "seed": ComfyUI's frontend gives "seed" widgets a randomize-after-run control
            "subset_seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1, "tooltip": (
                "Seed of the max_samples subset.")}),
        }}

    @classmethod
    def IS_CHANGED(cls, path, split, captions, max_samples, subset_seed):
        try:
            ann, images = _coco_files(path, split)
        except (FileNotFoundError, ValueError) as e:
            return f"missing: {e}"  # load() raises the real error
        if images is None:
            s = ann.stem.removeprefix("captions_")
            root = ann.parent.parent if ann.parent.name == "annotations" else ann.parent
            images = next((d for d in (root / "images" / s, root / s) if d.is_dir()), None)
        return f"{_file_sha256(ann)}:{_folder_fingerprint(images)}:{split}:{captions}:{max_samples}:{subset_seed}"

    def load(self, path, split, captions, max_samples, subset_seed):
        from ..trainer.captions.coco import load_coco

        ann, images = _coco_files(path, split)
        cs = load_coco(annotation_file=ann, image_dir=images, captions=captions,
                       max_samples=max_samples or None, seed=subset_seed)
        rep = cs.provenance.get("load_report") or {}
        skipped = sum((rep.get("counts") or {}).values()) if isinstance(rep, dict) else 0
        n_images = len({r.image_path for r in cs.records})
        summary = (f"{len(cs)} captions of {n_images} images from {ann}\n"
                   f"images: {cs.provenance.get('image_dir')}\ncaptions: {captions}, max_samples: "
                   f"{max_samples or 'all'}, seed: {subset_seed}; skipped entries: {skipped}")
        return (cs, summary)


class CaptionAdverbFilter:
    DESCRIPTION = ("Removes adverbs from captions (spaCy part-of-speech tags plus rules that keep phrases "
                   "like 'very small' readable). Filters a CAPTION_SET and/or a plain text such as a prompt.")
    CATEGORY = CATEGORY
    FUNCTION = "filter"
    RETURN_TYPES = ("CAPTION_SET", "STRING", "STRING")
    RETURN_NAMES = ("caption_set", "report", "text")
    OUTPUT_TOOLTIPS = ("The captions without adverbs (originals and removed words kept in each record).",
                       "Changed %, most removed words and examples.", "The filtered text input.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mode": (list(FILTER_MODES), {"default": "safe", "tooltip": (
                    "safe = adverbs that say nothing about the picture (degree, manner of mind, time, stance); "
                    "keeps place/arrangement (together, outside) and appearance (dimly lit); all = every adverb "
                    "but negation and wh-words, where removing it keeps the caption grammatical; intensifiers = "
                    "only degree words (very, extremely, ...); decorrelate = safe mode's adverbs stay but are "
                    "redrawn from the captions' own and put in at their own rate, independently of the image "
                    "(K variants per caption, one per epoch): unteaches a bias the base model learnt.")}),
                "keep": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "Words or phrases never removed, separated by commas or lines (e.g. 'not, up, down'); "
                    "@group names a built-in list.")}),
                "remove": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "Words or phrases always removed, separated by commas or lines.")}),
            },
            "optional": {
                "caption_set": ("CAPTION_SET", {"tooltip": "Captions to filter (from LoadCOCOCaptions)."}),
                "text": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "A plain text (e.g. a prompt) to filter the same way; comes out as the text output.")}),
                "remove_categories": ("STRING", {"default": "", "tooltip": (
                    "Also remove these adverb categories, separated by commas (" + ADVERB_CATEGORIES + "); "
                    "e.g. 'spatial' to drop together/outside too. Not used by mode all, which removes every "
                    "category.")}),
                "keep_categories": ("STRING", {"default": "", "tooltip": (
                    "Never remove these categories, separated by commas (e.g. 'time' keeps still/now/already).")}),
                "variants": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": (
                    "decorrelate: caption variants per image, all cached; training uses one per epoch.")}),
                "rate": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.01, "tooltip": (
                    "decorrelate: share of captions given adverbs; -1 = the captions' own share.")}),
                "pool": ("STRING", {"default": "", "tooltip": (
                    "decorrelate: adverbs to draw from, separated by commas; empty = those in the captions, "
                    "by frequency.")}),
                "draw_seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1, "tooltip": (
                    "decorrelate: seed of the draws (same seed, same captions).")}),
            },
        }

    def filter(self, mode, keep, remove, caption_set=None, text="", remove_categories="", keep_categories="",
               variants=4, rate=-1.0, pool="", draw_seed=0):
        from ..trainer.captions.adverbs import AdverbFilter, filter_adverbs
        from ..trainer.captions.captionset import CaptionSet

        keep_words, remove_words = _words(keep), _words(remove)
        categories = {"remove_categories": _words(remove_categories), "keep_categories": _words(keep_categories)}
        if mode == "decorrelate":
            return self.decorrelate(caption_set, text, keep_words, remove_words, categories, variants, rate, pool,
                                    draw_seed)
        f = AdverbFilter(mode, keep_words, remove_words, **categories)  # an unknown category names the choices
        filtered_text = f.filter_text(text).text if text and text.strip() else (text or "")
        if caption_set is None:
            out = CaptionSet((), {"adverb_filter": f.settings})
            return (out, "no caption_set connected; filtered the text only", filtered_text)
        # workers=1: spawned workers re-import the host's __main__, and ComfyUI's main.py starts a server.
        out = filter_adverbs(caption_set, mode, keep_words, remove_words, workers=1, **categories)
        return (out, filter_report(out), filtered_text)


    @staticmethod
    def decorrelate(caption_set, text, keep_words, remove_words, categories, variants, rate, pool, seed):
        """Mode decorrelate: the set with K variants per record; a plain text is returned as it is (decorrelating
        is a property of a data set, not of one prompt)."""
        from ..trainer.captions.captionset import CaptionSet
        from ..trainer.captions.decorrelate import process_captions, summary_lines

        if caption_set is None:
            return (CaptionSet((), {}), "no caption_set connected; mode decorrelate leaves the text as it is",
                    text or "")
        out = process_captions(caption_set, "decorrelate", variants=int(variants),
                               rate=None if rate < 0 else float(rate), seed=int(seed), pool=_words(pool),
                               keep=keep_words, remove=remove_words, workers=1, **categories)
        return (out, "\n".join(summary_lines(out.provenance["adverb_filter"]["decorrelate"], examples=5)),
                text or "")


def filter_report(cs, examples: int = 5, top: int = 10) -> str:
    """Changed %, the most removed words, removals per category, visual adverbs kept, a few before → after."""
    n = len(cs)
    changed = [r for r in cs.records if r.original is not None and r.caption != r.original]
    words = Counter(s.text.lower() for r in changed for s in r.removed)
    info = cs.provenance.get("adverb_filter") or {}
    by_category = info.get("removed_by_category") or {}
    kept_visual = info.get("kept_visual") or []
    lines = [f"{len(changed)} of {n} captions changed ({100.0 * len(changed) / n if n else 0.0:.1f} %)",
             "most removed: " + (", ".join(f"{w} ({c})" for w, c in words.most_common(top)) or "none"),
             "removed by category: " + (", ".join(f"{c} {k}" for c, k in by_category.items()) or "none"),
             "visual adverbs kept: " + (", ".join(f"{w} ×{k}" for w, k in kept_visual[:top]) or "none")]
    lines += [f"  {r.original}  →  {r.caption}" for r in changed[:examples]]
    return "\n".join(lines)
