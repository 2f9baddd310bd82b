"""The `prepare` job: load a raw dataset, remove adverbs, and write the processed set once for training.

Writes ``<processed_root>/<split>_<mode>/``:
- ``captions.jsonl``: the `CaptionSet` (load it with `CaptionSet.load`), provenance in its header;
- ``provenance.json``: source files and hashes, loader and filter settings, spaCy and model versions;
- ``report.json`` / ``report.md``: captions changed (%), removals per category, top removed words,
  the most frequent visual adverbs kept (what ``--remove-category spatial,appearance`` would take),
  before/after examples, and what the loader skipped.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import write_text
from .captionset import CaptionSet

N_EXAMPLES = 30


def records_sha256(caption_set: CaptionSet) -> str:
    """A digest of (image file name, original caption) pairs: identifies the data independently of paths."""
    h = hashlib.sha256()
    for r in caption_set.records:
        h.update(f"{Path(r.image_path).name}\t{r.original if r.original is not None else r.caption}\n".encode("utf-8"))
    return h.hexdigest()


def build_report(caption_set: CaptionSet, n_examples: int = N_EXAMPLES, seed: int = 0) -> dict:
    """Changed share, top removed words and before/after examples of a filtered set."""
    recs = caption_set.records
    changed = [r for r in recs if r.original is not None and r.caption != r.original]
    words = Counter(s.text.lower() for r in recs for s in r.removed)
    by_category = Counter(s.category or "unknown" for r in recs for s in r.removed)
    top_by_category = {c: Counter(s.text.lower() for r in recs for s in r.removed if s.category == c).most_common(8)
                       for c in by_category}
    kept = caption_set.provenance.get("adverb_filter", {}).get("kept_visual", [])
    rng = random.Random(seed)
    examples = rng.sample(changed, min(n_examples, len(changed)))
    return {
        "captions": len(recs), "changed": len(changed),
        "changed_percent": round(100.0 * len(changed) / max(len(recs), 1), 2),
        "removed_words": sum(words.values()), "top_removed": words.most_common(30),
        "removed_by_category": dict(by_category.most_common()), "top_removed_by_category": top_by_category,
        "kept_visual": [list(k) for k in kept],
        "examples": [{"before": r.original, "after": r.caption, "removed": [s.text for s in r.removed]} for r in examples],
        "load_report": caption_set.provenance.get("load_report", {}),
        **({"decorrelate": caption_set.provenance["adverb_filter"]["decorrelate"]}
           if "decorrelate" in caption_set.provenance.get("adverb_filter", {}) else {}),
    }


def report_markdown(report: dict, provenance: dict) -> str:
    """The report as Markdown: settings, counts per category, top words, kept visual adverbs, examples."""
    f = provenance.get("adverb_filter", {})
    lines = [
        "# Processed caption set", "",
        f"- source: `{provenance.get('annotation_file') or provenance.get('source')}`",
        f"- filter: mode `{f.get('mode')}`, keep {f.get('keep') or '-'}, remove {f.get('remove') or '-'}; "
        f"spaCy {f.get('spacy_version')}, model {f.get('model')} {f.get('model_version')}",
        f"- captions: {report['captions']}, changed: {report['changed']} ({report['changed_percent']} %)",
        f"- skipped while loading: {report['load_report'].get('skipped', 0)} {report['load_report'].get('counts', {}) or ''}",
        f"- removed categories: {', '.join(f.get('removed_categories') or []) or '-'} "
        f"(change with --remove-category / --keep-category, or --keep / --remove for single words)",
        "", "## Removed per category", "", "| category | removed | most frequent |", "| --- | --- | --- |",
        *[f"| {c} | {n} | {', '.join(f'{w} ({k})' for w, k in report['top_removed_by_category'].get(c, []))} |"
          for c, n in report["removed_by_category"].items()],
        "", "## Top removed words", "",
        ", ".join(f"{w} ({n})" for w, n in report["top_removed"]) or "(none)",
        "", "## Most frequent visual adverbs kept", "",
        ", ".join(f"{w} ({n})" for w, n in report["kept_visual"]) or "(none)",
        "", f"## {len(report['examples'])} examples", "", "| before | after |", "| --- | --- |",
    ]
    for ex in report["examples"]:
        lines.append(f"| {ex['before'].replace('|', '/')} | {ex['after'].replace('|', '/')} |")
    if "decorrelate" in report:
        from .decorrelate import summary_lines

        lines += ["", "## Decorrelation (mode decorrelate)", "",
                  "The adverbs above are not gone: each caption has K variants in which they are redrawn from the "
                  "pool and put in at the rate below, independently of the image (`after` is the first variant).",
                  "", "```", *summary_lines(report["decorrelate"], examples=10), "```"]
    return "\n".join(lines) + "\n"


def prepare(raw_root, processed_root, split: str = "train", mode: str = "safe", *, keep=(), remove=(),
            captions: str = "all", max_samples: int | None = None, seed: int = 0, strict: bool = False,
            workers: int | None = None, cache_dir=None, check_images: bool = True, progress: bool = False,
            remove_categories=(), keep_categories=(), variants: int = 4, rate: float | None = None,
            pool=()) -> Path:
    """Load `raw_root` (COCO root for `split`, or a folder), filter adverbs, write the processed set.

    `mode` decorrelate (`trainer.captions.decorrelate`): `variants`, `rate`, `pool` and `seed` set the draws.
    Returns the path of ``captions.jsonl``.
    """
    from .decorrelate import process_captions
    from .load import load_captions

    p = Path(raw_root)
    is_coco = p.is_dir() and (any((p / "annotations").glob("captions_*.json")) or any(p.glob("captions_*.json")))
    kw = dict(max_samples=max_samples, seed=seed, strict=strict, check_images=check_images)
    if is_coco:
        kw.update(split=split, captions=captions)
    raw = load_captions(raw_root, **kw)
    processed = process_captions(raw, mode, variants=variants, rate=rate, seed=seed, pool=pool, keep=keep,
                                 remove=remove, workers=workers, cache_dir=cache_dir, progress=progress,
                                 remove_categories=remove_categories, keep_categories=keep_categories)
    sources = []
    if raw.provenance.get("annotation_file"):
        sources.append({"path": raw.provenance["annotation_file"], "sha256": raw.provenance["annotation_sha256"]})
    provenance = {
        **processed.provenance, "source_files": sources, "records_sha256": records_sha256(processed),
        "prepare": {"raw_root": str(Path(raw_root).resolve()), "split": split, "mode": mode,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }
    processed = CaptionSet(processed.records, provenance)
    out_dir = Path(processed_root) / f"{split}_{mode}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = processed.save(out_dir / "captions.jsonl")
    report = build_report(processed, seed=seed)
    write_text(out_dir / "provenance.json", json.dumps(provenance, indent=2, ensure_ascii=False))
    write_text(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False))
    write_text(out_dir / "report.md", report_markdown(report, provenance))
    return path
